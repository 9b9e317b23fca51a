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
# authbroker's own DATABASES entry (persistent connections, prepared statements), without the per-request
# health check: the floor is the cost of one read.
DATABASES = {"default": {**database_from_url(os.environ["DATABASE_URL"]), "CONN_HEALTH_CHECKS": False}}
LOGGING_CONFIG = None
