"""How fast the console's "over time" page reads a large audit log: `python bench/charts.py`.

Creates its own PostgreSQL database (BENCH_CHARTS_DB, default `authbroker_bench_charts`, dropped and created
afresh, dropped at the end unless BENCH_KEEP_DB=1), migrates it, writes BENCH_EVENTS events (default
2,000,000) of every kind spread over the last eight days inside PostgreSQL, plus the BENCH_RESET_EVENTS
(default 1,000,000) override_dropped rows one bulk reset writes three days ago, and times the page's query and layout
(`console.ui.charts.build`) for the last hour, day and week: with the `event_kind_at` index, then without it.
Prints one line per run and, last, one JSON object with every figure (milliseconds, median of BENCH_REPEAT
runs). Any error stops it with a traceback, never a figure.
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = os.environ.get("BENCH_CHARTS_DB", "authbroker_bench_charts")
EVENTS = int(os.environ.get("BENCH_EVENTS", "2000000"))
# A bulk reset of every session writes one override_dropped per auto pin in one go: rows the charts never read.
RESET_EVENTS = int(os.environ.get("BENCH_RESET_EVENTS", "1000000"))
PROFILES = int(os.environ.get("BENCH_PROFILES", "50"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
KEEP_DB = os.environ.get("BENCH_KEEP_DB", "") not in ("", "0")


def admin(sql):
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(sql)


# Kinds in rough proportion to a busy gateway: mostly pins and windows, a few operator actions.
KINDS = ["override_set"] * 4 + ["cooldown_started"] * 3 + ["cooldown_expired"] * 3 + ["override_dropped"] * 2 + \
    ["session_reset", "cooldown_extended", "disabled", "enabled", "override_carried", "cooldown_cleared"]
OUTCOMES = ["rate_limit", "timeout", "unknown", "model_not_found", "auth", "billing"]


def generate(connection):
    kinds = "ARRAY[" + ",".join(f"'{k}'" for k in KINDS) + "]"
    outcomes = "ARRAY[" + ",".join(f"'{o}'" for o in OUTCOMES) + "]"
    with connection.cursor() as cursor:
        cursor.execute(f"""
            INSERT INTO sessions_app_event (at, kind, actor, reason, source, session_key, profile_id, provider_id,
                                            model, before, after)
            SELECT now() - (random() * interval '8 days'), k.kind, 'token:gateway',
                   CASE WHEN k.kind = 'override_set' THEN 'failover: anthropic:key' || (g % {PROFILES}) ||
                             ' reported rate_limit, cooling'
                        WHEN k.kind IN ('cooldown_started', 'disabled') THEN
                             ({outcomes})[1 + g % {len(OUTCOMES)}] || ': 429 from upstream'
                        ELSE '' END,
                   CASE WHEN k.kind = 'override_set' THEN (ARRAY['auto', 'auto', 'auto', 'user'])[1 + g % 4]
                        ELSE '' END,
                   'agent:main:telegram:dm:' || (g % 100000), 'anthropic:key' || ((g * 7) % {PROFILES}), 'anthropic',
                   '', '{{}}'::jsonb, '{{}}'::jsonb
            FROM generate_series(1, {EVENTS}) AS g
            CROSS JOIN LATERAL (SELECT ({kinds})[1 + (g * 31 + (g / 7)) % {len(KINDS)}] AS kind) AS k
        """)
        cursor.execute(f"""
            INSERT INTO sessions_app_event (at, kind, actor, reason, source, session_key, profile_id, provider_id,
                                            model, before, after)
            SELECT now() - interval '3 days' + (g * interval '1 millisecond'), 'override_dropped', 'token:ops',
                   'restart', 'auto', 'agent:main:telegram:dm:' || g, 'anthropic:key' || (g % {PROFILES}),
                   'anthropic', '', '{{}}'::jsonb, '{{}}'::jsonb
            FROM generate_series(1, {RESET_EVENTS}) AS g
        """)
        cursor.execute("VACUUM ANALYZE sessions_app_event")


def timed(build, now, window):
    figures = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        result = build(now, window)
        figures.append((time.perf_counter() - started) * 1000)
    if not result["charts"]:
        raise RuntimeError("the charts came back empty")
    return round(statistics.median(figures), 1), sum(chart["total"] for chart in result["charts"])


def main():
    admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{DB_NAME}"')
    os.environ["DATABASE_URL"] = f"{PG}/{DB_NAME}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from console.ui import charts

    figures = {"events": EVENTS, "reset_events": RESET_EVENTS, "profiles": PROFILES}
    try:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        generate(connection)
        print(f"generated {EVENTS} events and a bulk reset's {RESET_EVENTS} in {time.perf_counter() - started:.1f} s")
        now = timezone.now()
        for label in ("with_index", "without_index"):
            if label == "without_index":
                with connection.cursor() as cursor:
                    cursor.execute("DROP INDEX event_kind_at")
                    cursor.execute("ANALYZE sessions_app_event")
            for window in ("hour", "day", "week"):
                ms, counted = timed(charts.build, now, window)
                figures[f"{window}_{label}_ms"] = ms
                print(f"{label:14} last {window:5} {ms:9.1f} ms  ({counted} events charted)")
    finally:
        connection.close()
        if not KEEP_DB:
            admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
