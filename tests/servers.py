"""Real processes for the fault and multi-instance tests: a private PostgreSQL cluster and gunicorn servers.

Everything listens on 127.0.0.1 only, on ports picked free at start, and is
stopped by the test that started it. The shared PostgreSQL is never touched.
"""

import contextlib
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PrivateCluster:
    """A throwaway PostgreSQL cluster under a temporary directory (initdb + pg_ctl), on its own port."""

    def __init__(self):
        self.bin = postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="authbroker-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root

    def _run(self, *args, timeout=60):
        command = [str(self.bin / args[0]), *map(str, args[1:])]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)

    def init(self):
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        return self

    def start(self):
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off " \
                  "-c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "30", "start")

    def stop(self):
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop")

    def enable_tls(self):
        """A self-signed certificate and `ssl = on` (before start)."""
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        files = {"server.crt": cert.public_bytes(serialization.Encoding.PEM),
                 "server.key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())}
        for name, data in files.items():
            path = self.data / name
            path.write_bytes(data)
            path.chmod(0o600)
            if self.as_postgres:
                shutil.chown(path, "postgres", "postgres")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("ssl = on\n")
        return self

    def processes(self):
        """The postmaster's pid and its children's (backends, checkpointer, ...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(Path(stat).parent.name))
        return [postmaster, *children]

    @contextlib.contextmanager
    def hung(self):
        """The whole cluster stopped with SIGSTOP (a hung server, not a stopped one); always resumed after."""
        stopped = []
        try:
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            yield
        finally:
            for pid in reversed(stopped):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def createdb(self, name):
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
                       check=True, capture_output=True, timeout=30)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self):
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def manage(database_url, *args, timeout=120, env=None):
    env = {**os.environ, "DATABASE_URL": database_url, **(env or {})}
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class Server:
    """`gunicorn console.wsgi` (what `make serve` runs) on a free port, in its own process group."""

    def __init__(self, database_url, workers=2, threads=1, app="console.wsgi:application", port=None, **env):
        self.port = port or free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="authbroker-metrics-"))
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (open for the server's life, closed in stop())
            prefix="authbroker-gunicorn-", suffix=".log", delete=False)
        environment = {**os.environ, "DATABASE_URL": database_url, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                       "DEBUG": "false", **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", app, "--bind", self.url,
             "--workers", str(workers), "--threads", str(threads), "--timeout", "30", "--graceful-timeout", "5"],
            cwd=ROOT, env=environment, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.output()}")
            try:
                if request(self.url, "GET", "/healthz", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout} s:\n{self.output()}")

    def output(self):
        return Path(self.log.name).read_text(errors="replace")[-5000:]

    def kill(self):
        """SIGKILL the whole process group: no graceful shutdown, connections cut."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)

    def stop(self):
        if self.log.closed:  # stopped already
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=5)
        self.log.close()
        os.unlink(self.log.name)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def request(address, method, path, body=None, token=None, timeout=10, connection=None):
    """One HTTP request; returns (status, parsed JSON or text, headers)."""
    own = connection is None
    conn = connection or http.client.HTTPConnection(address, timeout=timeout)
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        if own:
            conn.close()
    content_type = response.getheader("Content-Type", "")
    payload = json.loads(raw) if raw and content_type.startswith("application/json") else raw.decode(errors="replace")
    return response.status, payload, dict(response.getheaders())
