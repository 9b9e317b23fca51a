"""Import openclaw's auth-profiles.json (and sessions.json) into authbroker (DESIGN §6)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sessions_app import openclaw


class Command(BaseCommand):
    help = (
        "Import openclaw's auth-profiles.json and, optionally, sessions.json. Idempotent: a second run with the "
        "same files changes nothing. A file that does not parse imports nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--auth-profiles", required=True, metavar="PATH", help="openclaw's auth-profiles.json")
        parser.add_argument("--sessions", metavar="PATH", help="openclaw's sessions.json")

    def handle(self, *args, auth_profiles, sessions=None, **options):
        try:
            report = openclaw.import_files(auth_profiles, sessions, now=timezone.now())
        except openclaw.FileProblem as exc:
            raise CommandError(f"cannot import {exc}; nothing was imported") from None
        for line in report.lines():
            self.stdout.write(line)
