"""System checks for authbroker's own settings (`manage.py check --deploy`)."""

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError

from profiles import crypto
from profiles.models import AuthProfile

DEV_SECRET_KEY_PREFIX = "dev-only-insecure-key"


@register(Tags.security)
def check_encryption_keys(app_configs, **kwargs):
    """Every configured key must be a Fernet key, or no secret can be stored or read."""
    errors = []
    for index, key in enumerate(settings.AUTHBROKER_ENCRYPTION_KEYS):
        try:
            Fernet(key)
        except ValueError:
            errors.append(Error(
                f"AUTHBROKER_ENCRYPTION_KEYS entry {index + 1} is not a Fernet key.",
                hint="Each key is 32 url-safe base64-encoded bytes; make one with "
                     "`python manage.py generate_encryption_key`.",
                id="authbroker.E001",
            ))
    return errors


@register(Tags.security, deploy=True)
def check_production_secrets(app_configs, **kwargs):
    warnings = []
    if not settings.AUTHBROKER_ENCRYPTION_KEYS:
        warnings.append(Warning(
            "AUTHBROKER_ENCRYPTION_KEYS is not set: secrets at rest are encrypted with a key derived "
            "from DJANGO_SECRET_KEY.",
            hint="Set AUTHBROKER_ENCRYPTION_KEYS to a key from `python manage.py generate_encryption_key`, "
                 "then run `python manage.py rotate_encryption_keys` (keep DJANGO_SECRET_KEY unchanged until "
                 "that has run).",
            id="authbroker.W001",
        ))
    if settings.SECRET_KEY.startswith(DEV_SECRET_KEY_PREFIX):
        warnings.append(Warning(
            "DJANGO_SECRET_KEY is not set: the built-in development key signs sessions and leases.",
            hint="Set DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) to a long random value.",
            id="authbroker.W002",
        ))
    if settings.AUTHBROKER_THROTTLE_RATE is None:
        warnings.append(Warning(
            "AUTHBROKER_THROTTLE_RATE is off: a runaway gateway can flood the service.",
            hint="Set a generous per-token rate such as 60000/min.",
            id="authbroker.W003",
        ))
    return warnings


@register(Tags.security)
def check_secrets_under_the_derived_key(app_configs, **kwargs):
    """Keys are configured, but some stored secrets are still readable only with the derived development key."""
    if not settings.AUTHBROKER_ENCRYPTION_KEYS:
        return []
    try:
        stored = list(AuthProfile.objects.exclude(secret_encrypted="", refresh_encrypted="")
                      .order_by("pk").values_list("pk", "secret_encrypted", "refresh_encrypted"))
    except DatabaseError:  # no database yet (before migrate) or none reachable: nothing to say
        return []
    pending = [pk for pk, secret, refresh in stored
               if crypto.needs_derived_key(secret) or crypto.needs_derived_key(refresh)]
    if not pending:
        return []
    return [Warning(
        f"{len(pending)} profile(s) hold secrets readable only with the key derived from DJANGO_SECRET_KEY "
        f"(first: {', '.join(pending[:5])}).",
        hint="Run `python manage.py rotate_encryption_keys`, and keep DJANGO_SECRET_KEY unchanged until it has.",
        id="authbroker.W004",
    )]
