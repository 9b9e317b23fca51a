# The console's charts over time read events by kind and time (console/ui/queries.py chart_rows).
# After 0004 (expires_at).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("profiles", "0004_authprofile_expires_at"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["kind", "at"], include=["source", "profile_id", "reason"], name="event_kind_at"),
        ),
    ]
