"""authbroker for the openclaw end-to-end test, with a clock the test can move.

Serves console.wsgi (the real service) on 127.0.0.1:PORT, one request at a time. Each request runs
under time-machine at the real time plus an offset read from CLOCK_FILE (seconds, default 0), so
the test moves authbroker's application clock past a cooldown instead of sleeping through it.
Only the service's clock moves: openclaw and the fake upstream keep real time.

Usage: DATABASE_URL=... CLOCK_FILE=... python authbroker_clock.py PORT   (from the repository root)
"""

import os
import sys
import time
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import time_machine

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from console.wsgi import application  # noqa: E402

CLOCK_FILE = Path(os.environ["CLOCK_FILE"])


def offset_seconds():
    try:
        return float(CLOCK_FILE.read_text().strip() or 0)
    except FileNotFoundError:
        return 0.0


def app(environ, start_response):
    with time_machine.travel(time.time() + offset_seconds(), tick=True):
        return list(application(environ, start_response))


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


if __name__ == "__main__":
    server = make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=QuietHandler)
    print(f"authbroker (test clock) on 127.0.0.1:{sys.argv[1]}", flush=True)
    server.serve_forever()
