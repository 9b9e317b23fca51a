"""Edges of the HTTP surface: odd paths, odd bodies, odd characters, and what error pages and logs show."""

import http.client
import json
import logging

import pytest
from django.views.debug import ExceptionReporter
from rest_framework.test import APIClient

from console.models import ApiToken
from console.observability import RequestIdFilter
from profiles.models import AuthProfile
from sessions_app.models import Session
from tests.servers import Server
from tests.test_instances import database_url


def test_it_answers_unknown_api_paths_with_the_json_404_whatever_the_method(db):
    """POST/PUT/DELETE to an unknown /api/ path: the API's 404, not Django's CSRF page."""
    api = APIClient(enforce_csrf_checks=True)  # as a real client: no CSRF cookie, only a token
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue('gw', ['gateway'])[1]}")
    for method in ("get", "post", "put", "delete", "patch"):
        response = getattr(api, method)("/api/nothing/here", {"a": 1}, format="json")
        assert response.status_code == 404, (method, response.content[:200])
        assert response.json()["error"]["code"] == "not_found"


def test_it_refuses_a_nul_byte_in_a_path(admin_api, client):
    """A NUL byte in a console, admin or API path is a 400, never a 500."""
    client.raise_request_exception = False
    for path in ("/console/profiles/anthropic:x%00y", "/admin/profiles/authprofile/a%00b/change/"):
        assert client.get(path).status_code == 400, path
    response = admin_api.get("/api/profiles/anthropic:x%00y")
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed"


@pytest.mark.parametrize("key", [
    "agent:d\u0435fault",            # a Cyrillic е among Latin letters
    "agent:default\u200b",           # zero-width space
    "agent:\u200fdefault",           # right-to-left mark
    "agent:\u202edefault",           # right-to-left override
    "agent:\uff44efault",            # a full-width d
])
def test_it_refuses_session_keys_that_pass_for_another(anthropic, api, key):
    """Look-alike letters, invisible and direction marks, compatibility forms: a 400 and no session."""
    response = api.post("/api/select", {"session_key": key, "provider": "anthropic"}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["session_key"]
    assert not Session.objects.exists()


def test_it_accepts_a_session_key_in_one_script_per_part(anthropic, api):
    """`dm:Иван` is one script per ':'-part: a real name, not a look-alike."""
    response = api.post("/api/select", {"session_key": "agent:main:telegram:dm:Иван", "provider": "anthropic"},
                        format="json")
    assert response.status_code == 200


@pytest.mark.parametrize("profile_id", [
    "anthropic:d\u0435fault", "anthropic:default\u200b", "anthropic:\u202edefault", "anthropic:défault",
])
def test_it_refuses_profile_ids_that_could_display_as_another(admin_api, clock, profile_id):
    """Only printable ASCII in a profile's name, so no two profiles can both show as `anthropic:default`."""
    response = admin_api.post("/api/profiles", {"id": profile_id, "kind": "api_key",
                                                "secret": "sk-look-alike-0123456789"}, format="json")
    assert response.status_code == 400, response.content
    assert not AuthProfile.objects.exists()


def test_it_hides_passwords_inside_urls_on_the_debug_page(rf, settings):
    """CELERY_BROKER_URL and CACHE_URL are shown without their passwords (the host stays, for debugging)."""
    # Joined here and held in no local variable, so only the settings section of the report could show them.
    settings.CELERY_BROKER_URL = "redis://:" + "broker-pw-" + "SECRET" + "@redis.internal:6379/0"
    settings.CACHE_URL = "redis://cache:" + "cache-pw-" + "SECRET" + "@cache.internal:6379/1"
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        html = ExceptionReporter(rf.get("/"), type(exc), exc, exc.__traceback__).get_traceback_html()
    assert "broker-pw-" + "SECRET" not in html and "cache-pw-" + "SECRET" not in html
    assert "redis.internal:6379" in html and "cache.internal:6379" in html


def test_it_logs_djangos_own_4xx_lines_with_the_request_id(client, db, caplog):
    """`Not Found: /…` from django.request carries the X-Request-ID of the request it is about."""
    with caplog.at_level(logging.WARNING, logger="django.request"):
        client.get("/console/no/such/page", HTTP_X_REQUEST_ID="gw-4xx.1")
    [record] = [r for r in caplog.records if r.name == "django.request"]
    RequestIdFilter().filter(record)
    assert record.request_id == "gw-4xx.1"


# ---------------------------------------------------------------- through gunicorn (raw paths, chunked bodies)


@pytest.fixture
def served(transactional_db):
    from profiles import services as profile_services
    from tests.conftest import T0

    profile_services.create_profile("anthropic:default", "api_key", "sk-edges-0123456789abcdef", T0, "test")
    token = ApiToken.issue("edges", ["gateway", "admin"])[1]
    server = Server(database_url(), workers=1, AUTHBROKER_THROTTLE_RATE="off").wait_ready()
    try:
        yield server, token
    finally:
        server.stop()


def raw_request(server, method, path, body=None, token=None, chunked=False):
    conn = http.client.HTTPConnection(server.url, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if chunked:
        payload = json.dumps(body).encode()
        body = iter([payload[:10], payload[10:]])
        conn.request(method, path, body=body, headers=headers, encode_chunked=True)
    else:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


@pytest.mark.postgres
def test_it_never_lets_an_encoded_slash_reroute_a_session_key(served):
    """`/api/sessions/x%2Fevents` is about a key `x/events` (refused), not the events of session `x`."""
    server, token = served
    status, body = raw_request(server, "GET", "/api/sessions/x%2Fevents", token=token)
    assert status == 400 and body["error"]["code"] == "malformed", body
    status, body = raw_request(server, "POST", "/api/sessions/x%2fevents/reset", {"provider": "anthropic"}, token)
    assert status == 400, body
    assert raw_request(server, "GET", "/api/sessions/x/events", token=token)[0] in (200, 404)


@pytest.mark.postgres
def test_it_reads_a_chunked_body(served):
    """A select sent with Transfer-Encoding: chunked is read, not answered 'field required'."""
    server, token = served
    status, body = raw_request(server, "POST", "/api/select", {"session_key": "agent:chunked:1",
                                                               "provider": "anthropic"}, token, chunked=True)
    assert status == 200, body
    assert body["profile"] == "anthropic:default"
    status, body = raw_request(server, "POST", "/api/select", {"session_key": "x" * 70000, "provider": "anthropic"},
                               token, chunked=True)
    assert status == 413, body


def test_it_gives_each_make_serve_its_own_metrics_directory():
    """Two `make serve` from one checkout (PORT=8001, PORT=8002) empty and use different directories."""
    import subprocess

    from tests.servers import ROOT

    def plan(port):
        result = subprocess.run(["make", "-n", "serve", f"PORT={port}"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60, check=True)
        lines = result.stdout.splitlines()
        wiped = {word for line in lines if line.startswith("rm -rf") for word in line.split()[2:] if "prometheus" in word}
        used = {line.split("PROMETHEUS_MULTIPROC_DIR=", 1)[1].split()[0] for line in lines
                if "PROMETHEUS_MULTIPROC_DIR=" in line}
        return wiped, {path.rsplit("/var/", 1)[1] for path in used}

    wiped_1, used_1 = plan(8001)
    wiped_2, used_2 = plan(8002)
    assert used_1 and used_2 and not used_1 & used_2
    assert not {w.removeprefix("var/") for w in wiped_1} & used_2
    assert not {w.removeprefix("var/") for w in wiped_2} & used_1


def test_it_writes_nothing_when_the_credential_cannot_be_decrypted(anthropic, clock):
    """A credentials select whose secret no key reads: a clear 500 `secret_unreadable` and no session, no event."""
    from cryptography.fernet import Fernet

    from profiles.models import Event
    from tests.conftest import make_client

    stranger = Fernet(Fernet.generate_key()).encrypt(b"sk-under-a-lost-key-0123456789").decode()
    AuthProfile.objects.update(secret_encrypted=stranger)
    events = Event.objects.count()
    gateway = make_client(["gateway", "credentials"])
    gateway.raise_request_exception = False

    response = gateway.post("/api/select", {"session_key": "agent:lost:1", "provider": "anthropic"}, format="json")

    assert response.status_code == 500 and response.json()["error"]["code"] == "secret_unreadable"
    assert not Session.objects.filter(session_key="agent:lost:1").exists()
    assert Event.objects.count() == events


def test_it_reads_database_timeouts_and_proxies_from_the_environment_strictly(monkeypatch):
    """The new settings come through the strict helpers: sane defaults, env overrides, typos refused."""
    from django.core.exceptions import ImproperlyConfigured

    from console import settings as project

    for name in ("DATABASE_CONNECT_TIMEOUT", "DATABASE_LOCK_TIMEOUT_MS", "DATABASE_STATEMENT_TIMEOUT_MS",
                 "AUTHBROKER_PROCESS"):
        monkeypatch.delenv(name, raising=False)
    options = project.connection_timeouts()
    assert (options["connect_timeout"], options["keepalives"], options["tcp_user_timeout"]) == (2, 1, 10000)
    assert "-c lock_timeout=10000" in options["options"] and "statement_timeout" not in options["options"]
    monkeypatch.setenv("AUTHBROKER_PROCESS", "web")
    monkeypatch.setenv("DATABASE_LOCK_TIMEOUT_MS", "0")
    options = project.connection_timeouts("-c search_path=x")
    assert options["options"] == "-c statement_timeout=20000 -c idle_in_transaction_session_timeout=60000 " \
                                 "-c search_path=x"
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "soon")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_CONNECT_TIMEOUT"):
        project.connection_timeouts()
    monkeypatch.setenv("AUTHBROKER_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7")
    assert project.env_networks("AUTHBROKER_TRUSTED_PROXIES") == ["10.0.0.0/8", "192.0.2.7"]
    monkeypatch.setenv("AUTHBROKER_TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal")
    with pytest.raises(ImproperlyConfigured, match="proxy.internal"):
        project.env_networks("AUTHBROKER_TRUSTED_PROXIES")
    monkeypatch.setenv("DATABASE_HANG_SECONDS", "nan")
    with pytest.raises(ImproperlyConfigured):
        project.env_float("DATABASE_HANG_SECONDS", 0.75)
