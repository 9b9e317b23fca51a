"""The cast: providers and profiles, tokens and API clients, and a frozen clock."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from rest_framework.test import APIClient

from console.models import ApiToken
from profiles import services as profile_services

T0 = datetime(2026, 4, 7, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True, scope="session")
def static_files_from_the_apps():
    """Tests name static files plainly and the apps' folders serve them, whether or not an earlier `make run`
    left a collected manifest in var/static (the live server's static handler knows only the apps' files).
    tests/test_static.py checks the collected, hashed files under gunicorn in its own process."""
    from django.test import override_settings

    with override_settings(STORAGES={
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }):
        yield


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` need real row locks; they are skipped on SQLite (never in CI)."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def clock():
    """Time stands still at T0 until a test moves it (`clock.shift(seconds)` / `clock.move_to(t)`)."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def anthropic(db, clock):
    """anthropic:default, backup1, backup2 in that order."""
    return [
        profile_services.create_profile(f"anthropic:{name}", "api_key", f"sk-ant-{name}-secret-0123456789", T0,
                                        "test")
        for name in ("default", "backup1", "backup2")
    ]


def make_client(scopes):
    token, raw = ApiToken.issue(f"token-{'-'.join(scopes)}-{ApiToken.objects.count()}", scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    client.token = token
    return client


@pytest.fixture
def api(db):
    """A gateway's client."""
    return make_client(["gateway"])


@pytest.fixture
def admin_api(db):
    return make_client(["gateway", "admin"])


@pytest.fixture
def is_postgres():
    return connection.vendor == "postgresql"
