from django.core.management.base import BaseCommand, CommandError

from console.models import SCOPES, ApiToken


class Command(BaseCommand):
    help = "Create an API token. Prints the token alone on the last line; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scope", action="append", choices=SCOPES, dest="scopes",
                            help="gateway (default), admin, credentials; repeat for several")

    def handle(self, name, scopes, **options):
        name = name.strip()
        if not name or len(name) > 150:
            raise CommandError("name must be 1–150 characters")
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(f"a token named {name!r} already exists; revoke it or pick another name")
        token, raw = ApiToken.issue(name, scopes or ["gateway"])
        self.stderr.write(f"Created token {token.name!r} with scopes {', '.join(token.scopes)}; it is shown once.")
        self.stdout.write(raw)
