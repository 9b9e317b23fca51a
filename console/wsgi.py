import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
# Web processes bound every statement by default (console/settings.py, DATABASE_STATEMENT_TIMEOUT_MS);
# migrations, management commands and Celery tasks may legitimately run longer.
os.environ.setdefault("AUTHBROKER_PROCESS", "web")
application = get_wsgi_application()
