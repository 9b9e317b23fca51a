"""The periodic tasks beat runs, stored in the database (django-celery-beat) and editable in the admin.

`ensure_periodic_tasks` creates what is missing and leaves what exists
alone, so an operator's edits (a longer interval, a task switched off)
survive every `migrate`. It takes the model classes so the data migration
can pass its historical models.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Default:
    name: str
    task: str
    every: int
    period: str  # an IntervalSchedule period: "seconds", "minutes", "hours" or "days"
    description: str


DEFAULTS = (
    Default("expire cooldowns", "authbroker.expire_cooldowns", 30, "seconds",
            "Clear cooldowns and disablements that ended and record cooldown_expired / disable_expired once each. "
            "Selection judges expiry by time, so this only tidies and records."),
    Default("purge leases", "authbroker.purge_leases", 1, "minutes",
            "Delete lease rows older than AUTHBROKER_LEASE_RETENTION_SECONDS (kept so late duplicate reports are "
            "still recognised). Changes no profile."),
    Default("purge old events", "authbroker.purge_events", 1, "days",
            "Delete audit events older than AUTHBROKER_EVENT_RETENTION_DAYS (default 90); "
            'kwargs {"days": n} overrides it.'),
    Default("roll up charts", "authbroker.roll_up_charts", 10, "minutes",
            "Count the closed hours of the audit log for the console's charts (console.ChartCount), so a day or a "
            "week is drawn from at most 168 hourly rollups. The charts roll up what is missing themselves."),
)


def ensure_periodic_tasks(interval_model, task_model):
    """Create the default periodic tasks that do not exist yet; returns the names created.

    `interval_model` and `task_model` are django-celery-beat's IntervalSchedule and PeriodicTask.
    """
    created = []
    for default in DEFAULTS:
        if task_model.objects.filter(name=default.name).exists():
            continue
        interval = interval_model.objects.filter(every=default.every, period=default.period).order_by("pk").first()
        if interval is None:
            interval = interval_model.objects.create(every=default.every, period=default.period)
        task_model.objects.create(name=default.name, task=default.task, interval=interval,
                                  description=default.description, enabled=True)
        created.append(default.name)
    return created
