"""POST /api/report: outcomes drive cooldowns, disablements and failover (DESIGN §2, Outcomes)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles.models import AuthProfile, Event, ModelCooldown, Provider
from sessions_app.models import Lease, Session
from tests.helpers import kinds, pin_of, pinned, report, select, statements

KEY = "agent:main:telegram:dm:42"


def state(profile_id):
    return AuthProfile.objects.get(pk=profile_id)


def test_it_starts_a_one_minute_cooldown_on_the_first_rate_limit(anthropic, api, clock):
    """The answer carries the new profile state; one cooldown_started event is written."""
    answer = report(api, "anthropic:default", "rate_limit", detail="429 Too Many Requests")
    profile = answer["profile"]
    assert profile["available"] is False
    assert profile["error_count"] == 1
    assert profile["cooldown_until"].startswith("2026-04-07T12:01:00")
    assert profile["failure_counts"] == {"rate_limit": 1}
    assert answer["failover"] is None and answer["duplicate"] is False
    event = Event.objects.get(kind="cooldown_started")
    assert (event.profile_id, event.reason) == ("anthropic:default", "rate_limit: 429 Too Many Requests")
    assert "sk-ant-default-secret" not in str(answer)


def test_it_escalates_along_the_ladder_after_each_expiry(anthropic, api, clock):
    """1, 5, 25, 60, 60 minutes for consecutive failures, each after the previous window ended."""
    lengths = []
    for _ in range(5):
        report(api, "anthropic:default", "timeout")
        until = state("anthropic:default").cooldown_until
        lengths.append((until - clock_now()) / timedelta(minutes=1))
        clock.move_to(until + timedelta(seconds=1))
    assert lengths == [1, 5, 25, 60, 60]


def test_it_does_not_escalate_while_cooling(anthropic, api, clock):
    """Failures of requests already in flight change neither count nor deadline."""
    report(api, "anthropic:default", "rate_limit")
    until = state("anthropic:default").cooldown_until
    clock.shift(timedelta(seconds=5))
    for _ in range(3):
        report(api, "anthropic:default", "rate_limit")
    profile = state("anthropic:default")
    assert (profile.error_count, profile.cooldown_until) == (1, until)
    assert kinds(profile_id="anthropic:default") == ["profile_created", "cooldown_started"]


def test_it_honours_a_retry_after_hint_that_is_longer(anthropic, api, clock):
    """A hint lengthens the window (up to 24 h); a later hint may extend a running cooldown."""
    report(api, "anthropic:default", "rate_limit", retry_after_seconds=120)
    assert state("anthropic:default").cooldown_until == clock_now() + timedelta(seconds=120)
    clock.shift(timedelta(seconds=60))
    report(api, "anthropic:default", "rate_limit", retry_after_seconds=300)
    assert state("anthropic:default").cooldown_until == clock_now() + timedelta(seconds=300)
    assert kinds(kind="cooldown_extended") == ["cooldown_extended"]


@pytest.mark.parametrize("bad", [-1, "10", True, "NoneType", [], {}])
def test_it_refuses_a_retry_after_hint_that_is_not_a_number(anthropic, api, clock, bad):
    """Anything but a number ≥ 0 is a 400, and nothing changes."""
    response = api.post("/api/report", {"profile": "anthropic:default", "outcome": "rate_limit",
                                        "retry_after_seconds": bad}, format="json")
    assert response.status_code == 400
    assert "retry_after_seconds" in response.json()["error"]["fields"]
    assert state("anthropic:default").error_count == 0
    assert not Event.objects.filter(kind="cooldown_started").exists()


def test_it_disables_on_billing_for_five_hours(anthropic, api, clock):
    """billing disables; an operator can re-enable at once."""
    report(api, "anthropic:default", "billing")
    profile = state("anthropic:default")
    assert profile.disabled_until == clock_now() + timedelta(hours=5)
    assert profile.disabled_reason == "billing"
    assert kinds(kind="disabled") == ["disabled"]


def test_it_disables_on_the_third_consecutive_auth_failure(anthropic, api, clock):
    """auth cools twice, then disables for 30 minutes."""
    for _ in range(2):
        report(api, "anthropic:default", "auth")
        clock.move_to(state("anthropic:default").cooldown_until + timedelta(seconds=1))
    report(api, "anthropic:default", "auth")
    profile = state("anthropic:default")
    assert profile.disabled_until == clock_now() + timedelta(minutes=30)
    assert profile.failure_counts == {"auth": 3}


def test_it_resets_counts_and_windows_on_success(anthropic, api, clock):
    """success: counts to zero, windows cleared, last_good and timestamps set."""
    report(api, "anthropic:backup1", "rate_limit")
    clock.shift(timedelta(minutes=2))
    answer = report(api, "anthropic:backup1", "success")["profile"]
    assert (answer["error_count"], answer["failure_counts"], answer["cooldown_until"]) == (0, {}, None)
    assert answer["last_success_at"] == answer["last_used"] == clock_now().isoformat()
    assert Provider.objects.get(pk="anthropic").last_good_id == "anthropic:backup1"


def test_it_keeps_counts_across_an_expiry_and_forgets_them_after_a_day(anthropic, api, clock):
    """Expiry never resets counts; 24 h without failure does."""
    report(api, "anthropic:default", "rate_limit")
    clock.shift(timedelta(minutes=2))
    report(api, "anthropic:default", "rate_limit")
    assert state("anthropic:default").error_count == 2
    clock.shift(timedelta(hours=25))
    report(api, "anthropic:default", "rate_limit")
    profile = state("anthropic:default")
    assert profile.error_count == 1
    assert profile.cooldown_until == clock_now() + timedelta(minutes=1)


def test_it_cools_only_the_model_pair_for_a_model_rate_limit(anthropic, api, clock):
    """With a model, rate_limit cools (profile, model); the profile itself stays available."""
    answer = report(api, "anthropic:default", "rate_limit", model="claude-opus-4-6")
    assert answer["profile"]["available"] is True
    pair = ModelCooldown.objects.get(profile_id="anthropic:default", model="claude-opus-4-6")
    assert pair.cooldown_until == clock_now() + timedelta(minutes=1)
    assert Event.objects.get(kind="cooldown_started").model == "claude-opus-4-6"


def test_it_cools_the_whole_profile_for_other_outcomes_even_with_a_model(anthropic, api, clock):
    """Only rate_limit and model_not_found are model-scoped."""
    answer = report(api, "anthropic:default", "timeout", model="claude-opus-4-6")
    assert answer["profile"]["available"] is False
    assert not ModelCooldown.objects.exists()


def test_it_never_cools_a_provider_that_does_not_track_failures(anthropic, admin_api, clock):
    """Aggregators such as openrouter: failures change no availability."""
    admin_api.patch("/api/providers/anthropic", {"track_failures": False}, format="json")
    answer = report(admin_api, "anthropic:default", "rate_limit")
    assert answer["profile"]["available"] is True and answer["profile"]["error_count"] == 0


def test_it_fails_the_session_over_to_the_next_profile(anthropic, api, clock):
    """The failed profile is the session's: an auto override to the next available one."""
    select(api)
    answer = report(api, "anthropic:default", "rate_limit", session_key=KEY)
    assert answer["failover"] == {"profile": "anthropic:backup1", "source": "auto"}
    session = Session.objects.get(session_key=KEY)
    assert pinned(session.session_key) == ("anthropic:backup1", "auto")
    assert "rate_limit" in pin_of(session.session_key).reason


def test_it_leaves_a_session_alone_when_the_report_is_about_a_profile_it_left(anthropic, api, clock):
    """A late failure for the profile a session already left changes nothing for it."""
    select(api)
    report(api, "anthropic:default", "rate_limit", session_key=KEY)
    clock.shift(timedelta(minutes=2))
    answer = report(api, "anthropic:default", "timeout", session_key=KEY)
    assert answer["failover"] is None
    assert (pinned(KEY) or (None,))[0] == "anthropic:backup1"


def test_it_keeps_a_user_override_when_its_profile_fails(anthropic, api, clock):
    """A person's pin stays: `failover: null`."""
    api.put(f"/api/sessions/{KEY}/override", {"profile": "anthropic:backup1"}, format="json")
    answer = report(api, "anthropic:backup1", "rate_limit", session_key=KEY)
    assert answer["failover"] is None
    assert pinned(KEY)[1] == "user"


def test_it_answers_a_retried_lease_with_the_first_answer(anthropic, api, clock):
    """Gateways retry: the second report of a lease changes nothing and says `duplicate`."""
    lease = select(api)["lease_id"]
    first = report(api, "anthropic:default", "rate_limit", session_key=KEY, lease_id=lease)
    clock.shift(timedelta(minutes=2))  # even after the cooldown ended, the retry must not count again
    second = report(api, "anthropic:default", "rate_limit", session_key=KEY, lease_id=lease)
    assert second == {**first, "duplicate": True}
    assert state("anthropic:default").error_count == 1
    assert Lease.objects.count() == 1
    assert kinds(kind="cooldown_started") == ["cooldown_started"]


def test_it_recognises_a_late_duplicate_after_the_lease_ttl(anthropic, api, clock, settings):
    """A lease reported in time stays recognised as long as its record is kept."""
    lease = select(api)["lease_id"]
    report(api, "anthropic:default", "success", session_key=KEY, lease_id=lease)
    clock.shift(timedelta(seconds=settings.AUTHBROKER_LEASE_TTL_SECONDS + 60))
    assert report(api, "anthropic:default", "success", session_key=KEY, lease_id=lease)["duplicate"] is True


def test_it_refuses_a_first_report_on_an_expired_lease(anthropic, api, clock, settings):
    """Too late to count: 409 `lease_expired`, nothing changed."""
    lease = select(api)["lease_id"]
    clock.shift(timedelta(seconds=settings.AUTHBROKER_LEASE_TTL_SECONDS + 1))
    body = report(api, "anthropic:default", "rate_limit", expect=409, session_key=KEY, lease_id=lease)
    assert body["error"]["code"] == "lease_expired"
    assert state("anthropic:default").error_count == 0


@pytest.mark.parametrize("tamper", ["other-profile", "other-session", "forged"])
def test_it_refuses_a_lease_that_was_not_issued_for_this_report(anthropic, api, clock, tamper):
    """A lease binds profile and session: anything else is a 400 and changes nothing."""
    lease = select(api)["lease_id"]
    profile, key = "anthropic:default", KEY
    if tamper == "other-profile":
        profile = "anthropic:backup1"
    elif tamper == "other-session":
        key = "someone-else"
    else:
        lease = lease[:-4] + "0000"
    body = report(api, profile, "rate_limit", expect=400, session_key=key, lease_id=lease)
    assert "lease_id" in body["error"]["fields"]
    assert AuthProfile.objects.filter(error_count__gt=0).count() == 0


def test_it_refuses_an_unknown_profile_or_outcome(anthropic, api, clock):
    """404 for an unknown profile, 400 for an unknown outcome; nothing written."""
    assert report(api, "anthropic:nope", "success", expect=404)["error"]["code"] == "not_found"
    assert "outcome" in report(api, "anthropic:default", "exploded", expect=400)["error"]["fields"]
    assert not Event.objects.exclude(kind="profile_created").exists()


def test_it_runs_a_success_report_in_four_queries(anthropic, api, clock):
    """token, profile lock, stats update, lease claim with the session's stamp (one statement on PostgreSQL)."""
    lease = select(api)["lease_id"]
    report(api, "anthropic:default", "success", session_key=KEY)  # last_good set once
    with CaptureQueriesContext(connection) as queries:
        report(api, "anthropic:default", "success", session_key=KEY, lease_id=lease)
    assert len(statements(queries)) <= (4 if connection.vendor == "postgresql" else 5), statements(queries)


def test_it_runs_a_failure_report_with_failover_in_few_queries(anthropic, api, clock):
    """Failover needs the session, its pins and the provider's profiles, still a bounded handful.

    Token, profile lock, stats update, event, session lock, its pins, candidates, pin write, session
    write, lease claim: the pin is its own row since v2 (one per provider), read after the lock.
    """
    lease = select(api)["lease_id"]
    with CaptureQueriesContext(connection) as queries:
        report(api, "anthropic:default", "rate_limit", session_key=KEY, lease_id=lease)
    assert len(statements(queries)) <= 10, statements(queries)


def clock_now():
    from django.utils import timezone

    return timezone.now()


def test_it_records_a_long_detail_without_failing(anthropic, api, clock):
    """A gateway's error text may be long: the report counts, the event keeps the first 500 characters."""
    report(api, "anthropic:default", "rate_limit", detail="x" * 2000)
    assert len(Event.objects.get(kind="cooldown_started").reason) == 500


def test_it_caps_a_huge_retry_after_hint_at_a_day(anthropic, api, clock):
    """An integer too large for a float is a hint like any other, capped at 24 h."""
    response = api.post("/api/report", data='{"profile": "anthropic:default", "outcome": "rate_limit", '
                        '"retry_after_seconds": 1' + "0" * 400 + "}", content_type="application/json")
    assert response.status_code == 200, response.content
    assert state("anthropic:default").cooldown_until == clock_now() + timedelta(hours=24)


def test_it_accepts_reports_from_a_token_with_the_longest_name(anthropic, clock):
    """The actor recorded on events fits however long the token's name is."""
    from tests.conftest import make_client

    client = make_client(["gateway"])
    client.token.name = "n" * 150
    client.token.save()
    select(client)
    assert report(client, "anthropic:default", "rate_limit", session_key=KEY)["failover"] is not None


def test_it_locks_the_reported_profile_with_the_same_values_the_orm_reads(anthropic, api, clock):
    """The report's fixed-SQL profile lookup gives the ORM's profile and provider, field for field, the
    secrets left in the database; an unknown id gives None."""
    from django.db import transaction

    from profiles import queries as profile_queries
    from profiles.services import SECRET_FIELDS

    report(api, "anthropic:default", "rate_limit")
    report(api, "anthropic:default", "auth")
    Provider.objects.filter(pk="anthropic").update(cooldown_ladder_seconds=[5, 50, 500])
    expected = AuthProfile.objects.select_related("provider").get(pk="anthropic:default")
    assert expected.failure_counts and expected.cooldown_until and expected.last_used
    with transaction.atomic():
        found = profile_queries.locked_profile("anthropic:default", without=SECRET_FIELDS)
        assert profile_queries.locked_profile("anthropic:nobody", without=SECRET_FIELDS) is None
    assert found.get_deferred_fields() == set(SECRET_FIELDS)
    kept = [f.attname for f in AuthProfile._meta.concrete_fields if f.name not in SECRET_FIELDS]
    assert {n: getattr(found, n) for n in kept} == {n: getattr(expected, n) for n in kept}
    provider_fields = [f.attname for f in Provider._meta.concrete_fields]
    assert {n: getattr(found.provider, n) for n in provider_fields} == {
        n: getattr(expected.provider, n) for n in provider_fields}
    assert found.provider.cooldown_ladder_seconds == [5, 50, 500]
