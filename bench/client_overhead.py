"""What authbroker-client costs a gateway: `make bench-client` (docs/integration.md, "What it costs").

Starts a real authbroker (gunicorn, one worker, on loopback) on its own database
(PostgreSQL: BENCH_PG + BENCH_CLIENT_DB, default ab_client_bench, made afresh and
dropped at the end; BENCH_CLIENT_SQLITE=1 for a temporary SQLite file instead),
then measures, over one kept-alive connection each:

- the bare HTTP round trip: GET /api/ping, and POST /api/select / /api/report sent
  with httpx by hand (the floor any client pays);
- the same select and report through `authbroker_client.Client` (typed answers,
  breaker, bookkeeping for fail-open);
- the fail-open path: select and report answered by the client alone once the
  server is gone (breaker open), and the one call that finds it gone.

Each call is also measured outside the HTTP transport (the time not spent in
httpx's transport), so the client's own cost shows even when the server's time
on a busy machine is a thousand times larger.

Prints a table (microseconds per call) and, as its last line, one JSON object.
Not asserted; any error (a non-2xx answer, a fail-open answer where a real one
was expected, or the reverse) stops the run with a non-zero exit.
"""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from authbroker_client import Client  # noqa: E402

from tests.servers import Server, manage, request  # noqa: E402

N = int(os.environ.get("BENCH_CLIENT_N", "1000"))
WARMUP = 50


class BenchError(SystemExit):
    def __init__(self, message):
        super().__init__(f"bench/client_overhead.py: {message}")


def database():
    if os.environ.get("BENCH_CLIENT_SQLITE") == "1":
        path = Path(tempfile.mkstemp(prefix="authbroker-client-bench-", suffix=".sqlite3")[1])
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    server = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
    name = os.environ.get("BENCH_CLIENT_DB", "ab_client_bench")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{server}/{name}", drop


class TimingTransport(httpx.HTTPTransport):
    """The real transport, timed: what is left of a call outside it is the client's own work."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inside_ns = 0

    def handle_request(self, request):
        started = time.perf_counter_ns()
        try:
            response = super().handle_request(request)
            response.read()
            return response
        finally:
            self.inside_ns += time.perf_counter_ns() - started


def timed(fn, transport=None, n=N):
    for _ in range(WARMUP):
        fn()
    samples, own = [], []
    for _ in range(n):
        inside = transport.inside_ns if transport else 0
        started = time.perf_counter_ns()
        fn()
        total = time.perf_counter_ns() - started
        samples.append(total / 1000)
        if transport:
            own.append((total - (transport.inside_ns - inside)) / 1000)
    samples.sort()
    figure = {"mean_us": round(statistics.fmean(samples), 1), "p50_us": round(samples[len(samples) // 2], 1),
              "p99_us": round(samples[int(len(samples) * 0.99) - 1], 1), "n": n}
    if own:
        own.sort()
        figure["own_mean_us"] = round(statistics.fmean(own), 1)
        figure["own_p50_us"] = round(own[len(own) // 2], 1)
    return figure


def ok(response):
    if response.status_code >= 300:
        raise BenchError(f"{response.request.method} {response.request.url.path} answered "
                         f"{response.status_code}: {response.text[:200]}")
    return response.json()


def main():
    url, drop = database()
    server = None
    try:
        manage(url, "migrate", "--noinput")
        token = manage(url, "create_api_token", "client-bench", "--scope", "gateway", "--scope", "admin") \
            .strip().splitlines()[-1]
        server = Server(url, workers=1, AUTHBROKER_THROTTLE_RATE="off").wait_ready()
        for name in ("default", "backup1", "backup2"):
            status, answer, _ = request(server.url, "POST", "/api/profiles", {
                "id": f"anthropic:{name}", "kind": "api_key", "secret": f"sk-bench-{name}-0123456789abcdef"}, token)
            if status != 201:
                raise BenchError(f"creating anthropic:{name}: {status} {answer}")
        base = f"http://{server.url}"
        figures = measure(base, token, server)
    finally:
        if server is not None:
            server.stop()
        drop()
    print_table(figures)
    print(json.dumps(figures, sort_keys=True))


def measure(base, token, server):
    figures = {}
    headers = {"Authorization": f"Bearer {token}"}
    session = "agent:bench:1"
    transport = TimingTransport()
    with httpx.Client(base_url=base, headers=headers, timeout=5.0, transport=transport) as bare:
        figures["bare_ping"] = timed(lambda: ok(bare.get("/api/ping")), transport)
        figures["bare_select"] = timed(lambda: ok(bare.post("/api/select", json={
            "session_key": session, "provider": "anthropic"})), transport)

        leases = iter([ok(bare.post("/api/select", json={"session_key": session, "provider": "anthropic"}))
                       ["lease_id"] for _ in range(N + WARMUP)])
        figures["bare_report"] = timed(lambda: ok(bare.post("/api/report", json={
            "profile": "anthropic:default", "outcome": "success", "session_key": session,
            "lease_id": next(leases)})), transport)

    transport = TimingTransport()
    with Client(base, token, timeout=5.0, snapshot_max_age=None, transport=transport) as client:
        client.refresh_snapshot()

        def select():
            answer = client.select(session, "anthropic")
            if answer.fail_open:
                raise BenchError("select answered from the fail-open path while authbroker was up")
            return answer

        figures["client_select"] = timed(select, transport)
        selections = iter([select() for _ in range(N + WARMUP)])

        def report():
            choice = next(selections)
            result = client.report(choice.profile, "success", session_key=session, lease_id=choice.lease_id)
            if result.buffered or result.duplicate:
                raise BenchError(f"report not applied: {result}")

        figures["client_report"] = timed(report, transport)

        # The fail-open path: authbroker goes away; the first call finds out, the rest answer alone.
        server.stop()
        started = time.perf_counter_ns()
        first = client.select(session, "anthropic")
        figures["fail_open_first_call_us"] = round((time.perf_counter_ns() - started) / 1000, 1)
        if not first.fail_open or client.breaker.state != "open":
            raise BenchError("the first call after the server stopped did not fail open")

        def open_select():
            if not client.select(session, "anthropic").fail_open:
                raise BenchError("select with the breaker open did not fail open")

        figures["fail_open_select"] = timed(open_select)
        client.state.buffer_size = N + WARMUP + 10

        def open_report():
            if not client.report("anthropic:default", "success", session_key=session).buffered:
                raise BenchError("report with the breaker open was not buffered")

        figures["fail_open_report"] = timed(open_report)
    # What the client adds over hand-written httpx calls, both measured outside the transport (so the
    # server's own time, and its noise on a shared machine, cancel out).
    figures["client_select_overhead_us"] = round(figures["client_select"]["own_mean_us"]
                                                 - figures["bare_select"]["own_mean_us"], 1)
    figures["client_report_overhead_us"] = round(figures["client_report"]["own_mean_us"]
                                                 - figures["bare_report"]["own_mean_us"], 1)
    return figures


def print_table(figures):
    print(f"{'call':<20}{'mean µs':>10}{'p50 µs':>10}{'p99 µs':>10}{'outside HTTP, mean':>20}{'p50':>8}")
    for name in ("bare_ping", "bare_select", "client_select", "bare_report", "client_report", "fail_open_select",
                 "fail_open_report"):
        row = figures[name]
        print(f"{name:<20}{row['mean_us']:>10}{row['p50_us']:>10}{row['p99_us']:>10}"
              f"{row.get('own_mean_us', row['mean_us']):>20}{row.get('own_p50_us', row['p50_us']):>8}")
    print(f"client overhead per select: {figures['client_select_overhead_us']} µs, "
          f"per report: {figures['client_report_overhead_us']} µs; "
          f"first call to a stopped server: {figures['fail_open_first_call_us']} µs")


if __name__ == "__main__":
    main()
