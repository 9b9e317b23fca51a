"""Celery tasks for profiles: thin wrappers that read the clock once and call a plain function."""

import logging

from celery import shared_task
from django.utils import timezone

from profiles import expiry

logger = logging.getLogger(__name__)


@shared_task(name="authbroker.expire_cooldowns", ignore_result=True)
def expire_cooldowns():
    """Clear cooldowns and disablements that ended, recording each expiry once."""
    counts = expiry.expire_cooldowns(timezone.now()).as_dict()
    logger.info("expire_cooldowns: %s", counts)
    return counts
