"""Re-encrypt every stored secret with the newest key of AUTHBROKER_ENCRYPTION_KEYS.

Rotation, step by step (docs/operations.md): put a new key first in the ring
and keep the old ones after it, deploy, run this command, then drop the old
keys. Each profile is re-encrypted under its own row lock in its own short
transaction, so the command can run while the service answers, and running
it twice is harmless.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from profiles import crypto
from profiles.models import AuthProfile


def reencrypt_profile(profile_id):
    """Re-encrypt one profile's secrets with the newest key; True when a stored value changed."""
    with transaction.atomic():
        profile = (AuthProfile.objects.select_for_update(no_key=True)
                   .only("id", "secret_encrypted", "refresh_encrypted").filter(pk=profile_id).first())
        if profile is None:
            return False
        changes = {}
        for column in ("secret_encrypted", "refresh_encrypted"):
            stored = getattr(profile, column)
            if stored:
                changes[column] = crypto.rotate(stored)
        if changes:
            # update(), not save(): re-encryption is not a change of the profile (updated_at stays).
            AuthProfile.objects.filter(pk=profile_id).update(**changes)
        return bool(changes)


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the newest key in AUTHBROKER_ENCRYPTION_KEYS."

    def handle(self, **options):
        done, unreadable = 0, []
        for profile_id in AuthProfile.objects.order_by("pk").values_list("pk", flat=True).iterator():
            try:
                if reencrypt_profile(profile_id):
                    done += 1
            except crypto.SecretUnreadable:
                unreadable.append(profile_id)
        self.stdout.write(f"Re-encrypted {done} profile(s) with the newest key.")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} profile(s) could not be read with any configured key "
                f"(keep the old key in AUTHBROKER_ENCRYPTION_KEYS until this succeeds): {', '.join(unreadable)}"
            )
