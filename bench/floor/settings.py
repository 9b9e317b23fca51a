"""Settings of the floor app (bench/floor): only what one view reading one row needs."""

import os

from console.settings import database_from_url

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "bench-floor")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.floor.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
USE_TZ = True
# authbroker's own DATABASES entry (persistent connections, prepared statements, timeouts), without the
# per-request health check and on Django's own PostgreSQL backend (authbroker's adds its hung-server watchdog,
# which reads settings this project does not have): the floor is the cost of one read.
DATABASES = {"default": {**database_from_url(os.environ["DATABASE_URL"]), "CONN_HEALTH_CHECKS": False,
                         "ENGINE": "django.db.backends.postgresql"}}
LOGGING_CONFIG = None
