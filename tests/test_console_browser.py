"""The console in a real browser: Playwright driving Debian's Chromium against Django's live server.

Screenshots of every page, at laptop and phone widths, land in test-artifacts/.
Run locally with `pytest -m browser`; skipped (with the reason) when Chromium
or Playwright is missing, except in CI, where `.ci/run` installs both and a
missing browser is a failure.
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone

from profiles import services as profile_services
from profiles.models import AuthProfile, Event
from sessions_app import services as session_services
from tests.helpers import pinned

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
KEY = "agent:main:telegram:dm:42"
PASSWORD = "operator-pass-7301"
SECRET = "sk-ant-default-browser-secret-5555"


def _missing():
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture
def browser(monkeypatch):
    """A headless Chromium. Playwright's sync API runs an event loop in this thread, so Django must be
    told that ORM calls from the test body are fine (they are: the loop is Playwright's, not ours)."""
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()
        # ORM calls made while Playwright's loop runs get their own connections (asgiref locals follow
        # the loop's context); close them here, or PostgreSQL cannot drop the test database.
        connections.close_all()


@pytest.fixture
def stranded(transactional_db):
    """Three anthropic keys; KEY failed over from a rate-limited default to backup1 an hour's cooldown ago."""
    now = timezone.now()
    for name in ("default", "backup1", "backup2"):
        secret = SECRET if name == "default" else f"sk-ant-{name}-browser-secret-5555"
        profile_services.create_profile(f"anthropic:{name}", "api_key", secret, now - timedelta(minutes=5), "test")
    for n in range(3):
        session_services.select_profile(session_key=f"agent:main:discord:chan:{n}", provider="anthropic",
                                        now=now - timedelta(minutes=3), actor="token:gateway")
    session_services.select_profile(session_key=KEY, provider="anthropic", now=now - timedelta(minutes=2),
                                    actor="token:gateway")
    answer = session_services.report_outcome(profile="anthropic:default", outcome="rate_limit",
                                             now=now - timedelta(minutes=2), actor="token:gateway", session_key=KEY,
                                             retry_after_seconds=3600, detail="429 from upstream")
    assert answer["failover"]["profile"] == "anthropic:backup1"
    get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)


def shoot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page, base):
    page.goto(f"{base}/console/")
    assert "/console/login/" in page.url
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")


def test_it_lets_an_operator_find_a_failover_pin_it_and_clear_a_cooldown(browser, live_server, stranded):
    base = live_server.url
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/console/login/")
    shoot(page, "login")
    log_in(page, base)

    # The board: default is cooling, with a live countdown.
    default_row = page.locator('tr[data-profile="anthropic:default"]')
    assert default_row.get_attribute("data-state") == "cooling"
    countdown = default_row.locator(".countdown")
    first = countdown.inner_text()
    page.wait_for_function("t => document.querySelector('tr[data-profile=\"anthropic:default\"] .countdown')"
                           ".textContent !== t", arg=first, timeout=5000)
    assert re.fullmatch(r"\d+m \d\ds left", countdown.inner_text())
    shoot(page, "providers")

    # Sessions: filter to auto pins and read the provenance of the one that failed over.
    page.click("text=Sessions")
    page.select_option("select[name=source]", "auto")
    page.click("button:has-text('Filter')")
    row = page.locator(f'tr[data-session="{KEY}"]')
    assert page.locator("tr[data-session]").count() == 1
    provenance = row.inner_text()
    assert "AUTO" in provenance.upper() and "anthropic:backup1" in provenance
    assert "set by token:gateway" in provenance
    assert "failover: anthropic:default reported rate_limit" in provenance
    shoot(page, "sessions")

    # The session page: pin it to backup2 as a user override, with a reason.
    row.locator(f'a:has-text("{KEY}")').click()
    page.wait_for_url(re.compile(r".*/console/sessions/.+/$"))
    page.select_option("select[name=profile]", "anthropic:backup2")
    page.fill("input[name=reason]", "ticket 4711: user wants the backup2 key")
    page.click("button:has-text('Pin (user override)')")
    assert "pinned to anthropic:backup2 (user override)" in page.locator(".messages").inner_text()
    assert "USER" in page.locator("dd.override").inner_text().upper()
    newest = page.locator(".timeline li").first
    assert newest.get_attribute("data-kind") == "override_set"
    assert "ticket 4711: user wants the backup2 key" in newest.inner_text()
    assert "operator:operator" in newest.inner_text()
    shoot(page, "session")
    assert pinned(KEY) == ("anthropic:backup2", "user")

    # The audit log shows it, filtered by actor.
    page.click("text=Audit log")
    page.fill("input[name=actor]", "operator:operator")
    page.click("button:has-text('Filter')")
    rows = page.locator("tr[data-kind]")
    assert rows.count() == 1
    assert "ticket 4711" in rows.first.inner_text() and rows.first.get_attribute("data-kind") == "override_set"
    shoot(page, "events")

    # Clear the default's cooldown from the board and see it available.
    page.click("text=Providers")
    page.locator('tr[data-profile="anthropic:default"] >> text=Clear cooldown').click()
    page.fill("input[name=reason]", "upstream confirmed the limit is lifted")
    shoot(page, "clear-cooldown")
    page.click("button:has-text('Clear cooldown')")
    page.wait_for_url(f"{base}/console/")
    assert page.locator('tr[data-profile="anthropic:default"]').get_attribute("data-state") == "available"
    assert "Cooldown of anthropic:default cleared." in page.locator(".messages").inner_text()
    shoot(page, "providers-after")
    event = Event.objects.latest("id")
    assert (event.kind, event.actor) == ("cooldown_cleared", "operator:operator")
    assert SECRET not in page.content()


def test_it_reads_well_on_a_phone(browser, live_server, stranded):
    """Every page at phone width: no sideways scrolling, no secret."""
    base = live_server.url
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    log_in(page, base)
    pages = {
        "providers": "/console/",
        "provider": "/console/providers/anthropic/",
        "sessions": "/console/sessions/",
        "session": f"/console/sessions/{KEY}/",
        "events": "/console/events/",
        "disable": "/console/profiles/anthropic:backup2/disable/",
    }
    for name, path in pages.items():
        page.goto(base + path)
        shoot(page, f"phone-{name}")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px"
        assert SECRET not in page.content()
    assert AuthProfile.objects.count() == 3


def test_it_renders_the_api_docs_with_every_operation(browser, live_server, transactional_db):
    """/api/docs draws Swagger UI from the server's own static files and lists the operations."""
    for width, height, suffix in ((1440, 900, ""), (390, 844, "-phone")):
        page = browser.new_page(viewport={"width": width, "height": height})
        failed = []
        page.on("response", lambda r, failed=failed: r.status >= 400 and failed.append(r.url))
        page.goto(f"{live_server.url}/api/docs")
        page.wait_for_selector(".opblock", timeout=15000)
        listed = page.locator(".opblock-summary-path").all_inner_texts()
        shoot(page, f"api-docs{suffix}")
        assert not failed, failed
        assert any("/api/select" in text for text in listed)
        assert any("/api/report" in text for text in listed)
        assert len(listed) >= 15
        page.close()


# ---------------------------------------------------------------- the profile page, live refresh, charts, dark mode

LAPTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}


def shoot_both(browser, base, path, name, check=None, **context):
    """The page at 1440×900 and at 390×844 (no sideways scrolling on the phone), saved under test-artifacts/."""
    for size, suffix in ((LAPTOP, ""), (PHONE, "-phone")):
        ctx = browser.new_context(viewport=size, is_mobile=size is PHONE, **context)
        page = ctx.new_page()
        log_in(page, base)
        page.goto(base + path)
        if check:
            check(page)
        shoot(page, f"{name}{suffix}")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name}{suffix} scrolls sideways by {overflow}px"
        assert SECRET not in page.content()
        ctx.close()


def test_it_opens_a_profile_from_the_board_with_its_state_and_timeline(browser, live_server, stranded):
    base = live_server.url
    page = browser.new_page(viewport=LAPTOP)
    log_in(page, base)
    page.locator('tr[data-profile="anthropic:default"] a.profile-link').click()
    page.wait_for_url(f"{base}/console/profiles/anthropic:default/")
    assert page.locator("h1[data-profile]").get_attribute("data-state") == "cooling"
    assert "rate_limit" in page.locator("dd.state").inner_text()
    first = page.locator(".timeline li").first
    assert first.get_attribute("data-kind") == "cooldown_started" and "429 from upstream" in first.inner_text()
    kinds = page.locator(".timeline li").evaluate_all("items => items.map(li => li.dataset.kind)")
    assert kinds[-1] == "profile_created"
    page.close()

    def timeline_shown(page):
        assert page.locator(".timeline li").count() == len(kinds)

    shoot_both(browser, base, "/console/profiles/anthropic:default/", "profile", timeline_shown)


def test_it_turns_a_cooling_profile_available_without_a_reload(browser, live_server, transactional_db):
    """The server's clock moves past the cooldown; the open board and profile page change by themselves."""
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=True) as traveller:
        for name in ("default", "backup1"):
            profile_services.create_profile(f"anthropic:{name}", "api_key", f"sk-ant-{name}-live-secret-5555",
                                            timezone.now(), "test")
        session_services.select_profile(session_key=KEY, provider="anthropic", now=timezone.now(),
                                        actor="token:gateway")
        session_services.report_outcome(profile="anthropic:default", outcome="rate_limit", now=timezone.now(),
                                        actor="token:gateway", session_key=KEY, retry_after_seconds=1800)
        get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)
        base = live_server.url
        context = browser.new_context(viewport=LAPTOP)
        board = context.new_page()
        log_in(board, base)
        profile = context.new_page()
        profile.goto(f"{base}/console/profiles/anthropic:default/")
        row = 'tr[data-profile="anthropic:default"]'
        assert board.locator(row).get_attribute("data-state") == "cooling"
        assert profile.locator("h1[data-profile]").get_attribute("data-state") == "cooling"
        for page in (board, profile):
            page.evaluate("window.__same_page = true")
        traveller.shift(timedelta(minutes=31))
        board.wait_for_function(f"document.querySelector('{row}').dataset.state === 'available'", timeout=20000)
        profile.wait_for_function("document.querySelector('h1[data-profile]').dataset.state === 'available'",
                                  timeout=20000)
        for page in (board, profile):
            assert page.evaluate("window.__same_page") is True  # refreshed in place, not reloaded
        shoot(board, "live-board-after")
        context.close()


def test_it_charts_failovers_from_the_audit_log(browser, live_server, stranded):
    """The stranded session's failover off the default shows as a bar and in the per-profile table."""
    base = live_server.url
    page = browser.new_page(viewport=LAPTOP)
    log_in(page, base)
    page.click("text=Over time")
    page.wait_for_url(f"{base}/console/charts/")
    failovers = page.locator('[data-chart="failovers"]')
    assert failovers.get_attribute("data-total") == "1"
    bar = failovers.locator("rect.bar")
    assert bar.count() == 1 and float(bar.get_attribute("height")) > 10
    assert "anthropic:default: 1 at" in bar.locator("title").text_content()
    assert page.locator('tr[data-profile="anthropic:default"] .failovers').inner_text() == "1"
    page.click("text=last week")
    page.wait_for_url(re.compile(r".*window=week$"))
    assert page.locator('[data-chart="cooldowns"]').get_attribute("data-total") == "1"
    page.close()
    shoot_both(browser, base, "/console/charts/", "charts")


def test_it_follows_the_systems_dark_mode(browser, live_server, stranded):
    base = live_server.url
    backgrounds = {}
    for scheme in ("light", "dark"):
        ctx = browser.new_context(viewport=LAPTOP, color_scheme=scheme)
        page = ctx.new_page()
        log_in(page, base)
        backgrounds[scheme] = page.evaluate("""() => [document.body, document.querySelector('.card')]
            .map(el => getComputedStyle(el).backgroundColor)""")
        shoot(page, f"providers-{scheme}")
        page.goto(f"{base}/console/profiles/anthropic:default/")
        shoot(page, f"profile-{scheme}")
        ctx.close()
    assert backgrounds["light"] == ["rgb(246, 247, 249)", "rgb(255, 255, 255)"]
    assert backgrounds["dark"] == ["rgb(15, 18, 24)", "rgb(23, 27, 35)"]
    shoot_both(browser, base, "/console/charts/?window=day", "charts-dark", color_scheme="dark")


def test_it_lays_out_the_new_pages_on_a_phone(browser, live_server, stranded):
    """The sessions filter on unavailable profiles and the console's 404 page, at both widths."""
    base = live_server.url

    def flagged(page):
        # The three discord sessions were last given the default before it cooled; none is pinned. KEY failed
        # over to backup1 and is fine.
        keys = page.locator("tr[data-session]").evaluate_all("rows => rows.map(r => r.dataset.session)")
        assert sorted(keys) == [f"agent:main:discord:chan:{n}" for n in range(3)]
        assert page.locator("text=last selected is out").count() == 3
        assert "3 sessions on a profile" in page.locator(".stuck").inner_text()

    shoot_both(browser, base, "/console/sessions/?unavailable=on", "sessions-unavailable", flagged)
    shoot_both(browser, base, "/console/profiles/anthropic:nope/", "not-found",
               lambda page: page.locator("text=Back to the console").wait_for())
