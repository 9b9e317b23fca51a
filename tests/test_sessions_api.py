"""Session endpoints: reset, bulk reset, overrides, state and the audit log."""

from datetime import timedelta

from profiles.models import Event
from sessions_app.models import Session
from tests.helpers import kinds, report, reset, select

KEY = "agent:main:telegram:dm:42"


def test_it_resets_a_session_with_a_new_id_and_a_fresh_selection(anthropic, api, clock):
    """reset: new session_id, auto pin dropped (event), answer with the new selection."""
    old = select(api)["session_id"]
    report(api, "anthropic:default", "rate_limit", session_key=KEY)
    clock.shift(timedelta(minutes=2))
    body = reset(api, reason="new")
    assert body["session_id"] != old
    assert (body["dropped"], body["carried"]) == ("anthropic:backup1", None)
    assert body["selection"]["profile"] == "anthropic:default"
    assert body["selection"]["session_id"] == body["session_id"]
    event = Event.objects.get(kind="session_reset")
    assert (event.before["session_id"], event.after["session_id"], event.reason) == (old, body["session_id"], "new")


def test_it_creates_the_session_on_reset_of_an_unknown_key(anthropic, api, clock):
    """A reset for a key never seen before creates it."""
    body = reset(api, session_key="fresh")
    assert Session.objects.filter(session_key="fresh", session_id=body["session_id"]).exists()


def test_it_refuses_a_reset_with_an_unknown_reason(anthropic, api, clock):
    """reason is one of new, reset, restart, expiry."""
    response = api.post(f"/api/sessions/{KEY}/reset", {"provider": "anthropic", "reason": "bored"}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()["error"]["fields"]
    assert not Session.objects.exists()


def test_it_bulk_resets_the_listed_sessions_only(anthropic, api, clock):
    """Bulk reset by key: counts, new ids, and the others untouched."""
    for key in ("a", "b", "c"):
        select(api, session_key=key)
    report(api, "anthropic:default", "rate_limit", session_key="a")
    ids = dict(Session.objects.values_list("session_key", "session_id"))
    response = api.post("/api/sessions/reset", {"session_keys": ["a", "b", "missing"], "reason": "restart"},
                        format="json")
    assert response.json() == {"reset": 2, "dropped": 1, "carried": 0}
    after = dict(Session.objects.values_list("session_key", "session_id"))
    assert after["a"] != ids["a"] and after["b"] != ids["b"] and after["c"] == ids["c"]


def test_it_sets_and_clears_a_user_override_with_provenance(anthropic, api, clock):
    """PUT pins with source user, set_by and reason; DELETE clears; both are events."""
    response = api.put(f"/api/sessions/{KEY}/override", {"profile": "anthropic:backup2", "reason": "/model opus@b2"},
                       format="json")
    assert response.status_code == 200
    override = response.json()["override"]
    assert override["profile"] == "anthropic:backup2" and override["source"] == "user"
    assert override["set_by"] == f"token:{api.token.name}" and override["reason"] == "/model opus@b2"
    assert override["set_at"] == "2026-04-07T12:00:00+00:00"
    response = api.delete(f"/api/sessions/{KEY}/override")
    assert response.status_code == 200 and response.json()["override"] is None
    assert kinds(session_key=KEY) == ["override_set", "override_cleared"]


def test_it_refuses_an_override_to_an_unknown_profile(anthropic, api, clock):
    """404, and the session is not created."""
    response = api.put(f"/api/sessions/{KEY}/override", {"profile": "anthropic:ghost"}, format="json")
    assert response.status_code == 404
    assert not Session.objects.exists()


def test_it_shows_a_session_with_its_override(anthropic, api, clock):
    """GET a session: id, override with provenance, last profile."""
    select(api)
    report(api, "anthropic:default", "rate_limit", session_key=KEY)
    body = api.get(f"/api/sessions/{KEY}").json()
    assert body["override"]["source"] == "auto" and body["override"]["profile"] == "anthropic:backup1"
    assert body["override"]["set_by"].startswith("token:")
    assert body["last_profile"] == "anthropic:backup1"
    assert api.get("/api/sessions/unknown-key").status_code == 404


def test_it_lists_a_sessions_events_newest_first(anthropic, api, clock):
    """The session's timeline, paginated, newest first."""
    select(api)
    report(api, "anthropic:default", "rate_limit", session_key=KEY)
    clock.shift(timedelta(minutes=2))
    reset(api)
    body = api.get(f"/api/sessions/{KEY}/events").json()
    assert [e["kind"] for e in body["results"]] == ["session_reset", "override_dropped", "override_set"]


def test_it_filters_the_audit_log(anthropic, api, clock):
    """kind, profile, session_key, source and a time range narrow the list."""
    select(api)
    report(api, "anthropic:default", "rate_limit", session_key=KEY)
    clock.shift(timedelta(hours=1))
    report(api, "anthropic:backup2", "billing")

    def listed(query):
        response = api.get(f"/api/events?{query}")
        assert response.status_code == 200, response.content
        return [(e["kind"], e["profile"]) for e in response.json()["results"]]

    assert listed("kind=cooldown_started") == [("cooldown_started", "anthropic:default")]
    assert listed("profile=anthropic:backup2") == [("disabled", "anthropic:backup2"),
                                                    ("profile_created", "anthropic:backup2")]
    assert listed("source=auto") == [("override_set", "anthropic:backup1")]
    assert listed(f"session_key={KEY}") == [("override_set", "anthropic:backup1")]
    assert listed("since=2026-04-07T12:30:00Z") == [("disabled", "anthropic:backup2")]
    assert listed("until=2026-04-07T12:30:00Z&kind=disabled") == []


def test_it_refuses_a_bad_filter(anthropic, api):
    """An unknown kind or a malformed time is a 400 with the error body."""
    assert api.get("/api/events?kind=nonsense").json()["error"]["code"] == "invalid"
    assert api.get("/api/events?since=yesterday").status_code == 400


def test_it_pages_the_audit_log(anthropic, api, clock):
    """Cursor pagination keeps pages stable while events are appended."""
    for n in range(5):
        reset(api, session_key=f"s{n}")
    first = api.get("/api/events?page_size=2").json()
    second = api.get(first["next"]).json()
    ids = [e["id"] for e in first["results"] + second["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
