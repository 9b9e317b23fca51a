"""The audit log now belongs to profiles (profiles 0003); its table stays where it is."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('sessions_app', '0001_initial'),
        ('profiles', '0003_event'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name='Event')],
        ),
    ]
