"""A real authbroker for client and adapter tests: its own database, gunicorn on loopback, a movable clock.

`Broker` migrates a fresh database (a new PostgreSQL database beside the one in
DATABASE_URL, or a temporary SQLite file), creates an admin+gateway token,
serves `tests.clocked_wsgi` with gunicorn, and can kill and restart the server
on the same port (`kill()`, `start()`) or move its clock (`shift(seconds)`).
"""

import contextlib
import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.conf import settings

from tests.servers import Server, free_port, manage, request


def _database():
    """(url, drop) for a fresh database on the suite's engine."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        name = f"ab_client_{os.getpid()}_{free_port()}"
        admin = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop():
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        parts = urlsplit(admin)
        return urlunsplit(parts._replace(path=f"/{name}")), drop
    handle, path = tempfile.mkstemp(prefix="authbroker-client-", suffix=".sqlite3")
    os.close(handle)
    return f"sqlite:///{path}", lambda: Path(path).unlink(missing_ok=True)


class Broker:
    def __init__(self, workers=1):
        self.database_url, self._drop = _database()
        self.workers = workers
        self.port = free_port()
        self.clock_file = Path(tempfile.mkstemp(prefix="authbroker-clock-")[1])
        self.offset = 0.0
        self.server = None
        manage(self.database_url, "migrate", "--noinput")
        self.token = manage(self.database_url, "create_api_token", "client-tests", "--scope", "gateway",
                            "--scope", "admin").strip().splitlines()[-1]
        self.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.server = Server(self.database_url, workers=self.workers, app="tests.clocked_wsgi:application",
                             port=self.port, AUTHBROKER_TEST_CLOCK_FILE=str(self.clock_file),
                             AUTHBROKER_THROTTLE_RATE="off").wait_ready()
        return self

    def kill(self):
        self.server.kill()
        self.server.stop()

    def shift(self, seconds):
        """Move authbroker's clock `seconds` further (cumulative)."""
        self.offset += seconds
        self.clock_file.write_text(str(self.offset))

    def call(self, method, path, body=None):
        status, answer, _ = request(f"127.0.0.1:{self.port}", method, path, body, self.token)
        assert status < 300, (status, answer)
        return answer

    def add_profiles(self, provider="anthropic", names=("default", "backup1", "backup2")):
        for name in names:
            self.call("POST", "/api/profiles", {"id": f"{provider}:{name}", "kind": "api_key",
                                                "secret": f"sk-{provider}-{name}-0123456789abcdef"})

    def close(self):
        with contextlib.suppress(Exception):
            self.server.stop()
        self.clock_file.unlink(missing_ok=True)
        self._drop()
