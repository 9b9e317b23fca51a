"""Write authbroker's profiles (and sessions) back in openclaw's store shapes (DESIGN §6)."""

from django.core.management.base import BaseCommand, CommandError

from profiles import crypto
from sessions_app import openclaw


class Command(BaseCommand):
    help = (
        "Export profiles in openclaw's split JSON form: auth-profiles.json (credentials, or their references) and "
        "auth-state.json (order, lastGood, usageStats). --sessions writes a fresh sessions.json; --merge-sessions "
        "merges session ids and pins into an existing one, keeping openclaw's other fields. Credential files are "
        "written with mode 0600."
    )

    def add_arguments(self, parser):
        parser.add_argument("--auth-profiles", required=True, metavar="OUT", help="where to write auth-profiles.json")
        parser.add_argument("--auth-state", metavar="OUT",
                            help="where to write auth-state.json (default: beside --auth-profiles)")
        parser.add_argument("--single-file", action="store_true",
                            help="write everything into auth-profiles.json, as openclaw 2026.4.5 and earlier read it")
        parser.add_argument("--sessions", metavar="OUT", help="where to write a fresh sessions.json")
        parser.add_argument("--merge-sessions", metavar="PATH", help="an existing sessions.json to merge pins into")

    def handle(self, *args, auth_profiles, auth_state=None, single_file=False, sessions=None, merge_sessions=None,
               **options):
        if single_file and auth_state:
            raise CommandError("--single-file writes no auth-state.json; leave out --auth-state")
        try:
            summary = openclaw.export_files(auth_profiles, auth_state_path=auth_state, single_file=single_file,
                                            sessions_path=sessions, merge_sessions_path=merge_sessions)
        except openclaw.StoreError as exc:
            raise CommandError(f"cannot merge into {exc}; nothing was written") from None
        except crypto.SecretUnreadable as exc:
            raise CommandError(f"cannot export: {exc} (check AUTHBROKER_ENCRYPTION_KEYS)") from None
        except OSError as exc:
            raise CommandError(f"cannot write {exc.filename or 'the export'}: {exc.strerror or exc}") from None
        self.stdout.write(f"Wrote {summary['profiles']} profiles to {auth_profiles} (mode 0600).")
        if "auth_state" in summary:
            self.stdout.write(f"Wrote order, lastGood and usageStats to {summary['auth_state']} (mode 0600).")
        if sessions:
            self.stdout.write(f"Wrote {summary['sessions']} sessions to {sessions}.")
        if merge_sessions:
            updated, added, total = summary["merged"]
            self.stdout.write(f"Merged into {merge_sessions}: {updated} sessions updated, {added} added, "
                              f"{total} in the file.")
