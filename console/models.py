"""API tokens for gateways and automation. Only a hash of each token is stored."""

import hashlib
import secrets

from django.db import models

SCOPES = ("gateway", "admin", "credentials")


def hash_token(raw):
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    name = models.CharField(max_length=150, unique=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a token")
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @classmethod
    def issue(cls, name, scopes):
        """Create a token and return (row, raw token); the raw token is never stored."""
        raw = "ab_" + secrets.token_urlsafe(32)
        token = cls.objects.create(name=name, token_hash=hash_token(raw), prefix=raw[:8], scopes=sorted(set(scopes)))
        return token, raw

    def has_scope(self, scope):
        return scope in self.scopes


class ChartHour(models.Model):
    """One closed hour of the audit log whose chart counts are rolled up in `ChartCount` (console/ui/charts.py)."""

    hour = models.DateTimeField(primary_key=True)
    rolled_at = models.DateTimeField()

    class Meta:
        ordering = ["-hour"]

    def __str__(self):
        return f"{self.hour:%Y-%m-%d %H:00}"


class ChartCount(models.Model):
    """How many chart events of one kind and source one closed hour holds, by the profile they count
    against (`axis` subject) or by outcome (`axis` outcome): a day or a week is read from these, not from
    every event. Derived data: rebuilt from the events when missing, never edited."""

    hour = models.ForeignKey(ChartHour, on_delete=models.CASCADE, related_name="counts", db_column="hour")
    axis = models.CharField(max_length=8)
    kind = models.CharField(max_length=32)
    source = models.CharField(max_length=16, blank=True, default="")
    label = models.CharField(max_length=255, blank=True, default="")
    n = models.PositiveIntegerField()

    class Meta:
        ordering = ["hour", "axis", "kind", "source", "label"]

    def __str__(self):
        return f"{self.hour_id} {self.axis} {self.kind} {self.label}: {self.n}"
