"""Sessions with their override and its provenance, and lease reports.

The audit log (`Event`) lives in `profiles.models`: both layers write it.
"""

import uuid

from django.db import models
from django.db.models import Q

from profiles.events import new_event
from profiles.models import EventKind


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

    # The one place a pin changes: every path (select, report, reset, overrides, profile deletion, the
    # importer) calls these, and each returns the event that records the change.

    def pin_state(self):
        """The pin and its provenance as JSON (events' before/after, the API's `override`), or None."""
        if not self.override_profile_id:
            return None
        return {
            "profile": self.override_profile_id,
            "source": self.override_source,
            "set_at": self.override_set_at.isoformat() if self.override_set_at else None,
            "set_by": self.override_set_by,
            "reason": self.override_reason,
        }

    def set_pin(self, profile, source, now, actor, reason, kind=EventKind.OVERRIDE_SET):
        """Pin the session to `profile` (`source` auto or user); returns the unsaved event."""
        before = self.pin_state()
        self.override_profile = profile
        self.override_source = source
        self._stamp_pin(now, actor, reason)
        return new_event(kind, now, actor, session_key=self.session_key, profile_id=profile.id,
                         provider_id=profile.provider_id, source=source, reason=self.override_reason,
                         before=before, after=self.pin_state())

    def clear_pin(self, now, actor, reason, kind=EventKind.OVERRIDE_CLEARED):
        """Remove the pin (`kind`: cleared by a person, or dropped at a boundary); returns the unsaved event."""
        before, profile_id, source = self.pin_state(), self.override_profile_id or "", self.override_source
        self.override_profile = None
        self.override_source = ""
        self._stamp_pin(now, actor, reason)
        return new_event(kind, now, actor, session_key=self.session_key, profile_id=profile_id,
                         provider_id=profile_id.split(":", 1)[0] if profile_id else "", source=source,
                         reason=self.override_reason, before=before, after={})

    def carry_pin(self, now, actor, reason):
        """A boundary keeps a user pin: nothing changes but the record of it."""
        return new_event(EventKind.OVERRIDE_CARRIED, now, actor, session_key=self.session_key,
                         profile_id=self.override_profile_id, provider_id=self.override_profile_id.split(":", 1)[0],
                         source=self.override_source, reason=reason, before=self.pin_state(), after=self.pin_state())

    def _stamp_pin(self, now, actor, reason):
        self.override_set_at = now
        self.override_set_by = actor[:150]
        self.override_reason = (reason or "")[:500]
        self.override_compaction_count = None


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
