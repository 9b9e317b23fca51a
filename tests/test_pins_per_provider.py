"""DESIGN v2: a session holds at most one pin per provider, and traffic for one never touches another's."""

from datetime import timedelta

import pytest

from profiles import services as profile_services
from profiles.models import Event
from tests.conftest import T0
from tests.helpers import pinned, report, reset, select

KEY = "agent:main:telegram:dm:42"


@pytest.fixture
def openai(anthropic):
    return [profile_services.create_profile(f"openai:{name}", "api_key", f"sk-oa-{name}-secret-0123456789", T0,
                                            "test") for name in ("work", "personal")]


def pin(api, profile):
    response = api.put(f"/api/sessions/{KEY}/override", {"profile": profile}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_it_keeps_a_user_pin_on_openai_while_anthropic_fails_over(openai, api, clock):
    """The seed scenario with a person's openai pin: anthropic traffic never replaces or drops it."""
    pin(api, "openai:personal")
    select(api)  # anthropic
    answer = report(api, "anthropic:default", "rate_limit", session_key=KEY)
    assert answer["failover"] == {"profile": "anthropic:backup1", "source": "auto"}
    assert pinned(KEY, "openai") == ("openai:personal", "user")
    assert pinned(KEY, "anthropic") == ("anthropic:backup1", "auto")
    assert select(api, provider="openai")["source"] == "user"
    assert select(api)["profile"] == "anthropic:backup1"
    assert not Event.objects.filter(session_key=KEY, profile_id="openai:personal",
                                    kind__in=["override_dropped", "override_cleared"]).exists()


def test_it_shows_every_pin_and_the_current_providers_as_override(openai, api, clock):
    pin(api, "openai:personal")
    select(api)
    report(api, "anthropic:default", "rate_limit", session_key=KEY)
    state = api.get(f"/api/sessions/{KEY}").json()
    assert [(p["provider"], p["profile"], p["source"]) for p in state["overrides"]] == [
        ("anthropic", "anthropic:backup1", "auto"), ("openai", "openai:personal", "user")]
    assert state["provider"] == "anthropic"
    assert state["override"]["profile"] == "anthropic:backup1"
    assert "provider" not in state["override"]


def test_it_applies_a_boundary_to_every_pin_whatever_the_provider(openai, api, clock):
    """A reset drops the auto pin on anthropic and carries the user pin on openai, both recorded."""
    pin(api, "openai:personal")
    select(api)
    report(api, "anthropic:default", "rate_limit", session_key=KEY)
    clock.shift(timedelta(minutes=2))
    body = reset(api, provider="openai")
    assert (body["carried"], body["dropped"]) == ("openai:personal", None)  # the request's provider's pin
    assert body["selection"]["profile"] == "openai:personal"
    assert pinned(KEY, "anthropic") is None and pinned(KEY, "openai") == ("openai:personal", "user")
    kinds = list(Event.objects.filter(session_key=KEY, at=T0 + timedelta(minutes=2)).order_by("id")
                 .values_list("kind", "profile_id"))
    assert kinds == [("override_dropped", "anthropic:backup1"), ("override_carried", "openai:personal"),
                     ("session_reset", "")]
    assert select(api)["profile"] == "anthropic:default"


def test_it_clears_one_providers_pin_or_all_of_them(openai, api, clock):
    pin(api, "openai:personal")
    pin(api, "anthropic:backup2")
    response = api.delete(f"/api/sessions/{KEY}/override?provider=openai")
    assert response.status_code == 200
    assert [p["profile"] for p in response.json()["overrides"]] == ["anthropic:backup2"]
    assert api.delete(f"/api/sessions/{KEY}/override").json()["overrides"] == []
    assert api.delete(f"/api/sessions/{KEY}/override?provider=nope").status_code == 404


def test_it_replaces_a_providers_pin_rather_than_adding_a_second(openai, api, clock):
    pin(api, "anthropic:backup2")
    pin(api, "anthropic:backup1")
    state = api.get(f"/api/sessions/{KEY}").json()
    assert [p["profile"] for p in state["overrides"]] == ["anthropic:backup1"]
    set_event = Event.objects.filter(session_key=KEY, kind="override_set").order_by("-id").first()
    assert (set_event.before["profile"], set_event.after["profile"]) == ("anthropic:backup2", "anthropic:backup1")


def test_it_resets_every_session_without_touching_their_rows(openai, api, clock):
    """A bulk reset records itself once; each session crosses it at its next select, with a new id."""
    first = select(api)
    select(api, session_key="other")
    report(api, "anthropic:default", "rate_limit", session_key=KEY)
    pin(api, "openai:personal")
    clock.shift(timedelta(minutes=2))
    answer = api.post("/api/sessions/reset", {"reason": "restart"}, format="json").json()
    assert answer == {"reset": 2, "dropped": 1, "carried": 1}
    assert pinned(KEY, "anthropic") is None  # dropped now, with its event
    after = select(api)
    assert (after["profile"], after["source"]) == ("anthropic:default", "default")
    assert after["session_id"] != first["session_id"]
    assert select(api)["session_id"] == after["session_id"]  # crossed once
    assert select(api, provider="openai")["source"] == "user"


def test_it_follows_the_provider_a_continuing_session_is_on_for_its_override(openai, api, clock):
    """`override` is the pin of the session's current provider, also when the lock-free path answered."""
    pin(api, "openai:personal")
    select(api)  # anthropic, a new session row is already there: decided under the lock
    select(api, provider="openai")  # a continuing openai select on its user pin: the lock-free path
    assert api.get(f"/api/sessions/{KEY}").json()["override"]["profile"] == "openai:personal"
    select(api)  # back to anthropic, lock-free again
    state = api.get(f"/api/sessions/{KEY}").json()
    assert (state["provider"], state["override"]) == ("anthropic", None)
