"""Access: token throttling, revocation, login brute force, and production settings."""

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from axes.models import AccessAttempt
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client, override_settings
from rest_framework.test import APIClient

from console import checks
from console.models import ApiToken
from tests.conftest import T0, make_client

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@override_settings(AUTHBROKER_THROTTLE_RATE="3/min")
def test_it_throttles_each_token_with_retry_after(db, fresh_cache):
    """Over its rate a token gets 429 in the error format with Retry-After; another token is unaffected."""
    noisy, calm = make_client(["gateway"]), make_client(["gateway"])
    assert [noisy.get("/api/profiles").status_code for _ in range(3)] == [200, 200, 200]
    response = noisy.get("/api/profiles")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert calm.get("/api/profiles").status_code == 200


@override_settings(AUTHBROKER_THROTTLE_RATE="2/min")
def test_it_counts_in_fixed_windows(db, fresh_cache, clock):
    """The count starts afresh in the next window; Retry-After is what is left of the current one."""
    client = make_client(["gateway"])
    clock.move_to(datetime(2026, 4, 7, 12, 0, 15, tzinfo=UTC))
    assert [client.get("/api/ping").status_code for _ in range(3)] == [200, 200, 429]
    clock.move_to(datetime(2026, 4, 7, 12, 0, 50, tzinfo=UTC))
    refused = client.get("/api/ping")
    assert refused.status_code == 429 and refused["Retry-After"] == "10"
    clock.move_to(datetime(2026, 4, 7, 12, 1, 0, tzinfo=UTC))
    assert [client.get("/api/ping").status_code for _ in range(3)] == [200, 200, 429]


def test_it_shares_the_count_through_redis(db, clock):
    """With CACHE_URL on Redis the counter lives there: another process (a second cache client) sees it."""
    import redis

    location = "redis://127.0.0.1:6379/0"
    prefix = f"throttle-test-{os.getpid()}"
    try:
        redis.Redis.from_url(location).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    shared = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location, "KEY_PREFIX": prefix}
    with override_settings(CACHES={"default": shared}, AUTHBROKER_THROTTLE_RATE="2/min"):
        client = make_client(["gateway"])
        assert [client.get("/api/ping").status_code for _ in range(2)] == [200, 200]
        other_process = redis.Redis.from_url(location)
        keys = other_process.keys(f"{prefix}:*throttle:{client.token.pk}:*")
        try:
            assert len(keys) == 1 and int(other_process.get(keys[0])) == 2
            assert client.get("/api/ping").status_code == 429
        finally:
            other_process.delete(*other_process.keys(f"{prefix}:*"))  # only ours: db 0 is shared


@override_settings(AUTHBROKER_THROTTLE_RATE=None)
def test_it_can_switch_throttling_off(db, fresh_cache):
    """AUTHBROKER_THROTTLE_RATE=off: no limit."""
    client = make_client(["gateway"])
    assert {client.get("/api/profiles").status_code for _ in range(5)} == {200}


def test_it_refuses_a_revoked_token(db):
    """revoke_api_token NAME: the next request with it is 401."""
    client = make_client(["gateway"])
    assert client.get("/api/profiles").status_code == 200
    call_command("revoke_api_token", client.token.name, stdout=io.StringIO())
    assert client.get("/api/profiles").status_code == 401
    assert ApiToken.objects.get(pk=client.token.pk).revoked_at is not None


def test_it_looks_tokens_up_as_the_orm_would(db):
    """The fixed-SQL token lookup finds exactly the unrevoked token with that hash, scopes and all."""
    from django.utils import timezone

    from console.api.queries import active_token
    from console.models import hash_token

    live, live_raw = ApiToken.issue("live", ["gateway", "credentials"])
    gone, gone_raw = ApiToken.issue("gone", ["admin"])
    ApiToken.objects.filter(pk=gone.pk).update(revoked_at=timezone.now())
    for raw in (live_raw, gone_raw, "ab_unknown"):
        expected = ApiToken.objects.filter(token_hash=hash_token(raw), revoked_at__isnull=True).first()
        found = active_token(hash_token(raw))
        assert (found and (found.pk, found.name, found.scopes)) == (
            expected and (expected.pk, expected.name, expected.scopes))
    assert active_token(hash_token(live_raw)).scopes == ["credentials", "gateway"]
    assert active_token(hash_token(gone_raw)) is None


@pytest.fixture
def operator(db):
    return User.objects.create_superuser("operator", "op@example.com", "correct horse battery staple")


def admin_login(client, password):
    return client.post("/admin/login/?next=/admin/", {"username": "operator", "password": password})


def test_it_lets_an_operator_log_in_to_the_admin(operator, client):
    """django-axes in front of the admin login: the right password still works."""
    response = admin_login(client, "correct horse battery staple")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@override_settings(AXES_FAILURE_LIMIT=3)
def test_it_locks_out_a_login_after_repeated_failures(operator, client):
    """Three wrong passwords, then even the right one is refused (429) and the attempt is recorded."""
    for _ in range(2):
        assert admin_login(client, "wrong").status_code == 200  # the form again, with an error
    assert admin_login(client, "wrong").status_code == 429
    locked = admin_login(client, "correct horse battery staple")
    assert locked.status_code == 429
    assert client.get("/admin/").status_code == 302  # not logged in
    assert AccessAttempt.objects.get(username="operator").failures_since_start >= 3
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue('gw', ['gateway'])[1]}")
    assert other.get("/api/profiles").status_code == 200  # API tokens are not touched by the lockout


def login_from(client, address, password):
    """A login through the reverse proxy at 127.0.0.1, which appends the client's address to X-Forwarded-For."""
    return client.post("/console/login/", {"username": "operator", "password": password},
                       HTTP_X_FORWARDED_FOR=address, REMOTE_ADDR="127.0.0.1")


@override_settings(AXES_FAILURE_LIMIT=3, AUTHBROKER_TRUSTED_PROXIES=["127.0.0.1/32"])
def test_it_cannot_be_turned_against_an_operator_behind_the_proxy(operator, client):
    """An attacker at 203.0.113.7 locks only themselves out; the operator at 198.51.100.20 still logs in, even
    when the attacker writes the operator's address into X-Forwarded-For."""
    assert [login_from(client, "203.0.113.7", "wrong").status_code for _ in range(3)] == [200, 200, 429]
    forged = login_from(client, "198.51.100.20, 203.0.113.7", "correct horse battery staple")
    assert forged.status_code == 429  # the proxy appended the attacker's real address; the left part is theirs

    response = login_from(Client(), "198.51.100.20", "correct horse battery staple")

    assert response.status_code == 302
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}


@override_settings(AXES_FAILURE_LIMIT=3, AUTHBROKER_TRUSTED_PROXIES=["127.0.0.1/32"])
def test_it_ends_the_cool_off_however_often_a_locked_pair_tries(operator, client):
    """Locked at T0 for 15 min; tries every minute meanwhile do not extend it: at T0 + 15 min the right password
    works."""
    with time_machine.travel(T0, tick=False) as clock:
        assert [login_from(client, "203.0.113.7", "wrong").status_code for _ in range(3)] == [200, 200, 429]
        for _ in range(14):
            clock.shift(60)
            assert login_from(client, "203.0.113.7", "wrong").status_code == 429
        clock.shift(61)
        assert login_from(client, "203.0.113.7", "correct horse battery staple").status_code == 302


def test_it_reads_the_client_address_only_as_far_as_trusted_proxies_wrote_it(rf, settings):
    """X-Forwarded-For is believed from the right, hop by hop, while each hop is a trusted proxy."""
    from console.proxies import client_ip

    def ip(remote, forwarded=None):
        headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
        return client_ip(rf.get("/", REMOTE_ADDR=remote, **headers))

    settings.AUTHBROKER_TRUSTED_PROXIES = []
    assert ip("10.0.0.2", "203.0.113.7") == "10.0.0.2"  # no trusted proxies: the header is ignored
    settings.AUTHBROKER_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert ip("10.0.0.2", "203.0.113.7") == "203.0.113.7"
    assert ip("10.0.0.2", "1.2.3.4, 203.0.113.7, 10.0.0.9") == "203.0.113.7"  # two proxies, forged left part
    assert ip("192.0.2.1", "203.0.113.7") == "192.0.2.1"  # an untrusted peer's header is not believed
    assert ip("10.0.0.2", "not-an-ip, 203.0.113.7") == "203.0.113.7"
    assert ip("10.0.0.2", "203.0.113.7, garbage") == "10.0.0.2"
    assert ip("10.0.0.2") == "10.0.0.2"
    assert ip("10.0.0.2", "2001:db8::1") == "2001:db8::1"


def test_it_warns_about_missing_encryption_keys_in_production(settings):
    """check --deploy: authbroker.W001 without AUTHBROKER_ENCRYPTION_KEYS, W002 without DJANGO_SECRET_KEY."""
    settings.AUTHBROKER_ENCRYPTION_KEYS = []
    settings.SECRET_KEY = checks.DEV_SECRET_KEY_PREFIX + "-x"
    ids = {w.id for w in checks.check_production_secrets(None)}
    assert {"authbroker.W001", "authbroker.W002"} <= ids
    assert all(w.hint for w in checks.check_production_secrets(None))
    settings.AUTHBROKER_ENCRYPTION_KEYS = ["not-a-key"]
    assert [e.id for e in checks.check_encryption_keys(None)] == ["authbroker.E001"]


def test_it_passes_check_deploy_under_production_settings(tmp_path):
    """`manage.py check --deploy --fail-level WARNING` is clean with production environment variables."""
    env = {
        **os.environ,
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "k" + Fernet.generate_key().decode() + Fernet.generate_key().decode(),
        "AUTHBROKER_HTTPS": "true",
        "AUTHBROKER_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
        "ALLOWED_HOSTS": "authbroker.example.com",
    }
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@override_settings(AXES_FAILURE_LIMIT=3)
def test_it_locks_out_the_console_login_too(operator, client):
    """The console's login page goes through the same lockout."""
    form = {"username": "operator", "password": "wrong"}
    assert [client.post("/console/login/", form).status_code for _ in range(3)] == [200, 200, 429]
    response = client.post("/console/login/", {**form, "password": "correct horse battery staple"})
    assert response.status_code == 429
    assert client.get("/console/").status_code == 302  # still not logged in


def test_it_refuses_a_console_login_without_its_csrf_token(operator):
    """CSRF is enforced on the console's forms: a login post without the token is refused."""
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/console/login/", {"username": "operator", "password": "correct horse battery staple"})
    assert response.status_code == 403
    page = strict.get("/console/login/")
    token = page.cookies["csrftoken"].value
    response = strict.post("/console/login/", {"username": "operator", "password": "correct horse battery staple",
                                               "csrfmiddlewaretoken": token})
    assert response.status_code == 302
