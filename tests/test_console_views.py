"""The operator console: pages, actions through the services, permissions, CSRF, and secrets kept out."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from profiles import services as profile_services
from profiles.errors import Conflict
from profiles.models import AuthProfile, Event, Provider
from sessions_app import services as session_services
from sessions_app.models import Pin, Session
from tests.conftest import T0
from tests.helpers import pin_of, report, reset, select

KEY = "agent:main:telegram:dm:42"
SECRETS = [f"sk-ant-{name}-secret-0123456789" for name in ("default", "backup1", "backup2")]


# ---------------------------------------------------------------- the cast


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="alice-pass-4921", is_staff=True)


@pytest.fixture
def console(alice):
    """A staff operator's browser, logged in."""
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def outsider(db):
    """A logged-in user who is not staff."""
    client = Client()
    client.force_login(get_user_model().objects.create_user("bob", password="bob-pass-4921"))
    return client


@pytest.fixture
def root(db):
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="root-pass-4921"))
    return client


@pytest.fixture
def failover(anthropic, api):
    """KEY was on anthropic:default, which hit a rate limit: the session failed over to backup1 (auto pin)."""
    select(api)
    answer = report(api, "anthropic:default", "rate_limit", session_key=KEY, detail="429 from upstream")
    assert answer["failover"] == {"profile": "anthropic:backup1", "source": "auto"}
    return Session.objects.get(session_key=KEY)


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def body(response):
    return b"".join(response.streaming_content) if response.streaming else response.content


def order_data(profiles_in_order, reason="new order"):
    return {**{f"pos:{pid}": n for n, pid in enumerate(profiles_in_order)}, "reason": reason}


PAGES = [
    ("console:providers", []),
    ("console:provider", ["anthropic"]),
    ("console:sessions", []),
    ("console:session", [KEY]),
    ("console:events", []),
    ("console:events-csv", []),
    ("console:clear-cooldown", ["anthropic:default"]),
    ("console:disable", ["anthropic:default"]),
    ("console:enable", ["anthropic:default"]),
    ("console:set-override", [KEY]),
    ("console:clear-override", [KEY]),
]

# (url name, args, form data, what the service did)
ACTIONS = [
    ("console:clear-cooldown", ["anthropic:default"], {"reason": "upstream says it is fine"}, "cooldown_cleared"),
    ("console:disable", ["anthropic:backup2"], {"reason": "key leaked", "confirm": "on"}, "disabled"),
    ("console:set-override", [KEY], {"profile": "anthropic:backup2", "reason": "ticket 7"}, "override_set"),
    ("console:clear-override", [KEY], {"reason": "ticket 8", "confirm": "on"}, "override_cleared"),
    ("console:provider-strategy", ["anthropic"], {"strategy": "round_robin", "reason": "spread load"},
     "provider_changed"),
    ("console:provider-order", ["anthropic"],
     order_data(["anthropic:backup2", "anthropic:default", "anthropic:backup1"]), "provider_changed"),
]


# ---------------------------------------------------------------- permissions


@pytest.mark.parametrize(("name", "args"), PAGES + [(a[0], a[1]) for a in ACTIONS])
def test_it_sends_anonymous_visitors_to_the_login_page(failover, name, args):
    """Every console URL, page or action, redirects an anonymous visitor to the login page."""
    url = reverse(name, args=args)
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/?next=/console/")


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_it_refuses_pages_to_users_who_are_not_staff(failover, outsider, name, args):
    assert outsider.get(reverse(name, args=args)).status_code == 403


@pytest.mark.parametrize(("name", "args", "data", "kind"), ACTIONS)
def test_it_refuses_actions_to_anonymous_and_non_staff_and_changes_nothing(failover, outsider, name, args, data,
                                                                            kind):
    before = Event.objects.count()
    assert Client().post(reverse(name, args=args), data).status_code == 302
    assert outsider.post(reverse(name, args=args), data).status_code == 403
    assert Event.objects.count() == before


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_it_shows_every_page_to_staff_without_a_secret(failover, console, name, args):
    """Staff see every page; no page carries a secret or its ciphertext, only the mask."""
    response = console.get(reverse(name, args=args))
    assert response.status_code == 200
    content = body(response).decode()
    for secret in SECRETS:
        assert secret not in content
    for encrypted in AuthProfile.objects.values_list("secret_encrypted", flat=True):
        assert encrypted not in content


def test_it_logs_staff_in_and_lands_on_the_board(alice):
    client = Client()
    response = client.post("/console/login/", {"username": "alice", "password": "alice-pass-4921"})
    assert response.status_code == 302
    assert response["Location"] == "/console/"
    assert client.get("/console/").status_code == 200


def test_it_logs_out_with_a_post(console):
    response = console.post(reverse("console:logout"))
    assert response.status_code == 302
    assert console.get("/console/").status_code == 302


# ---------------------------------------------------------------- providers board


def test_it_shows_each_profile_state_with_reason_and_mask(failover, console, api):
    """Cooling with its deadline and a live countdown, disabled until T, switched off; masks, never secrets."""
    report(api, "anthropic:backup1", "success")
    report(api, "anthropic:backup2", "billing")
    profile_services.disable_profile("anthropic:backup1", T0, "test", "gone")
    html = console.get("/console/").content.decode()

    def row(profile_id):
        return html.split(f'data-profile="{profile_id}"')[1].split("</tr>")[0]

    assert 'data-profile="anthropic:default" data-state="cooling"' in html
    assert "until 12:01:00 UTC" in row("anthropic:default") and "rate_limit" in row("anthropic:default")
    assert 'class="countdown" data-until="2026-04-07T12:01:00+00:00"' in row("anthropic:default")
    assert 'data-state="disabled"' in row("anthropic:backup2")
    assert "until 17:00:00 UTC" in row("anthropic:backup2") and "billing" in row("anthropic:backup2")
    assert 'data-state="off"' in row("anthropic:backup1") and "switched off" in row("anthropic:backup1")
    assert "1 auto" in row("anthropic:backup1")  # KEY failed over to it
    assert 'last good <b class="mono">anthropic:backup1</b>' in html
    assert AuthProfile.objects.get(pk="anthropic:default").secret_mask in row("anthropic:default")


def test_it_shows_an_expired_token_as_expired_and_its_pinned_sessions_as_stuck(anthropic, api, console, clock):
    """Past its `expires_at` a token reads `expired` on the board, and a session pinned to it is counted stuck."""
    profile_services.update_profile("anthropic:backup2", T0, "test", kind="token", expires_at=T0 + timedelta(hours=1))
    api.put(f"/api/sessions/{KEY}/override", {"profile": "anthropic:backup2"}, format="json")
    assert "stuck" not in console.get("/console/sessions/").content.decode()
    clock.shift(timedelta(hours=1))
    html = console.get("/console/").content.decode()
    row = html.split('data-profile="anthropic:backup2"')[1].split("</tr>")[0]
    assert 'data-state="off"' in row and "expired" in row
    sessions = console.get("/console/sessions/?unavailable=on").content.decode()
    assert "1 pinned to one that is out" in sessions and KEY in sessions


def test_it_warns_on_the_board_a_week_before_a_key_expires(anthropic, console, clock):
    """Eight days ahead the expiry is shown plainly; seven days ahead it is a warning; an OAuth one never warns."""
    profile_services.update_profile("anthropic:default", T0, "test", expires_at=T0 + timedelta(days=8))
    profile_services.update_profile("anthropic:backup1", T0, "test", kind="oauth", expires_at=T0 - timedelta(hours=1))

    def expiry(profile_id):
        row = console.get("/console/").content.decode().split(f'data-profile="{profile_id}"')[1].split("</tr>")[0]
        return re.search(r'class="prov expiry[^"]*" data-expiry="(\w+)">([^<]*)', row).groups()

    assert expiry("anthropic:default") == ("later", "expires 2026-04-15 12:00 UTC")
    assert expiry("anthropic:backup1")[0] == "shown"
    clock.shift(timedelta(days=1))
    state, text = expiry("anthropic:default")
    assert state == "soon" and text.endswith("in 1\xa0week: renew it")
    assert "expiry-warning" in console.get("/console/").content.decode()
    clock.shift(timedelta(days=7))
    assert expiry("anthropic:default")[0] == "expired"


def test_it_lists_model_cooldowns_under_their_profile(anthropic, api, console):
    report(api, "anthropic:backup1", "rate_limit", model="claude-opus-4")
    html = console.get("/console/").content.decode()
    after_backup1 = html.split('data-profile="anthropic:backup1"')[1]
    assert after_backup1.index('data-model="claude-opus-4"') < after_backup1.index('data-profile="anthropic:backup2"')


def test_it_builds_the_board_in_a_fixed_number_of_queries(failover, console, django_assert_max_num_queries):
    for n in range(10):
        profile_services.create_profile(f"openai:k{n}", "api_key", f"sk-openai-{n}-xxxxxxxxxxxx", T0, "test")
    with django_assert_max_num_queries(12):
        assert console.get("/console/").status_code == 200


# ---------------------------------------------------------------- sessions


@pytest.fixture
def cast_of_sessions(failover, api, clock):
    """KEY auto-pinned to backup1 (available); a user pin on the cooling default; a session with no pin."""
    select(api, session_key="agent:main:discord:chan:7")
    session_services.set_user_override(session_key="agent:main:discord:chan:7", profile="anthropic:default",
                                       now=T0, actor="operator:carol", reason="customer wants the default key")
    select(api, session_key="agent:ops:slack:c1")
    return ["agent:main:discord:chan:7", "agent:ops:slack:c1"]


def keys_on(response):
    return re.findall(r'<tr data-session="([^"]+)"', response.content.decode())


def test_it_answers_which_sessions_are_pinned_to_a_cooling_profile_and_who_pinned_them(cast_of_sessions, console):
    """The 'pinned to an unavailable profile' filter finds the user pin on the cooling default, with its provenance."""
    page = console.get("/console/sessions/").content.decode()
    assert "1 session on a profile that is cooling, disabled, switched off or expired" in page
    assert "1 pinned to one that is out" in page and "0 last given one that is out" in page
    response = console.get("/console/sessions/", {"unavailable": "on"})
    assert keys_on(response) == ["agent:main:discord:chan:7"]
    row = response.content.decode().split('data-session="agent:main:discord:chan:7"')[1].split("</tr>")[0]
    assert "pin-user" in row and "cooling" in row and "operator:carol" in row
    assert "customer wants the default key" in row


def test_it_counts_sessions_whose_last_selected_profile_is_out_and_says_which(cast_of_sessions, console, alice):
    """Unavailable means unavailable: a session with no pin whose last selection was switched off counts, flagged
    "last selected is out"; the board counts it against the profile too."""
    profile_services.disable_profile("anthropic:backup1", T0, "operator:alice", "key leaked")
    page = console.get("/console/sessions/").content.decode()
    # KEY: auto pin on backup1, which its failover last gave it; chan:7: user pin on the cooling default, last given
    # backup1; slack:c1: no pin, last given backup1.
    summary = re.search(r'class="msg warning stuck">(.*?)</p>', page, re.S).group(1)
    assert "3 sessions on a profile that is cooling, disabled, switched off or expired" in summary, summary
    assert "2 pinned to one that is out" in summary and "3 last given one that is out" in summary, summary
    response = console.get("/console/sessions/", {"unavailable": "on"})
    assert sorted(keys_on(response)) == sorted([KEY, "agent:main:discord:chan:7", "agent:ops:slack:c1"])
    row = response.content.decode().split('data-session="agent:ops:slack:c1"')[1].split("</tr>")[0]
    assert "last selected is out" in row and "pin is out" not in row and "pin-none" in row
    board = console.get("/console/").content.decode()
    backup1 = board.split('data-profile="anthropic:backup1"')[1].split("</tr>")[0]
    assert "1 auto" in backup1 and "3 last selected" in backup1, backup1


@pytest.mark.parametrize(("params", "expected"), [
    ({"source": "auto"}, [KEY]),
    ({"source": "user"}, ["agent:main:discord:chan:7"]),
    ({"source": "none"}, ["agent:ops:slack:c1"]),
    ({"q": "DISCORD"}, ["agent:main:discord:chan:7"]),
    ({"profile": "anthropic:default"}, ["agent:main:discord:chan:7"]),
    ({"profile": "anthropic:backup1"}, [KEY, "agent:main:discord:chan:7", "agent:ops:slack:c1"]),
    ({"provider": "anthropic", "source": "auto"}, [KEY]),
])
def test_it_filters_sessions(cast_of_sessions, console, params, expected):
    assert sorted(keys_on(console.get("/console/sessions/", params))) == sorted(expected)


def test_it_says_why_a_bad_session_filter_shows_nothing(cast_of_sessions, console):
    response = console.get("/console/sessions/", {"profile": "anthropic:gone"})
    assert keys_on(response) == []
    assert "Select a valid choice" in response.content.decode()


def test_it_tells_auto_and_user_pins_apart_with_their_provenance(cast_of_sessions, console):
    html = console.get("/console/sessions/").content.decode()
    auto_row = html.split(f'data-session="{KEY}"')[1].split("</tr>")[0]
    assert "pin-auto" in auto_row and "pin-user" not in auto_row
    assert "failover: anthropic:default reported rate_limit" in auto_row
    assert re.search(r"set by <b>token:token-gateway-\d+</b>", auto_row)


def test_it_pages_sessions(anthropic, api, console):
    for n in range(30):
        select(api, session_key=f"agent:bulk:{n:02d}")
    first = console.get("/console/sessions/", {"q": "bulk"})
    second = console.get("/console/sessions/", {"q": "bulk", "page": 2})
    assert len(keys_on(first)) == 25 and len(keys_on(second)) == 5
    assert set(keys_on(first)).isdisjoint(keys_on(second))
    assert "q=bulk&amp;page=2" in first.content.decode()


def test_it_lists_sessions_in_a_fixed_number_of_queries(cast_of_sessions, api, console,
                                                        django_assert_max_num_queries):
    for n in range(20):
        select(api, session_key=f"agent:bulk:{n:02d}")
    with django_assert_max_num_queries(8):
        assert console.get("/console/sessions/").status_code == 200


# ---------------------------------------------------------------- session page


def test_it_shows_the_session_timeline_with_resets(failover, api, console, clock):
    """Override set by failover, dropped at a reset, and the reset's old and new session ids."""
    old_id = str(failover.session_id)
    clock.shift(120)
    answer = reset(api, reason="new")
    html = console.get(reverse("console:session", args=[KEY])).content.decode()
    kinds = re.findall(r'<li data-kind="([a-z_]+)"', html)
    assert kinds == ["session_reset", "override_dropped", "override_set"]
    assert f"session id {old_id} → {answer['session_id']}" in html
    assert "anthropic:backup1 (auto) → no override" in html


def test_it_answers_404_for_an_unknown_session(console, db):
    assert console.get(reverse("console:session", args=["agent:nobody"])).status_code == 404


# ---------------------------------------------------------------- audit log


@pytest.fixture
def history(cast_of_sessions, clock):
    clock.shift(3600)
    profile_services.disable_profile("anthropic:backup2", T0 + timedelta(hours=1), "operator:dave", "=cmd|' /C calc'!A0")


def kinds_on(response):
    return re.findall(r'<tr data-kind="([a-z_]+)"', response.content.decode())


@pytest.mark.parametrize(("params", "expected"), [
    ({"kind": "disabled"}, ["disabled"]),
    ({"profile": "anthropic:backup2", "kind": "disabled"}, ["disabled"]),
    ({"session": KEY}, ["override_set"]),
    ({"source": "user"}, ["override_set"]),
    ({"source": "operator"}, ["disabled"]),
    ({"actor": "DAVE"}, ["disabled"]),
    ({"since": "2026-04-07T12:30"}, ["disabled"]),
    ({"until": "2026-04-07T12:30", "kind": "disabled"}, []),
])
def test_it_filters_the_audit_log(history, console, params, expected):
    assert kinds_on(console.get("/console/events/", params)) == expected


def test_it_pages_the_audit_log(anthropic, console):
    for n in range(60):
        profile_services.update_profile("anthropic:backup2", T0, "test", position=10 + n)
    first, second = console.get("/console/events/"), console.get("/console/events/", {"page": 2})
    assert len(kinds_on(first)) == 50 and len(kinds_on(second)) == 13  # 60 changes and 3 creations


def test_it_exports_the_filtered_audit_log_as_csv(history, console):
    response = console.get("/console/events.csv", {"profile": "anthropic:backup2"})
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert [r["kind"] for r in rows] == ["disabled", "profile_created"]
    assert rows[0]["actor"] == "operator:dave"
    assert rows[0]["reason"].startswith("'=")  # a spreadsheet will not run it as a formula


def test_it_says_why_a_bad_filter_shows_nothing(history, console):
    response = console.get("/console/events/", {"since": "yesterday-ish"})
    assert response.status_code == 200
    assert kinds_on(response) == []
    assert "Enter a valid date/time" in response.content.decode()


# ---------------------------------------------------------------- actions


@pytest.mark.parametrize(("name", "args", "data", "kind"), ACTIONS)
def test_it_performs_each_action_through_the_service_with_the_operator_as_actor(failover, console, name, args,
                                                                                  data, kind):
    before = Event.objects.count()
    response = console.post(reverse(name, args=args), data, follow=True)
    assert response.status_code == 200
    event = Event.objects.latest("id")
    assert Event.objects.count() == before + 1
    assert event.kind == kind
    assert event.actor == "operator:alice"
    assert event.reason == data["reason"]
    assert any(m for m in messages_of(response)), "a success message"


def test_it_switches_a_profile_on_again(failover, console):
    profile_services.disable_profile("anthropic:backup2", T0, "test", "gone")
    response = console.post(reverse("console:enable", args=["anthropic:backup2"]), {"reason": "rotated the key"})
    assert response.status_code == 302
    assert AuthProfile.objects.get(pk="anthropic:backup2").enabled
    event = Event.objects.latest("id")
    assert (event.kind, event.actor, event.reason) == ("enabled", "operator:alice", "rotated the key")


def test_it_clears_a_cooldown_and_the_profile_is_available(failover, console):
    console.post(reverse("console:clear-cooldown", args=["anthropic:default"]), {"reason": "fine now"})
    html = console.get("/console/").content.decode()
    assert 'data-profile="anthropic:default" data-state="available"' in html


def test_it_sets_a_user_override_that_shows_with_its_provenance(failover, console):
    console.post(reverse("console:set-override", args=[KEY]), {"profile": "anthropic:backup2", "reason": "ticket 7"})
    pin = pin_of(KEY)
    assert (pin.profile_id, pin.source) == ("anthropic:backup2", "user")
    assert (pin.set_by, pin.reason) == ("operator:alice", "ticket 7")
    html = console.get(reverse("console:session", args=[KEY])).content.decode()
    assert "pin-user" in html and "operator:alice" in html and "ticket 7" in html


def test_it_reorders_profiles(failover, console):
    console.post(reverse("console:provider-order", args=["anthropic"]),
                 {"pos:anthropic:default": 3, "pos:anthropic:backup1": 1, "pos:anthropic:backup2": 2,
                  "reason": "backup1 first"})
    order = list(AuthProfile.objects.filter(provider_id="anthropic").order_by("position").values_list("id", flat=True))
    assert order == ["anthropic:backup1", "anthropic:backup2", "anthropic:default"]


def state():
    """Everything an action could change."""
    return (
        list(AuthProfile.objects.order_by("id").values_list("id", "enabled", "position", "cooldown_until")),
        list(Provider.objects.values_list("id", "strategy")),
        list(Pin.objects.order_by("id").values_list("session__session_key", "profile_id", "source", "set_at")),
        Event.objects.count(),
    )


@pytest.mark.parametrize(("name", "args", "data", "kind"), ACTIONS)
def test_it_refuses_an_action_without_a_reason_and_changes_nothing(failover, console, name, args, data, kind):
    before = state()
    response = console.post(reverse(name, args=args), {**data, "reason": "  "})
    assert response.status_code == 400
    assert any("Nothing changed" in m for m in messages_of(response))
    assert state() == before


@pytest.mark.parametrize(("name", "args", "data"), [
    ("console:disable", ["anthropic:backup2"], {"reason": "key leaked"}),
    ("console:clear-override", [KEY], {"reason": "ticket 8"}),
])
def test_it_asks_to_confirm_destructive_actions(failover, console, name, args, data):
    """Switching a profile off or clearing an override needs the confirm box ticked."""
    page = console.get(reverse(name, args=args))
    assert 'name="confirm"' in page.content.decode()
    before = state()
    response = console.post(reverse(name, args=args), data)
    assert response.status_code == 400
    assert messages_of(response) == ["Nothing changed: see the form below."]
    assert response.content.decode().count("Tick the box to confirm.") == 1  # said once, beside the box
    assert state() == before


@pytest.mark.parametrize(("name", "args", "data"), [
    ("console:set-override", [KEY], {"profile": "anthropic:nope", "reason": "typo"}),
    ("console:provider-strategy", ["anthropic"], {"strategy": "random", "reason": "why not"}),
    ("console:provider-order", ["anthropic"], {"pos:anthropic:default": "first", "reason": "typo"}),
    ("console:provider-order", ["anthropic"], {**order_data(["anthropic:default", "anthropic:backup1"]),
                                               "reason": "a profile left out"}),
])
def test_it_answers_bad_input_with_a_message_and_no_change(failover, console, name, args, data):
    before = state()
    response = console.post(reverse(name, args=args), data)
    assert response.status_code == 400
    assert any("Nothing changed" in m for m in messages_of(response))
    assert state() == before


def test_it_reports_a_refusal_from_the_service(failover, console, monkeypatch):
    """When the service refuses (here: a conflict), the operator reads its message and nothing changes."""

    def refuse(*args, **kwargs):
        raise Conflict("the profile is being rotated")

    monkeypatch.setattr(profile_services, "clear_cooldown", refuse)
    before = state()
    response = console.post(reverse("console:clear-cooldown", args=["anthropic:default"]), {"reason": "x"})
    assert response.status_code == 400
    assert "Nothing changed: the profile is being rotated" in messages_of(response)
    assert state() == before


def test_it_answers_404_for_an_action_on_an_unknown_profile(console, anthropic):
    response = console.post(reverse("console:clear-cooldown", args=["anthropic:nope"]), {"reason": "x"})
    assert response.status_code == 404


def test_it_follows_only_local_next_urls(failover, console):
    url = reverse("console:clear-cooldown", args=["anthropic:default"])
    response = console.post(url, {"reason": "x", "next": "https://evil.example/"})
    assert response["Location"] == "/console/"
    response = console.post(url, {"reason": "x", "next": "/console/sessions/"})
    assert response["Location"] == "/console/sessions/"


def test_it_enforces_csrf_on_actions(failover, alice):
    """Without the CSRF token a POST is refused; with the one from the form it goes through."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    url = reverse("console:clear-cooldown", args=["anthropic:default"])
    before = Event.objects.count()
    assert client.post(url, {"reason": "no token"}).status_code == 403
    assert Event.objects.count() == before
    page = client.get(url).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post(url, {"reason": "with token", "csrfmiddlewaretoken": token}).status_code == 302
    assert Event.objects.latest("id").reason == "with token"


def test_it_cuts_a_long_username_to_the_actor_column(failover, db):
    user = get_user_model().objects.create_user("x" * 150, is_staff=True)
    client = Client()
    client.force_login(user)
    client.post(reverse("console:clear-cooldown", args=["anthropic:default"]), {"reason": "long name"})
    assert Event.objects.latest("id").actor == ("operator:" + "x" * 150)[:150]


# ---------------------------------------------------------------- the Django admin


ADMIN_PAGES = [
    "/admin/",
    "/admin/profiles/authprofile/",
    "/admin/profiles/authprofile/anthropic:default/change/",
    "/admin/profiles/provider/",
    "/admin/profiles/provider/anthropic/change/",
    "/admin/profiles/modelcooldown/",
    "/admin/profiles/provideralias/",
    "/admin/sessions_app/session/",
    "/admin/profiles/event/",
    "/admin/sessions_app/lease/",
    "/admin/console/apitoken/",
]


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_it_shows_admin_pages_without_a_secret(failover, root, url):
    response = root.get(url.replace(":", "_3A") if "change" in url else url)
    assert response.status_code == 200, url
    content = response.content.decode()
    for secret in SECRETS:
        assert secret not in content
    for encrypted in AuthProfile.objects.values_list("secret_encrypted", flat=True):
        assert encrypted not in content


def test_it_shows_session_provenance_read_only_in_the_admin(failover, root):
    response = root.get(f"/admin/sessions_app/session/{failover.pk}/change/")
    html = response.content.decode()
    assert 'name="override_set_by"' not in html and 'name="override_profile"' not in html
    assert "failover: anthropic:default reported rate_limit" in html


def test_it_keeps_events_out_of_reach_of_the_admin(failover, root):
    event = Event.objects.latest("id")
    assert root.get("/admin/profiles/event/add/").status_code == 403
    assert root.post(f"/admin/profiles/event/{event.pk}/change/", {"reason": "rewritten"}).status_code == 403
    assert root.post(f"/admin/profiles/event/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Event.objects.get(pk=event.pk).reason == event.reason


def test_it_clears_cooldowns_from_the_admin_through_the_service(failover, root):
    response = root.post("/admin/profiles/authprofile/", {
        "action": "clear_cooldowns", "_selected_action": ["anthropic:default", "anthropic:backup1"],
    }, follow=True)
    assert "cooldown cleared: 2 profiles." in messages_of(response)
    event = Event.objects.latest("id")
    assert (event.kind, event.actor, event.profile_id) == ("cooldown_cleared", "operator:root", "anthropic:default")
    assert AuthProfile.objects.get(pk="anthropic:default").cooldown_until is None


def test_it_changes_a_profile_in_the_admin_through_the_service(failover, root):
    """A new secret typed in the admin is stored encrypted, audited with its mask, and never shown."""
    response = root.post("/admin/profiles/authprofile/anthropic_3Abackup2/change/", {
        "kind": "api_key", "position": "7", "enabled": "on", "new_secret": "sk-ant-new-secret-abcdef987654",
        "model_cooldowns-TOTAL_FORMS": "0", "model_cooldowns-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    profile = AuthProfile.objects.get(pk="anthropic:backup2")
    assert profile.position == 7 and profile.reveal_secret() == "sk-ant-new-secret-abcdef987654"
    event = Event.objects.latest("id")
    assert (event.kind, event.actor) == ("profile_changed", "operator:root")
    assert event.after == {"position": 7, "secret_mask": "sk-a…7654"}
    page = root.get("/admin/profiles/authprofile/anthropic_3Abackup2/change/").content.decode()
    assert "sk-ant-new-secret-abcdef987654" not in page and "sk-a…7654" in page


def test_it_clears_overrides_from_the_admin(failover, root):
    response = root.post("/admin/sessions_app/session/", {
        "action": "clear_overrides", "_selected_action": [failover.pk],
    }, follow=True)
    assert "Override cleared: 1 session." in messages_of(response)
    assert Event.objects.latest("id").actor == "operator:root"


def test_it_sets_and_shows_an_expiry_in_the_admin(failover, root, clock):
    """The admin writes `expires_at` through the service (audited); once past, the list shows the profile expired."""
    response = root.post("/admin/profiles/authprofile/anthropic_3Abackup2/change/", {
        "kind": "token", "position": "2", "enabled": "on", "expires_at_0": "2026-04-07", "expires_at_1": "13:00:00",
        "model_cooldowns-TOTAL_FORMS": "0", "model_cooldowns-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AuthProfile.objects.get(pk="anthropic:backup2").expires_at == T0 + timedelta(hours=1)
    event = Event.objects.latest("id")
    assert (event.kind, event.after) == ("profile_changed", {"kind": "token",
                                                             "expires_at": "2026-04-07T13:00:00+00:00"})
    clock.shift(timedelta(hours=1))
    assert "expired" in root.get("/admin/profiles/authprofile/").content.decode()
