"""Contract v2 through the HTTP API: recorded-only outcomes, expiring credentials, a lease without its
session key, model-free selects, and (for the lead) the all-unavailable drop."""

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from profiles.models import AuthProfile, Event, ModelCooldown
from sessions_app.models import Lease, Session
from tests.conftest import T0
from tests.helpers import kinds, pinned, report, select

KEY = "agent:main:telegram:dm:42"
PROFILES = ("anthropic:default", "anthropic:backup1", "anthropic:backup2")


def state(pid):
    return AuthProfile.objects.get(pk=pid)


def events_after_setup():
    """Every event except the profiles' creation: what the behaviour under test wrote."""
    return list(Event.objects.exclude(kind="profile_created").values_list("kind", flat=True))


# ---------------------------------------------------------------- recorded-only outcomes


def test_it_cools_nothing_in_a_529_storm(anthropic, api, clock, django_capture_on_commit_callbacks):
    """Fifty `overloaded` reports on every profile, with the session: no cooldown, no failover, no event."""
    counted_before = REGISTRY.get_sample_value("authbroker_reports_total",
                                               {"outcome": "overloaded", "duplicate": "false"}) or 0.0
    first = select(api, session_key=KEY)
    assert first["profile"] == "anthropic:default"
    with django_capture_on_commit_callbacks(execute=True):
        for second in range(50):
            clock.move_to(T0 + timedelta(seconds=second))
            for pid in PROFILES:
                lease = select(api, session_key=KEY)["lease_id"] if pid == "anthropic:default" else None
                answer = report(api, pid, "overloaded", session_key=KEY, lease_id=lease,
                                model="claude-opus-4-6", retry_after_seconds=600, detail="529 overloaded_error")
                assert answer["failover"] is None and answer["profile"]["available"] is True
    for pid in PROFILES:
        profile = state(pid)
        assert (profile.error_count, profile.failure_counts) == (0, {"overloaded": 50})
        assert (profile.cooldown_until, profile.disabled_until) == (None, None)
        assert profile.last_failure_at == profile.last_used == T0 + timedelta(seconds=49)
    assert not ModelCooldown.objects.exists()
    assert events_after_setup() == []
    session = Session.objects.get(session_key=KEY)
    assert (pinned(KEY), session.last_profile_id) == (None, "anthropic:default")
    after = select(api, session_key=KEY)
    assert (after["profile"], after["source"], after["cooling"]) == ("anthropic:default", "default", False)
    assert select(api, session_key="another-chat")["profile"] == "anthropic:default"
    assert REGISTRY.get_sample_value("authbroker_reports_total",
                                     {"outcome": "overloaded", "duplicate": "false"}) == counted_before + 150


@pytest.mark.parametrize("outcome", ["server_error", "format"])
def test_it_only_records_a_provider_fault_or_a_bad_request(anthropic, api, clock, outcome):
    """`server_error` and `format` are not the key's fault either: counted and dated, held against nothing."""
    select(api, session_key=KEY)
    for _ in range(5):
        answer = report(api, "anthropic:default", outcome, session_key=KEY)
        assert answer["failover"] is None
    profile = answer["profile"]
    assert (profile["available"], profile["error_count"], profile["failure_counts"]) == (True, 0, {outcome: 5})
    assert profile["last_failure_at"] == T0.isoformat()
    assert events_after_setup() == []
    assert select(api, session_key=KEY)["profile"] == "anthropic:default"


def test_it_keeps_a_running_cooldown_as_it_is_when_overloaded_reports_arrive(anthropic, api, clock):
    """A cooling profile's window and count are not moved by an overloaded report, whatever its hint."""
    report(api, "anthropic:default", "rate_limit")
    cooled = state("anthropic:default")
    report(api, "anthropic:default", "overloaded", retry_after_seconds=3600)
    after = state("anthropic:default")
    assert (after.cooldown_until, after.error_count) == (cooled.cooldown_until, 1)
    assert after.failure_counts == {"rate_limit": 1, "overloaded": 1}
    assert kinds(profile_id="anthropic:default") == ["profile_created", "cooldown_started"]


def test_it_lists_server_error_among_the_outcomes_of_the_schema(api):
    """The OpenAPI enum of `outcome` is the rules' list, `server_error` included."""
    schemas = api.get("/api/schema", HTTP_ACCEPT="application/json").json()["components"]["schemas"]
    outcome = schemas["ReportRequest"]["properties"]["outcome"]
    ref = outcome["$ref"] if "$ref" in outcome else outcome["allOf"][0]["$ref"]  # allOf when it has a description
    assert schemas[ref.rsplit("/", 1)[-1]]["enum"] == [
        "success", "rate_limit", "overloaded", "server_error", "timeout", "format", "unknown", "model_not_found",
        "auth", "auth_permanent", "billing"]


# ---------------------------------------------------------------- expiring credentials


@pytest.fixture
def subscription(db, admin_api, clock):
    """anthropic:sub, a subscription token expiring at T0 + 1 h, first in order; anthropic:key, an API key."""
    response = admin_api.post("/api/profiles", {"id": "anthropic:sub", "kind": "token", "secret": "sk-ant-oat01-0123456789",
                                                "position": 0, "expires_at": "2026-04-07T14:00:00+01:00"},
                              format="json")
    assert response.status_code == 201, response.content
    assert response.json()["expires_at"] == "2026-04-07T13:00:00+00:00"
    response = admin_api.post("/api/profiles", {"id": "anthropic:key", "kind": "api_key", "secret": "sk-ant-api03-abcdef",
                                                "position": 1}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["expires_at"] is None


def test_it_stops_handing_out_a_token_once_it_expires(subscription, api, clock):
    """Until its expiry the token is first; from then on new sessions get the next profile and sessions on it move."""
    assert select(api, session_key="before")["profile"] == "anthropic:sub"
    clock.move_to(T0 + timedelta(hours=1) - timedelta(seconds=1))
    assert select(api, session_key="just-before")["profile"] == "anthropic:sub"
    clock.move_to(T0 + timedelta(hours=1))
    fresh = select(api, session_key="after")
    assert (fresh["profile"], fresh["source"], fresh["all_unavailable"]) == ("anthropic:key", "default", False)
    moved = select(api, session_key="before")
    assert (moved["profile"], moved["source"]) == ("anthropic:key", "auto")
    explained = select(api, session_key="explained", explain=True)
    by_id = {c["profile"]: c for c in explained["candidates"]}
    assert (by_id["anthropic:sub"]["available"], by_id["anthropic:sub"]["reason"]) == (False, "expired")
    assert by_id["anthropic:sub"]["until"] is None
    shown = api.get("/api/profiles/anthropic:sub").json()
    assert (shown["available"], shown["expires_at"]) == (False, "2026-04-07T13:00:00+00:00")
    board = api.get("/api/providers/anthropic").json()
    assert [(p["id"], p["available"]) for p in board["profiles"]] == [("anthropic:sub", False), ("anthropic:key", True)]


def test_it_answers_the_expired_token_only_when_nothing_else_can_be(subscription, admin_api, api, clock):
    """An expired credential has no end: with every other profile out it is never chosen (409 when all are)."""
    clock.move_to(T0 + timedelta(hours=2))
    assert admin_api.post("/api/profiles/anthropic:key/disable", {}, format="json").status_code == 200
    response = api.post("/api/select", {"session_key": KEY, "provider": "anthropic"}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "no_usable_profile")


def test_it_never_ranks_by_an_oauth_expiry(admin_api, api, clock):
    """An OAuth `expires_at` is its access token's, refreshed by the gateway: shown, and the profile stays first."""
    response = admin_api.post("/api/profiles", {"id": "anthropic:oauth", "kind": "oauth", "secret": "at-0123456789",
                                                "expires_at": "2026-04-07T11:00:00Z"}, format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["available"], response.json()["expires_at"]) == (True, "2026-04-07T11:00:00+00:00")
    assert select(api)["profile"] == "anthropic:oauth"


def test_it_changes_an_expiry_with_an_event_and_removes_it_with_null(subscription, admin_api, clock):
    """PATCH `expires_at` later, then null: each change is a `profile_changed` with before and after."""
    response = admin_api.patch("/api/profiles/anthropic:sub", {"expires_at": "2026-05-01T00:00:00Z"}, format="json")
    assert (response.status_code, response.json()["expires_at"]) == (200, "2026-05-01T00:00:00+00:00")
    response = admin_api.patch("/api/profiles/anthropic:sub", {"expires_at": None}, format="json")
    assert (response.status_code, response.json()["expires_at"]) == (200, None)
    changes = Event.objects.filter(kind="profile_changed", profile_id="anthropic:sub").order_by("id")
    assert [(e.before, e.after) for e in changes] == [
        ({"expires_at": "2026-04-07T13:00:00+00:00"}, {"expires_at": "2026-05-01T00:00:00+00:00"}),
        ({"expires_at": "2026-05-01T00:00:00+00:00"}, {"expires_at": None}),
    ]
    assert admin_api.patch("/api/profiles/anthropic:sub", {"expires_at": None}, format="json").status_code == 200
    assert changes.count() == 2  # nothing changed, nothing recorded


def test_it_ends_an_expiry_when_a_new_secret_is_written(subscription, admin_api, api, clock):
    """A new secret without a new expiry: the old one's expiry goes with it, and the profile is back at once."""
    clock.move_to(T0 + timedelta(hours=3))
    assert select(api, session_key="s1")["profile"] == "anthropic:key"
    response = admin_api.patch("/api/profiles/anthropic:sub", {"secret": "sk-ant-oat01-renewed-9876"}, format="json")
    assert (response.status_code, response.json()["expires_at"], response.json()["available"]) == (200, None, True)
    event = Event.objects.filter(kind="profile_changed").latest("id")
    assert (event.before["expires_at"], event.after["expires_at"]) == ("2026-04-07T13:00:00+00:00", None)
    assert select(api, session_key="s2")["profile"] == "anthropic:sub"
    response = admin_api.patch("/api/profiles/anthropic:sub", {"secret": "sk-ant-oat01-third-5555",
                                                                "expires_at": "2026-04-08T15:00:00Z"}, format="json")
    assert response.json()["expires_at"] == "2026-04-08T15:00:00+00:00"


BAD_EXPIRIES = ["2026-04-08T12:00:00", "tomorrow", 1775567000000, "", True, {"at": "2026-04-08T12:00:00Z"},
                "2026-13-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "2026-04-08T12:00:00Z" + " " * 100]


@pytest.mark.parametrize("value", BAD_EXPIRIES)
def test_it_refuses_a_bad_expiry_and_changes_nothing(subscription, admin_api, clock, value):
    """A naive, unparsable, out-of-range or mistyped `expires_at` is a 400 on create and PATCH; nothing changes."""
    before = list(AuthProfile.objects.order_by("id").values())
    events = Event.objects.count()
    response = admin_api.post("/api/profiles", {"id": "anthropic:new", "kind": "token", "secret": "sk-0123456789",
                                                "expires_at": value}, format="json")
    assert response.status_code == 400 and "expires_at" in response.json()["error"]["fields"]
    response = admin_api.patch("/api/profiles/anthropic:sub", {"secret": "sk-ant-oat01-other-4444", "position": 5,
                                                               "expires_at": value}, format="json")
    assert response.status_code == 400 and "expires_at" in response.json()["error"]["fields"]
    assert list(AuthProfile.objects.order_by("id").values()) == before
    assert Event.objects.count() == events


def test_it_serves_a_user_pin_on_an_expired_token_by_the_order_and_keeps_it(subscription, api, clock):
    """Like an operator's switch: the expired pin is not handed out, and it applies again once renewed."""
    assert api.put(f"/api/sessions/{KEY}/override", {"profile": "anthropic:sub"}, format="json").status_code == 200
    assert select(api, session_key=KEY)["source"] == "user"
    clock.move_to(T0 + timedelta(hours=1))
    answer = select(api, session_key=KEY)
    assert (answer["profile"], answer["source"]) == ("anthropic:key", "default")
    answer = select(api, session_key=KEY, new_session=True)
    assert (answer["profile"], answer["source"]) == ("anthropic:key", "default")
    assert pinned(KEY) == ("anthropic:sub", "user")


# ---------------------------------------------------------------- a lease without its session key


def test_it_applies_a_lease_report_without_a_session_key_to_the_leases_session(anthropic, api, clock):
    """The lease names the session: the report fails it over, once; the retry is a duplicate changing nothing."""
    lease = select(api, session_key=KEY)["lease_id"]
    first = report(api, "anthropic:default", "rate_limit", lease_id=lease)
    assert (first["duplicate"], first["failover"]) == (False, {"profile": "anthropic:backup1", "source": "auto"})
    assert Lease.objects.get().session_key == KEY
    assert pinned(KEY) == ("anthropic:backup1", "auto")
    written = list(Event.objects.values_list("id", "kind"))
    profiles = list(AuthProfile.objects.order_by("id").values())
    clock.shift(timedelta(minutes=2))
    second = report(api, "anthropic:default", "rate_limit", lease_id=lease)
    assert second == {**first, "duplicate": True}
    assert list(Event.objects.values_list("id", "kind")) == written
    assert list(AuthProfile.objects.order_by("id").values()) == profiles
    assert pinned(KEY)[0] == "anthropic:backup1"
    assert Lease.objects.count() == 1


def test_it_dedupes_a_lease_with_and_without_its_session_key_as_one(anthropic, api, clock):
    """The same lease presented first with the key, then without: one report, one count."""
    lease = select(api, session_key=KEY)["lease_id"]
    report(api, "anthropic:default", "timeout", session_key=KEY, lease_id=lease)
    assert report(api, "anthropic:default", "timeout", lease_id=lease)["duplicate"] is True
    assert state("anthropic:default").error_count == 1


@pytest.mark.parametrize("claimed_first", [False, True])
@pytest.mark.parametrize("mismatch", ["session_key", "profile", "carried key"])
def test_it_refuses_a_lease_for_another_session_or_profile_before_deduplicating(anthropic, api, clock, mismatch,
                                                                                  claimed_first):
    """A different session key or profile is a 400, whether or not the lease was already claimed."""
    lease = select(api, session_key=KEY)["lease_id"]
    if claimed_first:
        report(api, "anthropic:default", "success", lease_id=lease)
    events, profiles = Event.objects.count(), list(AuthProfile.objects.order_by("id").values())
    body = {"lease_id": lease}
    profile = "anthropic:default"
    if mismatch == "session_key":
        body["session_key"] = "agent:main:telegram:dm:43"
    elif mismatch == "profile":
        profile = "anthropic:backup1"
    else:  # the key the lease carries, changed: the signature no longer holds
        payload, _, signature = lease.split(".")
        body["lease_id"] = f"{payload}.YWdlbnQ6bWFpbjp0ZWxlZ3JhbTpkbTo0Mw.{signature}"
    answer = report(api, profile, "rate_limit", expect=400, **body)
    assert "lease_id" in answer["error"]["fields"]
    assert Event.objects.count() == events
    assert list(AuthProfile.objects.order_by("id").values()) == profiles
    assert pinned(KEY) is None


# ---------------------------------------------------------------- selects without a model


def test_it_ignores_model_scoped_cooldowns_in_a_select_without_a_model(anthropic, api, clock):
    """A rate limit on one model keeps the profile out for that model only; a model-free select judges the profile."""
    report(api, "anthropic:default", "rate_limit", model="claude-opus-4-6")
    assert ModelCooldown.objects.get().cooldown_until == T0 + timedelta(minutes=1)
    plain = select(api, session_key="plain", explain=True)
    assert (plain["profile"], plain["cooling"], plain["all_unavailable"]) == ("anthropic:default", False, False)
    assert plain["candidates"][0] == {"profile": "anthropic:default", "available": True,
                                      "reason": "chosen: available", "until": None}
    assert select(api, session_key="plain")["profile"] == "anthropic:default"  # continuing, lock-free
    assert select(api, session_key="opus", model="claude-opus-4-6")["profile"] == "anthropic:backup1"
    assert select(api, session_key="sonnet", model="claude-sonnet-4-6")["profile"] == "anthropic:default"
    reset = api.post("/api/sessions/plain/reset", {"provider": "anthropic"}, format="json").json()
    assert reset["selection"]["profile"] == "anthropic:default"
    assert api.get("/api/profiles/anthropic:default").json()["available"] is True


def test_it_keeps_a_session_on_its_profile_when_only_another_model_cools(anthropic, api, clock):
    """A model-scoped failure reported for the session's profile does not move a model-free session."""
    select(api, session_key=KEY)
    answer = report(api, "anthropic:default", "model_not_found", session_key=KEY, model="claude-opus-4-6")
    assert answer["failover"] == {"profile": "anthropic:backup1", "source": "auto"}  # that model is out for it
    select(api, session_key="other")
    assert select(api, session_key="other")["profile"] == "anthropic:default"


# ---------------------------------------------------------------- every profile out


def test_it_drops_a_continuing_sessions_auto_pin_when_every_profile_is_out(anthropic, api, clock):
    """No profile available: the auto pin goes (`override_dropped`), the answer is the soonest back, `default`."""
    select(api, session_key=KEY)
    assert report(api, "anthropic:default", "rate_limit", session_key=KEY)["failover"]["profile"] == "anthropic:backup1"
    clock.shift(timedelta(seconds=10))
    assert report(api, "anthropic:backup1", "rate_limit", session_key=KEY)["failover"]["profile"] == "anthropic:backup2"
    clock.shift(timedelta(seconds=10))
    assert report(api, "anthropic:backup2", "rate_limit", session_key=KEY)["failover"] is None
    answer = select(api, session_key=KEY)
    assert (answer["profile"], answer["source"], answer["all_unavailable"]) == ("anthropic:default", "default", True)
    assert answer["retry_at"] == (T0 + timedelta(minutes=1)).isoformat()
    assert pinned(KEY) is None
    dropped = Event.objects.filter(session_key=KEY).latest("id")
    assert (dropped.kind, dropped.profile_id, dropped.source) == ("override_dropped", "anthropic:backup2", "auto")
