"""Test-only WSGI entry point: `console.wsgi` with the application clock moved by a file's offset.

A test that runs authbroker in its own process cannot use `time_machine` on it
directly; this wrapper reads the offset (seconds, a float) from the file named
by `AUTHBROKER_TEST_CLOCK_FILE` at every request and serves the request under
`time_machine.travel(now + offset)`. Run it with one thread per worker (the
travel is process-wide). Never used outside tests.
"""

import os
from datetime import UTC, datetime, timedelta

import time_machine

from console.wsgi import application as served

CLOCK_FILE = os.environ["AUTHBROKER_TEST_CLOCK_FILE"]


def offset_seconds():
    try:
        with open(CLOCK_FILE) as handle:
            return float(handle.read().strip() or 0)
    except FileNotFoundError:
        return 0.0


def application(environ, start_response):
    offset = offset_seconds()
    if not offset:
        return served(environ, start_response)
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=offset), tick=True):
        return list(served(environ, start_response))
