"""authbroker's benchmark: `make bench` (and `make bench BENCH_SCALE=1`). See docs/performance.md.

It creates its own PostgreSQL database (BENCH_DB, default `authbroker_bench`,
dropped and created afresh at each run, dropped again at the end unless
BENCH_KEEP_DB=1), migrates it, generates the data inside PostgreSQL, starts
the production server (the gunicorn command of `make serve`, plus the
statement-counting hooks of bench/gunicorn_conf.py) and drives it with wrk.

For each concurrency it measures, one after the other: the floor (bench/floor: a
minimal Django app reading one row by primary key, on the same stack), the
authenticated no-op `GET /api/ping`, select for a continuing session, select
for a new session, a success report and a failure report that fails the
session over. Around each run it samples the CPU time of the gunicorn workers
and of the PostgreSQL backends serving them (/proc/<pid>/stat), so each endpoint
gets a CPU cost per request, held against the floor's. After each run it checks
the database against what wrk saw and puts the data back, so every run starts
from the same state.

Any answer outside 2xx, any socket error, a failed check or a continuing
select that took the locked path fails the run: it stops, says why, and exits
non-zero; no goal is printed as met.

Prints a table, the goals, the checks, and as its last line one JSON object
with every figure.

Environment: BENCH_SESSIONS (1000000), BENCH_PROFILES (1000, over 10
providers), BENCH_CONCURRENCY ("1,4,16"), BENCH_DURATION (seconds per run,
5), WEB_CONCURRENCY (gunicorn workers, 2), BENCH_SCALE (1: the scale runs
instead), BENCH_PG (server URL without database, postgres://postgres@127.0.0.1:5432),
BENCH_DB (authbroker_bench), BENCH_PORT (first of two ports; free ones by default),
BENCH_THROTTLE_RATE (the server's AUTHBROKER_THROTTLE_RATE, 1000000/min).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


SESSIONS = env_int("BENCH_SESSIONS", 1_000_000)
PROFILES = env_int("BENCH_PROFILES", 1000)
DURATION = env_int("BENCH_DURATION", 5)
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,4,16").split(",") if c.strip()]
WORKERS = env_int("WEB_CONCURRENCY", 2)
SCALE = os.environ.get("BENCH_SCALE", "") not in ("", "0")
SCALE_CONCURRENCY = env_int("BENCH_SCALE_CONCURRENCY", 4)
SCALE_DURATION = env_int("BENCH_SCALE_DURATION", 4)
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = os.environ.get("BENCH_DB", "authbroker_bench")
KEEP_DB = os.environ.get("BENCH_KEEP_DB", "") not in ("", "0")
SETTLE_SECONDS = 1.0
LEASES_PER_SECOND = env_int("BENCH_LEASES_PER_SECOND", 4000)  # prepared per report run: rps it can cover

PORT = env_int("BENCH_PORT", 0)
THROTTLE_RATE = os.environ.get("BENCH_THROTTLE_RATE", "1000000/min")
APP_NAME = "authbroker_bench_web"  # application_name of the server's connections: their backends are sampled
FLOOR_APP_NAME = "authbroker_bench_floor"
CLOCK_TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")

if not re.fullmatch(r"[a-z0-9_]*_bench[a-z0-9_]*", DB_NAME):
    raise SystemExit("BENCH_DB must contain _bench (e.g. authbroker_bench): the bench drops it")

os.environ.update({
    "DATABASE_URL": f"{PG}/{DB_NAME}",
    "DJANGO_SETTINGS_MODULE": "console.settings",
    "DJANGO_SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", "bench-" + uuid.uuid4().hex),
    "DEBUG": "false",
    "LOG_LEVEL": "WARNING",
})

ENDPOINTS = ["floor", "ping", "select_continue", "select_new", "report_success", "report_failure"]
LABELS = {
    "floor": "floor (bench/floor)",
    "ping": "GET /api/ping (no-op)",
    "select_continue": "select, continuing",
    "select_new": "select, new session",
    "report_success": "report success",
    "report_failure": "report failure+failover",
}
# Issue 13: CPU per request (gunicorn workers + PostgreSQL backends) at most this many times the floor's.
GOAL_CPU_RATIO = {"select_continue": 2.5, "select_new": 5.0, "report_success": 5.0, "report_failure": 8.0}
P99_CONNECTIONS = 16  # p99 is reported at 16 concurrent clients (or the largest concurrency run)


class BenchFailure(Exception):
    """The run cannot give honest figures: an error answer, a failed check, a wrong path."""


def log(message):
    print(message, flush=True)


# ---------------------------------------------------------------- tools and database


def ensure_wrk():
    if shutil.which("wrk"):
        return
    log("wrk not found: installing Debian's package")
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)


def database():
    """This bench's own database (bench/data.py)."""
    from bench import data

    return data.BenchDatabase(PG, DB_NAME, ROOT)


def generate(sessions, profiles):
    from bench import data
    from profiles import crypto

    secret = "sk-bench-" + uuid.uuid4().hex
    started = time.monotonic()
    with database().connect() as conn:
        conn.autocommit = False
        token = data.generate(conn, sessions, profiles, crypto.encrypt(secret), crypto.mask(secret))
    took = time.monotonic() - started
    log(f"data: {sessions:,} sessions, {profiles:,} profiles over {data.PROVIDERS} providers in {took:.1f} s")
    return token, took


# ---------------------------------------------------------------- server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`make serve`'s gunicorn command, with the counting hooks; its access log goes to a file.

    `app` is authbroker (`console.wsgi`) or the floor (`bench.floor.wsgi`), both with the same worker
    settings. The server's database connections carry an application_name, so the bench can find the
    PostgreSQL backends that serve it and sample their CPU.
    """

    def __init__(self, workdir, name="authbroker", port=0):
        floor = name == "floor"
        self.port = port or free_port()
        own = Path(tempfile.mkdtemp(prefix=f"{name}-{self.port}-", dir=workdir))
        self.stats_dir = own / "stats"
        self.stats_dir.mkdir()
        self.access_log = own / "access.log"
        self.app_name = FLOOR_APP_NAME if floor else APP_NAME
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.command = [
            str(gunicorn), "bench.floor.wsgi:application" if floor else "console.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(WORKERS), "--access-logfile", "-", "--timeout", "30",
            "-c", str(BENCH / "gunicorn_conf.py"),
        ]
        prometheus = own / "prometheus"  # as `make serve`: metrics summed over workers
        prometheus.mkdir()
        env = {
            **os.environ,
            "BENCH_STATS_DIR": str(self.stats_dir),
            "DATABASE_URL": f"{PG}/{DB_NAME}?application_name={self.app_name}",
            "PROMETHEUS_MULTIPROC_DIR": str(prometheus),
            # The bench's token must never be throttled (a 429 fails the run), but the throttle still
            # runs and counts, as in production: only the rate is out of reach.
            "AUTHBROKER_THROTTLE_RATE": THROTTLE_RATE,
            # Generated sessions were active within the last minute; with the default 300 s window they would
            # turn idle (and take the locked path) a few minutes into the run. A day keeps every one of them
            # continuing for the whole run; the path each request took is counted and checked.
            "AUTHBROKER_CACHE_IDLE_SECONDS": "86400",
        }
        self.log_file = open(self.access_log, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        ready = self.url + ("/floor?id=1" if floor else "/healthz")
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(ready, timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                if self.process.poll() is None:  # up but not answering 200: not left behind on the port
                    self.process.kill()
                    self.process.wait()
                raise SystemExit(f"gunicorn ({name}) did not start; see {self.access_log}")
            time.sleep(0.2)

    def workers(self):
        """The pids of the master's children (the gunicorn workers)."""
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.process.pid:
                    children.append(int(entry))
        return children

    def stop(self):
        """Graceful stop: the workers write their counts and peak memory as they exit."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log_file.close()
        workers = [json.loads(p.read_text()) for p in sorted(self.stats_dir.glob("worker-*.json"))]
        statuses = {}
        for line in self.access_log.read_text(errors="replace").splitlines():
            match = re.search(r'" (\d{3}) ', line)
            if match:
                statuses[match.group(1)] = statuses.get(match.group(1), 0) + 1
        return workers, statuses


def cpu_ticks(pid):
    """utime + stime of one process, in clock ticks (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted after the name


def machine_ticks():
    """Busy and total clock ticks of the whole machine (/proc/stat), and the bench's own CPU and its waited-for
    children's (wrk) in ms: what the rest of the machine did during a run is busy minus ours."""
    import resource

    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"busy": user + nice + system + irq + softirq + steal, "total": sum(fields), "steal": steal,
            "bench_ms": (own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime) * 1000}


class CpuMeter:
    """CPU time of a server's gunicorn workers and of the PostgreSQL backends serving them."""

    def __init__(self, server, conn):
        self.server, self.conn = server, conn

    def sample(self):
        backends = [row[0] for row in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            [self.server.app_name, DB_NAME]).fetchall()]
        return {"web": {pid: cpu_ticks(pid) for pid in self.server.workers()},
                "db": {pid: cpu_ticks(pid) for pid in backends}, "machine": machine_ticks()}

    @staticmethod
    def delta(before, after):
        """Milliseconds of CPU per side between two samples. A process that appeared in between counts
        from zero; one that vanished in between is lost (counted, so the figures can say so)."""
        out = {"vanished": 0}
        for side in ("web", "db"):
            total = 0
            for pid, ticks in after[side].items():
                if ticks is not None:
                    total += ticks - (before[side].get(pid) or 0)
            out["vanished"] += sum(1 for pid in before[side] if after[side].get(pid) is None)
            out[f"{side}_ms"] = total * CLOCK_TICK_MS
        # Everything else the machine did meanwhile (other tenants; not wrk, not the bench): the noise indicator.
        m0, m1 = before["machine"], after["machine"]
        busy_ms = (m1["busy"] - m0["busy"]) * CLOCK_TICK_MS
        capacity_ms = (m1["total"] - m0["total"]) * CLOCK_TICK_MS
        others_ms = busy_ms - out["web_ms"] - out["db_ms"] - (m1["bench_ms"] - m0["bench_ms"])
        out["others_share"] = round(max(others_ms, 0) / capacity_ms, 3) if capacity_ms else None
        out["steal_share"] = round((m1["steal"] - m0["steal"]) * CLOCK_TICK_MS / capacity_ms, 3) if capacity_ms else None
        return out


# ---------------------------------------------------------------- one wrk run


def write_leases(path, rows):
    """Fresh signed lease ids, as select hands them out, for the sessions a report run will use."""
    from django.utils import timezone

    from sessions_app import leases

    now = timezone.now()
    with open(path, "w") as out:
        for key, profile in rows:
            out.write(f"{key}\t{profile}\t{leases.issue(profile, key, now)}\n")


def wrk(url, mode, token, sessions, connections, duration, lease_file="-"):
    threads = max(1, min(2, connections))
    run_id = uuid.uuid4().hex[:10]
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
               "--latency", "-s", str(BENCH / "wrk.lua"), url, "--", mode, token, str(sessions), str(lease_file),
               run_id, str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    result = json.loads(line[len("WRKJSON "):])
    result["run_id"] = run_id
    result["connections"] = connections
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds if seconds else 0.0
    result["socket_errors"] = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    if result["bad"] or result["socket_errors"] or result["status_errors"]:
        raise BenchFailure(
            f"{mode} at {connections} connections: {result['bad']} answers outside 2xx (429: {result['status_429']}, "
            f"other 4xx: {result['status_4xx']}, 5xx: {result['status_5xx']}), {result['socket_errors']} socket "
            f"errors or timeouts; first: {result['first_bad'] or '-'}")
    if not result["requests"]:
        raise BenchFailure(f"{mode} at {connections} connections: no request completed")
    return result


def scalar(conn, sql, params=()):
    return conn.execute(sql, params).fetchone()[0]


class Runner:
    """Runs the five endpoints at one concurrency, checks the database after each, puts it back."""

    def __init__(self, server, floor, token, sessions, workdir, duration):
        from bench import data

        self.data = data
        self.server, self.floor = server, floor
        self.token, self.sessions, self.duration = token, sessions, duration
        self.workdir = Path(workdir)
        self.conn = database().connect()
        self.meters = {"authbroker": CpuMeter(server, self.conn), "floor": CpuMeter(floor, self.conn)}
        self.checks = []
        self.warming = False
        plain = [i for i in range(min(sessions, LEASES_PER_SECOND * duration * 4)) if data.is_plain(i)]
        self.failure_pool = plain[: LEASES_PER_SECOND * duration]

    def check(self, name, ok, detail):
        if self.warming:
            name = "warm-up " + name
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})

    def now(self):
        from django.utils import timezone

        return timezone.now()

    def run(self, mode, connections, warmup=False):
        duration = 2 if warmup else self.duration
        lease_file = "-"
        if mode in ("report_success", "report_failure"):
            import random

            d = self.data
            if mode == "report_success":
                count = LEASES_PER_SECOND * duration
                picks = (random.randrange(self.sessions) for _ in range(count * 2))
                indices = [i for i in picks if d.is_plain(i)][:count]
            else:
                indices = self.failure_pool
            lease_file = self.workdir / f"leases-{mode}.tsv"
            write_leases(lease_file, [(d.session_key(i), d.first_profile(i % d.PROVIDERS)) for i in indices])
        self.warming = warmup
        server = self.floor if mode == "floor" else self.server
        meter = self.meters["floor" if mode == "floor" else "authbroker"]
        started = self.now()
        before = meter.sample()
        result = wrk(server.url, mode, self.token, self.sessions, connections, duration, lease_file)
        time.sleep(SETTLE_SECONDS)  # requests wrk left in flight finish before the checks and the restore
        result["cpu"] = CpuMeter.delta(before, meter.sample())
        getattr(self, f"after_{mode}", lambda r, s, w: None)(result, started, warmup)
        return result

    def after_select_new(self, result, started, warmup):
        pattern = f"new:{result['run_id']}:%"
        created = scalar(self.conn, "SELECT count(*) FROM sessions_app_session WHERE session_key LIKE %s", [pattern])
        ok = result["answered"] - result["bad"]
        self.check(f"select_new c={result['connections']}: one session per answered new key",
                   0 <= created - ok <= result["connections"],
                   f"{created} sessions created, {ok} answers (up to {result['connections']} in flight at the end)")
        # put the table back to its size for the next runs
        self.conn.execute("DELETE FROM sessions_app_session WHERE session_key LIKE %s", [pattern])

    def after_report_success(self, result, started, warmup):
        claimed = scalar(self.conn, "SELECT count(*) FROM sessions_app_lease WHERE outcome = 'success' "
                                    "AND reported_at >= %s", [started])
        with_lease = result["answered"] - result["bad"] - result["exhausted"]
        self.check(f"report_success c={result['connections']}: one lease row per answered report",
                   with_lease <= claimed <= with_lease + result["connections"] + result["exhausted"]
                   and result["duplicates"] == 0,
                   f"{claimed} leases claimed, {with_lease} answers with a lease, {result['duplicates']} duplicates")

    def after_report_failure(self, result, started, warmup):
        c = self.conn
        # one statement, one snapshot: the counts are compared with each other
        moved, set_events, cool_events, cooled, max_count = c.execute(
            """
            SELECT (SELECT count(*) FROM sessions_app_pin WHERE source = 'auto' AND set_at >= %s),
                   (SELECT count(*) FROM sessions_app_event WHERE kind = 'override_set' AND at >= %s),
                   (SELECT count(*) FROM sessions_app_event WHERE kind = 'cooldown_started' AND at >= %s),
                   (SELECT count(*) FROM profiles_authprofile WHERE error_count > 0),
                   (SELECT coalesce(max(error_count), 0) FROM profiles_authprofile)
            """,
            [started, started, started],
        ).fetchone()
        conns = result["connections"]
        label = f"report_failure c={conns}"
        self.check(f"{label}: one override_set event per session moved", moved == set_events,
                   f"{moved} sessions moved, {set_events} events")
        self.check(f"{label}: every failover answered is recorded", 0 <= set_events - result["failovers"] <= conns,
                   f"{result['failovers']} failover answers, {set_events} events (up to {conns} in flight)")
        self.check(f"{label}: one escalation per cooled profile (no lost or doubled update)",
                   cool_events == cooled and max_count <= 1,
                   f"{cooled} profiles cooled, {cool_events} cooldown_started events, max error_count {max_count}")
        # back to the generated state: sessions home on their first profile, no cooldowns
        c.execute("UPDATE sessions_app_session SET last_profile_id = provider_id || ':key0000' "
                  "WHERE id IN (SELECT session_id FROM sessions_app_pin WHERE source = 'auto' AND set_at >= %s)",
                  [started])
        c.execute("DELETE FROM sessions_app_pin WHERE source = 'auto' AND set_at >= %s", [started])
        c.execute("UPDATE profiles_authprofile SET error_count = 0, failure_counts = '{}', cooldown_until = NULL, "
                  "cooldown_reason = '', last_failure_at = NULL WHERE error_count > 0 OR cooldown_until IS NOT NULL")


# ---------------------------------------------------------------- one configuration


def run_configuration(sessions, profiles, concurrencies, duration, workdir):
    token, gen_seconds = generate(sessions, profiles)
    server = Server(workdir, "authbroker", PORT)
    try:
        floor = Server(workdir, "floor", PORT + 1 if PORT else 0)
    except BaseException:
        server.stop()
        raise
    runner = Runner(server, floor, token, sessions, workdir, duration)
    results = {name: {} for name in ENDPOINTS}
    stopped = False
    try:
        for mode in ("floor", "ping", "select_continue", "select_new", "report_success"):
            runner.run(mode, 4, warmup=True)  # connections opened, statements prepared, code paths warm
        for c in concurrencies:
            for mode in ENDPOINTS:
                r = runner.run(mode, c)
                results[mode][str(c)] = r
                cpu = (r["cpu"]["web_ms"] + r["cpu"]["db_ms"]) / r["requests"]
                log(f"  c={c:<3} {LABELS[mode]:<26} {r['rps']:8.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms"
                    f"  p99 {r['p99_us'] / 1000:6.2f} ms  cpu {cpu:5.2f} ms/req")
        workers, statuses = server.stop()
        floor_workers, floor_statuses = floor.stop()
        stopped = True
    finally:
        if not stopped:
            server.stop()
            floor.stop()
        runner.conn.close()
    for status, n in {**statuses, **floor_statuses}.items():
        if not status.startswith("2"):
            raise BenchFailure(f"{n} answers with status {status} in the servers' access logs ({workdir})")
    return {"token": token, "generate_seconds": gen_seconds, "results": results, "workers": workers + floor_workers,
            "statuses": statuses, "checks": runner.checks}


def summarise(run, concurrencies):
    results = run["results"]
    phases = {}
    for w in run["workers"]:
        for phase, counts in w["phases"].items():
            total = phases.setdefault(phase, [0, 0, 0])
            for i, n in enumerate(counts):
                total[i] += n
    queries = {p: round(s / r, 2) for p, (r, s, _) in phases.items() if r and p in ENDPOINTS}
    paths = {p: {"lock_free": r - locked, "locked": locked} for p, (r, _, locked) in phases.items() if p in ENDPOINTS}
    peak_mb = max((w["max_rss_kb"] for w in run["workers"]), default=0) / 1024
    p99_at = str(P99_CONNECTIONS if P99_CONNECTIONS in concurrencies else max(concurrencies))

    def cpu_ms(rs):
        """CPU per request over the given runs: workers + backends, and each side."""
        requests = sum(r["requests"] for r in rs)
        web = sum(r["cpu"]["web_ms"] for r in rs) / requests
        db = sum(r["cpu"]["db_ms"] for r in rs) / requests
        return web + db, web, db

    floor_cpu = cpu_ms(list(results["floor"].values()))[0]
    figures = {}
    for mode in ENDPOINTS:
        total, web, db = cpu_ms(list(results[mode].values()))
        by_c = {}
        for c in concurrencies:
            r = results[mode][str(c)]
            c_total, c_web, c_db = cpu_ms([r])
            by_c[str(c)] = {
                "rps": round(r["rps"], 1),
                "p50_ms": round(r["p50_us"] / 1000, 3),
                "p95_ms": round(r["p95_us"] / 1000, 3),
                "p99_ms": round(r["p99_us"] / 1000, 3),
                "cpu_ms_per_request": round(c_total, 3),
                "web_cpu_ms": round(c_web, 3),
                "db_cpu_ms": round(c_db, 3),
                "ratio_to_floor": round(c_total / cpu_ms([results["floor"][str(c)]])[0], 2),
                "requests": r["requests"],
                "processes_vanished": r["cpu"]["vanished"],
                "others_cpu_share": r["cpu"]["others_share"],
                "steal_share": r["cpu"]["steal_share"],
            }
            if mode == "report_failure":
                by_c[str(c)]["failovers"] = r["failovers"]
                by_c[str(c)]["failover_share"] = round(r["failovers"] / max(r["answered"], 1), 3)
            if r["exhausted"]:
                by_c[str(c)]["without_lease"] = r["exhausted"]
        figures[mode] = {
            "cpu_ms_per_request": round(total, 3),
            "web_cpu_ms_per_request": round(web, 3),
            "db_cpu_ms_per_request": round(db, 3),
            "ratio_to_floor": round(total / floor_cpu, 2),
            "p99_ms": by_c[p99_at]["p99_ms"],
            "p99_at_connections": int(p99_at),
            "queries_per_request": queries.get(mode),
            "paths": paths.get(mode),
            "by_concurrency": by_c,
        }
    return figures, peak_mb


def path_checks(figures):
    """A continuing select must stay on the lock-free path for the whole run (warm-up included)."""
    paths = figures["select_continue"]["paths"] or {}
    ok = paths.get("lock_free", 0) > 0 and paths.get("locked", 1) == 0
    return [{"check": "select_continue: every request took the lock-free path", "ok": ok,
             "detail": f"{paths.get('lock_free', 0)} lock-free, {paths.get('locked', '?')} locked"}]


def goals(figures):
    return {mode: {"ratio_to_floor": figures[mode]["ratio_to_floor"], "target": limit,
                   "met": figures[mode]["ratio_to_floor"] <= limit}
            for mode, limit in GOAL_CPU_RATIO.items()}


def print_table(figures, concurrencies):
    log("")
    log(f"{'endpoint':<26} {'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>7} {'web':>6} "
        f"{'db':>6} {'×floor':>7} {'others':>7}")
    for c in concurrencies:
        for mode in ENDPOINTS:
            f = figures[mode]["by_concurrency"][str(c)]
            others = f"{f['others_cpu_share'] * 100:.0f} %" if f["others_cpu_share"] is not None else "-"
            log(f"{LABELS[mode]:<26} {c:>4} {f['rps']:>8.0f} {f['p50_ms']:>7.2f} {f['p99_ms']:>7.2f} "
                f"{f['cpu_ms_per_request']:>7.3f} {f['web_cpu_ms']:>6.3f} {f['db_cpu_ms']:>6.3f} "
                f"{f['ratio_to_floor']:>7.2f} {others:>7}")
        log("")
    log("others: share of the machine's CPU used meanwhile by processes that are not the bench, wrk, the server's "
        "workers or their backends (other tenants); above a few % the figures are noisy.")
    log("")
    log(f"{'all concurrencies':<26} {'cpu ms/req':>10} {'web':>6} {'db':>6} {'×floor':>7} {'p99 ms':>7} "
        f"{'queries':>7}  paths")
    for mode in ENDPOINTS:
        f = figures[mode]
        paths = f["paths"] or {}
        log(f"{LABELS[mode]:<26} {f['cpu_ms_per_request']:>10.3f} {f['web_cpu_ms_per_request']:>6.3f} "
            f"{f['db_cpu_ms_per_request']:>6.3f} {f['ratio_to_floor']:>7.2f} {f['p99_ms']:>7.2f} "
            f"{f['queries_per_request'] or 0:>7.2f}  "
            f"{paths.get('lock_free', '-')} lock-free / {paths.get('locked', '-')} locked")


def machine():
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg_1m_at_end": round(load[0], 2), "python": sys.version.split()[0],
            "workers": WORKERS, "clock_tick_ms": CLOCK_TICK_MS}


def main():
    import django

    ensure_wrk()
    django.setup()
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="authbroker-bench-")
    log(f"authbroker bench: database {DB_NAME}, {WORKERS} gunicorn workers, work files in {workdir}")
    failure = None
    try:
        database().create()
        output = scale(workdir) if SCALE else default(workdir)
    except BenchFailure as error:
        failure = str(error)
        output = {"bench": "authbroker", "mode": "scale" if SCALE else "default", "ok": False, "failure": failure}
    finally:
        if not KEEP_DB:
            database().drop()
    output["seconds"] = round(time.monotonic() - started, 1)
    output["machine"] = machine()
    if failure:
        log(f"\nBENCH FAILED: {failure}\nNo figure from this run is valid; no goal is judged.")
    print(json.dumps(output, separators=(",", ":")), flush=True)
    if failure:
        sys.exit(1)


def fail_on(checks):
    failed = [c for c in checks if not c["ok"]]
    for check in checks:
        log(f"check {'ok  ' if check['ok'] else 'FAIL'} {check['check']}: {check['detail']}")
    if failed:
        raise BenchFailure(f"{len(failed)} check(s) failed: " + "; ".join(c["check"] for c in failed))


def default(workdir):
    log(f"{SESSIONS:,} sessions, {PROFILES:,} profiles; concurrency {CONCURRENCY}, {DURATION} s per run")
    run = run_configuration(SESSIONS, PROFILES, CONCURRENCY, DURATION, workdir)
    figures, peak_mb = summarise(run, CONCURRENCY)
    print_table(figures, CONCURRENCY)
    checks = run["checks"] + path_checks(figures)
    fail_on(checks)
    log(f"no errors (every answer 2xx, no socket error; access logs agree); {len(checks)} checks consistent")
    met = goals(figures)
    log("goals (CPU per request, workers + PostgreSQL backends, against the floor in this run): " + ", ".join(
        f"{m} {g['ratio_to_floor']:.2f}× (≤ {g['target']}×) {'met' if g['met'] else 'MISSED'}" for m, g in met.items()))
    log(f"peak worker memory {peak_mb:.0f} MB; CPU from /proc/<pid>/stat ({CLOCK_TICK_MS:.0f} ms ticks); "
        "queries per request counted by Django execute_wrapper in the workers")
    return {
        "bench": "authbroker", "mode": "default", "ok": True, "sessions": SESSIONS, "profiles": PROFILES,
        "providers": 10, "duration_s": DURATION, "concurrency": CONCURRENCY,
        "generate_s": round(run["generate_seconds"], 1), "endpoints": figures,
        "cpu_counting": "utime+stime of the gunicorn workers and of the PostgreSQL backends with the server's "
                        "application_name, sampled before and after each run; pooled over the concurrencies",
        "query_counting": "django execute_wrapper per worker (statements sent; no BEGIN/COMMIT/health check)",
        "peak_worker_rss_mb": round(peak_mb, 1), "errors": 0, "checks": len(checks), "goals": met,
    }


def scale(workdir):
    large = env_int("BENCH_SCALE_LARGE", 1_000_000)  # smaller only to try the bench itself out
    profile_axis_sessions = env_int("BENCH_SCALE_SESSIONS", large)
    configurations = [
        ("sessions_1k", 1000, 1000),
        ("sessions_1m", large, 1000),
        ("profiles_3_per_provider", profile_axis_sessions, 30),
        ("profiles_1000_per_provider", profile_axis_sessions, 10_000),
    ]
    c = SCALE_CONCURRENCY
    out = {"bench": "authbroker", "mode": "scale", "ok": True, "concurrency": c, "duration_s": SCALE_DURATION,
           "runs": {}}
    all_checks = []
    for name, sessions, profiles in configurations:
        log(f"scale {name}: {sessions:,} sessions, {profiles:,} profiles, concurrency {c}, {SCALE_DURATION} s")
        run = run_configuration(sessions, profiles, [c], SCALE_DURATION, workdir)
        figures, peak_mb = summarise(run, [c])
        checks = run["checks"] + path_checks(figures)
        fail_on([x for x in checks if not x["ok"]])
        all_checks += checks
        out["runs"][name] = {"sessions": sessions, "profiles": profiles,
                             "endpoints": {m: {k: v for k, v in figures[m].items() if k != "by_concurrency"}
                                           | figures[m]["by_concurrency"][str(c)] for m in ENDPOINTS},
                             "peak_worker_rss_mb": round(peak_mb, 1)}
    runs = out["runs"]

    def growth(small, large):
        """Large over small: CPU per request (each run's own, and as a multiple of its own floor, which cancels
        the machine's speed drifting between runs a few minutes apart) and req/s."""
        a, b = runs[small]["endpoints"], runs[large]["endpoints"]
        return {m: {"cpu": round(b[m]["cpu_ms_per_request"] / a[m]["cpu_ms_per_request"], 3),
                    "cpu_vs_floor": round(b[m]["ratio_to_floor"] / a[m]["ratio_to_floor"], 3),
                    "rps": round(b[m]["rps"] / a[m]["rps"], 3)}
                for m in ENDPOINTS}

    out["growth_sessions_1m_vs_1k"] = growth("sessions_1k", "sessions_1m")
    out["growth_profiles_1000_vs_3"] = growth("profiles_3_per_provider", "profiles_1000_per_provider")
    # Flat: a larger data set costs at most 1/0.9 (sessions) and 1/0.75 (profiles) of the smaller one's CPU.
    out["goals"] = {
        **{f"sessions_flat_{m}": g["cpu"] <= 1 / 0.9
           for m, g in out["growth_sessions_1m_vs_1k"].items() if m != "floor"},
        **{f"profiles_flat_{m}": g["cpu"] <= 1 / 0.75
           for m, g in out["growth_profiles_1000_vs_3"].items() if m != "floor"},
    }
    log("")
    log(f"{'endpoint':<26} " + " ".join(f"{n:>26}" for n, _, _ in configurations) + "   (cpu ms/req, req/s)")
    for m in ENDPOINTS:
        cells = [f"{runs[n]['endpoints'][m]['cpu_ms_per_request']:>8.3f} {runs[n]['endpoints'][m]['rps']:>7.0f}"
                 for n, _, _ in configurations]
        log(f"{LABELS[m]:<26} " + " ".join(f"{cell:>26}" for cell in cells))
    log("")
    for key, table in (("1M vs 1k sessions (goal ≤ 1.11)", out["growth_sessions_1m_vs_1k"]),
                       ("1000 vs 3 profiles per provider (goal ≤ 1.33)", out["growth_profiles_1000_vs_3"])):
        log(f"CPU per request, {key}: " + ", ".join(f"{m} {g['cpu']:.2f}" for m, g in table.items()))
        log("   the same, each against its run's floor: "
            + ", ".join(f"{m} {g['cpu_vs_floor']:.2f}" for m, g in table.items() if m != "floor"))
    log("goals: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in out["goals"].items()))
    log(f"no errors; {len(all_checks)} checks consistent")
    out.update({"errors": 0, "checks": len(all_checks)})
    return out


if __name__ == "__main__":
    main()
