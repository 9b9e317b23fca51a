"""Leave room in the session table's pages so the frequent updates stay HOT (docs/performance.md).

A sticky select stamps `last_activity_at` and a bulk reset bumps `pin_version` on every session it
drops a pin from; neither column is indexed, so PostgreSQL can write the new row version in the same
page without touching the table's eight indexes (a heap-only tuple), but only when the page has room.
Packed full (the default fillfactor, 100) it rarely has. 80 keeps a fifth of each page free.

The setting applies to pages written from now on: an existing table gets the room as its rows are
rewritten (or at once with `VACUUM FULL sessions_app_session`, which locks the table while it runs).
PostgreSQL only; nothing to do on SQLite.
"""

from django.db import migrations

FILLFACTOR = 80


def set_fillfactor(value):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        table = schema_editor.quote_name(apps.get_model("sessions_app", "Session")._meta.db_table)
        if value is None:
            schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")
        else:
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {int(value)})")
    return apply


class Migration(migrations.Migration):

    dependencies = [
        ("sessions_app", "0003_pins_per_provider"),
    ]

    operations = [
        migrations.RunPython(set_fillfactor(FILLFACTOR), set_fillfactor(None)),
    ]
