"""The audit log moves to the bottom layer (profiles). State only: the table `sessions_app_event` stays."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('profiles', '0002_provider_alias_plural'),
        ('sessions_app', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
            migrations.CreateModel(
                name='Event',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('at', models.DateTimeField(db_index=True)),
                    ('kind', models.CharField(choices=[('override_set', 'Override Set'), ('override_carried', 'Override Carried'), ('override_dropped', 'Override Dropped'), ('override_cleared', 'Override Cleared'), ('session_reset', 'Session Reset'), ('cooldown_started', 'Cooldown Started'), ('cooldown_extended', 'Cooldown Extended'), ('cooldown_expired', 'Cooldown Expired'), ('cooldown_cleared', 'Cooldown Cleared'), ('disabled', 'Disabled'), ('disable_expired', 'Disable Expired'), ('enabled', 'Enabled'), ('profile_created', 'Profile Created'), ('profile_changed', 'Profile Changed'), ('profile_deleted', 'Profile Deleted'), ('provider_changed', 'Provider Changed')], max_length=32)),
                    ('actor', models.CharField(max_length=150)),
                    ('reason', models.CharField(blank=True, default='', max_length=500)),
                    ('source', models.CharField(blank=True, default='', max_length=16)),
                    ('session_key', models.CharField(blank=True, default='', max_length=255)),
                    ('profile_id', models.CharField(blank=True, default='', max_length=255)),
                    ('provider_id', models.CharField(blank=True, default='', max_length=64)),
                    ('model', models.CharField(blank=True, default='', max_length=190)),
                    ('before', models.JSONField(blank=True, default=dict)),
                    ('after', models.JSONField(blank=True, default=dict)),
                ],
                options={
                    'db_table': 'sessions_app_event',
                    'ordering': ['-id'],
                    'indexes': [models.Index(fields=['session_key', '-id'], name='event_session'), models.Index(fields=['profile_id', '-id'], name='event_profile'), models.Index(fields=['kind', '-id'], name='event_kind')],
                },
            ),
            ],
        ),
    ]
