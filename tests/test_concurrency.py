"""Gateways call in parallel: real threads against PostgreSQL, each with its own connection."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from console.models import ApiToken
from profiles import services as profile_services
from profiles.models import AuthProfile, Event
from sessions_app import services as session_services
from sessions_app.models import Lease, Session
from tests.conftest import T0

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8


@pytest.fixture
def raw_token(db):
    return ApiToken.issue("parallel-gateway", ["gateway", "admin"])[1]


@pytest.fixture
def profiles(db):
    for name in ("default", "backup1", "backup2"):
        profile_services.create_profile(f"anthropic:{name}", "api_key", f"sk-{name}-0123456789abcdef", T0, "test")


def in_parallel(raw_token, path, bodies):
    """POST each body from its own thread, all released at once; returns (status, json) per body."""
    barrier = threading.Barrier(len(bodies))

    def call(body):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")
        try:
            barrier.wait(timeout=10)
            response = client.post(path, body, format="json")
            return response.status_code, response.json()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(call, bodies))


def test_it_creates_one_session_and_one_answer_for_concurrent_new_selects(profiles, raw_token, admin_api):
    """Concurrent selects for one new key: one row, the same profile and session id for all."""
    assert connection.vendor == "postgresql"
    admin_api.patch("/api/providers/anthropic", {"strategy": "round_robin"}, format="json")
    body = {"session_key": "agent:main:race", "provider": "anthropic"}
    results = in_parallel(raw_token, "/api/select", [body] * THREADS)
    assert {status for status, _ in results} == {200}
    assert len({(answer["profile"], answer["session_id"]) for _, answer in results}) == 1
    assert Session.objects.filter(session_key="agent:main:race").count() == 1


def test_it_starts_one_cooldown_for_concurrent_failures_of_one_profile(profiles, raw_token):
    """Concurrent rate limits on one profile: one cooldown_started, the count exactly one."""
    body = {"profile": "anthropic:default", "outcome": "rate_limit"}
    results = in_parallel(raw_token, "/api/report", [body] * THREADS)
    assert {status for status, _ in results} == {200}
    profile = AuthProfile.objects.get(pk="anthropic:default")
    assert profile.error_count == 1
    assert Event.objects.filter(kind="cooldown_started", profile_id="anthropic:default").count() == 1


def test_it_counts_concurrent_failures_on_different_profiles_exactly(profiles, raw_token):
    """No lost update: every profile hit at once gets its own single cooldown."""
    bodies = [{"profile": f"anthropic:{name}", "outcome": "timeout"} for name in ("default", "backup1", "backup2")] * 3
    results = in_parallel(raw_token, "/api/report", bodies)
    assert {status for status, _ in results} == {200}
    assert list(AuthProfile.objects.values_list("error_count", flat=True)) == [1, 1, 1]
    assert Event.objects.filter(kind="cooldown_started").count() == 3


@pytest.mark.parametrize("session_keys", ["every report", "half the reports", "no report"])
def test_it_counts_one_report_for_concurrent_retries_of_one_lease(profiles, raw_token, session_keys):
    """Concurrent reports on one lease, with or without the session key it carries: only one counts, the others
    get its answer as duplicates, and the lease's session fails over once."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")
    lease = client.post("/api/select", {"session_key": "s", "provider": "anthropic"}, format="json").json()["lease_id"]
    body = {"profile": "anthropic:default", "outcome": "billing", "lease_id": lease}
    keyed = {"every report": THREADS, "half the reports": THREADS // 2, "no report": 0}[session_keys]
    bodies = [{**body, "session_key": "s"}] * keyed + [body] * (THREADS - keyed)
    results = in_parallel(raw_token, "/api/report", bodies)
    assert {status for status, _ in results} == {200}
    assert sorted(answer["duplicate"] for _, answer in results) == [False] + [True] * (THREADS - 1)
    assert len({json.dumps({**answer, "duplicate": None}, sort_keys=True) for _, answer in results}) == 1
    assert Lease.objects.count() == 1
    profile = AuthProfile.objects.get(pk="anthropic:default")
    assert profile.error_count == 1 and profile.failure_counts == {"billing": 1}
    assert Event.objects.filter(kind="disabled").count() == 1
    assert Event.objects.filter(kind="override_set", session_key="s").count() == 1


# ---------------------------------------------------------------- lock order


def race_with_a_slow_report(monkeypatch, other):
    """Run a failure report that holds its profile lock a while, and `other` inside that window.

    The pause only widens the window in which the report holds the profile row;
    both sides run the real code on their own connections.
    """
    original = profile_services.record_outcome
    holding = threading.Event()

    def record_then_linger(*args, **kwargs):
        result = original(*args, **kwargs)
        holding.set()
        time.sleep(0.5)
        return result

    monkeypatch.setattr(session_services.profile_services, "record_outcome", record_then_linger)
    errors = []

    def run(label, call, wait=False):
        try:
            if wait:
                holding.wait(5)
                time.sleep(0.05)
            call()
        except Exception as exc:  # the assertion below names it
            errors.append((label, repr(exc)))
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=("report", lambda: session_services.report_outcome(
            profile="anthropic:default", outcome="rate_limit", now=timezone.now(), actor="a", session_key="s1"))),
        threading.Thread(target=run, args=("other", other, True)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_it_never_deadlocks_a_report_against_a_user_override(profiles, monkeypatch):
    """report locks profile then session; setting an override writes the session that references the profile."""
    now = timezone.now()
    session_services.select_profile(session_key="s1", provider="anthropic", now=now, actor="x")
    session_services.set_user_override(session_key="s1", profile="anthropic:backup1", now=now, actor="x")
    errors = race_with_a_slow_report(monkeypatch, lambda: session_services.set_user_override(
        session_key="s1", profile="anthropic:default", now=timezone.now(), actor="b"))
    assert errors == []


def test_it_never_deadlocks_a_report_against_a_new_session_select(profiles, monkeypatch, admin_api):
    """A boundary select that moves the session off the reported profile, round_robin stamping included."""
    admin_api.patch("/api/providers/anthropic", {"strategy": "round_robin"}, format="json")
    now = timezone.now()
    session_services.select_profile(session_key="s1", provider="anthropic", now=now, actor="x")
    errors = race_with_a_slow_report(monkeypatch, lambda: session_services.select_profile(
        session_key="s1", provider="anthropic", new_session=True, now=timezone.now(), actor="b"))
    assert errors == []


def test_it_commits_only_the_activity_stamp_asynchronously(profiles, raw_token):
    """The sticky select's stamp skips the disk flush; the connection's next transaction flushes again."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")
    body = {"session_key": "stamp", "provider": "anthropic"}
    assert client.post("/api/select", body, format="json").status_code == 200
    before = Session.objects.get(session_key="stamp").last_activity_at
    assert client.post("/api/select", body, format="json").status_code == 200  # sticky: one async UPDATE
    assert Session.objects.get(session_key="stamp").last_activity_at > before
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
