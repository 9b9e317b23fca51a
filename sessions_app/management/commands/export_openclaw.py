"""Write authbroker's profiles (and sessions) back in openclaw's file shapes (DESIGN §6)."""

from django.core.management.base import BaseCommand, CommandError

from profiles import crypto
from sessions_app import openclaw


class Command(BaseCommand):
    help = (
        "Export profiles to an openclaw auth-profiles.json and, optionally, sessions to a sessions.json. "
        "The auth file holds the decrypted secrets (it is a credential store): it is written with mode 0600."
    )

    def add_arguments(self, parser):
        parser.add_argument("--auth-profiles", required=True, metavar="OUT", help="where to write auth-profiles.json")
        parser.add_argument("--sessions", metavar="OUT", help="where to write sessions.json")

    def handle(self, *args, auth_profiles, sessions=None, **options):
        try:
            profiles, session_count = openclaw.export_files(auth_profiles, sessions)
        except crypto.SecretUnreadable as exc:
            raise CommandError(f"cannot export: {exc} (check AUTHBROKER_ENCRYPTION_KEYS)") from None
        except OSError as exc:
            raise CommandError(f"cannot write {exc.filename or 'the export'}: {exc.strerror or exc}") from None
        self.stdout.write(f"Wrote {profiles} profiles to {auth_profiles} (mode 0600).")
        if sessions:
            self.stdout.write(f"Wrote {session_count} sessions to {sessions}.")
