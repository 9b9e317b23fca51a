"""Django's PostgreSQL backend, with a watchdog so that a hung server fails a request fast.

A *stopped* server refuses connections and psycopg fails at once. A *hung* one
(a frozen host, a SIGSTOPped postmaster, a network path that swallows packets)
accepts TCP and then answers nothing, and psycopg would wait for ever: no
server-side timeout can fire on a server that does not run, and on a live
network the kernel keeps acknowledging, so TCP keepalives never fire either.

So every wait on the server (a statement, the health-check ping, a commit or
rollback) is registered with one watchdog thread per process. When a wait has
lasted `DATABASE_HANG_SECONDS`, the watchdog asks the server whether it is alive
with a probe that needs no login: it opens a fresh TCP connection and sends the
protocol's SSLRequest, which a running postmaster answers with one byte at once.
An answer means "slow, not hung": the wait goes on (a long bulk statement is left
alone; `statement_timeout` bounds it). No answer within `DATABASE_PROBE_SECONDS`
means hung: the watchdog shuts the connection's socket down, psycopg raises
OperationalError, and the API answers 503 `database_unavailable`. Every new
connection is probed first too (one round trip; connections are kept for
`DATABASE_CONN_MAX_AGE`), so no worker spends psycopg's connect timeout (2 s at
least) on a hung server. When the server answers again, the next request
connects as usual.
"""

import contextlib
import logging
import os
import select
import socket
import ssl
import struct
import threading
import time

from django.conf import settings
from django.db.backends.postgresql import base

logger = logging.getLogger("authbroker.db")


def _monotonic():
    # The OS's monotonic clock, read directly: libraries that move time in tests (time-machine) patch
    # `time.monotonic`, and this clock must keep running in a thread of its own whatever they do.
    return time.clock_gettime(time.CLOCK_MONOTONIC)


SSL_REQUEST = struct.pack("!ii", 8, 80877103)
# A connection cut this recently was cut within the request now reconnecting (the health check's ping
# failed and Django reconnects at once): the probe has just answered, so it is not asked again.
JUST_CUT = 0.5


def probe(host, port, timeout):
    """True when a PostgreSQL server at (host, port) answers the SSLRequest within `timeout` seconds."""
    if host and "," in host:  # several hosts: libpq picks; nothing sensible to probe
        return True
    if not host or host.startswith("/"):
        family, address = socket.AF_UNIX, f"{host or '/var/run/postgresql'}/.s.PGSQL.{port or 5432}"
    else:
        family, address = None, (host, int(port or 5432))
    try:
        if family is socket.AF_UNIX:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(address)
        else:
            sock = socket.create_connection(address, timeout=timeout)
    except OSError:
        return False  # refused or unreachable: not alive
    with sock:
        try:
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
        except OSError:
            return False
        if answer == b"S":
            _finish_tls(sock)
        return answer != b""


def _finish_tls(sock):
    """The server agreed to TLS and waits for a handshake: complete it and close cleanly, so that it sees a
    client that sent nothing (which PostgreSQL does not log) rather than a broken handshake (which it does).
    The server has answered already; nothing here changes the verdict."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # nothing is sent over it: the peer's identity does not matter here
    with contextlib.suppress(OSError, ValueError):
        context.wrap_socket(sock).unwrap()


class Watchdog:
    """One daemon thread per process that severs connections whose server stopped answering."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waits = {}  # token -> [deadline, wrapper]
        self._next_token = 0
        self._thread = None
        self._pid = None

    def _ensure_thread(self):
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()  # after a fork the parent's thread does not exist here
            self._thread = threading.Thread(target=self._run, name="authbroker-db-watchdog", daemon=True)
            self._thread.start()

    @contextlib.contextmanager
    def watching(self, wrapper):
        hang = settings.DATABASE_HANG_SECONDS
        if not hang or wrapper.connection is None:
            yield
            return
        with self._lock:
            self._ensure_thread()
            self._next_token += 1
            token = self._next_token
            self._waits[token] = [_monotonic() + hang, wrapper]
        try:
            yield
        finally:
            with self._lock:
                del self._waits[token]

    def _run(self):
        while True:
            hang = settings.DATABASE_HANG_SECONDS or 1.0
            time.sleep(min(0.25, hang / 4))
            try:
                self._check(hang)
            except Exception:  # the watchdog must outlive any surprise; the next round tries again
                logger.exception("database watchdog round failed")

    def _check(self, hang):
        now = _monotonic()
        with self._lock:
            overdue = [(token, wrapper) for token, (deadline, wrapper) in self._waits.items() if deadline <= now]
        verdicts = {}
        for token, wrapper in overdue:
            server = (wrapper.settings_dict["HOST"], wrapper.settings_dict["PORT"])
            if server not in verdicts:
                verdicts[server] = probe(*server, settings.DATABASE_PROBE_SECONDS)
            with self._lock:
                if token not in self._waits:
                    continue  # the wait ended meanwhile
                if verdicts[server]:
                    self._waits[token][0] = _monotonic() + hang  # slow, not hung: keep waiting
                else:
                    wrapper.cut_at = _monotonic()
                    wrapper.sever()

    def server_hung(self, settings_dict):
        """Before a new connection: whether the server fails to answer the probe. psycopg would otherwise spend
        its whole connect timeout (2 s at least) on a hung server; the probe costs one round trip."""
        if not settings.DATABASE_HANG_SECONDS:
            return False
        return not probe(settings_dict["HOST"], settings_dict["PORT"], settings.DATABASE_PROBE_SECONDS)


WATCHDOG = Watchdog()


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(self._watched_execute)

    def _watched_execute(self, execute, sql, params, many, context):
        with WATCHDOG.watching(self):
            return execute(sql, params, many, context)

    cut_at = None  # when the watchdog last cut this connection (monotonic)

    def get_new_connection(self, conn_params):
        cut_at, self.cut_at = self.cut_at, None
        if (cut_at is not None and _monotonic() - cut_at < JUST_CUT) or WATCHDOG.server_hung(self.settings_dict):
            raise self.Database.OperationalError("the database server does not answer (down or hung)")
        return super().get_new_connection(conn_params)

    def is_usable(self):
        with WATCHDOG.watching(self):
            return super().is_usable()

    def close_if_health_check_failed(self):
        """Django's per-request health check (CONN_HEALTH_CHECKS), without its round trip.

        Django sends `SELECT 1` before the first query of every request that reuses a connection
        (docs/performance.md: about 0.06 ms of web CPU and a round trip on every select and report).
        An idle connection has nothing to read: a server that closed it (restart, shutdown,
        `pg_terminate_backend`, idle timeout) has sent its error and end-of-file, so the socket is
        readable, and psycopg knows a connection it saw fail. Either way the connection is closed
        here and Django opens a new one for the request, as after a failed `SELECT 1`. A server that
        hangs sends nothing: the request's first statement waits, and the watchdog cuts it (503).
        After a request that raised a database error Django still asks `is_usable` (the real ping).
        """
        if self.pool or self.connection is None or not self.health_check_enabled or self.health_check_done:
            return  # (a pool hands out healthy connections only)
        if not self._idle_socket_quiet():
            self.close()
        self.health_check_done = True

    def _idle_socket_quiet(self):
        """True when psycopg holds the connection open and its socket has nothing waiting to be read."""
        connection = self.connection
        if connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.pgconn.socket], [], [], 0)
        except (OSError, ValueError, self.Database.Error):
            return False
        return not readable

    def _commit(self):
        with WATCHDOG.watching(self):
            return super()._commit()

    def _rollback(self):
        with WATCHDOG.watching(self):
            return super()._rollback()

    def sever(self):
        """Shut the connection's socket down (from the watchdog's thread): the blocked wait fails at once."""
        with contextlib.suppress(Exception):  # already closed, or no socket: nothing is waiting on it
            fd = self.connection.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
