from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "authbroker console"

    def ready(self):
        from console import (
            checks,  # noqa: F401  (registers the system checks)
            observability,
        )
        from profiles.events import events_written

        # The lower layers announce their changes; the console counts and logs them once committed.
        events_written.connect(observability.on_events_written, dispatch_uid="console-observability")
