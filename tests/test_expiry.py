"""Scheduled expiry and retention as plain functions, time moved by time_machine (DESIGN §2, §5)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from profiles import expiry
from profiles import services as profile_services
from profiles.expiry import ExpiryCounts, expire_cooldowns
from profiles.models import AuthProfile, Event, EventKind, ModelCooldown
from sessions_app import retention
from sessions_app.models import Lease
from tests.conftest import T0
from tests.helpers import kinds, report, select

DEFAULT = "anthropic:default"


@pytest.fixture(autouse=True)
def no_grace(settings):
    """The mechanics of expiry, with no grace period; the grace and clock skew have their own tests below."""
    settings.AUTHBROKER_EXPIRY_GRACE_SECONDS = 0


def profile(profile_id=DEFAULT):
    return AuthProfile.objects.get(pk=profile_id)


def expire():
    return expire_cooldowns(timezone.now())


def test_it_clears_an_ended_cooldown_and_records_it_once(anthropic, api, clock):
    """A cooldown that ended is cleared and gets one `cooldown_expired` event by `system`; counts stay."""
    report(api, DEFAULT, "rate_limit")
    clock.shift(61)

    counts = expire()

    assert counts == ExpiryCounts(cooldowns_expired=1)
    p = profile()
    assert (p.cooldown_until, p.cooldown_reason) == (None, "")
    assert (p.error_count, p.failure_counts) == (1, {"rate_limit": 1})
    [event] = Event.objects.filter(kind=EventKind.COOLDOWN_EXPIRED)
    assert (event.profile_id, event.provider_id, event.actor, event.model) == (DEFAULT, "anthropic", "system", "")
    assert event.at == T0 + timedelta(seconds=61)
    assert event.before["cooldown_until"] == (T0 + timedelta(seconds=60)).isoformat()
    assert event.after["cooldown_until"] is None
    assert event.after["error_count"] == 1
    assert "rate_limit" in event.reason


def test_it_shows_the_expiry_in_the_audit_log_api(anthropic, api, clock):
    """An expired cooldown is listed by `GET /api/events?kind=cooldown_expired` without any call on that profile."""
    report(api, DEFAULT, "rate_limit")
    clock.shift(61)
    expire()

    answer = api.get("/api/events", {"kind": "cooldown_expired"}).json()

    assert [(e["kind"], e["profile"], e["actor"]) for e in answer["results"]] == [
        ("cooldown_expired", DEFAULT, "system")
    ]


def test_it_leaves_a_running_cooldown_alone(anthropic, api, clock):
    """A cooldown that has not ended yet is neither cleared nor recorded."""
    report(api, DEFAULT, "rate_limit")
    clock.shift(59)

    assert expire() == ExpiryCounts()
    assert profile().cooldown_until == T0 + timedelta(seconds=60)
    assert EventKind.COOLDOWN_EXPIRED not in kinds()


def test_it_writes_nothing_new_when_run_twice(anthropic, api, clock):
    """A second run finds nothing to do: each expiry is recorded once."""
    report(api, DEFAULT, "rate_limit")
    report(api, "anthropic:backup1", "billing")
    clock.shift(timedelta(hours=6))
    first = expire()
    events = Event.objects.count()

    assert first == ExpiryCounts(cooldowns_expired=1, disables_expired=1)
    assert expire() == ExpiryCounts()
    assert Event.objects.count() == events


def test_it_keeps_counts_so_the_next_failure_escalates(anthropic, api, clock):
    """After expiry the next failure takes the next ladder step (counts survive expiry)."""
    report(api, DEFAULT, "rate_limit")
    clock.shift(61)
    expire()

    report(api, DEFAULT, "rate_limit")

    p = profile()
    assert p.error_count == 2
    assert p.cooldown_until == timezone.now() + timedelta(minutes=5)


def test_it_expires_a_disablement_the_same_way(anthropic, api, clock):
    """A billing disablement that ended is cleared with one `disable_expired` event; counts stay."""
    report(api, DEFAULT, "billing")
    clock.shift(timedelta(hours=5, seconds=1))

    assert expire() == ExpiryCounts(disables_expired=1)

    p = profile()
    assert (p.disabled_until, p.disabled_reason) == (None, "")
    assert (p.error_count, p.failure_counts) == (1, {"billing": 1})
    [event] = Event.objects.filter(kind=EventKind.DISABLE_EXPIRED)
    assert (event.profile_id, event.actor) == (DEFAULT, "system")
    assert "billing" in event.reason


def test_it_records_each_window_of_one_profile(anthropic, clock):
    """A profile whose cooldown and disablement both ended gets one event for each."""
    AuthProfile.objects.filter(pk=DEFAULT).update(
        cooldown_until=T0 - timedelta(seconds=1), cooldown_reason="timeout",
        disabled_until=T0 - timedelta(seconds=1), disabled_reason="auth_permanent",
        error_count=2, failure_counts={"timeout": 1, "auth_permanent": 1}, last_failure_at=T0 - timedelta(hours=1),
    )

    assert expire() == ExpiryCounts(cooldowns_expired=1, disables_expired=1)

    assert kinds(profile_id=DEFAULT)[-2:] == [EventKind.COOLDOWN_EXPIRED, EventKind.DISABLE_EXPIRED]
    assert profile().error_count == 2


def test_it_expires_a_model_cooldown_and_leaves_the_profile_alone(anthropic, api, clock):
    """A (profile, model) cooldown that ended gets its own event naming the model; the profile is untouched."""
    report(api, DEFAULT, "rate_limit", model="claude-opus-4")
    clock.shift(61)

    assert expire() == ExpiryCounts(model_cooldowns_expired=1)

    pair = ModelCooldown.objects.get(profile_id=DEFAULT, model="claude-opus-4")
    assert (pair.cooldown_until, pair.cooldown_reason, pair.error_count) == (None, "", 1)
    [event] = Event.objects.filter(kind=EventKind.COOLDOWN_EXPIRED)
    assert (event.profile_id, event.model, event.actor) == (DEFAULT, "claude-opus-4", "system")
    assert profile().error_count == 0


def test_it_zeroes_counts_a_day_after_the_last_failure(anthropic, api, clock):
    """Counts whose last failure is 24 h old are zeroed (the rules already ignore them), with no new event."""
    report(api, DEFAULT, "rate_limit")
    report(api, DEFAULT, "rate_limit", model="claude-opus-4")
    clock.shift(61)
    expire()
    events = Event.objects.count()
    clock.shift(timedelta(hours=23, minutes=58))

    assert expire() == ExpiryCounts()  # not yet a day
    clock.shift(timedelta(minutes=1))
    assert expire() == ExpiryCounts(counts_forgotten=2)

    p = profile()
    assert (p.error_count, p.failure_counts) == (0, {})
    assert ModelCooldown.objects.get(profile_id=DEFAULT).error_count == 0
    assert Event.objects.count() == events


def test_it_does_not_record_a_cooldown_a_success_already_ended(anthropic, api, clock):
    """A success after the window ended clears it; expiry then has nothing to record."""
    report(api, DEFAULT, "rate_limit")
    clock.shift(61)
    report(api, DEFAULT, "success")

    assert expire() == ExpiryCounts()
    assert EventKind.COOLDOWN_EXPIRED not in kinds()


def test_it_skips_a_row_changed_after_it_was_read(anthropic, api, clock):
    """The claim compares what was read: a row a report changed in between is left for the next run."""
    report(api, DEFAULT, "rate_limit")
    clock.shift(61)
    stale = profile()
    report(api, DEFAULT, "rate_limit")  # a new cooldown started since `stale` was read
    counts = ExpiryCounts()

    expiry._tidy_profile(stale, timezone.now(), timezone.now(), counts)

    assert counts == ExpiryCounts()
    p = profile()
    assert p.cooldown_until == timezone.now() + timedelta(minutes=5)
    assert EventKind.COOLDOWN_EXPIRED not in kinds()


def test_it_never_changes_a_decision(anthropic, api, clock):
    """Select answers the same before and after expiry runs: time alone decides (DESIGN §2)."""
    report(api, DEFAULT, "rate_limit")
    clock.shift(61)
    before = select(api, session_key="agent:main:cli:a", explain=True)

    expire()
    after = select(api, session_key="agent:main:cli:b", explain=True)

    assert before["profile"] == after["profile"] == DEFAULT
    assert before["candidates"] == after["candidates"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_records_each_expiry_once_with_two_concurrent_runs(clock):
    """Two runs at the same moment, both having read every due row, write each event exactly once."""
    for n in range(40):
        profile_services.create_profile(f"anthropic:k{n:02}", "api_key", f"sk-ant-{n:02}-secret-0123456789", T0, "test")
    AuthProfile.objects.filter(pk__lt="anthropic:k20").update(
        cooldown_until=T0 - timedelta(seconds=1), cooldown_reason="rate_limit", error_count=1,
        failure_counts={"rate_limit": 1}, last_failure_at=T0 - timedelta(minutes=2))
    AuthProfile.objects.filter(pk__gte="anthropic:k20").update(
        disabled_until=T0 - timedelta(seconds=1), disabled_reason="billing", error_count=1,
        failure_counts={"billing": 1}, last_failure_at=T0 - timedelta(hours=6))
    ModelCooldown.objects.bulk_create(
        ModelCooldown(profile_id=f"anthropic:k{n:02}", model="claude-opus-4", error_count=1, cooldown_reason="rate_limit",
                      cooldown_until=T0 - timedelta(seconds=1), last_failure_at=T0 - timedelta(minutes=2))
        for n in range(40)
    )

    # Each run waits at its first claim until the other has read the due rows too, so both race for every row.
    both_read = threading.Barrier(2, timeout=30)
    tidy_profile = expiry._tidy_profile
    first_claim = threading.local()

    def racing_tidy_profile(*args):
        if not getattr(first_claim, "done", False):
            first_claim.done = True
            both_read.wait()
        tidy_profile(*args)

    results, errors = [], []

    def run():
        try:
            results.append(expire_cooldowns(T0))
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    expiry._tidy_profile = racing_tidy_profile
    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        expiry._tidy_profile = tidy_profile

    assert errors == []
    assert sum(r.cooldowns_expired for r in results) == 20
    assert sum(r.disables_expired for r in results) == 20
    assert sum(r.model_cooldowns_expired for r in results) == 40
    expired = Event.objects.filter(kind__in=[EventKind.COOLDOWN_EXPIRED, EventKind.DISABLE_EXPIRED])
    assert expired.count() == 80
    assert len(set(expired.values_list("kind", "profile_id", "model"))) == 80
    assert not AuthProfile.objects.filter(cooldown_until__isnull=False).exists()
    assert not AuthProfile.objects.filter(disabled_until__isnull=False).exists()
    assert set(AuthProfile.objects.values_list("error_count", flat=True)) == {1}


# ---------------------------------------------------------------- retention


def test_it_waits_a_grace_period_after_a_window_ends(anthropic, api, clock, settings):
    """With a 60 s grace, a cooldown that ended 59 s ago stays; one that ended over 60 s ago is cleared."""
    settings.AUTHBROKER_EXPIRY_GRACE_SECONDS = 60
    report(api, DEFAULT, "rate_limit")  # cooling until T0 + 60 s
    clock.shift(60 + 59)

    assert expire() == ExpiryCounts()
    assert profile().cooldown_until == T0 + timedelta(seconds=60)

    clock.shift(2)
    assert expire() == ExpiryCounts(cooldowns_expired=1)
    assert profile().cooldown_until is None


@pytest.mark.postgres
def test_it_never_ends_a_window_early_when_the_worker_clock_runs_ahead(db, settings):
    """A worker 326 s ahead of the database clears nothing the database's clock says is running, and dates
    no event in the future."""
    import time_machine

    from profiles.queries import database_now

    settings.AUTHBROKER_EXPIRY_GRACE_SECONDS = 60
    db_now = database_now()
    profile_services.create_profile(DEFAULT, "api_key", "sk-ant-skew-0123456789", db_now, "test")
    AuthProfile.objects.filter(pk=DEFAULT).update(cooldown_until=db_now + timedelta(seconds=100),
                                                  cooldown_reason="rate_limit", error_count=1,
                                                  last_failure_at=db_now)

    with time_machine.travel(db_now + timedelta(seconds=326), tick=False):  # the worker's clock only
        counts = expire_cooldowns(timezone.now())

    assert counts == ExpiryCounts()
    assert profile().cooldown_until == db_now + timedelta(seconds=100)
    assert not Event.objects.filter(at__gt=database_now()).exists()
    assert EventKind.COOLDOWN_EXPIRED not in kinds()


@pytest.mark.postgres
def test_it_dates_expiry_by_the_database_clock_when_the_worker_runs_ahead(db, settings):
    """A window that did end by the database's clock is cleared, with its event dated no later than that clock."""
    import time_machine

    from profiles.queries import database_now

    settings.AUTHBROKER_EXPIRY_GRACE_SECONDS = 60
    db_now = database_now()
    profile_services.create_profile(DEFAULT, "api_key", "sk-ant-skew-0123456789", db_now, "test")
    AuthProfile.objects.filter(pk=DEFAULT).update(cooldown_until=db_now - timedelta(seconds=120),
                                                  cooldown_reason="rate_limit", error_count=1,
                                                  last_failure_at=db_now - timedelta(seconds=180))

    with time_machine.travel(db_now + timedelta(seconds=326), tick=False):
        assert expire_cooldowns(timezone.now()) == ExpiryCounts(cooldowns_expired=1)

    [event] = Event.objects.filter(kind=EventKind.COOLDOWN_EXPIRED)
    assert db_now <= event.at <= database_now()


def test_it_keeps_a_claimed_lease_for_late_duplicates_then_purges_it(anthropic, api, clock):
    """A lease row outlives the lease TTL (a late retry is still a duplicate) and goes after the retention."""
    lease_id = select(api)["lease_id"]
    report(api, DEFAULT, "success", session_key="agent:main:telegram:dm:42", lease_id=lease_id)
    clock.shift(timedelta(hours=1))

    assert retention.purge_leases(timezone.now()) == 0
    late = report(api, DEFAULT, "success", session_key="agent:main:telegram:dm:42", lease_id=lease_id)
    assert late["duplicate"] is True

    clock.shift(timedelta(hours=23, seconds=1))
    assert retention.purge_leases(timezone.now()) == 1
    assert not Lease.objects.exists()
    assert profile().last_success_at == T0


@override_settings(AUTHBROKER_LEASE_RETENTION_SECONDS=5, AUTHBROKER_LEASE_TTL_SECONDS=600)
def test_it_never_keeps_leases_shorter_than_their_ttl(anthropic, api, clock):
    """A retention set below the lease TTL is raised to it, so a fresh lease is never reported twice."""
    lease_id = select(api)["lease_id"]
    report(api, DEFAULT, "success", session_key="agent:main:telegram:dm:42", lease_id=lease_id)
    clock.shift(599)

    assert retention.purge_leases(timezone.now()) == 0
    clock.shift(2)
    assert retention.purge_leases(timezone.now()) == 1


def test_it_purges_events_older_than_the_retention(anthropic, api, clock):
    """Events older than AUTHBROKER_EVENT_RETENTION_DAYS go; newer ones stay."""
    clock.shift(timedelta(days=60))
    report(api, DEFAULT, "rate_limit")
    clock.shift(timedelta(days=31))

    with override_settings(AUTHBROKER_EVENT_RETENTION_DAYS=90):
        assert retention.purge_old_events(timezone.now()) == 3  # the three profile_created at T0
    assert kinds() == [EventKind.COOLDOWN_STARTED]
    assert retention.purge_old_events(timezone.now(), days=30) == 1


def test_it_refuses_a_retention_of_no_days(db):
    """A retention below one day is a mistake, not a request to delete everything."""
    with pytest.raises(ValueError):
        retention.purge_old_events(T0, days=0)
