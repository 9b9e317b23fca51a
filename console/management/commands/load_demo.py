"""Demo data for `make run`: three anthropic keys, a session stranded by an old failover, a staff user, tokens."""

import hashlib
import hmac
from base64 import urlsafe_b64encode
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from console.models import ApiToken, hash_token
from profiles import services as profile_services
from profiles.models import AuthProfile
from sessions_app import services as session_services
from sessions_app.models import Session

DEMO_PROFILES = [
    ("anthropic:default", "token", "sk-ant-oat01-demo-default-000000000000"),
    ("anthropic:backup1", "token", "sk-ant-oat01-demo-backup1-111111111111"),
    ("anthropic:backup2", "api_key", "sk-ant-api03-demo-backup2-222222222222"),
    ("openai:work", "api_key", "sk-proj-demo-work-333333333333"),
]
STRANDED_SESSION = "agent:main:telegram:dm:42"
STAFF_USER, STAFF_PASSWORD = "operator", "authbroker-demo"
TOKEN_NAME = "demo-gateway"  # scope gateway only: what a gateway holds
OPERATOR_TOKEN_NAME = "demo-operator"  # gateway and admin: for trying the profile and provider endpoints


def demo_token_value(name):
    """The demo's token NAME, derived from the secret key: the same on every `make run` of this checkout, so a
    saved `TOKEN=` keeps working, and different wherever DJANGO_SECRET_KEY differs."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"authbroker demo token {name}".encode(), hashlib.sha256).digest()
    return "ab_" + urlsafe_b64encode(digest).decode().rstrip("=")


def ensure_demo_token(name, scopes):
    """The demo token NAME with exactly SCOPES; an older token of that name (random, or other scopes) is replaced."""
    raw = demo_token_value(name)
    existing = ApiToken.objects.filter(name=name).first()
    if existing and (existing.token_hash != hash_token(raw) or existing.scopes != sorted(scopes)
                     or existing.revoked_at is not None):
        existing.delete()
        existing = None
    if existing is None:
        ApiToken.objects.create(name=name, token_hash=hash_token(raw), prefix=raw[:8], scopes=sorted(scopes))
    return raw


class Command(BaseCommand):
    help = "Load demo data (idempotent) and print a staff login, the operator token and the gateway token."

    def handle(self, **options):
        now = timezone.now()
        with transaction.atomic():
            for profile_id, kind, secret in DEMO_PROFILES:
                if not AuthProfile.objects.filter(pk=profile_id).exists():
                    profile_services.create_profile(profile_id, kind, secret, now, "demo")
            if not Session.objects.filter(session_key=STRANDED_SESSION).exists():
                self._replay_failover(now)
            # The demo's operator may use everything the console links to, the admin included.
            user, _ = get_user_model().objects.get_or_create(username=STAFF_USER)
            user.is_staff = user.is_superuser = True
            user.set_password(STAFF_PASSWORD)
            user.save()
            operator_raw = ensure_demo_token(OPERATOR_TOKEN_NAME, ["gateway", "admin"])
            raw = ensure_demo_token(TOKEN_NAME, ["gateway"])
        self.stdout.write(f"Staff login: {STAFF_USER} / {STAFF_PASSWORD}  (console at /console/, admin at /admin/)")
        self.stdout.write(f"Demo session stranded on a backup by an old failover: {STRANDED_SESSION}")
        self.stdout.write(f"Operator token (gateway + admin scopes, for /api/profiles and /api/providers): "
                          f"{operator_raw}")
        self.stdout.write(f"Gateway token: {raw}")

    def _replay_failover(self, now):
        """Twenty minutes ago anthropic:default hit a rate limit and the session failed over to backup1.

        The one-minute cooldown has long ended; a new session must get the default key again.
        """
        earlier = now - timedelta(minutes=20)
        session_services.select_profile(session_key=STRANDED_SESSION, provider="anthropic", now=earlier,
                                        actor="demo")
        session_services.report_outcome(profile="anthropic:default", outcome="rate_limit", now=earlier,
                                        actor="demo", session_key=STRANDED_SESSION, detail="429 from upstream")
