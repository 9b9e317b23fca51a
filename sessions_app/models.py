"""Sessions with their override and its provenance, and lease reports.

The audit log (`Event`) lives in `profiles.models`: both layers write it.
"""

import uuid

from django.db import models
from django.db.models import Q


class OverrideSource(models.TextChoices):
    AUTO = "auto", "auto (failover)"
    USER = "user", "user"


class Session(models.Model):
    session_key = models.CharField(max_length=255, unique=True)
    session_id = models.UUIDField(default=uuid.uuid4)
    provider = models.ForeignKey(
        "profiles.Provider", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_profile = models.ForeignKey(
        "profiles.AuthProfile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # The override and its provenance: which profile, set by whom, when and why.
    override_profile = models.ForeignKey(
        "profiles.AuthProfile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    override_source = models.CharField(max_length=8, choices=OverrideSource.choices, blank=True, default="")
    override_set_at = models.DateTimeField(null=True, blank=True)
    override_set_by = models.CharField(max_length=150, blank=True, default="")
    override_reason = models.CharField(max_length=500, blank=True, default="")
    # openclaw's compaction stamp, kept for legacy source inference and export.
    override_compaction_count = models.PositiveIntegerField(null=True, blank=True)

    # Set by a bulk reset: the next select starts a new session (drops auto, carries user).
    boundary_pending = models.BooleanField(default=False)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["override_profile", "override_source"], name="session_override"),
            models.Index(fields=["-updated_at"], name="session_updated"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(override_profile__isnull=True) & Q(override_source=""))
                | (Q(override_profile__isnull=False) & Q(override_source__in=["auto", "user"])),
                name="session_override_has_source",
            ),
        ]

    def __str__(self):
        return self.session_key


class Lease(models.Model):
    """The first report made on a lease, kept so retries get the same answer.

    `select` hands out signed lease ids without writing anything; a row exists
    only once a report claims the lease, and the primary key makes that claim
    happen at most once.
    """

    lease_id = models.CharField(primary_key=True, max_length=64)
    session_key = models.CharField(max_length=255, blank=True, default="")
    profile_id = models.CharField(max_length=255)
    issued_at = models.DateTimeField()
    reported_at = models.DateTimeField()
    outcome = models.CharField(max_length=32)
    answer = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["reported_at"], name="lease_reported_at")]

    def __str__(self):
        return self.lease_id
