"""Failing dependencies: PostgreSQL stopped under a running server, and no message broker at all.

The test starts its own PostgreSQL cluster (initdb + pg_ctl under a temporary
directory, on a free port) and a gunicorn server on it, then stops and restarts
that cluster. The shared database server is never touched.
"""

import time

import pytest

from tests.servers import PrivateCluster, Server, manage, postgres_bin, request

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not found")


@pytest.fixture(scope="module")
def cluster():
    cluster = PrivateCluster().init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def deployment(cluster):
    """A migrated database with an admin token and two profiles, served by gunicorn with a dead broker."""
    url = cluster.createdb("authbroker")
    manage(url, "migrate", "--noinput")
    token = manage(url, "create_api_token", "faults", "--scope", "gateway", "--scope", "admin").strip().splitlines()[-1]
    # No broker listens on port 9: anything that needed Celery would fail loudly.
    server = Server(url, workers=2, CELERY_BROKER_URL="redis://127.0.0.1:9/0").wait_ready()
    try:
        for name in ("default", "backup1"):
            status, body, _ = request(server.url, "POST", "/api/profiles", {
                "id": f"anthropic:{name}", "kind": "api_key", "secret": f"sk-faults-{name}-0123456789"}, token)
            assert status == 201, body
        yield server, token
    finally:
        server.stop()


def select(server, token, key="agent:faults:1"):
    return request(server.url, "POST", "/api/select", {"session_key": key, "provider": "anthropic"}, token, timeout=5)


def test_it_serves_with_the_broker_down(deployment):
    """CELERY_BROKER_URL points at nothing: select, report, reset and reads all answer normally."""
    server, token = deployment
    status, answer, _ = select(server, token)
    assert status == 200 and answer["profile"] == "anthropic:default"
    status, answer, _ = request(server.url, "POST", "/api/report", {
        "profile": "anthropic:default", "outcome": "rate_limit", "session_key": "agent:faults:1",
        "lease_id": answer["lease_id"]}, token)
    assert status == 200 and answer["failover"]["profile"] == "anthropic:backup1"
    assert request(server.url, "POST", "/api/sessions/agent:faults:1/reset", {"provider": "anthropic"}, token)[0] == 200
    assert request(server.url, "GET", "/api/events", token=token)[0] == 200
    assert request(server.url, "GET", "/readyz")[0] == 200


def test_it_answers_503_while_the_database_is_down_and_recovers_by_itself(cluster, deployment):
    """Cluster stopped: 503 with the error body within a second, /readyz 503, /healthz 200; back by itself."""
    server, token = deployment
    for _ in range(4):  # warm persistent connections in both workers
        assert select(server, token)[0] == 200
    cluster.stop()
    try:
        for _ in range(6):  # enough to meet both workers and their stale connections
            started = time.monotonic()
            status, body, headers = select(server, token)
            elapsed = time.monotonic() - started
            assert status == 503, body
            assert body["error"]["code"] == "database_unavailable" and body["error"]["message"]
            assert headers.get("Retry-After") == "1"
            assert elapsed < 1.0, f"503 took {elapsed:.2f} s"
            assert request(server.url, "GET", "/readyz", timeout=5)[0] == 503
            assert request(server.url, "GET", "/healthz", timeout=5)[0] == 200
            assert request(server.url, "GET", "/api/profiles", token=token, timeout=5)[0] == 503
        status, text, _ = request(server.url, "GET", "/metrics", timeout=5)
        assert status == 200 and "authbroker_database_up 0.0" in text
    finally:
        cluster.start()
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        status = select(server, token)[0]
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200, "the server did not recover within 20 s of the database's return"
    assert {select(server, token)[0] for _ in range(6)} == {200}
    assert request(server.url, "GET", "/readyz")[0] == 200
    assert "Traceback" not in server.output()


def test_it_answers_503_within_two_seconds_while_the_database_hangs_and_recovers_by_itself(cluster, deployment):
    """Cluster frozen by SIGSTOP (accepts TCP, answers nothing): 503 within 2 s, /healthz 200; back after SIGCONT."""
    server, token = deployment
    for _ in range(4):  # persistent connections in both workers, then a freeze mid-life
        assert select(server, token)[0] == 200
    with cluster.hung():
        for _ in range(4):  # each worker meets its stale connection, then a new connection attempt
            started = time.monotonic()
            status, body, headers = select(server, token)
            elapsed = time.monotonic() - started
            assert status == 503, body
            assert body["error"]["code"] == "database_unavailable" and headers.get("Retry-After") == "1"
            assert elapsed < 2.0, f"503 took {elapsed:.2f} s"
            started = time.monotonic()
            assert request(server.url, "GET", "/healthz", timeout=5)[0] == 200
            assert time.monotonic() - started < 1.0  # never waits on the database (its waits last ~1.2 s)
        started = time.monotonic()
        assert request(server.url, "GET", "/readyz", timeout=5)[0] == 503
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        status, text, _ = request(server.url, "GET", "/metrics", timeout=5)
        assert status == 200 and "authbroker_database_up 0.0" in text
        assert time.monotonic() - started < 2.0
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        status = select(server, token)[0]
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200, "the server did not recover within 20 s of the database's return"
    answers = [select(server, token) for _ in range(6)]
    assert [status for status, _, _ in answers] == [200] * 6, answers
    assert "Traceback" not in server.output()


def test_it_tells_a_rolled_back_transaction_from_an_outage(anthropic, api, monkeypatch):
    """A deadlock victim answers 503 `retry` (nothing changed, retry), not `database_unavailable`."""
    import psycopg.errors
    from django.db import OperationalError

    from sessions_app import services

    def deadlock(*args, **kwargs):
        try:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        except psycopg.errors.DeadlockDetected as cause:
            raise OperationalError("deadlock detected") from cause

    monkeypatch.setattr(services, "select_profile", deadlock)
    response = api.post("/api/select", {"session_key": "s", "provider": "anthropic"}, format="json")
    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "retry"


@pytest.mark.postgres
def test_it_lets_a_slow_statement_on_a_live_server_finish(db, settings):
    """The watchdog cuts only a server that does not answer its probe: a 1.5 s statement runs to the end."""
    from django.db import connection

    settings.DATABASE_HANG_SECONDS = 0.3
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(1.5), 42")
        assert cursor.fetchone()[1] == 42


@pytest.mark.postgres
def test_it_answers_retry_when_a_lock_wait_times_out(transactional_db, anthropic, api):
    """A row held by another transaction past `lock_timeout`: 503 `retry` (nothing changed), not an outage."""
    import psycopg
    from django.db import connection

    from profiles.models import AuthProfile

    db = connection.settings_dict
    holder = psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"])
    try:
        holder.execute(f"SELECT 1 FROM {AuthProfile._meta.db_table} WHERE id = %s FOR UPDATE", ["anthropic:default"])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")  # DATABASE_LOCK_TIMEOUT_MS, shortened for the test
        response = api.post("/api/report", {"profile": "anthropic:default", "outcome": "rate_limit"}, format="json")
    finally:
        holder.rollback()
        holder.close()
    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "retry"
    assert AuthProfile.objects.get(pk="anthropic:default").error_count == 0


def _backend(pid):
    """(state, last query) of a PostgreSQL backend, seen from a connection of its own; None once it is gone."""
    import psycopg
    from django.db import connection

    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"],
                         autocommit=True) as other:
        return other.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()


def _start_request(connection):
    """What Django does to a persistent connection when a request starts (the `request_started` handler)."""
    connection.close_if_unusable_or_obsolete()


@pytest.mark.postgres
def test_it_checks_a_reused_connection_without_a_round_trip(transactional_db):
    """A request that reuses a healthy connection sends no `SELECT 1` first: its first statement is its own."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), 'before the request'")
        pid = cursor.fetchone()[0]
    _start_request(connection)
    connection.close_if_health_check_failed()  # what Django runs before the request's first statement
    assert connection.health_check_done
    assert _backend(pid) == ("idle", "SELECT pg_backend_pid(), 'before the request'")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == pid  # the same connection, kept


@pytest.mark.postgres
def test_it_reconnects_when_the_server_closed_a_reused_connection(transactional_db):
    """A connection the server ended between requests (restart, pg_terminate_backend) is replaced before the
    request's first statement, which succeeds: no 503 for the first request after a database restart."""
    import psycopg
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"],
                         autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]
    assert _backend(pid) is None
    _start_request(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_it_probes_a_tls_server_without_leaving_a_line_in_its_log():
    """The watchdog's probe on a server with `ssl = on` finishes the handshake: alive, and nothing logged
    (a bare close after the server's 'S' logs "could not accept SSL connection")."""
    from console.postgresql.base import probe

    cluster = PrivateCluster().init().enable_tls()
    try:
        cluster.start()
        logged = cluster.log.read_text()
        assert [probe("127.0.0.1", cluster.port, 1.0) for _ in range(3)] == [True] * 3
        time.sleep(0.5)  # the server's backends write their lines as they exit
        assert cluster.log.read_text() == logged
    finally:
        cluster.destroy()
