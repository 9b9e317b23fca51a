"""POST /api/select: the decision a gateway asks for before every call (DESIGN §2, Select)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles import services as profile_services
from profiles.models import AuthProfile, Event
from sessions_app.models import Session
from tests.helpers import kinds, pinned, report, reset, select, statements

KEY = "agent:main:telegram:dm:42"


def fail_over_to_backup1(api):
    """The production bug's opening move: default is rate limited and the session fails over."""
    select(api)
    answer = report(api, "anthropic:default", "rate_limit", session_key=KEY)
    assert answer["failover"] == {"profile": "anthropic:backup1", "source": "auto"}


def test_it_returns_to_default_for_a_new_session_after_the_cooldown_ends(anthropic, api, clock):
    """The seed scenario (openclaw #62412): an auto failover pin never strands a new session."""
    first = select(api)
    assert (first["profile"], first["source"]) == ("anthropic:default", "default")

    fail_over_to_backup1(api)
    assert select(api)["profile"] == "anthropic:backup1"
    assert pinned(KEY)[1] == "auto"

    clock.shift(timedelta(minutes=2))  # the 1-minute cooldown has ended; beat may never have run
    fresh = select(api, new_session=True)
    assert (fresh["profile"], fresh["source"]) == ("anthropic:default", "default")
    assert fresh["session_id"] != first["session_id"]
    assert kinds(session_key=KEY) == ["override_set", "override_dropped", "session_reset"]


@pytest.mark.parametrize("boundary", ["new_session", "reset", "bulk_reset", "unknown_key_after_restart"])
def test_it_drops_an_auto_override_at_every_boundary(anthropic, api, clock, boundary):
    """`/new`, `/reset` and a gateway restart all drop an auto pin."""
    fail_over_to_backup1(api)
    clock.shift(timedelta(minutes=2))
    if boundary == "new_session":
        answer = select(api, new_session=True)
    elif boundary == "reset":
        answer = reset(api)["selection"]
    elif boundary == "bulk_reset":
        assert api.post("/api/sessions/reset", {"reason": "restart"}, format="json").json()["dropped"] == 1
        answer = select(api)
    else:
        answer = select(api, session_key="agent:main:telegram:dm:43")
    assert (answer["profile"], answer["source"]) == ("anthropic:default", "default")
    # another key's select leaves this session alone: its pin stays until its own next select
    expected = "anthropic:backup1" if boundary == "unknown_key_after_restart" else None
    assert (pinned(KEY) or (None,))[0] == expected


@pytest.mark.parametrize("boundary", ["new_session", "reset", "bulk_reset"])
def test_it_carries_a_user_override_at_every_boundary_even_while_cooling(anthropic, api, clock, boundary):
    """A person's pin is never rotated away; the answer says it is cooling and why."""
    assert api.put(f"/api/sessions/{KEY}/override", {"profile": "anthropic:backup2"}, format="json").status_code == 200
    report(api, "anthropic:backup2", "rate_limit")
    if boundary == "new_session":
        answer = select(api, new_session=True)
    elif boundary == "reset":
        body = reset(api)
        assert body["carried"] == "anthropic:backup2" and body["dropped"] is None
        answer = body["selection"]
    else:
        assert api.post("/api/sessions/reset", {}, format="json").json()["carried"] == 1
        answer = select(api)
    assert (answer["profile"], answer["source"], answer["cooling"]) == ("anthropic:backup2", "user", True)
    assert "cooldown:rate_limit" in answer["reason"]
    if boundary == "bulk_reset":  # a reset of every session counts carried pins in its summary event...
        summary = Event.objects.filter(kind="session_reset", session_key="").get()
        assert summary.after["carried"] == 1
    assert "override_carried" in kinds(session_key=KEY)  # ...and each session records its own as it crosses


def test_it_never_chooses_a_cooling_profile_for_a_new_session(anthropic, api, clock):
    """While another is available, a cooling or disabled profile is passed over."""
    report(api, "anthropic:default", "rate_limit")
    report(api, "anthropic:backup1", "billing")
    for n in range(5):
        assert select(api, session_key=f"s{n}")["profile"] == "anthropic:backup2"


def test_it_answers_the_soonest_back_when_all_are_unavailable(anthropic, api, clock):
    """All unavailable: 200 with `all_unavailable` and `retry_at` of the one back soonest."""
    report(api, "anthropic:default", "billing")
    report(api, "anthropic:backup1", "rate_limit", retry_after_seconds=600)
    report(api, "anthropic:backup2", "rate_limit")
    answer = select(api)
    assert answer["profile"] == "anthropic:backup2"
    assert answer["all_unavailable"] is True
    assert answer["retry_at"].startswith("2026-04-07T12:01:00")


def test_it_keeps_a_continuing_session_on_its_profile(anthropic, api, clock):
    """Stickiness keeps prompt caches warm: a continuing session stays even when default comes back."""
    fail_over_to_backup1(api)
    clock.shift(timedelta(minutes=2))  # default is available again, but the session is busy
    for _ in range(3):
        clock.shift(timedelta(seconds=30))
        answer = select(api)
        assert (answer["profile"], answer["source"]) == ("anthropic:backup1", "auto")


def test_it_returns_a_continuing_session_home_after_the_idle_window(anthropic, api, clock):
    """An auto pin goes home once the first profile is back and the session idled over 300 s."""
    fail_over_to_backup1(api)
    clock.shift(timedelta(seconds=301))
    answer = select(api)
    assert (answer["profile"], answer["source"]) == ("anthropic:default", "default")
    assert pinned(KEY) is None
    assert kinds(session_key=KEY)[-1] == "override_cleared"


def test_it_fails_over_a_continuing_session_whose_profile_went_away(anthropic, api, clock):
    """A report without the session still makes the next select fail over, recorded as auto."""
    select(api)
    report(api, "anthropic:default", "timeout")  # no session_key: the session is not told
    answer = select(api)
    assert (answer["profile"], answer["source"]) == ("anthropic:backup1", "auto")
    assert "failover" in answer["reason"]
    assert kinds(session_key=KEY) == ["override_set"]


def test_it_fails_over_to_last_good_first(anthropic, api, clock):
    """`last_good` is the first choice when a continuing session must fail over."""
    report(api, "anthropic:backup2", "success")
    select(api)
    answer = report(api, "anthropic:default", "rate_limit", session_key=KEY)
    assert answer["failover"]["profile"] == "anthropic:backup2"


def test_it_does_not_let_last_good_outrank_position_for_a_new_session(anthropic, api, clock):
    """last_good is shown, never preferred for a new session."""
    report(api, "anthropic:backup2", "success")
    assert select(api)["profile"] == "anthropic:default"


def test_it_spreads_new_sessions_with_round_robin(anthropic, admin_api, clock):
    """round_robin: least recently used first, so consecutive new sessions rotate."""
    assert admin_api.patch("/api/providers/anthropic", {"strategy": "round_robin"}, format="json").status_code == 200
    picks = []
    for n in range(4):
        clock.shift(timedelta(seconds=1))
        picks.append(select(admin_api, session_key=f"rr{n}")["profile"])
    assert picks == ["anthropic:default", "anthropic:backup1", "anthropic:backup2", "anthropic:default"]


def test_it_cools_only_the_model_that_was_rate_limited(anthropic, api, clock):
    """With a model, other models of the profile stay available."""
    report(api, "anthropic:default", "rate_limit", model="claude-opus-4-6")
    assert select(api, session_key="a", model="claude-opus-4-6")["profile"] == "anthropic:backup1"
    assert select(api, session_key="b", model="claude-sonnet-4-5")["profile"] == "anthropic:default"
    assert select(api, session_key="c")["profile"] == "anthropic:default"


def test_it_explains_its_decision_when_asked(anthropic, api, clock):
    """`explain` lists the ranked candidates with why each is or is not usable."""
    report(api, "anthropic:default", "rate_limit")
    answer = select(api, explain=True)
    candidates = {c["profile"]: c for c in answer["candidates"]}
    assert candidates["anthropic:default"]["reason"] == "cooldown:rate_limit"
    assert candidates["anthropic:default"]["until"].startswith("2026-04-07T12:01:00")
    assert candidates["anthropic:backup1"]["reason"].startswith("chosen")
    assert [c["profile"] for c in answer["candidates"]][0] == "anthropic:backup1"


def test_it_hands_out_the_secret_only_with_the_credentials_scope(anthropic, api, clock):
    """`credentials` adds the decrypted secret; a plain gateway token never sees it."""
    from tests.conftest import make_client

    assert "credential" not in select(api)
    answer = select(make_client(["gateway", "credentials"]), session_key="other")
    assert answer["credential"] == {"kind": "api_key", "secret": "sk-ant-default-secret-0123456789"}


def test_it_hands_out_the_secret_on_a_continuing_select_in_three_queries(anthropic, clock):
    """The lock-free path leaves the secret in the database, except for a `credentials` token."""
    from tests.conftest import make_client

    client = make_client(["gateway", "credentials"])
    select(client)
    with CaptureQueriesContext(connection) as queries:
        answer = select(client)
    assert answer["credential"] == {"kind": "api_key", "secret": "sk-ant-default-secret-0123456789"}
    assert len(statements(queries)) <= 3, statements(queries)


def test_it_skips_a_user_pin_on_a_profile_an_operator_switched_off(anthropic, api, clock):
    """An operator's switch outranks a person's pin: the pin stays, the answer moves on."""
    api.put(f"/api/sessions/{KEY}/override", {"profile": "anthropic:backup1"}, format="json")
    profile_services.disable_profile("anthropic:backup1", clock_now(), "operator:ann", "leaked key")
    answer = select(api, new_session=True)
    assert (answer["profile"], answer["source"]) == ("anthropic:default", "default")
    assert (pinned(KEY) or (None,))[0] == "anthropic:backup1"


def test_it_resolves_provider_aliases(anthropic, admin_api, clock):
    """Any alias of a provider is accepted where its id is."""
    admin_api.patch("/api/providers/anthropic", {"aliases": ["claude"]}, format="json")
    assert select(admin_api, provider="Claude ")["profile"] == "anthropic:default"


def test_it_shares_one_session_id_across_selects_of_a_continuing_session(anthropic, api, clock):
    """Until a boundary, the session id stays."""
    assert select(api)["session_id"] == select(api)["session_id"]


def test_it_runs_a_continuing_select_in_three_queries(anthropic, api, clock):
    """The hot path: token, session with its profiles, activity stamp; nothing else."""
    select(api)
    with CaptureQueriesContext(connection) as queries:
        select(api)
    assert len(statements(queries)) <= 3, statements(queries)


def test_it_runs_a_new_session_select_in_six_queries(anthropic, api, clock):
    """A new session: token, lookup, profiles, insert, re-read."""
    with CaptureQueriesContext(connection) as queries:
        select(api, session_key="brand-new")
    assert len(statements(queries)) <= 6, statements(queries)


def test_it_refuses_a_select_for_an_unknown_provider(anthropic, api):
    """404 with the error body, and no session created."""
    response = api.post("/api/select", {"session_key": KEY, "provider": "nope"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not Session.objects.exists()


def test_it_refuses_a_provider_without_usable_profiles(anthropic, api, clock):
    """Every profile switched off: 409, nothing created."""
    for p in AuthProfile.objects.all():
        profile_services.disable_profile(p.id, clock_now(), "operator:ann")
    response = api.post("/api/select", {"session_key": KEY, "provider": "anthropic"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_usable_profile"
    assert not Session.objects.exists()


def clock_now():
    from django.utils import timezone

    return timezone.now()


def test_it_returns_a_session_that_started_on_a_fallback_home_after_the_idle_window(anthropic, api, clock):
    """A session begun while default was cooling is not stranded on the fallback either."""
    report(api, "anthropic:default", "rate_limit")
    assert select(api)["profile"] == "anthropic:backup1"
    clock.shift(timedelta(seconds=90))  # default is back, the session is busy: it stays
    assert select(api)["profile"] == "anthropic:backup1"
    clock.shift(timedelta(seconds=301))
    assert select(api)["profile"] == "anthropic:default"


def test_it_keeps_an_idle_session_where_it_is_while_home_is_still_out(anthropic, api, clock):
    """Idle alone is no reason to move: home must be available."""
    fail_over_to_backup1(api)
    report(api, "anthropic:default", "rate_limit", retry_after_seconds=3600)
    clock.shift(timedelta(seconds=400))
    answer = select(api)
    assert (answer["profile"], answer["source"]) == ("anthropic:backup1", "auto")


def test_it_keeps_a_user_pin_on_a_switched_off_profile_for_continuing_sessions(anthropic, api, clock):
    """While the operator's switch is off the session is served elsewhere; the pin is not replaced."""
    select(api)
    api.put(f"/api/sessions/{KEY}/override", {"profile": "anthropic:backup1"}, format="json")
    profile_services.disable_profile("anthropic:backup1", clock_now(), "operator:ann", "leaked key")
    answer = select(api)
    assert (answer["profile"], answer["source"]) == ("anthropic:default", "default")
    session = Session.objects.get(session_key=KEY)
    assert pinned(session.session_key) == ("anthropic:backup1", "user")
    profile_services.enable_profile("anthropic:backup1", clock_now(), "operator:ann")
    assert select(api)["profile"] == "anthropic:backup1"


def test_it_leaves_round_robin_sessions_where_they_were_placed_after_idling(anthropic, admin_api, clock):
    """Spreading load is the point of round_robin: idle sessions are not pulled back to the first key."""
    admin_api.patch("/api/providers/anthropic", {"strategy": "round_robin"}, format="json")
    placed = [select(admin_api, session_key=f"rr{n}")["profile"] for n in range(3)]
    clock.shift(timedelta(seconds=400))
    assert [select(admin_api, session_key=f"rr{n}")["profile"] for n in range(3)] == placed


def test_it_drops_an_auto_pin_set_between_a_bulk_reset_and_the_next_select(anthropic, api, clock):
    """A failover that lands after the restart belongs to the old session: the boundary drops it too."""
    select(api)
    api.post("/api/sessions/reset", {"reason": "restart"}, format="json")
    report(api, "anthropic:default", "rate_limit", session_key=KEY)
    clock.shift(timedelta(minutes=2))
    first = select(api)
    assert (first["profile"], first["source"]) == ("anthropic:default", "default")
    assert select(api)["profile"] == "anthropic:default"
    assert pinned(KEY) is None
    assert kinds(session_key=KEY)[-2:] == ["override_dropped", "session_reset"]  # crossed at its next select


def test_it_drops_a_stale_auto_pin_when_every_profile_is_out(anthropic, api, clock):
    """v2: with nowhere to fail over to, a continuing session's auto pin is dropped (openclaw does too)."""
    fail_over_to_backup1(api)
    report(api, "anthropic:backup2", "rate_limit", retry_after_seconds=600)
    report(api, "anthropic:backup1", "rate_limit", retry_after_seconds=120)  # the session's own profile
    answer = select(api)
    assert (answer["source"], answer["all_unavailable"]) == ("default", True)
    assert answer["profile"] == "anthropic:default"  # back soonest: its 1-minute cooldown ends first
    assert pinned(KEY) is None
    dropped = Event.objects.filter(session_key=KEY, kind="override_dropped").get()
    assert (dropped.profile_id, dropped.source) == ("anthropic:backup1", "auto")
    assert "every profile is unavailable" in dropped.reason
