# ruff: noqa: F811 (the console fixtures are imported from test_console_views and named as parameters)
"""The console's newer pages: a profile's page, the charts, the 404/403 pages, and the live parts."""

import re

import pytest
from django.test import Client

from profiles import services as profile_services
from profiles.models import AuthProfile, Event, Provider, ProviderAlias
from tests.conftest import T0
from tests.helpers import report, select
from tests.test_console_views import (  # noqa: F401
    alice,
    console,
    failover,
    fast_passwords,
    outsider,
)

KEY = "agent:main:telegram:dm:42"


def html(response):
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# ---------------------------------------------------------------- a profile's page


def test_it_keeps_a_profile_page_to_staff(client, outsider, anthropic):
    """Anonymous visitors go to the login; a user who is not staff gets the console's 403 page."""
    response = client.get("/console/profiles/anthropic:default/")
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")
    denied = outsider.get("/console/profiles/anthropic:default/")
    assert denied.status_code == 403 and b"the console is for staff" in denied.content
    assert b'href="/console/"' in denied.content


def test_it_answers_an_unknown_profile_with_the_consoles_404(console):
    response = console.get("/console/profiles/anthropic:nope/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Not found" in page and 'href="/console/sessions/"' in page  # the console's navigation, a way back


def test_it_shows_a_cooling_profile_with_its_window_sessions_and_timeline(failover, console):
    """The default key hit a rate limit: its page says cooling until when and why, lists KEY's history on it,
    and the cooldown_started event is the newest in its timeline."""
    page = html(console.get("/console/profiles/anthropic:default/"))
    assert 'data-state="cooling"' in page and "rate_limit" in page
    assert re.search(r'<li data-kind="cooldown_started">.*?429 from upstream', page, re.S)
    timeline = re.findall(r'<li data-kind="([a-z_]+)"', page)
    assert timeline[0] == "cooldown_started" and "profile_created" in timeline
    assert 'data-session="agent:main:telegram:dm:42"' not in page  # KEY left it: pinned to and given backup1
    backup1 = html(console.get("/console/profiles/anthropic:backup1/"))
    assert 'data-session="agent:main:telegram:dm:42"' in backup1 and "pin-auto" in backup1


def test_it_shows_who_switched_a_profile_off_and_why(anthropic, console):
    profile_services.disable_profile("anthropic:backup2", T0, "operator:carol", "ticket 88: key leaked in a log")
    page = html(console.get("/console/profiles/anthropic:backup2/"))
    switched = page.split('class="switched-off"')[1].split("</dd>")[0]
    assert "operator:carol" in switched and "ticket 88: key leaked in a log" in switched
    assert "Switch on" in page and "Switch off" not in page


def test_it_lists_per_model_cooldowns_and_offers_to_clear_only_those(anthropic, api, console):
    """An available profile with one cooling model: the page lists the model; the action says what it clears."""
    report(api, "anthropic:backup1", "rate_limit", model="claude-sonnet-4-5")
    page = html(console.get("/console/profiles/anthropic:backup1/"))
    assert 'data-state="available"' in page and 'data-model="claude-sonnet-4-5"' in page
    assert "Clear model cooldowns" in page and ">Clear cooldown<" not in page


def test_it_offers_ending_a_billing_disablement_not_a_second_switch_on(anthropic, api, console):
    report(api, "anthropic:backup1", "billing")
    page = html(console.get("/console/profiles/anthropic:backup1/"))
    assert 'data-state="disabled"' in page
    assert "End disablement" in page and "Switch off" in page and ">Switch on<" not in page


def test_it_links_every_profile_id_in_the_console_to_its_page(failover, console):
    link = 'href="/console/profiles/anthropic:backup1/"'
    for path in ("/console/", "/console/sessions/", f"/console/sessions/{KEY}/", "/console/events/"):
        assert link in html(console.get(path)), path


def test_it_writes_nothing_when_a_profile_page_is_read(failover, console):
    before = (Event.objects.count(), list(AuthProfile.objects.order_by("pk").values()))
    console.get("/console/profiles/anthropic:default/")
    assert (Event.objects.count(), list(AuthProfile.objects.order_by("pk").values())) == before


def test_it_sends_the_live_part_of_each_page_for_htmx(failover, console):
    """The board, a session and a profile each carry a polling region and load htmx from the server's static files."""
    for path in ("/console/", f"/console/sessions/{KEY}/", "/console/profiles/anthropic:default/",
                 "/console/sessions/"):
        page = html(console.get(path))
        assert re.search(r'id="live"[^>]*hx-get="[^"]+"[^>]*hx-trigger="every 5s', page), path
        assert re.search(r'<script src="/static/console/htmx(\.[0-9a-f]{12})?\.min\.js">', page), path


def test_it_selects_the_first_profile_again_once_the_board_says_available(failover, api, console, clock):
    """What the board shows after the cooldown ends is what select does: the live refresh shows the truth."""
    clock.shift(3600)
    page = html(console.get("/console/"))
    assert 'data-profile="anthropic:default" data-state="available"' in page
    assert select(api, session_key="agent:new:1")["profile"] == "anthropic:default"


# ---------------------------------------------------------------- over time


def test_it_charts_failovers_by_the_profile_that_caused_them(failover, api, console, clock):  # the audit log's counts
    """Two failovers off the default in the last hour, one cooldown on backup1: the table and the bars say so."""
    clock.shift(600)  # the default's 1-minute cooldown is over; a new session lands on it and fails over again
    select(api, session_key="agent:main:telegram:dm:7")
    report(api, "anthropic:default", "timeout", session_key="agent:main:telegram:dm:7")
    report(api, "anthropic:backup1", "rate_limit")
    page = html(console.get("/console/charts/", {"window": "hour"}))
    row = page.split('<tr data-profile="anthropic:default">')[1].split("</tr>")[0]
    assert '<td data-label="Failovers" class="failovers">2</td>' in row
    failovers = page.split('data-chart="failovers"')[1].split("</section>")[0]
    assert re.search(r'data-chart="failovers" data-total="2"', page)
    assert re.search(r'data-chart="cooldowns" data-total="3"', page)  # default twice, backup1 once
    outcomes = page.split('data-chart="outcomes"')[1].split("</section>")[0]
    assert "rate_limit</span> 2" in outcomes and "timeout</span> 1" in outcomes
    assert "<title>anthropic:default: 1 at" in failovers


def test_it_leaves_events_older_than_the_window_out(failover, console, clock):
    clock.shift(2 * 3600)
    page = html(console.get("/console/charts/", {"window": "hour"}))
    assert re.search(r'data-chart="failovers" data-total="0"', page)
    assert re.search(r'data-chart="failovers" data-total="1"', html(console.get("/console/charts/?window=day")))


def test_it_answers_an_unknown_window_once_with_400(failover, console):
    response = console.get("/console/charts/", {"window": "year"})
    assert response.status_code == 400
    assert response.content.decode().count("Unknown window") == 1


def test_it_keeps_the_charts_to_staff(client, outsider):
    assert client.get("/console/charts/").status_code == 302
    assert outsider.get("/console/charts/").status_code == 403


# ---------------------------------------------------------------- provider settings


SETTINGS = {"cooldown_ladder_seconds": "30, 120s, 600", "track_failures": "on", "aliases": "claude, Anthropic-AI",
            "reason": "ticket 12: shorter ladder for the trial"}


def test_it_changes_a_providers_ladder_tracking_and_aliases_with_a_reason(anthropic, console):
    response = console.post("/console/providers/anthropic/settings/", SETTINGS)
    assert response.status_code == 302 and response["Location"] == "/console/providers/anthropic/"
    provider = Provider.objects.get(pk="anthropic")
    assert provider.cooldown_ladder_seconds == [30, 120, 600] and provider.track_failures is True
    assert sorted(provider.aliases.values_list("alias", flat=True)) == ["anthropic-ai", "claude"]
    event = Event.objects.latest("id")
    assert (event.kind, event.actor, event.reason) == ("provider_changed", "operator:alice", SETTINGS["reason"])
    assert event.after["cooldown_ladder_seconds"] == [30, 120, 600]
    page = html(console.get("/console/providers/anthropic/"))
    assert 'value="30, 120, 600"' in page and 'for="id_cooldown_ladder_seconds"' in page


def test_it_switches_failure_tracking_off(anthropic, console):
    console.post("/console/providers/anthropic/settings/", {**SETTINGS, "track_failures": ""})
    assert Provider.objects.get(pk="anthropic").track_failures is False


@pytest.mark.parametrize("change", [
    {"cooldown_ladder_seconds": "soon"},
    {"cooldown_ladder_seconds": "60, -5"},
    {"cooldown_ladder_seconds": ""},
    {"reason": ""},
    {"aliases": "not a slug!"},
])
def test_it_refuses_bad_provider_settings_once_and_changes_nothing(anthropic, console, change):
    before = (list(Provider.objects.values()), list(ProviderAlias.objects.values()), Event.objects.count())
    response = console.post("/console/providers/anthropic/settings/", {**SETTINGS, **change})
    assert response.status_code == 400
    page = response.content.decode()
    assert page.count("Nothing changed") == 1
    assert (list(Provider.objects.values()), list(ProviderAlias.objects.values()), Event.objects.count()) == before


def test_it_refuses_an_alias_that_names_another_provider(anthropic, console):
    profile_services.create_profile("openai:work", "api_key", "sk-openai-work-0123456789", T0, "test")
    response = console.post("/console/providers/anthropic/settings/", {**SETTINGS, "aliases": "openai"})
    assert response.status_code == 400 and "aliases already name another provider" in response.content.decode()
    assert not ProviderAlias.objects.exists()


def test_it_needs_the_csrf_token_for_provider_settings(anthropic, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/console/providers/anthropic/settings/", SETTINGS).status_code == 403
    assert Provider.objects.get(pk="anthropic").cooldown_ladder_seconds == [60, 300, 1500, 3600]


def test_it_keeps_provider_settings_to_staff(anthropic, client, outsider):
    assert client.post("/console/providers/anthropic/settings/", SETTINGS).status_code == 302
    assert outsider.post("/console/providers/anthropic/settings/", SETTINGS).status_code == 403
    assert not Event.objects.filter(kind="provider_changed").exists()


def test_it_numbers_the_order_form_from_zero(anthropic, console):
    page = html(console.get("/console/providers/anthropic/"))
    assert re.search(r'name="pos:anthropic:default" value="0"', page)
    assert 'for="id_pos:anthropic:default"' in page
    response = console.post("/console/providers/anthropic/order/", {
        "pos:anthropic:default": 2, "pos:anthropic:backup1": 0, "pos:anthropic:backup2": 1, "reason": "r"})
    assert response.status_code == 302
    assert list(AuthProfile.objects.order_by("position").values_list("id", "position")) == [
        ("anthropic:backup1", 0), ("anthropic:backup2", 1), ("anthropic:default", 2)]


def test_it_wraps_session_keys_at_their_colons_only(failover, console):
    page = html(console.get(f"/console/sessions/{KEY}/"))
    assert '<h1 class="mono break">agent:<wbr>main:<wbr>telegram:<wbr>dm:<wbr>42</h1>' in page


def test_it_says_when_an_auto_pin_ended_without_calling_it_cleared(failover, api, console):
    """A boundary drops the auto pin: the session list shows no pin, and never that the gateway cleared one
    (a pin is its own row since v2; the timeline says when and why it ended)."""
    api.post(f"/api/sessions/{KEY}/reset", {"provider": "anthropic"}, format="json")
    page = html(console.get("/console/sessions/"))
    row = page.split(f'data-session="{KEY}"')[1].split("</tr>")[0]
    assert "no override" in row and "last cleared by" not in row and "pin-auto" not in row


def test_it_keeps_the_sessions_filter_form_out_of_the_refreshed_regions(failover, console):
    """A refresh replaces the live regions only; the filter someone is typing in is not one of them."""
    page = html(console.get("/console/sessions/"))
    form_at = page.index('<form class="filters"')
    for region in re.finditer(r'<(div|section)[^>]*id="(live[^"]*)"[^>]*>', page):
        closing = page.index(f"</{region.group(1)}>", region.end())
        assert not region.start() < form_at < closing, region.group(2)
