"""Secrets at rest and in flight: key rotation, database dumps, and every path a secret travels."""

import logging
import shutil
import subprocess

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.views.debug import ExceptionReporter

from profiles import crypto
from profiles import services as profile_services
from profiles.models import AuthProfile
from tests.conftest import T0, make_client

KNOWN = "sk-known-SECRET-5f3a9c1e7b2d4680aa"
PATCHED = "sk-patched-SECRET-0c6d2e8f4a1b3957bb"
CRASHED = "sk-crashed-SECRET-9e1d7c5b3a2f4860cc"
REFRESH = "rt-refresh-SECRET-77aa55cc33ee11dd"


def create(profile_id, secret=KNOWN, refresh=""):
    return profile_services.create_profile(profile_id, "oauth", secret, T0, "test", refresh=refresh)


# ---------------------------------------------------------------- rotation


def test_it_reencrypts_every_secret_with_the_newest_key(db, capsys):
    """Old key → ring [new, old] → rotate_encryption_keys → readable with the new key alone, not the old."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(AUTHBROKER_ENCRYPTION_KEYS=[old]):
        create("anthropic:default", refresh=REFRESH)
        create("anthropic:backup1", "sk-backup-one-0123456789")
        create("openai:default", "sk-openai-0123456789abcdef")
    stored_before = dict(AuthProfile.objects.values_list("pk", "secret_encrypted"))
    updated_before = dict(AuthProfile.objects.values_list("pk", "updated_at"))
    with override_settings(AUTHBROKER_ENCRYPTION_KEYS=[new, old]):
        call_command("rotate_encryption_keys")
        call_command("rotate_encryption_keys")  # twice is harmless
    assert "Re-encrypted 3 profile(s)" in capsys.readouterr().out
    assert all(stored_before[pk] != value for pk, value in AuthProfile.objects.values_list("pk", "secret_encrypted"))
    assert dict(AuthProfile.objects.values_list("pk", "updated_at")) == updated_before
    with override_settings(AUTHBROKER_ENCRYPTION_KEYS=[new]):
        profiles = {p.pk: p for p in AuthProfile.objects.all()}
        assert profiles["anthropic:default"].reveal_secret() == KNOWN
        assert profiles["anthropic:default"].reveal_refresh() == REFRESH
        assert profiles["anthropic:backup1"].reveal_secret() == "sk-backup-one-0123456789"
        assert profiles["openai:default"].reveal_secret() == "sk-openai-0123456789abcdef"
    with override_settings(AUTHBROKER_ENCRYPTION_KEYS=[old]), pytest.raises(crypto.SecretUnreadable):
        AuthProfile.objects.get(pk="anthropic:default").reveal_secret()


def test_it_refuses_to_finish_rotation_while_a_secret_is_unreadable(db):
    """A ring that lost the old key too early: the command fails and names the profiles it could not read."""
    old, stranger = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(AUTHBROKER_ENCRYPTION_KEYS=[old]):
        create("anthropic:default")
    stored = AuthProfile.objects.get().secret_encrypted
    with override_settings(AUTHBROKER_ENCRYPTION_KEYS=[stranger]), pytest.raises(CommandError, match="anthropic:default"):
        call_command("rotate_encryption_keys")
    assert AuthProfile.objects.get().secret_encrypted == stored


def test_it_keeps_secrets_readable_when_moving_off_the_derived_key(db, settings):
    """Secrets under the derived key, keys set: still readable (W004 warns), rotation re-encrypts, and then a new
    DJANGO_SECRET_KEY (another derived key) no longer matters."""
    from console.checks import check_secrets_under_the_derived_key

    new = Fernet.generate_key().decode()
    settings.AUTHBROKER_ENCRYPTION_KEYS = []
    create("anthropic:default", refresh=REFRESH)
    create("openai:default", "sk-openai-0123456789abcdef")

    settings.AUTHBROKER_ENCRYPTION_KEYS = [new]
    profile = AuthProfile.objects.get(pk="anthropic:default")
    assert (profile.reveal_secret(), profile.reveal_refresh()) == (KNOWN, REFRESH)
    [warning] = check_secrets_under_the_derived_key(None)
    assert warning.id == "authbroker.W004" and "2 profile(s)" in warning.msg

    call_command("rotate_encryption_keys")

    assert check_secrets_under_the_derived_key(None) == []
    settings.SECRET_KEY = "a-different-secret-key-after-rotation-0123456789"
    profiles = {p.pk: p for p in AuthProfile.objects.all()}
    assert profiles["anthropic:default"].reveal_secret() == KNOWN
    assert profiles["anthropic:default"].reveal_refresh() == REFRESH
    assert profiles["openai:default"].reveal_secret() == "sk-openai-0123456789abcdef"
    with override_settings(AUTHBROKER_ENCRYPTION_KEYS=[]), pytest.raises(crypto.SecretUnreadable):
        profiles["anthropic:default"].reveal_secret()  # only the configured key reads it now


def test_it_never_encrypts_with_the_derived_key_once_keys_are_set(db, settings):
    """With keys configured, a new secret is written under the newest configured key."""
    new = Fernet.generate_key().decode()
    settings.AUTHBROKER_ENCRYPTION_KEYS = [new]
    create("anthropic:default")

    assert Fernet(new).decrypt(AuthProfile.objects.get().secret_encrypted.encode()).decode() == KNOWN


# ---------------------------------------------------------------- at rest


def all_text_in_database():
    """Every row of every table, as text (what a dump or a stolen backup shows)."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_it_never_stores_a_secret_in_any_column(anthropic, api, admin_api):
    """Every table read back as text: no secret, no refresh token, no raw API token."""
    create("openai:default", refresh=REFRESH)
    admin_api.patch("/api/profiles/anthropic:default", {"secret": PATCHED}, format="json")
    dump = all_text_in_database()
    assert "anthropic:default" in dump and "sk-p…" in dump  # the dump did read the profile rows
    for secret in (KNOWN, PATCHED, REFRESH, "sk-ant-default-secret-0123456789"):
        assert secret not in dump
    assert api._credentials["HTTP_AUTHORIZATION"].split()[1] not in dump


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_keeps_secrets_out_of_pg_dump():
    """`pg_dump` of the live database (committed rows) contains no secret."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump not installed")
    create("anthropic:default", refresh=REFRESH)
    db = connection.settings_dict
    dump = subprocess.run(
        [pg_dump, "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"] or "postgres",
         "--data-only", db["NAME"]],
        capture_output=True, text=True, timeout=60, check=True, env={"PGPASSWORD": db["PASSWORD"] or ""},
    ).stdout
    assert "anthropic:default" in dump
    assert KNOWN not in dump and REFRESH not in dump


# ---------------------------------------------------------------- in flight


@pytest.fixture
def debug_logs(caplog):
    """Everything logged at DEBUG, SQL with its parameters included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = False


def test_it_never_shows_a_secret_outside_a_credentials_answer(anthropic, debug_logs, clock):
    """A known secret sent through create, patch, errors, select, report and reads: only the credentials answer has it."""
    admin = make_client(["gateway", "admin"])
    vault = make_client(["gateway", "credentials"])
    answers = [
        admin.post("/api/profiles", {"id": "openai:default", "kind": "api_key", "secret": KNOWN}, format="json"),
        admin.post("/api/profiles", {"id": "openai:default", "kind": "api_key", "secret": KNOWN}, format="json"),
        admin.post("/api/profiles", {"id": "openai:other", "kind": "nope", "secret": KNOWN}, format="json"),
        admin.post("/api/profiles", {"id": "openai:other", "kind": "api_key", "secret": KNOWN, "position": -1},
                   format="json"),
        admin.post("/api/profiles", {"id": "openai:other", "kind": "api_key", "secret": KNOWN * 300}, format="json"),
        admin.post("/api/profiles", {"id": "bad id", "kind": "api_key", "secret": KNOWN}, format="json"),
        admin.patch("/api/profiles/openai:default", {"secret": PATCHED}, format="json"),
        admin.patch("/api/profiles/openai:default", {"secret": KNOWN, "position": "x"}, format="json"),
        admin.patch("/api/profiles/openai:nobody", {"secret": KNOWN}, format="json"),
        admin.get("/api/profiles/openai:default"),
        admin.get("/api/profiles"),
        admin.get("/api/providers/openai"),
        admin.get("/api/events"),
        admin.post("/api/select", {"session_key": "s", "provider": "openai"}, format="json"),
        admin.post("/api/report", {"profile": "openai:default", "outcome": "rate_limit", "detail": "x"},
                   format="json"),
        admin.post("/api/sessions/s/reset", {"provider": "openai"}, format="json"),
        admin.get("/api/sessions/s/events"),
        admin.put("/api/sessions/s/override", {"profile": "openai:default"}, format="json"),
    ]
    statuses = [r.status_code for r in answers]
    assert statuses == [201, 409, 400, 400, 400, 400, 200, 400, 404, 200, 200, 200, 200, 200, 200, 200, 200, 200]
    for response in answers:
        assert KNOWN.encode() not in response.content and PATCHED.encode() not in response.content
    handed_out = vault.post("/api/select", {"session_key": "t", "provider": "openai"}, format="json").json()
    assert handed_out["credential"] == {"kind": "api_key", "secret": PATCHED}  # the one place it belongs
    logged = debug_logs.text + "".join(str(r.args) + str(r.__dict__) for r in debug_logs.records)
    assert "INSERT INTO" in logged  # SQL with parameters was really captured
    for secret in (KNOWN, PATCHED):
        assert secret not in logged


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_it_keeps_secrets_and_tokens_out_of_exception_reports(db, debug_logs, monkeypatch, debug):
    """A crash while storing a secret: the report (DEBUG page, error e-mail) shows neither it nor the token."""
    admin = make_client(["gateway", "admin"])
    raw_token = admin._credentials["HTTP_AUTHORIZATION"].split()[1]
    admin.raise_request_exception = False

    def crash(events):
        raise RuntimeError("storage exploded")

    monkeypatch.setattr(profile_services, "write_events", crash)
    with override_settings(DEBUG=debug):
        response = admin.post("/api/profiles", {"id": "openai:default", "kind": "api_key", "secret": CRASHED},
                              format="json")
        assert response.status_code == 500
        record = next(r for r in debug_logs.records if r.name == "django.request" and r.exc_info)
        reporter = ExceptionReporter(record.request, *record.exc_info)
        reports = [reporter.get_traceback_html(), reporter.get_traceback_text(), response.content.decode()]
    assert "storage exploded" in reports[0] and "secret" in reports[0]  # a real report, frames included
    for report in reports:
        assert CRASHED not in report and raw_token not in report
    assert CRASHED not in debug_logs.text and raw_token not in debug_logs.text


@pytest.fixture
def staff_client(client, db):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("operator", "op@example.com", "pw-0123456789-long"))
    return client


def test_it_never_shows_a_secret_in_the_admin_or_the_console(anthropic, staff_client, debug_logs, monkeypatch):
    """A secret set in the admin, refused in the admin, crashed in the admin: no page, report or log shows it."""
    from django.urls import reverse

    create("openai:default")
    change = reverse("admin:profiles_authprofile_change", args=["openai:default"])
    form = {"kind": "api_key", "position": 0, "enabled": "on", "model_cooldowns-TOTAL_FORMS": 0,
            "model_cooldowns-INITIAL_FORMS": 0, "model_cooldowns-MIN_NUM_FORMS": 0,
            "model_cooldowns-MAX_NUM_FORMS": 1000}
    assert staff_client.post(change, {**form, "new_secret": PATCHED}).status_code == 302
    assert AuthProfile.objects.get(pk="openai:default").reveal_secret() == PATCHED
    refused = staff_client.post(change, {**form, "position": -1, "new_secret": KNOWN})
    assert refused.status_code == 200 and KNOWN.encode() not in refused.content  # the form again, not the value
    pages = [refused.content]
    for url in (change, reverse("admin:profiles_authprofile_changelist"),
                reverse("admin:profiles_authprofile_history", args=["openai:default"]),
                reverse("admin:profiles_event_changelist"), "/console/", "/console/providers/openai/",
                "/console/sessions/", "/console/events/", "/console/events.csv"):
        response = staff_client.get(url)
        assert response.status_code == 200, url
        pages.append(b"".join(response.streaming_content) if response.streaming else response.content)

    def crash(*args, **kwargs):
        raise RuntimeError("admin storage exploded")

    monkeypatch.setattr(profile_services, "update_profile", crash)
    staff_client.raise_request_exception = False
    assert staff_client.post(change, {**form, "new_secret": CRASHED}).status_code == 500
    record = next(r for r in debug_logs.records if r.name == "django.request" and r.exc_info)
    reporter = ExceptionReporter(record.request, *record.exc_info)
    reports = [reporter.get_traceback_html(), reporter.get_traceback_text()]
    assert "admin storage exploded" in reports[0] and "new_secret" in reports[0]  # the POST data is listed
    for text in [page.decode() for page in pages] + reports + [debug_logs.text]:
        for secret in (KNOWN, PATCHED, CRASHED):
            assert secret not in text
