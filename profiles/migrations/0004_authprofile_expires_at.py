from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0003_event"),
    ]

    operations = [
        migrations.AddField(
            model_name="authprofile",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
