"""`make run`: the development server with a Celery worker and beat alongside, one Ctrl-C stops both.

The worker runs as a child process (`celery -A console worker --beat --pool
solo`) on the broker in `CELERY_BROKER_URL`, by default kombu's filesystem
transport under `var/broker`, so nothing else has to be running. The web
server never publishes to the broker, so it keeps answering if the worker or
the broker is gone.
"""

import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

WORKER = ["-m", "celery", "-A", "console", "worker", "--beat", "--pool", "solo", "--loglevel", "INFO",
          "--without-gossip", "--without-mingle", "--without-heartbeat"]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Serve on ADDRPORT (default 127.0.0.1:8000) with the scheduler alongside; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--stop-timeout", type=float, default=10.0,
                            help="seconds to let the worker finish its task before it is killed")

    def handle(self, addrport, stop_timeout, **options):
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(key)
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)
        # Ctrl-C (even when started from a script that ignores it) and SIGTERM stop the server the same way,
        # and the `finally` below then stops the worker.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        worker = subprocess.Popen([sys.executable, *WORKER], cwd=settings.BASE_DIR)
        self.stderr.write(f"Scheduler: celery worker with beat, pid {worker.pid}")
        try:
            call_command("runserver", addrport, use_reloader=False)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(worker, stop_timeout)

    def _stop(self, worker, timeout):
        """Ctrl-C reached the worker too (same process group); otherwise ask it to stop, then insist."""
        try:
            worker.wait(timeout=1)
        except subprocess.TimeoutExpired:
            worker.terminate()
            try:
                worker.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        self.stderr.write(f"Scheduler stopped (exit {worker.returncode}).")
