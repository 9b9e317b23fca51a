"""Providers, auth profiles (credentials), their usage stats, and the audit log.

The rules that read these rows live in `profiles.rules` as plain functions;
the state changes live in `profiles.services`, one transaction each.
"""

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from profiles import crypto

DEFAULT_LADDER = [60, 300, 1500, 3600]


def default_ladder():
    return list(DEFAULT_LADDER)


class Strategy(models.TextChoices):
    ORDERED = "ordered", "ordered"
    ROUND_ROBIN = "round_robin", "round robin"


class Kind(models.TextChoices):
    API_KEY = "api_key", "API key"
    TOKEN = "token", "token"
    OAUTH = "oauth", "OAuth"


class Provider(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.ORDERED)
    cooldown_ladder_seconds = models.JSONField(default=default_ladder)
    track_failures = models.BooleanField(default=True)
    last_good = models.ForeignKey(
        "profiles.AuthProfile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.id


class ProviderAlias(models.Model):
    """Another spelling of a provider id (`z.ai` for `zai`), resolved everywhere an id is accepted."""

    alias = models.CharField(primary_key=True, max_length=64)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="aliases")

    class Meta:
        ordering = ["alias"]
        verbose_name_plural = "provider aliases"

    def __str__(self):
        return f"{self.alias} → {self.provider_id}"


class AuthProfile(models.Model):
    id = models.CharField(primary_key=True, max_length=255)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="profiles")
    name = models.CharField(max_length=190)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    secret_encrypted = models.TextField(blank=True, default="", editable=False)
    refresh_encrypted = models.TextField(blank=True, default="", editable=False)
    secret_mask = models.CharField(max_length=32, blank=True, default="", editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    position = models.PositiveIntegerField(default=0, validators=[MinValueValidator(0)])
    enabled = models.BooleanField(default=True)
    # api_key/token: the credential's end (unavailable from then on); oauth: the access token's, only shown.
    expires_at = models.DateTimeField(null=True, blank=True)

    # Usage stats (DESIGN §1). Changed only through profiles.services.
    error_count = models.PositiveIntegerField(default=0)
    failure_counts = models.JSONField(default=dict, blank=True)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    cooldown_reason = models.CharField(max_length=32, blank=True, default="")
    disabled_until = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=32, blank=True, default="")
    last_used = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider_id", "position", "id"]
        indexes = [models.Index(fields=["provider", "position"], name="profile_provider_position")]
        constraints = [
            models.UniqueConstraint(fields=["provider", "name"], name="profile_unique_name_per_provider"),
            models.CheckConstraint(condition=Q(error_count__gte=0), name="profile_error_count_non_negative"),
        ]

    def __str__(self):
        return self.id

    # Secrets are write-only: set through here, read only by code that must hand them out.
    def set_secret(self, secret, refresh=None):
        """Store a new secret; the OAuth refresh token stays unless a new one (or "" to remove it) is given."""
        secret = crypto.Secret(secret or "")  # its repr is the mask, in any traceback below
        self.secret_encrypted = crypto.encrypt(secret) if secret else ""
        if refresh is not None:
            refresh = crypto.Secret(refresh)
            self.refresh_encrypted = crypto.encrypt(refresh) if refresh else ""
        self.secret_mask = crypto.mask(secret)

    def reveal_secret(self):
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""

    def reveal_refresh(self):
        return crypto.decrypt(self.refresh_encrypted) if self.refresh_encrypted else ""


class ModelCooldown(models.Model):
    """A cooldown of one (profile, model) pair: other models of the profile stay available."""

    profile = models.ForeignKey(AuthProfile, on_delete=models.CASCADE, related_name="model_cooldowns")
    model = models.CharField(max_length=190)
    error_count = models.PositiveIntegerField(default=0)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    cooldown_reason = models.CharField(max_length=32, blank=True, default="")
    last_failure_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["profile_id", "model"]
        constraints = [
            models.UniqueConstraint(fields=["profile", "model"], name="model_cooldown_unique_pair"),
        ]
        indexes = [models.Index(fields=["cooldown_until"], name="model_cooldown_until")]

    def __str__(self):
        return f"{self.profile_id} / {self.model}"


# ---------------------------------------------------------------- the audit log
# At the bottom of the layers because both write it: profile changes here, session changes above.


class EventKind(models.TextChoices):
    OVERRIDE_SET = "override_set"
    OVERRIDE_CARRIED = "override_carried"
    OVERRIDE_DROPPED = "override_dropped"
    OVERRIDE_CLEARED = "override_cleared"
    SESSION_RESET = "session_reset"
    COOLDOWN_STARTED = "cooldown_started"
    COOLDOWN_EXTENDED = "cooldown_extended"
    COOLDOWN_EXPIRED = "cooldown_expired"
    COOLDOWN_CLEARED = "cooldown_cleared"
    DISABLED = "disabled"
    DISABLE_EXPIRED = "disable_expired"
    ENABLED = "enabled"
    PROFILE_CREATED = "profile_created"
    PROFILE_CHANGED = "profile_changed"
    PROFILE_DELETED = "profile_deleted"
    PROVIDER_CHANGED = "provider_changed"


class EventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("events are append-only")

    def delete(self):
        raise TypeError("events are append-only; use profiles.queries.purge_events for retention")


class Event(models.Model):
    """An append-only audit record. Names sessions and profiles by id so history outlives them."""

    at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    actor = models.CharField(max_length=150)
    reason = models.CharField(max_length=500, blank=True, default="")
    source = models.CharField(max_length=16, blank=True, default="")
    session_key = models.CharField(max_length=255, blank=True, default="")
    profile_id = models.CharField(max_length=255, blank=True, default="")
    provider_id = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=190, blank=True, default="")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        db_table = "sessions_app_event"  # where the log began; moved here without touching the table
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["session_key", "-id"], name="event_session"),
            models.Index(fields=["profile_id", "-id"], name="event_profile"),
            models.Index(fields=["kind", "-id"], name="event_kind"),
            # The console's charts: one range scan per kind over a window, answered from the index alone on
            # PostgreSQL (console/ui/queries.py chart_rows; bench/charts.py measures it).
            models.Index(fields=["kind", "at"], include=["source", "profile_id", "reason"], name="event_kind_at"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("events are append-only")
