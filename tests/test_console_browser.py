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
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone

from profiles import services as profile_services
from profiles.models import AuthProfile, Event
from sessions_app import services as session_services
from sessions_app.models import Session

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
    session = Session.objects.get(session_key=KEY)
    assert (session.override_profile_id, session.override_source) == ("anthropic:backup2", "user")

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
