"""Gunicorn hooks the bench adds to `make serve`'s command line (`-c bench/gunicorn_conf.py`).

They count, per worker, the SQL statements the application sends during each
request (Django's `execute_wrapper`: the same statements `CaptureQueriesContext`
sees in the tests, so BEGIN/COMMIT and the connection health check are not
counted), keyed by the `X-Bench-Phase` header the wrk script sends, and how many
requests took the locked path (sent a `SELECT … FOR UPDATE`). On exit each worker
writes its counts and its peak RSS to `$BENCH_STATS_DIR`.
Cost: one Python call and one substring test per statement; nothing else of the server changes.
"""

import json
import os
import resource

_stats = {}  # phase -> [requests, statements, requests that locked a row]
_current = [None]
_locked = [False]


def _count(execute, sql, params, many, context):
    if _current[0] is not None:
        _current[0][1] += 1
        if "FOR UPDATE" in sql:
            _locked[0] = True
    return execute(sql, params, many, context)


def post_worker_init(worker):
    from django.db import connections

    connections["default"].execute_wrappers.append(_count)


def pre_request(worker, req):
    phase = "other"
    for name, value in req.headers:
        if name == "X-BENCH-PHASE":
            phase = value
            break
    _current[0] = _stats.setdefault(phase, [0, 0, 0])
    _locked[0] = False


def post_request(worker, req, environ, resp):
    if _current[0] is not None:
        _current[0][0] += 1
        _current[0][2] += _locked[0]
    _current[0] = None


def worker_exit(server, worker):
    directory = os.environ.get("BENCH_STATS_DIR")
    if not directory:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.path.join(directory, f"worker-{os.getpid()}.json"), "w") as out:
        json.dump({"pid": os.getpid(), "max_rss_kb": usage.ru_maxrss, "phases": _stats}, out)
