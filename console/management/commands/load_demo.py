"""Demo data for `make run`: three anthropic keys, a session stranded by an old failover, a staff user, a token."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from console.models import ApiToken
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
TOKEN_NAME = "demo-gateway"


class Command(BaseCommand):
    help = "Load demo data (idempotent) and print a staff login and a fresh gateway token."

    def handle(self, **options):
        now = timezone.now()
        with transaction.atomic():
            for profile_id, kind, secret in DEMO_PROFILES:
                if not AuthProfile.objects.filter(pk=profile_id).exists():
                    profile_services.create_profile(profile_id, kind, secret, now, "demo")
            if not Session.objects.filter(session_key=STRANDED_SESSION).exists():
                self._replay_failover(now)
            user, _ = get_user_model().objects.get_or_create(username=STAFF_USER, defaults={"is_staff": True})
            user.is_staff = True
            user.set_password(STAFF_PASSWORD)
            user.save()
            ApiToken.objects.filter(name=TOKEN_NAME).delete()
            _, raw = ApiToken.issue(TOKEN_NAME, ["gateway", "admin"])
        self.stdout.write(f"Staff login: {STAFF_USER} / {STAFF_PASSWORD}  (console at /console/, admin at /admin/)")
        self.stdout.write(f"Demo session stranded on a backup by an old failover: {STRANDED_SESSION}")
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
