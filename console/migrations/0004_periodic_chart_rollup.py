"""The chart rollup's periodic task exists after `migrate` (created only if missing; operator edits kept)."""

from django.db import migrations


def create_periodic_tasks(apps, schema_editor):
    from console.periodic import ensure_periodic_tasks

    ensure_periodic_tasks(apps.get_model("django_celery_beat", "IntervalSchedule"),
                          apps.get_model("django_celery_beat", "PeriodicTask"))


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0003_chart_rollup"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_periodic_tasks, migrations.RunPython.noop),
    ]
