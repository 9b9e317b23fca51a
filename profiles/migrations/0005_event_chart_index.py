# The console's charts over time read events by kind and time (console/ui/queries.py chart_rows).
# Named 0005 because another branch adds profiles 0004; re-point `dependencies` at merge.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("profiles", "0003_event"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["kind", "at"], include=["source", "profile_id", "reason"], name="event_kind_at"),
        ),
    ]
