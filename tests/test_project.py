"""The project around the rules: migrations, commands, probes, schema, the error format."""

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from console.models import ApiToken, hash_token
from profiles.models import AuthProfile, Event
from sessions_app.models import Lease, Session
from tests.helpers import pinned, select

KEY = "agent:main:telegram:dm:42"


def test_it_has_migrations_for_every_model_change(db):
    """Models and migrations agree."""
    call_command("makemigrations", "--check", "--dry-run", stdout=io.StringIO())


def test_it_prints_a_new_token_alone_on_the_last_line_and_stores_only_its_hash(db):
    """create_api_token NAME --scope …: the token is usable and only its hash is kept."""
    out = io.StringIO()
    call_command("create_api_token", "edge-1", "--scope", "gateway", "--scope", "credentials", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    token = ApiToken.objects.get(name="edge-1")
    assert token.token_hash == hash_token(raw) and raw not in str(token.__dict__)
    assert token.scopes == ["credentials", "gateway"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/profiles").status_code == 200


def load_demo():
    """Run `load_demo`; answer {label: value} of its `Label: value` lines."""
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    lines = out.getvalue().strip().splitlines()
    return {line.split(":", 1)[0]: line.split(": ", 1)[1] for line in lines}


def demo_token():
    return load_demo()["Gateway token"]


def test_it_loads_demo_data_where_a_new_session_gets_the_default_key(db):
    """The README's promise: after the demo's old failover, a new session answers anthropic:default."""
    raw = demo_token()
    assert pinned(KEY) == ("anthropic:backup1", "auto")
    assert AuthProfile.objects.count() == 4
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert select(client, session_key="agent:main:telegram:dm:7")["profile"] == "anthropic:default"
    assert select(client, new_session=True)["profile"] == "anthropic:default"


def test_it_keeps_the_demo_gateway_token_across_runs_with_the_gateway_scope_only(db):
    """A saved TOKEN= survives a second `make run`; the gateway token cannot manage profiles, the operator's can."""
    ApiToken.issue("demo-gateway", ["gateway", "admin"])  # what older demos left behind: replaced
    first = load_demo()
    second = load_demo()
    assert first["Gateway token"] == second["Gateway token"]
    assert first["Operator token (gateway + admin scopes, for /api/profiles and /api/providers)"] == \
        second["Operator token (gateway + admin scopes, for /api/profiles and /api/providers)"]
    gateway = ApiToken.objects.get(name="demo-gateway")
    assert gateway.scopes == ["gateway"] and gateway.token_hash == hash_token(second["Gateway token"])
    client = APIClient()
    body = {"id": "anthropic:extra", "kind": "api_key", "secret": "sk-ant-extra-000000000000"}
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {second['Gateway token']}")
    assert client.post("/api/profiles", body, format="json").status_code == 403
    operator = next(v for k, v in second.items() if k.startswith("Operator token"))
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {operator}")
    assert client.post("/api/profiles", body, format="json").status_code == 201


def test_it_lets_the_demo_operator_use_the_admin(db, client):
    """The printed staff login opens the admin's model lists, not "You don't have permission"."""
    login = load_demo()["Staff login"].split("  ")[0]
    username, password = login.split(" / ")
    client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})
    index = client.get("/admin/")
    assert index.status_code == 200 and b"Auth profiles" in index.content
    assert client.get("/admin/profiles/authprofile/").status_code == 200


def test_it_sends_the_root_to_the_console(db, client):
    """`make run` prints http://127.0.0.1:8000/: that address leads to the console (via its login)."""
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/console/"


def test_it_answers_liveness_and_readiness(db, client):
    """/healthz needs nothing; /readyz checks the database."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["database"] == "ok"


def test_it_serves_openapi_and_its_docs(db, client):
    """The schema names every endpoint of the contract; the docs page renders without a CDN."""
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    for path in ("/api/select", "/api/report", "/api/sessions/{session_key}/reset", "/api/sessions/reset",
                 "/api/sessions/{session_key}/override", "/api/sessions/{session_key}",
                 "/api/sessions/{session_key}/events", "/api/profiles", "/api/profiles/{profile_id}",
                 "/api/profiles/{profile_id}/clear-cooldown", "/api/providers", "/api/providers/{provider_id}",
                 "/api/events"):
        assert path in schema["paths"], path
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and b"cdn.jsdelivr" not in docs.content


def post_raw(api, body, content_type="application/json"):
    return api.post("/api/select", body, content_type=content_type)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "malformed"),
        ('{"session_key": "k", "provider": "anthropic", "x": NaN}', "application/json", 400, "malformed"),
        ("session_key=k&provider=anthropic", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ('["a list"]', "application/json", 400, "invalid"),
        ('{"session_key": "k", "provider": "anthropic", "extra": 1}', "application/json", 400, "invalid"),
        ('{"session_key": 42, "provider": "anthropic"}', "application/json", 400, "invalid"),
        ('{"session_key": "' + "k" * 256 + '", "provider": "anthropic"}', "application/json", 400, "invalid"),
        ('{"session_key": "a/b", "provider": "anthropic"}', "application/json", 400, "invalid"),
        ('{"session_key": "a\\u0000b", "provider": "anthropic"}', "application/json", 400, "invalid"),
        ('{"session_key": "a b", "provider": "anthropic"}', "application/json", 400, "invalid"),
        ('{"session_key": "k", "provider": "anthropic", "new_session": "yes"}', "application/json", 400, "invalid"),
        ('{"session_key": "k", "provider": "Not A Slug!"}', "application/json", 400, "invalid"),
        (b'{"session_key": "\xff\xfe", "provider": "anthropic"}', "application/json", 400, "malformed"),
        ('{"session_key": "k", "provider": "anthropic", "pad": "' + "x" * 70000 + '"}', "application/json", 413,
         "too_large"),
        ('{"session_key": "k", "provider": "anthropic", "x": ' + "[" * 5000 + "]" * 5000 + "}", "application/json",
         400, "malformed"),
        ('{"session_key": "k", "provider": "anthropic", "x": Infinity}', "application/json", 400, "malformed"),
        ('{"session_key": "k", "provider": "anthropic", "new_session": -Infinity}', "application/json", 400,
         "malformed"),
        ('{"session_key": "k", "provider": "anthropic", "x": ' + "9" * 5000 + "}", "application/json", 400,
         "malformed"),
        ('{"session_key": "k", "provider": "anthropic", "new_session": 1e999}', "application/json", 400, "invalid"),
        ('{"session_key": "k", "provider": "anthropic", "a\\u0001b": 1}', "application/json", 400, "invalid"),
        ('{"session_key": "k", "provider": "anthropic", "\\u0000": 1}', "application/json", 400, "invalid"),
        ('{"session_key": "k\\u001b[2J", "provider": "anthropic"}', "application/json", 400, "invalid"),
        ('{"session_key": "k\\ud800", "provider": "anthropic"}', "application/json", 400, "invalid"),
        ('{"session_key": "k", "provider": "anthropic"}', "text/plain", 415, "unsupported_media_type"),
        ("", "application/json", 400, "invalid"),
    ],
    ids=["syntax", "nan", "form", "not-object", "unknown-field", "number-key", "key-256", "slash", "nul", "space",
         "string-bool", "bad-provider", "non-utf8", "too-large", "deeply-nested", "infinity", "minus-infinity",
         "5000-digit-number", "float-overflow", "control-char-in-key", "nul-key", "escape-in-value",
         "lone-surrogate", "text-plain", "empty-body"],
)
def test_it_answers_bad_input_with_a_clear_error_and_changes_nothing(anthropic, api, body, content_type, status,
                                                                     code):
    """Every bad request is a 4xx with the documented body; no session, no event, no profile changed."""
    before = state()
    response = post_raw(api, body, content_type)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert state() == before and not Session.objects.exists()


def state():
    """Everything a request could change, for before/after comparisons."""
    return {
        "profiles": list(AuthProfile.objects.order_by("pk").values()),
        "sessions": list(Session.objects.order_by("pk").values()),
        "events": Event.objects.count(),
        "leases": Lease.objects.count(),
    }


REPORT = '{"profile": "anthropic:default", "outcome": "rate_limit", '


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (REPORT + '"retry_after_seconds": 1e999}', "invalid"),
        (REPORT + '"retry_after_seconds": NaN}', "malformed"),
        (REPORT + '"retry_after_seconds": -1}', "invalid"),
        (REPORT + '"retry_after_seconds": "60"}', "invalid"),
        (REPORT + '"retry_after_seconds": ' + "9" * 5000 + "}", "malformed"),
        (REPORT + '"detail": ' + "{\"a\": " * 3000 + "1" + "}" * 3000 + "}", "malformed"),
        (REPORT + '"detail": ["not", "a", "string"]}', "invalid"),
        (REPORT + '"model": "gpt\\u0000"}', "invalid"),
        (REPORT + '"out\\u0007come": "x"}', "invalid"),
        (REPORT + '"session_key": "' + "k" * 256 + '"}', "invalid"),
        (REPORT + '"lease_id": "forged.0123456789abcdef01234567", "session_key": "s"}', "invalid"),
        ('{"profile": "anthropic:default", "outcome": "exploded"}', "invalid"),
    ],
    ids=["float-overflow", "nan", "negative", "string-number", "5000-digit-number", "deeply-nested-detail",
         "list-detail", "nul-in-model", "control-char-in-key", "key-256", "forged-lease", "unknown-outcome"],
)
def test_it_refuses_bad_reports_and_changes_nothing(anthropic, api, clock, body, code):
    """A bad report is a 400 with the documented body; no count, no cooldown, no event, no lease."""
    before = state()
    response = api.post("/api/report", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert state() == before


def test_it_caps_an_enormous_retry_hint_at_24_hours(anthropic, api, clock):
    """A 400-digit retry_after_seconds is a valid number ≥ 0: clamped to 24 h, not a crash."""
    response = api.post("/api/report", REPORT + '"retry_after_seconds": ' + "9" * 400 + "}",
                        content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["profile"]["cooldown_until"] == "2026-04-08T12:00:00+00:00"


def test_it_accepts_a_255_character_session_key(anthropic, api, clock):
    """The limit is inclusive."""
    assert select(api, session_key="k" * 255)["session_key"] == "k" * 255


def test_it_answers_unknown_api_paths_in_the_error_format(db, client):
    """404 as JSON under /api/."""
    response = client.get("/api/nothing/here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
