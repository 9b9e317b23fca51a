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
