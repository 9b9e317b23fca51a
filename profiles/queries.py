"""The profile layer's speed tricks, apart from the rules and services."""

from django.db import connection

from profiles.models import Event


def purge_events(before):
    """Retention: delete events older than `before` (the only way events are ever removed).

    One plain DELETE: the ORM's delete() would read every row first to send signals nobody listens
    to, and events refuse it on purpose (`EventQuerySet.delete`).
    """
    table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE at < %s", [connection.ops.adapt_datetimefield_value(before)])
        return cursor.rowcount
