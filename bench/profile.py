"""Where a request's time goes: each bench endpoint called in-process through Django's WSGI handler.

    .venv/bin/python bench/profile.py                      # wall and CPU ms per request, per endpoint
    .venv/bin/python bench/profile.py select_continue      # the same, then a pyinstrument tree of it

No HTTP server and no load generator: the figures are one process's own cost
(CPU time is what the Python process itself used, so it moves less than wall
time when the machine is shared). Uses its own database (BENCH_DB, default
`authbroker_bench_profile`, dropped at the end) with BENCH_SESSIONS sessions
(default 10,000) and BENCH_PROFILES profiles (1,000). Needs pyinstrument for the
tree (`pip install -e ".[bench]"`). BENCH_PROFILE_ONLY=ping,select_new limits the endpoints and
BENCH_PROFILE_REQUESTS (300) sets the count.
"""

import io
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("BENCH_DB", "authbroker_bench_profile")
os.environ.setdefault("BENCH_SESSIONS", "10000")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import data  # noqa: E402
from bench import run as bench  # noqa: E402

N = int(os.environ.get("BENCH_PROFILE_REQUESTS", "300"))


def main():
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application
    from django.utils import timezone

    from sessions_app import leases

    bench.create_database()
    try:
        token, _ = bench.generate(bench.SESSIONS, bench.PROFILES)
        app = get_wsgi_application()
        sessions = bench.SESSIONS
        counter = {"new": 0, "fail": 0}

        def call(method, path, body=None):
            raw = json.dumps(body).encode() if body is not None else b""
            environ = {
                "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http",
                "HTTP_AUTHORIZATION": f"Bearer {token}", "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw), "wsgi.errors": sys.stderr,
            }
            status = []
            out = b"".join(app(environ, lambda s, h, *a: status.append(s)))
            if not status[0].startswith("200"):
                raise SystemExit(f"{path}: {status[0]} {out[:300]!r}")
            return out

        def plain():
            while True:
                i = random.randrange(sessions)
                if data.is_plain(i):
                    return i

        def report(i, outcome):
            key, profile = data.session_key(i), data.first_profile(i % data.PROVIDERS)
            return call("POST", "/api/report", {"profile": profile, "outcome": outcome, "session_key": key,
                                                "lease_id": leases.issue(profile, key, timezone.now())})

        def ping():
            call("GET", "/api/ping")

        def select_continue():
            i = random.randrange(sessions)
            while data.session_kind(i) == 18:
                i = random.randrange(sessions)
            call("POST", "/api/select", {"session_key": data.session_key(i), "provider": data.provider_of(i)})

        def select_new():
            counter["new"] += 1
            call("POST", "/api/select", {"session_key": f"profile:new:{counter['new']}",
                                         "provider": f"prov{counter['new'] % data.PROVIDERS}"})

        def report_success():
            report(plain(), "success")

        def report_failure():
            while True:  # each call fails over a session that is still on its provider's first profile
                counter["fail"] += 1
                if data.is_plain(counter["fail"]):
                    break
            report(counter["fail"], "rate_limit")

        endpoints = {f.__name__: f for f in (ping, select_continue, select_new, report_success, report_failure)}
        only = [n for n in os.environ.get("BENCH_PROFILE_ONLY", "").split(",") if n] or list(endpoints)
        for name, fn in ((n, endpoints[n]) for n in only):
            for _ in range(20):
                fn()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(N):
                fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{name:<16} wall {wall / N * 1000:6.2f} ms   cpu {cpu / N * 1000:6.2f} ms   ({N} requests)")
        for name in sys.argv[1:]:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
            for _ in range(N):
                endpoints[name]()
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False))
    finally:
        from django.db import connections

        connections.close_all()
        bench.drop_database()


if __name__ == "__main__":
    main()
