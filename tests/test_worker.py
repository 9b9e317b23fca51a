"""The scheduler around the expiry functions: periodic tasks, Celery tasks, a real worker, a missing broker."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
from celery.app.base import Celery
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from console.celery import app as celery_app
from console.periodic import DEFAULTS, ensure_periodic_tasks
from profiles import services as profile_services
from profiles.models import AuthProfile, Event, EventKind
from profiles.tasks import expire_cooldowns
from sessions_app import services as session_services
from sessions_app.tasks import purge_events, purge_leases
from tests.helpers import report, reset, select

REDIS_URL = os.environ.get("AUTHBROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
WORKER_WAIT_SECONDS = 60
UNREACHABLE_BROKER = "redis://127.0.0.1:9/0"  # the discard port: nothing listens there


def test_it_creates_the_periodic_tasks_on_migrate(db):
    """After `migrate` beat's database holds expire_cooldowns (30 s), lease purge (1 min), event retention (1 day)
    and the charts' rollup (10 min)."""
    tasks = {t.task: (t.interval.every, t.interval.period, t.enabled) for t in PeriodicTask.objects.all()}

    assert tasks == {
        "authbroker.expire_cooldowns": (30, "seconds", True),
        "authbroker.purge_leases": (1, "minutes", True),
        "authbroker.purge_events": (1, "days", True),
        "authbroker.roll_up_charts": (10, "minutes", True),
    }


def test_it_schedules_only_tasks_the_worker_knows(db):
    """Every default periodic task names a task registered with the Celery app."""
    celery_app.loader.import_default_modules()

    assert {d.task for d in DEFAULTS} <= set(celery_app.tasks)


def test_it_keeps_operator_edits_when_setup_runs_again(db):
    """Running the setup again creates nothing and keeps an interval or switch an operator changed."""
    task = PeriodicTask.objects.get(task="authbroker.expire_cooldowns")
    task.interval = IntervalSchedule.objects.create(every=2, period="minutes")
    task.enabled = False
    task.save()

    assert ensure_periodic_tasks(IntervalSchedule, PeriodicTask) == []

    task.refresh_from_db()
    assert (task.interval.every, task.interval.period, task.enabled) == (2, "minutes", False)
    assert PeriodicTask.objects.filter(task__startswith="authbroker.").count() == len(DEFAULTS)


def test_it_runs_the_tasks_as_thin_wrappers(anthropic, api, clock):
    """The Celery tasks read the clock and call the plain functions (run in-process here)."""
    report(api, "anthropic:default", "rate_limit")
    clock.shift(60 + settings.AUTHBROKER_EXPIRY_GRACE_SECONDS + 1)

    assert expire_cooldowns.apply().get() == {
        "cooldowns_expired": 1, "disables_expired": 0, "model_cooldowns_expired": 0, "counts_forgotten": 0,
    }
    assert purge_leases.apply().get() == 0
    clock.shift(timedelta(days=91))
    assert purge_events.apply().get() == 5  # three profile_created, cooldown_started, cooldown_expired
    assert purge_events.apply(kwargs={"days": 1}).get() == 0


def test_it_shows_the_periodic_tasks_and_their_last_run_in_the_admin(admin_client):
    """The admin lists the periodic tasks with a last-run column, and the last run is read-only."""
    task = PeriodicTask.objects.get(task="authbroker.expire_cooldowns")
    PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=timezone.now())

    listing = admin_client.get("/admin/django_celery_beat/periodictask/")
    detail = admin_client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/")

    assert listing.status_code == 200
    page = listing.content.decode()
    for default in DEFAULTS:
        assert default.name in page
    assert "Last Run Datetime" in page
    assert detail.status_code == 200
    assert 'name="last_run_at"' not in detail.content.decode()


@override_settings(CELERY_BROKER_URL=UNREACHABLE_BROKER)
def test_it_answers_with_no_broker_reachable(anthropic, api, admin_api, clock, monkeypatch):
    """Select, report, reset and the audit log answer while the broker is unreachable: requests never publish."""
    monkeypatch.setattr(celery_app.conf, "broker_url", UNREACHABLE_BROKER)

    def no_publishing(*args, **kwargs):
        raise AssertionError("the web process published to the broker")

    monkeypatch.setattr(Celery, "send_task", no_publishing)

    started = time.monotonic()
    first = select(api)
    answer = report(api, first["profile"], "rate_limit", session_key="agent:main:telegram:dm:42",
                    lease_id=first["lease_id"])
    assert answer["failover"] == {"profile": "anthropic:backup1", "source": "auto"}
    assert reset(api)["session_id"] != first["session_id"]
    assert admin_api.post("/api/profiles/anthropic:backup2/disable", {}, format="json").status_code == 200
    assert api.get("/api/events").status_code == 200
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------- a real worker


def _redis_reachable(url):
    import redis

    try:
        return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def _database_url():
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


@pytest.fixture
def redis_broker():
    """The Redis broker for a worker test; skipped when none answers locally (CI starts one and must not skip)."""
    if not _redis_reachable(REDIS_URL):
        message = f"Redis not reachable at {urlparse(REDIS_URL).netloc}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run starts it")
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture
def worker_factory(tmp_path):
    """Start `celery -A console worker --beat` on the test database; stops it (and its beat) afterwards."""
    started = []

    def start(broker_url, queue):
        log = tmp_path / f"{queue}.log"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", "DATABASE_URL": _database_url(),
               "CELERY_BROKER_URL": broker_url, "DATABASE_CONN_MAX_AGE": "0"}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "console", "worker", "--beat", "--pool", "solo",
                 "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--queues", queue, "--hostname", f"{queue}@%h"],
                cwd=Path(settings.BASE_DIR), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        process.log, process.broker_url, process.queue = log, broker_url, queue
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        import redis

        redis.Redis.from_url(process.broker_url).delete(process.queue, f"_kombu.binding.{process.queue}")


def wait_for(condition, process, seconds=WORKER_WAIT_SECONDS):
    """Poll `condition` until it holds; fail early, with the worker's log, if the worker died or time ran out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"worker exited with {process.returncode}:\n{process.log.read_text()[-4000:]}")
        time.sleep(0.25)
    pytest.fail(f"not done within {seconds} s; worker log:\n{process.log.read_text()[-4000:]}")


@pytest.mark.celery
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_expires_a_cooldown_from_the_beat_scheduled_task_on_a_real_worker(redis_broker, worker_factory, api):
    """A worker with beat on Redis runs the database-scheduled expire_cooldowns; the ended cooldown gets one event."""
    now = timezone.now()
    profile_services.create_profile("anthropic:default", "api_key", "sk-ant-default-secret-0123456789", now, "test")
    # The failure was reported two minutes ago, so its 1-minute cooldown ended a minute ago: nothing waits for it.
    session_services.report_outcome(profile="anthropic:default", outcome="rate_limit", now=now - timedelta(minutes=2),
                                    actor="test")
    assert AuthProfile.objects.get().cooldown_until == now - timedelta(minutes=1)

    # The schedule beat reads is the one `migrate` made (recreated here: transactional tests empty the tables).
    ensure_periodic_tasks(IntervalSchedule, PeriodicTask)
    queue = f"authbroker-test-{uuid.uuid4().hex[:8]}"
    PeriodicTask.objects.exclude(task="authbroker.expire_cooldowns").update(enabled=False)
    task = PeriodicTask.objects.get(task="authbroker.expire_cooldowns")
    task.interval = IntervalSchedule.objects.create(every=1, period="seconds")  # an operator's edit, as in the admin
    task.queue = queue  # this test's worker alone consumes it
    task.save()

    worker = worker_factory(redis_broker, queue)

    expired = Event.objects.filter(kind=EventKind.COOLDOWN_EXPIRED, profile_id="anthropic:default")
    wait_for(expired.exists, worker)
    wait_for(lambda: PeriodicTask.objects.filter(pk=task.pk, total_run_count__gte=2).exists(), worker)

    assert expired.count() == 1
    assert expired.get().actor == "system"
    profile = AuthProfile.objects.get()
    assert (profile.cooldown_until, profile.error_count) == (None, 1)
    listed = api.get("/api/events", {"kind": "cooldown_expired"}).json()["results"]
    assert [e["profile"] for e in listed] == ["anthropic:default"]
    assert "received" in worker.log.read_text()
    assert set(PeriodicTask.objects.values_list("task", flat=True)) == {d.task for d in DEFAULTS}  # nothing of beat's own


# ---------------------------------------------------------------- make run


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_runs_the_scheduler_beside_the_server_and_stops_both_on_ctrl_c(tmp_path):
    """`manage.py run_with_scheduler` (make run) serves with a worker beside it; one Ctrl-C stops every process."""
    port = _free_port()
    log = tmp_path / "run.log"
    env = {**os.environ, "DATABASE_URL": _database_url(), "CELERY_BROKER_URL": "filesystem://",
           "DATABASE_CONN_MAX_AGE": "0"}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "manage.py", "run_with_scheduler", f"127.0.0.1:{port}"],
                                   cwd=Path(settings.BASE_DIR), env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    process.log = log
    try:
        def serving():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(serving, process)
        wait_for(lambda: " ready." in log.read_text(), process)

        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group

        assert process.wait(30) == 0
        deadline = time.monotonic() + 20
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(process.pid), log.read_text()[-3000:]
        assert "Scheduler stopped" in log.read_text()
    finally:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
