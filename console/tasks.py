"""The console's scheduled work: keeping the charts' hourly rollup warm, so no operator waits for it."""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from console.ui import queries

logger = logging.getLogger(__name__)


def roll_up_charts(now):
    """Roll up every closed hour of the last week that is not yet (`console.ui.queries.roll_up`)."""
    closed = queries.closed_hour(now)
    queries.roll_up(closed - timedelta(days=7), closed, now)


@shared_task(name="authbroker.roll_up_charts", ignore_result=True)
def roll_up_charts_task():
    roll_up_charts(timezone.now())
    logger.info("roll_up_charts: done")
