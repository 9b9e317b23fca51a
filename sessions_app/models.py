"""Sessions, their pins (one per provider) with provenance, bulk resets, and lease reports.

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
    # Bumped by every change of the session's pins (`Pin` rows): the lock-free select writes only if it
    # is unchanged since its read, a check on the session's own row.
    pin_version = models.PositiveIntegerField(default=0)

    # Set by a reset of a list of sessions: the next select starts a new session (drops auto, carries user).
    boundary_pending = models.BooleanField(default=False)
    # The last reset of every session (`BulkReset`) this session has passed; one behind the latest
    # means its next select starts a new session. A reset of every session writes no session row.
    epoch = models.BigIntegerField(default=0)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["-updated_at"], name="session_updated"),
        ]

    def __str__(self):
        return self.session_key

    # The one place a pin changes: every path (select, report, reset, overrides, profile deletion, the
    # importer) calls these on a session it has locked, and each returns the event recording the change.

    def set_pin(self, profile, source, now, actor, reason, kind=EventKind.OVERRIDE_SET, compaction_count=None,
                current=...):
        """Pin the session to `profile` for its provider (replacing that provider's pin): (pin, event).

        `current`: that provider's pin (or None) when the caller has read it already, under the lock.
        """
        pin = Pin.objects.filter(session=self, provider_id=profile.provider_id).first() if current is ... else current
        before = pin.state(stamp=True) if pin else None
        if pin is None:
            pin = Pin(session=self, provider_id=profile.provider_id)
        pin.profile = profile
        pin.source = source
        pin.set_at, pin.set_by, pin.reason = now, actor[:150], (reason or "")[:500]
        pin.compaction_count = compaction_count
        pin.save()
        self.pin_version += 1
        return pin, new_event(kind, now, actor, session_key=self.session_key, profile_id=profile.id,
                              provider_id=profile.provider_id, source=source, reason=pin.reason,
                              before=before, after=pin.state(stamp=True))

    def clear_pin(self, pin, now, actor, reason, kind=EventKind.OVERRIDE_CLEARED):
        """Remove `pin` (`kind`: cleared by a person or a deletion, or dropped at a boundary); returns the event."""
        before = pin.state(stamp=True)
        pin.delete()
        self.pin_version += 1
        return new_event(kind, now, actor, session_key=self.session_key, profile_id=pin.profile_id,
                         provider_id=pin.provider_id, source=pin.source, reason=(reason or "")[:500],
                         before=before, after={})

    def carry_pin(self, pin, now, actor, reason):
        """A boundary keeps a user pin: nothing changes but the record of it."""
        return new_event(EventKind.OVERRIDE_CARRIED, now, actor, session_key=self.session_key,
                         profile_id=pin.profile_id, provider_id=pin.provider_id, source=pin.source,
                         reason=reason, before=pin.state(stamp=True), after=pin.state(stamp=True))


class Pin(models.Model):
    """A session's override for one provider: at most one per provider (DESIGN §1, v2)."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="pins")
    provider = models.ForeignKey("profiles.Provider", on_delete=models.CASCADE, related_name="+")
    # Deleting a profile clears its pins first, each with its event (sessions_app.services.delete_profile).
    profile = models.ForeignKey("profiles.AuthProfile", on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=8, choices=OverrideSource.choices)
    set_at = models.DateTimeField()
    set_by = models.CharField(max_length=150, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="")
    # openclaw's compaction stamp, kept for legacy source inference and export.
    compaction_count = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["session_id", "provider_id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "provider"], name="pin_one_per_provider"),
            models.CheckConstraint(condition=Q(source__in=["auto", "user"]), name="pin_source_known"),
        ]
        indexes = [models.Index(fields=["profile", "source"], name="pin_profile_source"),
                   models.Index(fields=["source"], name="pin_source")]

    def __str__(self):
        return f"{self.session_id} → {self.profile_id} ({self.source})"

    def state(self, stamp=False):
        """The pin and its provenance as JSON (the API's `overrides`; with `stamp`, as events record it,
        with openclaw's compaction stamp when it has one)."""
        return {
            "provider": self.provider_id,
            "profile": self.profile_id,
            "source": self.source,
            "set_at": self.set_at.isoformat() if self.set_at else None,
            "set_by": self.set_by,
            "reason": self.reason,
            **({"compaction_count": self.compaction_count} if stamp and self.compaction_count is not None else {}),
        }


class BulkReset(models.Model):
    """A reset of every session (a gateway restart): one row, however many sessions there are."""

    at = models.DateTimeField()
    actor = models.CharField(max_length=150)
    reason = models.CharField(max_length=16)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"bulk reset {self.pk} at {self.at:%Y-%m-%d %H:%M:%S}"


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
