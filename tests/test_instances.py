"""Many instances: two gunicorn servers (separate processes and ports) on one PostgreSQL database.

Many threads drive both servers at once with a mix of selects, failure and
success reports (with and without leases, leases retried on the other server),
resets, bulk resets and user overrides over hundreds of sessions. Afterwards
the database must tell one consistent story.
"""

import random
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime

import pytest
from django.db import connection

from console.models import ApiToken
from profiles import services as profile_services
from profiles.models import AuthProfile, Event, Provider
from sessions_app.models import Lease, Session
from tests.conftest import T0
from tests.helpers import pinned
from tests.servers import Server, request

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 12
OPS_PER_THREAD = 70
TIME_BUDGET = 35  # seconds of traffic at most, whatever the machine's load
SESSIONS = [f"agent:main:telegram:dm:{n}" for n in range(300)]
PROFILES = [f"anthropic:key{n}" for n in range(8)]


def database_url():
    db = connection.settings_dict
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def servers(transactional_db):
    for name in PROFILES:
        profile_services.create_profile(name, "api_key", f"sk-{name}-0123456789abcdef", T0, "test")
    # One long step: no window can expire during the run, so every window and its event can be matched.
    Provider.objects.filter(pk="anthropic").update(cooldown_ladder_seconds=[3600])
    token = ApiToken.issue("fleet", ["gateway", "admin"])[1]
    started = []
    try:
        for _ in range(2):
            started.append(Server(database_url(), workers=2, AUTHBROKER_THROTTLE_RATE="off"))
        for server in started:
            server.wait_ready()
        yield started, token
    finally:
        for server in started:
            server.stop()
        connection.close()


def parse(ts):
    return datetime.fromisoformat(ts) if ts else None


class Driver:
    """One gateway thread: random operations against both servers, every answer recorded."""

    def __init__(self, index, servers, token, deadline, log):
        self.rng = random.Random(1000 + index)
        self.servers, self.token, self.deadline, self.log = servers, token, deadline, log

    def call(self, server, method, path, body=None, kind=None):
        status, answer, _ = request(server.url, method, path, body, self.token, timeout=30)
        self.log.append({"kind": kind or path, "server": server.url, "method": method, "status": status,
                         "body": body, "answer": answer})
        return status, answer

    def run(self):
        rng = self.rng
        for _ in range(OPS_PER_THREAD):
            if time.monotonic() > self.deadline:
                return
            server, other = rng.sample(self.servers, 2)
            key = rng.choice(SESSIONS)
            roll = rng.random()
            if roll < 0.40:
                body = {"session_key": key, "provider": "anthropic", "new_session": rng.random() < 0.1}
                status, answer = self.call(server, "POST", "/api/select", body, "select")
                if status == 200 and rng.random() < 0.6:
                    outcome = rng.choice(["rate_limit", "rate_limit", "timeout", "success"])
                    report = {"profile": answer["profile"], "outcome": outcome, "session_key": key,
                              "lease_id": answer["lease_id"]}
                    if outcome != "success" and rng.random() < 0.3:
                        report["retry_after_seconds"] = 10  # shorter than the step: must change nothing
                    self.call(server, "POST", "/api/report", report, "report")
                    if rng.random() < 0.3:  # the gateway retries, and the retry lands on the other instance
                        self.call(other, "POST", "/api/report", report, "report")
            elif roll < 0.60:
                outcome = rng.choice(["rate_limit", "timeout", "success"])
                report = {"profile": rng.choice(PROFILES), "outcome": outcome}
                if rng.random() < 0.5:
                    report["session_key"] = key
                self.call(server, "POST", "/api/report", report, "report")
            elif roll < 0.72:
                self.call(server, "POST", f"/api/sessions/{key}/reset",
                          {"provider": "anthropic", "reason": rng.choice(["new", "reset", "expiry"])}, "reset")
            elif roll < 0.84:
                self.call(server, "PUT", f"/api/sessions/{key}/override", {"profile": rng.choice(PROFILES)},
                          "override")
            elif roll < 0.90:
                self.call(server, "DELETE", f"/api/sessions/{key}/override", None, "clear")
            elif roll < 0.95:
                keys = rng.sample(SESSIONS, 4)
                self.call(server, "POST", "/api/sessions/reset", {"session_keys": keys, "reason": "restart"}, "bulk")
            else:
                self.call(server, "GET", f"/api/sessions/{key}", None, "read")


def check_sessions_tell_a_consistent_story():
    """Replaying each session's override events gives exactly its stored override; at most one at a time."""
    current = {}
    for event in Event.objects.exclude(session_key="").order_by("id"):
        key, pin = event.session_key, current.get(event.session_key)
        if event.kind == "override_set":
            current[key] = (event.profile_id, event.source)
        elif event.kind in ("override_cleared", "override_dropped"):
            assert pin is not None and pin[0] == event.profile_id, (event.kind, key, pin, event.profile_id)
            assert event.kind != "override_dropped" or pin[1] == "auto"
            current[key] = None
        elif event.kind == "override_carried":
            assert pin == (event.profile_id, "user"), (key, pin, event.profile_id)
    sessions = list(Session.objects.all())
    assert len({s.session_key for s in sessions}) == len(sessions)
    for session in sessions:
        stored = pinned(session.session_key)
        assert current.get(session.session_key) == stored, session.session_key


def check_each_window_started_once(log):
    """Every cooling window seen in an answer was started by exactly one cooldown_started event."""
    windows_seen = defaultdict(set)
    for entry in log:
        if entry["kind"] == "report" and entry["status"] == 200 and not entry["answer"]["duplicate"]:
            state = entry["answer"]["profile"]
            if entry["body"]["outcome"] != "success":
                windows_seen[state["id"]].add(parse(state["cooldown_until"]))
    started = defaultdict(list)
    for event in Event.objects.filter(kind__in=["cooldown_started", "cooldown_cleared", "cooldown_extended"]) \
            .order_by("id"):
        assert event.kind != "cooldown_extended", "a 10 s hint never lengthens a 3600 s window"
        if event.kind == "cooldown_started":
            started[event.profile_id].append(parse(event.after["cooldown_until"]))
    for profile in AuthProfile.objects.all():
        windows = started[profile.id]
        assert len(windows) == len(set(windows)), f"{profile.id}: a window was started twice"
        assert set(windows) == windows_seen[profile.id], profile.id
        # No window expires during the run: the count is 1 while cooling and 0 after a success.
        if profile.cooldown_until is not None:
            assert profile.cooldown_until == windows[-1] and profile.error_count == 1
        else:
            assert profile.error_count == 0
    # Windows alternate with successes: started, cleared, started…, never two starts in a row.
    for profile_id in started:
        kinds = list(Event.objects.filter(profile_id=profile_id, kind__in=["cooldown_started", "cooldown_cleared"])
                     .order_by("id").values_list("kind", flat=True))
        assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False)), (profile_id, kinds)
        assert kinds[0] == "cooldown_started"


def check_leases_counted_once(log):
    by_lease = defaultdict(list)
    for entry in log:
        if entry["kind"] == "report" and entry["body"].get("lease_id") and entry["status"] == 200:
            by_lease[entry["body"]["lease_id"]].append(entry["answer"])
    for lease_id, answers in by_lease.items():
        assert sum(not a["duplicate"] for a in answers) == 1, lease_id
        first = next(a for a in answers if not a["duplicate"])
        assert all({**a, "duplicate": False} == first for a in answers), lease_id
    assert Lease.objects.count() == len(by_lease)
    assert any(len(answers) > 1 for answers in by_lease.values()), "no lease was retried: the mix is too small"



def metric_sum(text, name):
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_two_instances_keep_every_promise_under_concurrent_load(servers):
    """No 5xx, no deadlock, one window per cooldown, leases counted once, overrides and events agree."""
    instances, token = servers
    log, threads = [], []
    deadline = time.monotonic() + TIME_BUDGET
    drivers = [Driver(i, instances, token, deadline, log) for i in range(THREADS)]
    errors = []

    def run(driver):
        try:
            driver.run()
        except Exception as exc:  # recorded and asserted below, so a thread's crash is not lost
            errors.append(exc)

    for driver in drivers:
        threads.append(threading.Thread(target=run, args=(driver,)))
        threads[-1].start()
    for thread in threads:
        thread.join(timeout=TIME_BUDGET + 30)
    assert not any(t.is_alive() for t in threads), "a request hung: deadlock or stuck server"
    assert not errors, errors

    statuses = Counter(entry["status"] for entry in log)
    assert len(log) > 300, f"too little traffic to mean anything: {statuses}"
    assert not [e for e in log if e["status"] >= 500], [e for e in log if e["status"] >= 500][:3]
    unexpected = [e for e in log if e["status"] != 200 and not (
        e["status"] == 404 and e["kind"] in ("clear", "read"))]  # clearing or reading a key never seen
    assert not unexpected, unexpected[:3]
    assert len({e["server"] for e in log}) == 2
    touched = Session.objects.count()
    assert touched >= 150, f"only {touched} sessions touched"

    check_sessions_tell_a_consistent_story()
    check_each_window_started_once(log)
    check_leases_counted_once(log)
    assert Event.objects.filter(kind="override_set", source="user").count() == sum(
        1 for e in log if e["kind"] == "override" and e["status"] == 200)

    with connection.cursor() as cursor:
        # waits of this database's backends only: the PostgreSQL server may be shared with other databases
        cursor.execute("SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
                       "WHERE NOT l.granted AND a.datname = current_database()")
        assert cursor.fetchone()[0] == 0

    # Metrics are summed over each instance's workers (multiprocess mode) and match the traffic exactly.
    for server in instances:
        text = request(server.url, "GET", "/metrics")[1]
        served = [e for e in log if e["server"] == server.url and e["status"] == 200]
        assert metric_sum(text, "authbroker_selections_total") == sum(e["kind"] == "select" for e in served)
        assert metric_sum(text, "authbroker_reports_total") == sum(e["kind"] == "report" for e in served)
    for server in instances:
        assert "Traceback" not in server.output()
