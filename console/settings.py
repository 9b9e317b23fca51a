"""authbroker settings: one module, driven by environment variables only.

Every variable is read through a helper that rejects bad values at start-up,
so a typo in production fails loudly instead of silently using a default.
"""

import ipaddress
import os
import warnings
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name, default=""):
    """A string setting; a `NAME_FILE` variable, when set, wins (for secrets)."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name, default, minimum=0):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_list(name, default=""):
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_networks(name):
    """Comma-separated IP addresses or networks (`10.0.0.0/8,192.0.2.7`)."""
    entries = env_list(name)
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must list IP addresses or networks, got {entry!r}") from None
    return entries


def env_rate(name, default):
    """A DRF throttle rate such as `600/min`, or None for `off`."""
    value = env_str(name, default).strip().lower()
    if value in ("off", "none", "0"):
        return None
    number, _, period = value.partition("/")
    if not number.isdigit() or int(number) < 1 or period[:1] not in ("s", "m", "h", "d"):
        raise ImproperlyConfigured(f"{name} must look like 600/min (or off), got {value!r}")
    return value


def prepared_statements():
    """psycopg prepares a statement on the server after its `prepare_threshold`-th run on a connection, so
    PostgreSQL stops planning the hot queries anew each time (docs/performance.md). Django's backend passes
    `prepare_threshold=None` (never prepare) unless OPTIONS sets it, and only a server-side binding cursor
    can prepare, so both go together: DATABASE_SERVER_SIDE_BINDING (on by default) switches both, and
    DATABASE_PREPARE_THRESHOLD (default 5, psycopg's own) sets the count. Off for a pooler in transaction
    mode that does not track prepared statements (PgBouncer before 1.21, or without max_prepared_statements).
    """
    if not env_bool("DATABASE_SERVER_SIDE_BINDING", True):
        return {"server_side_binding": False}
    return {"server_side_binding": True,
            "prepare_threshold": env_int("DATABASE_PREPARE_THRESHOLD", 5, minimum=0)}


def connection_timeouts(server_options=""):
    """libpq parameters that bound every wait on the database (docs/operations.md, "Timeouts").

    `connect_timeout` (psycopg's minimum is 2 s) bounds a connection attempt; TCP keepalives and
    `tcp_user_timeout` notice a database host that vanished from the network; the server-side
    `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout` (0 = off) bound a
    runaway statement, a lock wait, and a transaction whose client died. A server that hangs outright
    is the watchdog's job (DATABASE_HANG_SECONDS).
    """
    server = {
        # Web processes (console/wsgi.py) only, by default: a migration or a task may run longer.
        "statement_timeout": env_int("DATABASE_STATEMENT_TIMEOUT_MS",
                                     20000 if os.environ.get("AUTHBROKER_PROCESS") == "web" else 0),
        "lock_timeout": env_int("DATABASE_LOCK_TIMEOUT_MS", 10000),
        "idle_in_transaction_session_timeout": env_int("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60000),
    }
    flags = " ".join(f"-c {name}={value}" for name, value in server.items() if value)
    return {
        "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 2, minimum=1),
        "keepalives": 1,
        "keepalives_idle": env_int("DATABASE_KEEPALIVES_IDLE", 10, minimum=1),
        "keepalives_interval": env_int("DATABASE_KEEPALIVES_INTERVAL", 5, minimum=1),
        "keepalives_count": env_int("DATABASE_KEEPALIVES_COUNT", 3, minimum=1),
        "tcp_user_timeout": env_int("DATABASE_TCP_USER_TIMEOUT_MS", 10000),
        **({"options": f"{flags} {server_options}".strip()} if flags or server_options else {}),
    }


def env_float(name, default, minimum=0.0):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if not number >= minimum:  # also refuses nan
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return number


def database_from_url(url):
    """Translate DATABASE_URL (postgres:// or sqlite:///) into a DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        # sqlite:///relative.db and sqlite:////absolute/path.db
        name = path[1:]  # sqlite:///relative.db or sqlite:////absolute/path.db
        if name == ":memory:":
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / name)}
    if parsed.scheme in ("postgres", "postgresql", "pgsql"):
        options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        return {
            # Django's backend plus a watchdog: a hung server fails a request in about a second
            # (console/postgresql/base.py, DATABASE_HANG_SECONDS).
            "ENGINE": "console.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 600),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {**prepared_statements(), **connection_timeouts(options.pop("options", "")), **options},
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parsed.scheme!r} is not supported (use postgres:// or sqlite:///)")


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or "dev-only-insecure-key-set-DJANGO_SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_celery_beat",
    "console",
    "profiles",
    "sessions_app",
]

MIDDLEWARE = [
    "console.observability.RequestContextMiddleware",
    "console.middleware.ApiGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the console's scripts, the admin, Swagger UI) in every mode: runserver without DEBUG and gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: refuses logins from a locked-out user or address.
    "axes.middleware.AxesMiddleware",
]

# Console and admin logins: django-axes locks out after repeated failures (by username and address).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours
# A pair is locked, never a username alone: an attacker elsewhere cannot lock an operator out.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The cool-off runs from the failure that locked the pair; attempts during it do not restart it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
# The address is the client's, not the reverse proxy's: X-Forwarded-For is believed only as far as it was
# written by these proxies (addresses or networks, comma-separated; console/proxies.py).
AUTHBROKER_TRUSTED_PROXIES = env_networks("AUTHBROKER_TRUSTED_PROXIES")
AXES_CLIENT_IP_CALLABLE = "console.proxies.client_ip"
AXES_SENSITIVE_PARAMETERS = ["password"]
AXES_VERBOSE = env_bool("AXES_VERBOSE", False)  # no banner on every manage.py command

# Exception reports (DEBUG pages, admin e-mails) never show credentials or bearer tokens.
DEFAULT_EXCEPTION_REPORTER_FILTER = "console.reporting.SecretSafeExceptionReporterFilter"

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(env_str("DATABASE_URL", "sqlite:///db.sqlite3"))}
# A wait on PostgreSQL this long makes the watchdog probe the server; no answer to the probe within
# DATABASE_PROBE_SECONDS and the connection is cut, so the request answers 503 (0 turns the watchdog off).
DATABASE_HANG_SECONDS = env_float("DATABASE_HANG_SECONDS", 0.5)
DATABASE_PROBE_SECONDS = env_float("DATABASE_PROBE_SECONDS", 0.5, minimum=0.05)
SILENCED_SYSTEM_CHECKS = []
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The chart index's INCLUDE columns are a PostgreSQL refinement; SQLite builds the index without them.
    SILENCED_SYSTEM_CHECKS.append("models.W040")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "var" / "static")
# whitenoise serves /static/: after `collectstatic` (make run, make serve) the files carry a content hash in
# their names, are stored pre-compressed (gzip) and are cached for a year; before it (tests, a bare
# runserver) they are served straight from the apps, uncompressed, with a short cache.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "console.staticfiles.StaticStorage"},
}
WHITENOISE_USE_FINDERS = True
# Before the first collectstatic there is no STATIC_ROOT yet; the finders serve everything, so say nothing.
warnings.filterwarnings("ignore", message="No directory at")
LOGIN_URL = "/console/login/"
LOGIN_REDIRECT_URL = "/console/"

# Bodies larger than this are refused with 413 before any parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
AUTHBROKER_MAX_BODY_BYTES = 64 * 1024

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG and env_bool("AUTHBROKER_HTTPS", False):
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is an irreversible decision about a whole domain, not this service's to make.
        SILENCED_SYSTEM_CHECKS.append("security.W021")
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["console.api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["console.api.auth.GatewayScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["console.api.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "console.api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["console.api.auth.TokenRateThrottle"],
    "UNAUTHENTICATED_USER": None,
    "STRICT_JSON": True,
    "COERCE_DECIMAL_TO_STRING": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "authbroker API",
    "DESCRIPTION": "Which credential should this chat session use now, and why.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "console.api.schema.add_error_responses"],
    "ENUM_NAME_OVERRIDES": {
        "ProfileKindEnum": "profiles.models.Kind.values",
        "StrategyEnum": "profiles.models.Strategy",
        "EventKindEnum": "profiles.models.EventKind",
        "PinSourceEnum": ["auto", "user"],
        "SelectionSourceEnum": ["default", "auto", "user"],
        "FailoverSourceEnum": ["auto"],
    },
}

# Secrets at rest: comma-separated Fernet keys, newest first.
AUTHBROKER_ENCRYPTION_KEYS = env_list("AUTHBROKER_ENCRYPTION_KEYS")
AUTHBROKER_CACHE_IDLE_SECONDS = env_int("AUTHBROKER_CACHE_IDLE_SECONDS", 300)
AUTHBROKER_LEASE_TTL_SECONDS = env_int("AUTHBROKER_LEASE_TTL_SECONDS", 600, minimum=1)
AUTHBROKER_LEASE_RETENTION_SECONDS = env_int("AUTHBROKER_LEASE_RETENTION_SECONDS", 86400, minimum=1)
# Per-token request rate ("N/s", "N/min", "N/hour", "N/day", or "off"), a fixed window counted in the cache
# below. The default guards against a runaway client without ever limiting a real gateway: 60,000 a minute
# (1,000/s, i.e. 500 LLM calls a second, select + report each) is more than one instance serves at all, so it
# only binds on a shared cache across a fleet, or on a loop. See docs/operations.md.
AUTHBROKER_THROTTLE_RATE = env_rate("AUTHBROKER_THROTTLE_RATE", "60000/min")
# The expiry job clears only windows that ended this long ago, so a worker whose clock runs ahead never
# ends a window early by the web servers' clocks (DESIGN §2).
AUTHBROKER_EXPIRY_GRACE_SECONDS = env_int("AUTHBROKER_EXPIRY_GRACE_SECONDS", 60)
AUTHBROKER_EVENT_RETENTION_DAYS = env_int("AUTHBROKER_EVENT_RETENTION_DAYS", 90, minimum=1)

# Django's cache holds the per-token throttle counts (console/api/auth.py). Local memory (the default) counts
# per process; a Redis URL in CACHE_URL (or REDIS_URL) makes one count for the whole fleet.
CACHE_URL = env_str("CACHE_URL") or env_str("REDIS_URL")
if CACHE_URL:
    if urlparse(CACHE_URL).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"CACHE_URL must be a redis://, rediss:// or unix:// URL, got {CACHE_URL!r}")
    CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "authbroker"),
        # A stuck Redis must not hold a request for long (docs/operations.md, "Throttling").
        "OPTIONS": {"socket_connect_timeout": env_float("CACHE_TIMEOUT_SECONDS", 0.5, minimum=0.05),
                    "socket_timeout": env_float("CACHE_TIMEOUT_SECONDS", 0.5, minimum=0.05)},
    }}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "authbroker"}}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = BASE_DIR / "var" / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),  # kombu's default is ./control in the working directory
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = None  # no result backend, so no nightly celery.backend_cleanup periodic task
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Beat writes each periodic task's last run after every run, so the admin shows it at once.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "console.observability.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
