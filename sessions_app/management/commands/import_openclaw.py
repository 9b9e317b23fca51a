"""Import openclaw's auth profiles, their state and its session pins into authbroker (DESIGN §6)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sessions_app import openclaw


class Command(BaseCommand):
    help = (
        "Import an openclaw state directory (--state-dir: every agent and the shared store, in any store form), "
        "or single files (--auth-profiles [--auth-state] [--sessions]). Idempotent: a second run with the same "
        "stores changes nothing. A store that does not read imports nothing."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--state-dir", metavar="DIR",
                            help="openclaw's state directory (~/.openclaw, $OPENCLAW_STATE_DIR)")
        source.add_argument("--auth-profiles", metavar="PATH", help="an auth-profiles.json")
        parser.add_argument("--auth-state", metavar="PATH",
                            help="the auth-state.json of the split form (default: the one beside --auth-profiles, "
                                 "if there is one)")
        parser.add_argument("--sessions", metavar="PATH", help="a sessions.json (with --auth-profiles)")

    def handle(self, *args, state_dir=None, auth_profiles=None, auth_state=None, sessions=None, **options):
        if state_dir and (auth_state or sessions):
            raise CommandError("--auth-state and --sessions go with --auth-profiles; --state-dir finds every file")
        now = timezone.now()
        try:
            if state_dir:
                report = openclaw.import_state_dir(state_dir, now=now)
            else:
                if auth_state is None:
                    beside = openclaw.importer.sibling_state_file(auth_profiles)
                    if beside is not None:
                        auth_state = str(beside)
                        self.stderr.write(f"reading {auth_state} beside it (the split form)")
                report = openclaw.import_files(auth_profiles, sessions, now=now, auth_state_path=auth_state)
        except openclaw.StoreError as exc:
            raise CommandError(f"cannot import {exc}; nothing was imported") from None
        for line in report.warnings:
            self.stderr.write(f"warning: {line}")
        for line in report.lines():
            self.stdout.write(line)
