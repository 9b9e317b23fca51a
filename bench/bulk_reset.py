"""The bulk reset at scale (issue 11, item 6): `make bench-reset`.

In its own PostgreSQL database (BENCH_RESET_DB, default `authbroker_bench_reset`, dropped and created
afresh, dropped again at the end unless BENCH_KEEP_DB=1) it generates BENCH_SESSIONS sessions (1,000,000)
with bench/data.py (5 % pinned `auto`, 5 % pinned `user`), then resets every session through the real
service function (`sessions_app.services.bulk_reset`, what `POST /api/sessions/reset` calls) and times
it. Meanwhile BENCH_RESET_SELECTORS threads (4: half on pinned sessions, half on unpinned ones), each
with its own connection, issue sticky selects (`services.select_profile`) in a loop; the longest select
that overlapped the reset is the figure the issue asks about ("no select blocked more than a moment").

Prints sessions, seconds, the longest select wait (pinned and unpinned), dropped and carried, and as its
last line one JSON object. Fails loudly (exit 1, no figure) on any error: a select that raised, a reset
that did not reset every session, a `dropped` that is not the number of auto pins there were or not the
number of `override_dropped` events the reset wrote, a `carried` that is not the number of user pins.
"""

import json
import os
import random
import re
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


SESSIONS = env_int("BENCH_SESSIONS", 1_000_000)
PROFILES = env_int("BENCH_PROFILES", 1000)
SELECTORS = max(env_int("BENCH_RESET_SELECTORS", 4), 2)
BASELINE_SECONDS = 2.0
AFTER_SECONDS = 1.0
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = os.environ.get("BENCH_RESET_DB", "authbroker_bench_reset")
KEEP_DB = os.environ.get("BENCH_KEEP_DB", "") not in ("", "0")
ACTOR = "bench-reset"

if not re.fullmatch(r"[a-z0-9_]*bench[a-z0-9_]*", DB_NAME):
    raise SystemExit("BENCH_RESET_DB must contain 'bench': the bench drops it")

os.environ.update({
    "DATABASE_URL": f"{PG}/{DB_NAME}",
    "DJANGO_SETTINGS_MODULE": "console.settings",
    "DJANGO_SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", "bench-" + uuid.uuid4().hex),
    "DEBUG": "false",
    "LOG_LEVEL": "WARNING",
})


def log(message):
    print(message, flush=True)


def fail(message):
    print(f"bench-reset FAILED: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def database():
    """This bench's own database (bench/data.py)."""
    from bench import data

    return data.BenchDatabase(PG, DB_NAME, ROOT)


def generate():
    from bench import data
    from profiles import crypto

    secret = "sk-bench-" + uuid.uuid4().hex
    started = time.monotonic()
    with database().connect() as conn:
        conn.autocommit = False
        data.generate(conn, SESSIONS, PROFILES, crypto.encrypt(secret), crypto.mask(secret))
    log(f"data: {SESSIONS:,} sessions, {PROFILES:,} profiles in {time.monotonic() - started:.1f} s")


def scalar(sql, params=()):
    with database().connect() as conn:
        return conn.execute(sql, params).fetchone()[0]


def pinned_index(rng):
    """A session bench/data.py pinned (kind 18: auto, 19: user)."""
    i = rng.randrange(SESSIONS // 200) * 200 + rng.choice((18, 19)) * 10 + rng.randrange(10)
    return i if i < SESSIONS else pinned_index(rng)


def unpinned_index(rng):
    from bench import data

    i = rng.randrange(SESSIONS)
    return i if data.is_plain(i) else unpinned_index(rng)


class Selector(threading.Thread):
    """Sticky selects in a loop on pinned or unpinned sessions; every call timed, every error kept."""

    def __init__(self, index, pinned, stop):
        super().__init__(daemon=True)
        self.rng = random.Random(index)
        self.pinned, self.stop = pinned, stop
        self.calls, self.errors = [], []  # (started, seconds), repr

    def run(self):
        from django.db import connections
        from django.utils import timezone

        from bench import data
        from sessions_app import services

        try:
            while not self.stop.is_set():
                i = pinned_index(self.rng) if self.pinned else unpinned_index(self.rng)
                started = time.monotonic()
                try:
                    services.select_profile(session_key=data.session_key(i), provider=data.provider_of(i),
                                            now=timezone.now(), actor="bench-select")
                except Exception as exc:  # reported, and the bench fails
                    self.errors.append(repr(exc))
                self.calls.append((started, time.monotonic() - started))
        finally:
            connections.close_all()


class StatementTimer:
    """Times each statement of the reset (Django's execute_wrapper): where the seconds go."""

    def __init__(self, into):
        self.into = into

    def __call__(self, execute, sql, params, many, context):
        started = time.monotonic()
        try:
            return execute(sql, params, many, context)
        finally:
            self.into.append((" ".join(sql.split())[:90], time.monotonic() - started))


def longest(selectors, start, end):
    """The longest select (ms) of these threads that overlapped [start, end], and how many did."""
    overlapping = [seconds for s in selectors for began, seconds in s.calls if began <= end and began + seconds >= start]
    return (round(max(overlapping) * 1000, 1) if overlapping else None), len(overlapping)


def baseline(selectors, end):
    calls = sorted(seconds for s in selectors for began, seconds in s.calls if began + seconds < end)
    if not calls:
        return None, None
    return round(calls[len(calls) // 2] * 1000, 2), round(calls[-1] * 1000, 1)


def measure():
    from django.db import connection
    from django.utils import timezone

    from sessions_app import services

    autos = scalar("SELECT count(*) FROM sessions_app_pin WHERE source = 'auto'")
    users = scalar("SELECT count(*) FROM sessions_app_pin WHERE source = 'user'")
    stop = threading.Event()
    selectors = [Selector(n, pinned=n % 2 == 0, stop=stop) for n in range(SELECTORS)]
    for selector in selectors:
        selector.start()
    time.sleep(BASELINE_SECONDS)
    statements = []
    started = time.monotonic()
    try:
        with connection.execute_wrapper(StatementTimer(statements)):
            result = services.bulk_reset(now=timezone.now(), actor=ACTOR, reason="restart")
    finally:
        ended = time.monotonic()
        time.sleep(AFTER_SECONDS)
        stop.set()
        for selector in selectors:
            selector.join(timeout=120)
        connection.close()
    seconds = ended - started
    errors = [e for s in selectors for e in s.errors]
    if errors:
        fail(f"{len(errors)} selects raised, first: {errors[0]}")
    if any(s.is_alive() for s in selectors):
        fail("a select never returned")
    drop_events = scalar("SELECT count(*) FROM sessions_app_event WHERE kind = 'override_dropped' AND actor = %s",
                         (ACTOR,))
    if result["reset"] != SESSIONS:
        fail(f"reset {result['reset']} sessions of {SESSIONS}")
    if result["dropped"] != autos or drop_events != autos:
        fail(f"dropped {result['dropped']} with {drop_events} override_dropped events; there were {autos} auto pins")
    if result["carried"] != users:
        fail(f"carried {result['carried']}; there were {users} user pins")
    left = scalar("SELECT count(*) FROM sessions_app_pin WHERE source = 'auto' AND "
                  "set_at < now() - interval '1 minute'")
    if left:
        fail(f"{left} auto pins of before the reset are still there")
    pinned = [s for s in selectors if s.pinned]
    unpinned = [s for s in selectors if not s.pinned]
    wait_pinned, n_pinned = longest(pinned, started, ended)
    wait_unpinned, n_unpinned = longest(unpinned, started, ended)
    base_p50, base_max = baseline(selectors, started)
    return {
        "sessions": SESSIONS, "seconds": round(seconds, 2), "reset": result["reset"],
        "dropped": result["dropped"], "carried": result["carried"], "override_dropped_events": drop_events,
        "longest_select_ms_pinned": wait_pinned, "longest_select_ms_unpinned": wait_unpinned,
        "selects_during_reset": n_pinned + n_unpinned, "selects_before_p50_ms": base_p50,
        "selects_before_max_ms": base_max, "selectors": SELECTORS,
        "statements": [{"sql": sql, "seconds": round(took, 2)} for sql, took in statements if took >= 0.05],
    }


def main():
    import django

    log(f"bench-reset: database {DB_NAME}, {SESSIONS:,} sessions, {SELECTORS} select threads")
    database().create()
    try:
        generate()
        django.setup()
        figures = measure()
    finally:
        if not KEEP_DB:
            database().drop()
    log(f"sessions                {figures['sessions']:,}")
    log(f"bulk reset              {figures['seconds']:.2f} s (goal < 10 s)")
    log(f"longest select, pinned  {figures['longest_select_ms_pinned']} ms")
    log(f"longest select, plain   {figures['longest_select_ms_unpinned']} ms "
        f"({figures['selects_during_reset']} selects overlapped the reset; before it p50 "
        f"{figures['selects_before_p50_ms']} ms, max {figures['selects_before_max_ms']} ms)")
    log(f"dropped                 {figures['dropped']:,} (each with its override_dropped event)")
    log(f"carried                 {figures['carried']:,}")
    for statement in figures["statements"]:
        log(f"  {statement['seconds']:7.2f} s  {statement['sql']}")
    print(json.dumps(figures, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
