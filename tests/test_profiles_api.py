"""Providers and profiles: admin-only writes, write-only secrets, audited operator actions."""

from datetime import timedelta

import pytest
from django.db import connection

from profiles.models import AuthProfile, Event, Provider
from tests.helpers import kinds, pinned, report, select

SECRET = "sk-ant-api03-very-secret-value-f9c2"


def create(client, pid="anthropic:extra", **extra):
    return client.post("/api/profiles", {"id": pid, "kind": "api_key", "secret": SECRET, **extra}, format="json")


def test_it_creates_a_profile_and_its_provider(admin_api, clock):
    """201 with profile state; the provider is created with defaults; an event records it."""
    response = create(admin_api, "openrouter:main", position=3)
    assert response.status_code == 201
    body = response.json()
    assert (body["id"], body["provider"], body["position"], body["secret_mask"]) == (
        "openrouter:main", "openrouter", 3, "sk-a…f9c2")
    provider = Provider.objects.get(pk="openrouter")
    assert (provider.strategy, provider.cooldown_ladder_seconds, provider.track_failures) == (
        "ordered", [60, 300, 1500, 3600], True)
    assert kinds(profile_id="openrouter:main") == ["profile_created"]


def test_it_never_returns_or_stores_the_secret_in_clear(admin_api, clock):
    """Write-only: masked in every answer, encrypted at rest, absent from the events."""
    create(admin_api)
    for path in ("/api/profiles", "/api/profiles/anthropic:extra", "/api/providers", "/api/events"):
        assert SECRET not in admin_api.get(path).content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM profiles_authprofile")
        stored = cursor.fetchone()[0]
    assert SECRET not in stored and stored
    assert AuthProfile.objects.get().reveal_secret() == SECRET


def test_it_normalises_provider_ids_and_aliases(admin_api, clock):
    """`Z.AI:default` lands on provider `zai`."""
    assert create(admin_api, " Z.AI:default").json()["id"] == "zai:default"


def test_it_refuses_a_duplicate_profile(admin_api, clock):
    """409 and no second event."""
    create(admin_api)
    response = create(admin_api)
    assert response.status_code == 409
    assert Event.objects.filter(kind="profile_created").count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"id": "no-colon", "kind": "api_key", "secret": "x"},
        {"id": "anthropic:a b", "kind": "api_key", "secret": "x"},
        {"id": "anthropic:x", "kind": "password", "secret": "x"},
        {"id": "anthropic:x", "kind": "api_key", "secret": ""},
        {"id": "anthropic:x", "kind": "api_key", "secret": "x", "position": -1},
        {"id": "anthropic:x", "kind": "api_key", "secret": "x", "position": "1"},
        {"id": "anthropic:x", "kind": "api_key", "secret": "x", "colour": "red"},
    ],
)
def test_it_refuses_invalid_profiles_and_changes_nothing(admin_api, body):
    """A clear 400 with the offending field; nothing created."""
    response = admin_api.post("/api/profiles", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert not AuthProfile.objects.exists() and not Provider.objects.exists()


def test_it_changes_a_profile(anthropic, admin_api, clock):
    """PATCH position and secret; the event shows masks, never secrets."""
    response = admin_api.patch("/api/profiles/anthropic:backup2", {"position": 0, "secret": SECRET}, format="json")
    assert response.status_code == 200
    assert response.json()["position"] == 0 and response.json()["secret_mask"] == "sk-a…f9c2"
    event = Event.objects.get(kind="profile_changed")
    assert event.after == {"position": 0, "secret_mask": "sk-a…f9c2"}


def test_it_deletes_a_profile_and_unpins_its_sessions(anthropic, admin_api, clock):
    """DELETE: the profile goes, pins on it are cleared with an event, history stays."""
    admin_api.put("/api/sessions/k/override", {"profile": "anthropic:backup1"}, format="json")
    response = admin_api.delete("/api/profiles/anthropic:backup1")
    assert response.status_code == 200 and response.json()["id"] == "anthropic:backup1"
    assert not AuthProfile.objects.filter(pk="anthropic:backup1").exists()
    assert pinned("k") is None
    assert kinds(profile_id="anthropic:backup1") == ["profile_created", "override_set", "override_cleared",
                                                     "profile_deleted"]


def test_it_clears_a_cooldown_keeping_the_counts(anthropic, admin_api, clock):
    """Operator action: available at once, audited with the reason, counts kept."""
    report(admin_api, "anthropic:default", "rate_limit")
    response = admin_api.post("/api/profiles/anthropic:default/clear-cooldown", {"reason": "upstream fixed"},
                              format="json")
    assert response.status_code == 200
    assert response.json()["available"] is True and response.json()["error_count"] == 1
    event = Event.objects.get(kind="cooldown_cleared")
    assert (event.reason, event.actor) == ("upstream fixed", f"token:{admin_api.token.name}")


def test_it_disables_and_enables_a_profile(anthropic, admin_api, clock):
    """disable switches off (never chosen); enable switches on and ends a billing disablement."""
    admin_api.post("/api/profiles/anthropic:default/disable", {"reason": "rotating"}, format="json")
    assert select(admin_api)["profile"] == "anthropic:backup1"
    report(admin_api, "anthropic:default", "billing")
    response = admin_api.post("/api/profiles/anthropic:default/enable", {}, format="json")
    assert response.json()["available"] is True
    assert kinds(profile_id="anthropic:default")[-2:] == ["disabled", "enabled"]


def test_it_shows_providers_with_profiles_in_order(anthropic, admin_api, clock):
    """GET providers: strategy, ladder, last_good and profiles by position."""
    report(admin_api, "anthropic:backup1", "success")
    body = admin_api.get("/api/providers/anthropic").json()
    assert body["last_good"] == "anthropic:backup1"
    assert [p["id"] for p in body["profiles"]] == ["anthropic:default", "anthropic:backup1", "anthropic:backup2"]
    assert admin_api.get("/api/providers").json()[0]["id"] == "anthropic"


def test_it_changes_a_provider(anthropic, admin_api, clock):
    """PATCH strategy, ladder, aliases and tracking; one provider_changed event."""
    response = admin_api.patch("/api/providers/anthropic", {
        "strategy": "round_robin", "cooldown_ladder_seconds": [30, 120], "aliases": ["claude"],
        "track_failures": False}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["strategy"], body["cooldown_ladder_seconds"], body["aliases"], body["track_failures"]) == (
        "round_robin", [30, 120], ["claude"], False)
    assert kinds(kind="provider_changed") == ["provider_changed"]


def test_it_uses_the_providers_own_ladder(anthropic, admin_api, clock):
    """A custom ladder decides the cooldown length."""
    admin_api.patch("/api/providers/anthropic", {"cooldown_ladder_seconds": [30]}, format="json")
    report(admin_api, "anthropic:default", "rate_limit")
    assert AuthProfile.objects.get(pk="anthropic:default").cooldown_until - clock_now() == timedelta(seconds=30)


@pytest.mark.parametrize("body", [{"strategy": "random"}, {"cooldown_ladder_seconds": []},
                                  {"cooldown_ladder_seconds": [0]}, {"track_failures": "no"}, {"aliases": "x"}])
def test_it_refuses_invalid_provider_changes(anthropic, admin_api, body):
    """400 and the provider unchanged."""
    assert admin_api.patch("/api/providers/anthropic", body, format="json").status_code == 400
    provider = Provider.objects.get(pk="anthropic")
    assert (provider.strategy, provider.track_failures) == ("ordered", True)
    assert not Event.objects.filter(kind="provider_changed").exists()


def test_it_refuses_an_alias_that_names_another_provider(anthropic, admin_api, clock):
    """409: an alias must not shadow a real provider id."""
    create(admin_api, "openai:work")
    response = admin_api.patch("/api/providers/anthropic", {"aliases": ["openai"]}, format="json")
    assert response.status_code == 409


def test_it_needs_a_token(anthropic, client):
    """No or a bad token: 401 with the error body."""
    assert client.post("/api/select", {}, content_type="application/json").status_code == 401
    response = client.get("/api/profiles", HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_it_needs_the_admin_scope_to_change_profiles(anthropic, api):
    """A gateway token may read but not manage: 403, nothing changed."""
    assert api.get("/api/profiles").status_code == 200
    assert create(api).status_code == 403
    assert api.post("/api/profiles/anthropic:default/disable", {}, format="json").status_code == 403
    assert api.patch("/api/providers/anthropic", {"strategy": "round_robin"}, format="json").status_code == 403
    assert AuthProfile.objects.get(pk="anthropic:default").enabled


def test_it_refuses_a_revoked_token(anthropic, api, clock):
    """revoke_api_token takes effect on the next request."""
    from django.core.management import call_command

    call_command("revoke_api_token", api.token.name)
    assert api.get("/api/profiles").status_code == 401


def clock_now():
    from django.utils import timezone

    return timezone.now()


def test_it_refuses_an_overlong_reason_and_changes_nothing(anthropic, admin_api, clock):
    """A reason is at most 500 characters, for every operator action."""
    report(admin_api, "anthropic:default", "rate_limit")
    response = admin_api.post("/api/profiles/anthropic:default/clear-cooldown", {"reason": "x" * 501},
                              format="json")
    assert response.status_code == 400
    assert AuthProfile.objects.get(pk="anthropic:default").cooldown_until is not None


def test_it_keeps_the_oauth_refresh_token_when_only_the_secret_changes(admin_api, clock):
    """Rotating an access token must not silently drop the refresh token."""
    from profiles import services as profile_services

    profile_services.create_profile("openai-codex:me", "oauth", "access-1-0123456789", clock_now(), "test",
                                    refresh="refresh-0123456789")
    admin_api.patch("/api/profiles/openai-codex:me", {"secret": "access-2-0123456789"}, format="json")
    profile = AuthProfile.objects.get(pk="openai-codex:me")
    assert (profile.reveal_secret(), profile.reveal_refresh()) == ("access-2-0123456789", "refresh-0123456789")
