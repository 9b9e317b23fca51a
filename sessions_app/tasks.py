"""Celery tasks for retention: thin wrappers that read the clock once and call a plain function."""

import logging

from celery import shared_task
from django.utils import timezone

from sessions_app import retention

logger = logging.getLogger(__name__)


@shared_task(name="authbroker.purge_leases", ignore_result=True)
def purge_leases():
    """Delete lease rows kept past `AUTHBROKER_LEASE_RETENTION_SECONDS`."""
    deleted = retention.purge_leases(timezone.now())
    logger.info("purge_leases: %d deleted", deleted)
    return deleted


@shared_task(name="authbroker.purge_events", ignore_result=True)
def purge_events(days=None):
    """Delete events older than `days` (default `AUTHBROKER_EVENT_RETENTION_DAYS`)."""
    deleted = retention.purge_old_events(timezone.now(), days)
    logger.info("purge_events: %d deleted", deleted)
    return deleted
