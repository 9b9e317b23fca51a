"""Retention: what the scheduler deletes so tables stay small. Nothing here changes a profile.

Leases: `select` hands out signed lease ids without writing; a `Lease` row
exists only once a report claimed the lease, so a retried report gets the
first answer. A report on a lease older than `AUTHBROKER_LEASE_TTL_SECONDS`
is refused unless its row is still here, so rows are kept for
`AUTHBROKER_LEASE_RETENTION_SECONDS` (never less than the TTL: a row deleted
while its lease is still fresh would let a late duplicate count twice).
"""

from datetime import timedelta

from django.conf import settings

from profiles.queries import purge_events
from sessions_app.models import Lease


def lease_retention():
    seconds = max(settings.AUTHBROKER_LEASE_RETENTION_SECONDS, settings.AUTHBROKER_LEASE_TTL_SECONDS)
    return timedelta(seconds=seconds)


def purge_leases(now):
    """Delete lease rows reported longer ago than the retention; returns how many."""
    deleted, _ = Lease.objects.filter(reported_at__lt=now - lease_retention()).delete()
    return deleted


def purge_old_events(now, days=None):
    """Delete events older than `days` (default `AUTHBROKER_EVENT_RETENTION_DAYS`); returns how many."""
    days = settings.AUTHBROKER_EVENT_RETENTION_DAYS if days is None else days
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"event retention must be a whole number of days ≥ 1, got {days!r}")
    return purge_events(now - timedelta(days=days))
