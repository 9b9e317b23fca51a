"""authbroker's benchmark: `make bench` (and `make bench BENCH_SCALE=1`). See docs/performance.md.

It creates its own PostgreSQL database (BENCH_DB, default `authbroker_bench`,
dropped and created afresh at each run, dropped again at the end unless
BENCH_KEEP_DB=1), migrates it, generates the data inside PostgreSQL, starts
the production server (the gunicorn command of `make serve`, plus the
statement-counting hooks of bench/gunicorn_conf.py) and drives it with wrk.

For each concurrency it measures, one after the other: the authenticated
no-op `GET /api/ping` (the floor), select for a continuing session, select
for a new session, a success report and a failure report that fails the
session over. After each run it checks the database against what wrk saw
(sessions created, leases claimed, one event per failover, one escalation per
profile) and puts the data back, so every run starts from the same state.

Prints a table, the checks, and as its last line one JSON object with every
figure.

Environment: BENCH_SESSIONS (1000000), BENCH_PROFILES (1000, over 10
providers), BENCH_CONCURRENCY ("1,4,16"), BENCH_DURATION (seconds per run,
5), WEB_CONCURRENCY (gunicorn workers, 2), BENCH_SCALE (1: the scale runs
instead), BENCH_PG (server URL without database, postgres://postgres@127.0.0.1:5432).
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

if not re.fullmatch(r"authbroker_bench[a-z0-9_]*", DB_NAME):
    raise SystemExit("BENCH_DB must start with authbroker_bench: the bench drops it")

os.environ.update({
    "DATABASE_URL": f"{PG}/{DB_NAME}",
    "DJANGO_SETTINGS_MODULE": "console.settings",
    "DJANGO_SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", "bench-" + uuid.uuid4().hex),
    "DEBUG": "false",
    "LOG_LEVEL": "WARNING",
})

ENDPOINTS = ["ping", "select_continue", "select_new", "report_success", "report_failure"]
LABELS = {
    "ping": "GET /api/ping (floor)",
    "select_continue": "select, continuing",
    "select_new": "select, new session",
    "report_success": "report success",
    "report_failure": "report failure+failover",
}
# DESIGN/issue 6 goals: share of the floor's requests/s, and queries per request.
GOAL_RATIO = {"select_continue": 0.60, "select_new": 0.40, "report_success": 0.50, "report_failure": 0.50}
GOAL_QUERIES = {"ping": 1, "select_continue": 3, "select_new": 6, "report_success": 5, "report_failure": 8}
GOAL_P50 = {"select_continue": 1.5}


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


def admin_connection():
    import psycopg

    return psycopg.connect(f"{PG}/postgres", autocommit=True)


def bench_connection():
    import psycopg

    return psycopg.connect(f"{PG}/{DB_NAME}", autocommit=True)


def create_database():
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)


def drop_database():
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def generate(sessions, profiles):
    from bench import data
    from profiles import crypto

    secret = "sk-bench-" + uuid.uuid4().hex
    started = time.monotonic()
    with bench_connection() as conn:
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
    """`make serve`'s gunicorn command, with the counting hooks; its access log goes to a file."""

    def __init__(self, workdir):
        self.port = free_port()
        self.stats_dir = Path(workdir) / f"stats-{self.port}"
        self.stats_dir.mkdir()
        self.access_log = Path(workdir) / f"access-{self.port}.log"
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.command = [
            str(gunicorn), "console.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(WORKERS), "--access-logfile", "-", "--timeout", "30",
            "-c", str(BENCH / "gunicorn_conf.py"),
        ]
        self.log_file = open(self.access_log, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        env={**os.environ, "BENCH_STATS_DIR": str(self.stats_dir)})
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start; see {self.access_log}")
            time.sleep(0.2)

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
    return result


def scalar(conn, sql, params=()):
    return conn.execute(sql, params).fetchone()[0]


class Runner:
    """Runs the five endpoints at one concurrency, checks the database after each, puts it back."""

    def __init__(self, url, token, sessions, workdir, duration):
        from bench import data

        self.data = data
        self.url, self.token, self.sessions, self.duration = url, token, sessions, duration
        self.workdir = Path(workdir)
        self.conn = bench_connection()
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
        started = self.now()
        result = wrk(self.url, mode, self.token, self.sessions, connections, duration, lease_file)
        time.sleep(SETTLE_SECONDS)  # requests wrk left in flight finish before the checks and the restore
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
            SELECT (SELECT count(*) FROM sessions_app_session WHERE override_source = 'auto' AND override_set_at >= %s),
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
        c.execute("UPDATE sessions_app_session SET override_profile_id = NULL, override_source = '', "
                  "override_set_at = NULL, override_set_by = '', override_reason = '', "
                  "last_profile_id = provider_id || ':key0000' "
                  "WHERE override_source = 'auto' AND override_set_at >= %s", [started])
        c.execute("UPDATE profiles_authprofile SET error_count = 0, failure_counts = '{}', cooldown_until = NULL, "
                  "cooldown_reason = '', last_failure_at = NULL WHERE error_count > 0 OR cooldown_until IS NOT NULL")


# ---------------------------------------------------------------- one configuration


def run_configuration(sessions, profiles, concurrencies, duration, workdir):
    token, gen_seconds = generate(sessions, profiles)
    server = Server(workdir)
    runner = Runner(server.url, token, sessions, workdir, duration)
    results = {name: {} for name in ENDPOINTS}
    try:
        for mode in ("ping", "select_continue", "select_new", "report_success"):
            runner.run(mode, 4, warmup=True)  # connections opened, code paths warm
        for c in concurrencies:
            for mode in ENDPOINTS:
                r = runner.run(mode, c)
                results[mode][str(c)] = r
                log(f"  c={c:<3} {LABELS[mode]:<26} {r['rps']:8.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms"
                    f"  p99 {r['p99_us'] / 1000:6.2f} ms")
    finally:
        workers, statuses = server.stop()
        runner.conn.close()
    return {"token": token, "generate_seconds": gen_seconds, "results": results, "workers": workers,
            "statuses": statuses, "checks": runner.checks}


def summarise(run, concurrencies):
    results = run["results"]
    phases = {}
    for w in run["workers"]:
        for phase, (requests, statements) in w["phases"].items():
            total = phases.setdefault(phase, [0, 0])
            total[0] += requests
            total[1] += statements
    queries = {p: round(s / r, 2) for p, (r, s) in phases.items() if r and p in ENDPOINTS}
    peak_mb = max((w["max_rss_kb"] for w in run["workers"]), default=0) / 1024
    figures = {}
    for mode in ENDPOINTS:
        figures[mode] = {}
        for c in concurrencies:
            r, base = results[mode][str(c)], results["ping"][str(c)]
            figures[mode][str(c)] = {
                "rps": round(r["rps"], 1),
                "p50_ms": round(r["p50_us"] / 1000, 3),
                "p95_ms": round(r["p95_us"] / 1000, 3),
                "p99_ms": round(r["p99_us"] / 1000, 3),
                "ratio_rps": round(r["rps"] / base["rps"], 3) if base["rps"] else None,
                "ratio_p50": round(r["p50_us"] / base["p50_us"], 3) if base["p50_us"] else None,
                "requests": r["requests"],
                "non_200": r["bad"],
                "socket_errors": r["socket_errors"],
            }
            if mode == "report_failure":
                figures[mode][str(c)]["failovers"] = r["failovers"]
                figures[mode][str(c)]["failover_share"] = round(r["failovers"] / max(r["answered"], 1), 3)
            if r["exhausted"]:
                figures[mode][str(c)]["without_lease"] = r["exhausted"]
    errors = sum(r["bad"] + r["socket_errors"] for m in results.values() for r in m.values())
    non_200_logged = sum(n for status, n in run["statuses"].items() if status != "200")
    return figures, queries, peak_mb, errors, non_200_logged


def goals(figures, queries, concurrencies):
    out = {}
    for mode, share in GOAL_RATIO.items():
        for c in concurrencies:
            f = figures[mode][str(c)]
            ok = f["ratio_rps"] is not None and f["ratio_rps"] >= share
            if mode in GOAL_P50:
                ok = ok and f["ratio_p50"] is not None and f["ratio_p50"] <= GOAL_P50[mode]
            out[f"{mode}_c{c}"] = ok
    for mode, limit in GOAL_QUERIES.items():
        out[f"{mode}_queries"] = queries.get(mode, 99) <= limit
    return out


def print_table(figures, queries, concurrencies):
    log("")
    log(f"{'endpoint':<26} {'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'×floor':>7} {'p50×':>6} {'q/req':>6}")
    for c in concurrencies:
        for mode in ENDPOINTS:
            f = figures[mode][str(c)]
            log(f"{LABELS[mode]:<26} {c:>4} {f['rps']:>8.0f} {f['p50_ms']:>7.2f} {f['p95_ms']:>7.2f} "
                f"{f['p99_ms']:>7.2f} {f['ratio_rps']:>7.2f} {f['ratio_p50']:>6.2f} {queries.get(mode, 0):>6.2f}")
        log("")


def machine():
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg_1m_at_end": round(load[0], 2), "python": sys.version.split()[0],
            "workers": WORKERS}


def main():
    import django

    ensure_wrk()
    django.setup()
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="authbroker-bench-")
    log(f"authbroker bench: database {DB_NAME}, {WORKERS} gunicorn workers, work files in {workdir}")
    create_database()
    try:
        output = scale(workdir) if SCALE else default(workdir)
    finally:
        if not KEEP_DB:
            drop_database()
    output["seconds"] = round(time.monotonic() - started, 1)
    output["machine"] = machine()
    print(json.dumps(output, separators=(",", ":")), flush=True)


def default(workdir):
    log(f"{SESSIONS:,} sessions, {PROFILES:,} profiles; concurrency {CONCURRENCY}, {DURATION} s per run")
    run = run_configuration(SESSIONS, PROFILES, CONCURRENCY, DURATION, workdir)
    figures, queries, peak_mb, errors, non_200_logged = summarise(run, CONCURRENCY)
    print_table(figures, queries, CONCURRENCY)
    met = goals(figures, queries, CONCURRENCY)
    log("goals: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))
    for check in run["checks"]:
        log(f"check {'ok  ' if check['ok'] else 'FAIL'} {check['check']}: {check['detail']}")
    consistent = all(c["ok"] for c in run["checks"])
    log(f"errors: {errors} from wrk (non-200 or socket), {non_200_logged} non-200 in the server's access log; "
        f"updates: {'none lost' if consistent else 'INCONSISTENT'} ({len(run['checks'])} checks)")
    log(f"peak worker memory {peak_mb:.0f} MB; queries per request counted by Django execute_wrapper in the workers")
    return {
        "bench": "authbroker", "mode": "default", "sessions": SESSIONS, "profiles": PROFILES, "providers": 10,
        "duration_s": DURATION, "concurrency": CONCURRENCY, "generate_s": round(run["generate_seconds"], 1),
        "endpoints": figures, "queries_per_request": queries,
        "query_counting": "django execute_wrapper per worker (statements sent; no BEGIN/COMMIT/health check)",
        "peak_worker_rss_mb": round(peak_mb, 1), "errors": errors, "non_200_in_access_log": non_200_logged,
        "consistent": consistent, "checks_failed": [c["check"] for c in run["checks"] if not c["ok"]],
        "goals": met,
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
    out = {"bench": "authbroker", "mode": "scale", "concurrency": c, "duration_s": SCALE_DURATION, "runs": {}}
    all_checks, errors = [], 0
    for name, sessions, profiles in configurations:
        log(f"scale {name}: {sessions:,} sessions, {profiles:,} profiles, concurrency {c}, {SCALE_DURATION} s")
        run = run_configuration(sessions, profiles, [c], SCALE_DURATION, workdir)
        figures, queries, peak_mb, run_errors, non_200 = summarise(run, [c])
        errors += run_errors + non_200
        all_checks += run["checks"]
        out["runs"][name] = {"sessions": sessions, "profiles": profiles,
                             "endpoints": {m: figures[m][str(c)] for m in ENDPOINTS},
                             "queries_per_request": queries, "peak_worker_rss_mb": round(peak_mb, 1)}
    runs = out["runs"]

    def growth(small, large):
        """Large over small: raw req/s and p50, and req/s as a share of each run's own floor (which cancels
        the machine's speed drifting between the two runs, a few minutes apart)."""
        a, b = runs[small]["endpoints"], runs[large]["endpoints"]
        return {m: {"rps": round(b[m]["rps"] / a[m]["rps"], 3),
                    "p50": round(b[m]["p50_ms"] / a[m]["p50_ms"], 3),
                    "rps_vs_floor": round(b[m]["ratio_rps"] / a[m]["ratio_rps"], 3)}
                for m in ENDPOINTS}

    out["growth_sessions_1m_vs_1k"] = growth("sessions_1k", "sessions_1m")
    out["growth_profiles_1000_vs_3"] = growth("profiles_3_per_provider", "profiles_1000_per_provider")
    out["goals"] = {
        **{f"sessions_flat_{m}": g["rps"] >= 0.9 for m, g in out["growth_sessions_1m_vs_1k"].items()},
        **{f"profiles_flat_{m}": g["rps"] >= 0.75 for m, g in out["growth_profiles_1000_vs_3"].items()},
        **{f"sessions_flat_{m}_vs_floor": g["rps_vs_floor"] >= 0.9
           for m, g in out["growth_sessions_1m_vs_1k"].items() if m != "ping"},
        **{f"profiles_flat_{m}_vs_floor": g["rps_vs_floor"] >= 0.75
           for m, g in out["growth_profiles_1000_vs_3"].items() if m != "ping"},
    }
    log("")
    log(f"{'endpoint':<26} " + " ".join(f"{n:>16}" for n, _, _ in configurations) + "   (req/s, p50 ms)")
    for m in ENDPOINTS:
        cells = [f"{runs[n]['endpoints'][m]['rps']:>8.0f} {runs[n]['endpoints'][m]['p50_ms']:>7.2f}"
                 for n, _, _ in configurations]
        log(f"{LABELS[m]:<26} " + " ".join(f"{cell:>16}" for cell in cells))
    log("")
    for key, table in (("1M vs 1k sessions (goal ≥ 0.90)", out["growth_sessions_1m_vs_1k"]),
                       ("1000 vs 3 profiles per provider (goal ≥ 0.75)", out["growth_profiles_1000_vs_3"])):
        log(f"req/s ratio, {key}: " + ", ".join(f"{m} {g['rps']:.2f}" for m, g in table.items()))
        log("   the same, each as a share of its run's floor: "
            + ", ".join(f"{m} {g['rps_vs_floor']:.2f}" for m, g in table.items() if m != "ping"))
    consistent = all(c["ok"] for c in all_checks)
    for check in all_checks:
        if not check["ok"]:
            log(f"check FAIL {check['check']}: {check['detail']}")
    log(f"errors: {errors}; updates: {'none lost' if consistent else 'INCONSISTENT'} ({len(all_checks)} checks)")
    out.update({"errors": errors, "consistent": consistent})
    return out


if __name__ == "__main__":
    main()
