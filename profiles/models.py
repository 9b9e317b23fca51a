"""Providers, auth profiles (credentials) and their usage stats.

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
