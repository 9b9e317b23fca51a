from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from console.models import ApiToken


class Command(BaseCommand):
    help = "Revoke an API token by name; requests with it are refused from now on."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, name, **options):
        revoked = ApiToken.objects.filter(name=name, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if not revoked:
            raise CommandError(f"no active token named {name!r}")
        self.stdout.write(f"Revoked token {name!r}")
