"""The openclaw store reader (sessions_app/openclaw/stores.py) on every form, without a database.

The stores under tests/fixtures/openclaw/<form>/ were written by the real openclaw packages
(generate.mjs); <form>.view.json is what openclaw's own readers returned for them, so the reader is
checked against openclaw itself rather than against our idea of the format.
"""

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from sessions_app.openclaw import stores as oc
from sessions_app.openclaw.stores import (
    StoreError,
    read_auth_files,
    read_sessions_file,
    read_state_dir,
)

FIXTURES = Path(__file__).parent / "fixtures" / "openclaw"
FORMS = {"single-json": "2026.4.5", "split-json": "2026.4.29", "sqlite": "2026.9.6"}
HOUR = 3_600_000

USAGE_FIELDS = {
    "errorCount": "error_count", "failureCounts": "failure_counts",
    "cooldownUntil": "cooldown_until", "cooldownReason": "cooldown_reason", "cooldownModel": "cooldown_model",
    "disabledUntil": "disabled_until", "disabledReason": "disabled_reason",
    "blockedUntil": "blocked_until", "blockedReason": "blocked_reason", "blockedSource": "blocked_source",
    "lastUsed": "last_used", "lastFailureAt": "last_failure_at", "lastProbeAt": "last_probe_at",
}


def view(form):
    return json.loads((FIXTURES / f"{form}.view.json").read_text())


def main_store(snapshot):
    """The store openclaw reads for agent main: the shared database in 2026.9, else agents/main/agent/."""
    return snapshot.shared if snapshot.shared is not None else snapshot.agents["main"].auth


def assert_store_matches_openclaw(store, expected):
    assert list(store.profiles) == list(expected["profiles"])
    for profile_id, cred in expected["profiles"].items():
        profile = store.profiles[profile_id]
        assert profile.kind == cred["type"]
        assert profile.provider == cred["provider"]
        secret_field, ref_field = oc.SECRET_FIELDS[cred["type"]]
        assert profile.secret == (cred.get(secret_field) or None)  # 2026.4 holds "" beside a tokenRef
        ref = cred.get(ref_field)
        assert profile.secret_ref == (oc.SecretRef(ref["source"], ref["provider"], ref["id"]) if ref else None)
        assert profile.expires == cred.get("expires")
    assert store.order == (expected.get("order") or {})
    assert store.last_good == (expected.get("lastGood") or {})
    assert set(store.usage) == set(expected.get("usageStats") or {})
    for profile_id, stats in (expected.get("usageStats") or {}).items():
        usage = store.usage[profile_id]
        for key, value in stats.items():
            assert getattr(usage, USAGE_FIELDS[key]) == value, (profile_id, key)
        for key, attr in USAGE_FIELDS.items():
            if key not in stats:
                assert getattr(usage, attr) in (None, 0, {}), (profile_id, key)


# ---------------------------------------------------------------- stores openclaw wrote itself


@pytest.mark.parametrize("form", FORMS)
def test_it_reads_each_form_openclaw_wrote_as_openclaw_reads_it(form):
    snapshot = read_state_dir(FIXTURES / form)
    expected = view(form)
    assert expected["openclawVersion"] == FORMS[form]
    assert snapshot.forms == {form}
    assert_store_matches_openclaw(main_store(snapshot), expected["agents"]["main"]["authStore"])
    # Agent ops has a store of its own (openclaw copied main's profiles into it when it was created).
    assert_store_matches_openclaw(snapshot.agents["ops"].auth, expected["agents"]["ops"]["authStore"])
    assert snapshot.warnings == []


@pytest.mark.parametrize("form", FORMS)
def test_it_reads_the_sessions_and_their_pins_as_openclaw_reads_them(form):
    snapshot = read_state_dir(FIXTURES / form)
    expected = view(form)["agents"]["main"]["sessions"]
    sessions = {s.key: s for s in snapshot.agents["main"].sessions}
    assert set(sessions) == set(expected)
    for key, entry in expected.items():
        session = sessions[key]
        assert session.agent_id == "main"
        assert session.session_id == entry["sessionId"]
        assert session.updated_at == entry["updatedAt"]
        assert (session.pin.profile_id if session.pin else None) == entry.get("authProfileOverride")
        if session.pin:
            assert session.pin.raw_source == entry.get("authProfileOverrideSource")
            assert session.pin.compaction_count == entry.get("authProfileOverrideCompactionCount")
    assert snapshot.agents["main"].sessions_form == ("sqlite" if form == "sqlite" else "json")


@pytest.mark.parametrize("form", FORMS)
def test_it_reads_pin_sources_the_way_openclaw_does(form):
    """auto and user as written; no source with a compaction stamp is auto, without one user."""
    sessions = {s.key: s for s in read_state_dir(FIXTURES / form).sessions()}
    auto = sessions["agent:main:telegram:dm:42"].pin
    assert (auto.profile_id, auto.source, auto.provenance) == ("anthropic:backup1", "auto", "explicit")
    user = sessions["agent:main:discord:channel:1234567890"].pin
    assert (user.profile_id, user.source, user.provenance) == ("anthropic:backup2", "user", "explicit")
    stamped = sessions["agent:main:main"].pin
    assert (stamped.source, stamped.provenance, stamped.compaction_count) == ("auto", "compaction-stamp", 3)
    unstamped = next(s for k, s in sessions.items() if k.lower() == "agent:main:slack:dm:u999").pin
    assert (unstamped.source, unstamped.provenance) == ("user", "no-stamp")
    assert sessions["agent:main:cron:nightly-digest"].pin is None


def test_it_reads_a_user_link_pin_as_a_user_pin():
    """openclaw 2026.9 writes the source `user-link`; authbroker holds it as `user`."""
    pin = {s.key: s for s in read_state_dir(FIXTURES / "sqlite").sessions()}["agent:main:whatsapp:dm:7"].pin
    assert (pin.profile_id, pin.raw_source, pin.source, pin.provenance) == (
        "openai:work", "user-link", "user", "user-link")


@pytest.mark.parametrize("form", FORMS)
def test_it_keeps_the_windows_openclaw_wrote(form):
    snapshot = read_state_dir(FIXTURES / form)
    t0 = view(form)["t0"]
    store = main_store(snapshot)
    backup1, backup2 = store.usage["anthropic:backup1"], store.usage["anthropic:backup2"]
    assert backup1.cooldown_until > t0 and backup1.cooldown_reason == "rate_limit"
    assert backup1.error_count == 2 and backup1.failure_counts == {"rate_limit": 2}
    assert backup2.disabled_until > t0 and backup2.disabled_reason == "billing"
    personal = store.usage["openai:personal"]
    assert personal.cooldown_model == "gpt-5" and personal.cooldown_until > t0
    assert store.last_good == {"anthropic": "anthropic:default", "openai": "openai:personal"}
    assert store.order["anthropic"] == ["anthropic:default", "anthropic:backup1", "anthropic:backup2"]
    assert store.profiles["anthropic:default"].expires == t0 + 30 * 24 * HOUR


def test_it_reads_a_subscription_block():
    """openclaw 2026.9's blockedUntil/blockedReason, five hours ahead of when it was written."""
    snapshot = read_state_dir(FIXTURES / "sqlite")
    t0 = view("sqlite")["t0"]
    work = snapshot.shared.usage["openai:work"]
    assert work.blocked_reason == "subscription_limit"
    assert work.blocked_source == "codex_rate_limits"
    assert 5 * HOUR <= work.blocked_until - t0 < 5 * HOUR + 300_000  # written within minutes of t0
    assert work.cooldown_until is None and work.disabled_until is None


@pytest.mark.parametrize("form", FORMS)
def test_it_reads_a_profile_whose_secret_is_a_reference(form):
    snapshot = read_state_dir(FIXTURES / form)
    work = main_store(snapshot).profiles["openai:work"]
    assert work.secret is None
    assert work.secret_ref == oc.SecretRef("env", "default", "OPENAI_API_KEY")
    ops = snapshot.agents["ops"].auth.profiles["anthropic:ops"]
    assert (ops.kind, ops.secret, ops.secret_ref) == ("token", None, oc.SecretRef("file", "vault", "/anthropic/ops"))


def test_it_finds_the_2026_9_stores_where_openclaw_put_them():
    """Main's credentials in state/openclaw.sqlite, ops's in its agent database, sessions in session_nodes."""
    snapshot = read_state_dir(FIXTURES / "sqlite")
    assert snapshot.app_version == "2026.9.6"
    assert snapshot.shared.form == "sqlite" and "config_machine_state" in snapshot.shared.origin
    assert snapshot.agents["main"].auth is None  # its auth tables are empty: main uses the shared store
    assert snapshot.agents["main"].app_version == "2026.9.6"
    assert "auth_profile_store" in snapshot.agents["ops"].auth.origin
    assert list(snapshot.agents) == ["main", "ops"]


def test_it_opens_sqlite_read_only_and_changes_nothing(tmp_path):
    state = shutil.copytree(FIXTURES / "sqlite", tmp_path / "state-dir")

    def digest():
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(state.rglob("*")) if p.is_file()}

    before = digest()
    read_state_dir(state)
    assert digest() == before


def test_it_reads_the_split_files_with_the_state_file_winning_per_key(tmp_path):
    """As openclaw 2026.4 merges them: a provider or profile only in auth-profiles.json still counts."""
    agent = tmp_path / "agents" / "main" / "agent"
    agent.mkdir(parents=True)
    (agent / "auth-profiles.json").write_text(json.dumps({
        "version": 1,
        "profiles": {"a:x": {"type": "api_key", "provider": "a", "key": "k1"},
                     "b:y": {"type": "api_key", "provider": "b", "key": "k2"}},
        "order": {"a": ["a:x"], "b": ["b:y"]},
        "usageStats": {"a:x": {"errorCount": 4}, "b:y": {"errorCount": 1}},
    }))
    (agent / "auth-state.json").write_text(json.dumps({
        "version": 1, "order": {"a": []}, "usageStats": {"a:x": {"errorCount": 2}}}))
    store = read_state_dir(tmp_path).agents["main"].auth
    assert store.form == "split-json"
    assert store.order == {"a": [], "b": ["b:y"]}
    assert store.usage["a:x"].error_count == 2
    assert store.usage["b:y"].error_count == 1


def test_it_ignores_json_files_left_in_a_2026_9_installation_with_a_warning(tmp_path):
    """openclaw 2026.9 no longer reads them; `openclaw doctor --fix` migrates them."""
    state = shutil.copytree(FIXTURES / "sqlite", tmp_path / "state-dir")
    shutil.copy(FIXTURES / "auth-profiles.json", state / "agents" / "ops" / "agent" / "auth-profiles.json")
    (state / "agents" / "main" / "sessions").mkdir(parents=True)
    shutil.copy(FIXTURES / "sessions.json", state / "agents" / "main" / "sessions" / "sessions.json")
    snapshot = read_state_dir(state)
    assert "z.ai:default" not in snapshot.agents["ops"].auth.profiles
    assert "anthropic:ops" in snapshot.agents["ops"].auth.profiles
    assert "agent:main:telegram:dm:42" in {s.key for s in snapshot.sessions()}
    assert "agent:main:slack:dm:U999" not in {s.key for s in snapshot.sessions()}  # only in the JSON file
    assert sorted(Path(w.split(": ")[0]).name for w in snapshot.warnings) == ["auth-profiles.json", "sessions.json"]
    assert all("openclaw doctor --fix" in w for w in snapshot.warnings)


# ---------------------------------------------------------------- the hand-written seed-shaped files


def test_it_reads_the_hand_written_seed_files():
    store = read_auth_files(FIXTURES / "auth-profiles.json")
    assert store.form == "single-json"
    assert list(store.profiles) == ["anthropic:default", "anthropic:backup1", "anthropic:backup2",
                                    "openai:work", "openai-codex:me@example.com", "z.ai:default"]
    codex = store.profiles["openai-codex:me@example.com"]
    assert (codex.kind, codex.secret, codex.refresh, codex.expires, codex.email) == (
        "oauth", "sample-access-token-4444", "sample-refresh-token-5555", 1775560000000, "me@example.com")
    assert store.profiles["z.ai:default"].provider == "z.ai"  # aliases are the importer's business
    assert store.order == {"anthropic": ["anthropic:default", "anthropic:backup1", "anthropic:backup2"]}
    backup1 = store.usage["anthropic:backup1"]
    assert (backup1.cooldown_until, backup1.cooldown_model) == (1775552797656, "claude-opus-4-6")
    assert store.usage["anthropic:backup2"].disabled_until == 1775570000000

    sessions = {s.key: s for s in read_sessions_file(FIXTURES / "sessions.json")}
    assert [sessions[k].pin.source if sessions[k].pin else None for k in sessions] == [
        "auto", "user", "auto", "user", None]
    assert sessions["agent:main:main"].pin.provenance == "compaction-stamp"


def test_it_reads_the_hand_written_files_laid_out_as_a_state_dir(tmp_path):
    agent = tmp_path / "agents" / "main"
    (agent / "agent").mkdir(parents=True)
    (agent / "sessions").mkdir()
    shutil.copy(FIXTURES / "auth-profiles.json", agent / "agent" / "auth-profiles.json")
    shutil.copy(FIXTURES / "sessions.json", agent / "sessions" / "sessions.json")
    snapshot = read_state_dir(tmp_path)
    assert snapshot.forms == {"single-json"}
    assert len(snapshot.agents["main"].auth.profiles) == 6
    assert len(snapshot.sessions()) == 5


def test_it_refuses_a_directory_with_no_store(tmp_path):
    with pytest.raises(StoreError, match="holds no openclaw store"):
        read_state_dir(tmp_path)


# ---------------------------------------------------------------- bad numbers and shapes


def write_split(tmp_path, *, profiles=None, state=None, raw_state=None, raw_profiles=None):
    agent = tmp_path / "agents" / "main" / "agent"
    agent.mkdir(parents=True, exist_ok=True)
    profiles = profiles if profiles is not None else {
        "anthropic:default": {"type": "token", "provider": "anthropic", "token": "sk-ant-secret-value"}}
    (agent / "auth-profiles.json").write_text(
        raw_profiles if raw_profiles is not None else json.dumps({"version": 1, "profiles": profiles}))
    (agent / "auth-state.json").write_text(
        raw_state if raw_state is not None else json.dumps({"version": 1, **(state or {})}))
    return tmp_path


def stats(**fields):
    return {"usageStats": {"anthropic:default": fields}}


def refused(tmp_path, **kwargs):
    with pytest.raises(StoreError) as info:
        read_state_dir(write_split(tmp_path, **kwargs))
    return info.value


@pytest.mark.parametrize("value", ["5000000000", "3e9", "1" + "0" * 400, "-1", "2147483648"])
def test_it_refuses_an_error_count_out_of_range(tmp_path, value):
    error = refused(tmp_path, raw_state='{"usageStats": {"anthropic:default": {"errorCount": ' + value + "}}}")
    assert error.file.endswith("auth-state.json")
    assert error.field == 'usageStats["anthropic:default"].errorCount'
    assert "0..2147483647" in error.message


def test_it_accepts_the_largest_count():
    """2,147,483,647 is the limit itself, not past it."""
    check = oc._Check("f")
    assert check.count(2_147_483_647, "x") == 2_147_483_647


def test_it_refuses_a_fractional_count(tmp_path):
    error = refused(tmp_path, state=stats(failureCounts={"rate_limit": 1.5}))
    assert error.field == 'usageStats["anthropic:default"].failureCounts["rate_limit"]'
    assert "whole number" in error.message


@pytest.mark.parametrize("literal,words", [
    ("1e400", "must be a finite number"),  # JSON.parse reads it as Infinity
    ("-1e400", "must be a finite number"),
    ("1" + "0" * 400, "is out of range"),
])
def test_it_refuses_a_time_that_no_calendar_holds(tmp_path, literal, words):
    error = refused(tmp_path, raw_state='{"usageStats": {"anthropic:default": {"cooldownUntil": ' + literal + "}}}")
    assert error.field == 'usageStats["anthropic:default"].cooldownUntil'
    assert words in error.message


def test_it_refuses_a_time_after_year_9999(tmp_path):
    error = refused(tmp_path, state=stats(disabledUntil=oc.MAX_EPOCH_MS + 1))
    assert error.field == 'usageStats["anthropic:default"].disabledUntil'
    assert "out of range" in error.message and "9999-12-31" in error.message


def test_it_refuses_epoch_seconds_with_a_hint(tmp_path):
    """A cooldown an hour ahead written in seconds must not import as a moment in 1970."""
    error = refused(tmp_path, state=stats(cooldownUntil=1_789_045_200))
    assert error.field == 'usageStats["anthropic:default"].cooldownUntil'
    assert "seconds" in error.message and "multiply" in error.message and "1000" in error.message


def test_it_refuses_epoch_seconds_in_a_profile_expiry(tmp_path):
    error = refused(tmp_path, profiles={"anthropic:default": {
        "type": "token", "provider": "anthropic", "token": "t", "expires": 1_789_045_200}})
    assert error.file.endswith("auth-profiles.json")
    assert error.field == 'profiles["anthropic:default"].expires'
    assert "seconds" in error.message


def test_it_refuses_nan(tmp_path):
    error = refused(tmp_path, raw_state='{"usageStats": {"anthropic:default": {"lastUsed": NaN}}}')
    assert "not valid JSON" in error.message


@pytest.mark.parametrize("raw", [
    '{"version": 1, "profiles": {"a:x": {"type": "api_key", "key": "k1"}, "a:x": {"type": "api_key", "key": "k2"}}}',
    '{"version": 1, "profiles": {"a:x": {"type": "api_key", "key": "k1", "key": "k2"}}}',
])
def test_it_refuses_duplicate_keys(tmp_path, raw):
    error = refused(tmp_path, raw_profiles=raw)
    assert error.file.endswith("auth-profiles.json")
    assert "appears twice" in error.message
    assert "k1" not in str(error) and "k2" not in str(error)


def test_it_refuses_duplicate_keys_in_the_state_file(tmp_path):
    error = refused(tmp_path, raw_state='{"lastGood": {"anthropic": "anthropic:default", "anthropic": "x:y"}}')
    assert error.file.endswith("auth-state.json")
    assert '"anthropic" appears twice' in error.message


def test_it_refuses_a_50_mb_secret_without_repeating_it(tmp_path):
    secret = "sk-ant-" + "x" * (50 * 1024 * 1024)
    error = refused(tmp_path, profiles={"anthropic:default": {"type": "token", "provider": "anthropic",
                                                                "token": secret}})
    assert error.field == 'profiles["anthropic:default"].token'
    assert "16384 bytes" in error.message
    assert "xxxx" not in str(error)


def test_it_accepts_a_secret_at_the_size_limit(tmp_path):
    secret = "k" * oc.MAX_SECRET_BYTES
    snapshot = read_state_dir(write_split(tmp_path, profiles={"a:x": {"type": "api_key", "key": secret}}))
    assert snapshot.agents["main"].auth.profiles["a:x"].secret == secret


@pytest.mark.parametrize("kind,ref_field", [("api_key", "keyRef"), ("token", "tokenRef")])
def test_it_reads_a_reference_without_a_secret(tmp_path, kind, ref_field):
    ref = {"source": "exec", "provider": "op", "id": "vault/item"}
    snapshot = read_state_dir(write_split(tmp_path, profiles={"a:x": {"type": kind, "provider": "a",
                                                                        ref_field: ref}}))
    profile = snapshot.agents["main"].auth.profiles["a:x"]
    assert (profile.secret, profile.secret_ref) == (None, oc.SecretRef("exec", "op", "vault/item"))


def test_it_refuses_a_profile_with_neither_secret_nor_reference(tmp_path):
    error = refused(tmp_path, profiles={"a:x": {"type": "api_key", "provider": "a", "key": None}})
    assert error.field == 'profiles["a:x"]'
    assert '"key" nor "keyRef"' in error.message


def test_it_refuses_a_reference_missing_its_id(tmp_path):
    error = refused(tmp_path, profiles={"a:x": {"type": "api_key", "keyRef": {"source": "env", "provider": "d"}}})
    assert error.field == 'profiles["a:x"].keyRef.id'


@pytest.mark.parametrize("entry,field,words", [
    ({"type": "password", "key": "k"}, 'profiles["a:x"].type', "one of api_key, token, oauth"),
    ({"type": "api_key", "key": 42}, 'profiles["a:x"].key', "must be a string, not a number"),
    ({"type": "api_key", "key": "k", "expires": "tomorrow"}, 'profiles["a:x"].expires', "must be a number"),
    ({"type": "api_key", "key": "k", "provider": "p" * 300}, 'profiles["a:x"].provider', "limit of 255"),
])
def test_it_refuses_a_profile_of_the_wrong_shape(tmp_path, entry, field, words):
    error = refused(tmp_path, profiles={"a:x": entry})
    assert error.field == field
    assert words in error.message


def test_it_refuses_too_many_profiles(tmp_path):
    many = {f"a:p{i}": {"type": "api_key", "key": "k"} for i in range(oc.MAX_PROFILES + 1)}
    error = refused(tmp_path, profiles=many)
    assert error.field == '"profiles"' and "limit of 10000" in error.message


def test_it_refuses_an_order_listing_a_profile_twice(tmp_path):
    error = refused(tmp_path, state={"order": {"anthropic": ["anthropic:default", "anthropic:default"]}})
    assert error.field == 'order["anthropic"]' and "twice" in error.message


def write_sessions(tmp_path, entries):
    write_split(tmp_path)
    sessions = tmp_path / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    (sessions / "sessions.json").write_text(json.dumps(entries))
    return tmp_path


@pytest.mark.parametrize("entry,field,words", [
    ({"sessionId": "s", "authProfileOverride": "a:x", "authProfileOverrideSource": "robot"},
     "authProfileOverrideSource", "one of auto, user, user-link"),
    ({"sessionId": "s", "authProfileOverride": "a:x", "authProfileOverrideCompactionCount": 5_000_000_000},
     "authProfileOverrideCompactionCount", "0..2147483647"),
    ({"sessionId": "s", "updatedAt": 1_789_041_600}, "updatedAt", "seconds"),
    ({"authProfileOverride": "a:x"}, "sessionId", "must be a string, not null"),
])
def test_it_refuses_a_session_entry_of_the_wrong_shape(tmp_path, entry, field, words):
    with pytest.raises(StoreError) as info:
        read_state_dir(write_sessions(tmp_path, {"agent:main:x": entry}))
    assert info.value.file.endswith("sessions.json")
    assert info.value.field == f'["agent:main:x"].{field}'
    assert words in info.value.message


def sqlite_copy(tmp_path):
    return shutil.copytree(FIXTURES / "sqlite", tmp_path / "state-dir")


def edit_cell(db_path, sql, *params):
    db = sqlite3.connect(db_path)
    db.execute(sql, params)
    db.commit()
    db.close()


def test_it_refuses_a_bad_count_inside_the_2026_9_state_database(tmp_path):
    state = sqlite_copy(tmp_path)
    db = state / "state" / "openclaw.sqlite"
    row = sqlite3.connect(db).execute(
        "SELECT value_json FROM config_machine_state WHERE state_key = 'authProfiles.state'").fetchone()[0]
    data = json.loads(row)
    data["usageStats"]["anthropic:backup1"]["errorCount"] = 5_000_000_000
    edit_cell(db, "UPDATE config_machine_state SET value_json = ? WHERE state_key = 'authProfiles.state'",
              json.dumps(data))
    with pytest.raises(StoreError) as info:
        read_state_dir(state)
    assert "openclaw.sqlite" in info.value.file and "authProfiles.state" in info.value.file
    assert info.value.field == 'usageStats["anthropic:backup1"].errorCount'
    assert "0..2147483647" in info.value.message


def test_it_refuses_duplicate_keys_inside_a_2026_9_agent_database(tmp_path):
    state = sqlite_copy(tmp_path)
    db = state / "agents" / "ops" / "agent" / "openclaw-agent.sqlite"
    edit_cell(db, "UPDATE auth_profile_state SET state_json = ? WHERE state_key = 'primary'",
              '{"version": 1, "lastGood": {"anthropic": "anthropic:ops", "anthropic": "anthropic:default"}}')
    with pytest.raises(StoreError) as info:
        read_state_dir(state)
    assert "openclaw-agent.sqlite" in info.value.file and "auth_profile_state" in info.value.file
    assert "appears twice" in info.value.message


def test_it_refuses_epoch_seconds_in_a_2026_9_session_row(tmp_path):
    state = sqlite_copy(tmp_path)
    db = state / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    entry = json.loads(sqlite3.connect(db).execute(
        "SELECT entry_json FROM session_nodes WHERE session_key = 'agent:main:main'").fetchone()[0])
    entry["updatedAt"] = 1_789_041_600
    edit_cell(db, "UPDATE session_nodes SET entry_json = ? WHERE session_key = 'agent:main:main'", json.dumps(entry))
    with pytest.raises(StoreError) as info:
        read_state_dir(state)
    assert "session_nodes" in info.value.file and "agent:main:main" in info.value.file
    assert info.value.field == "the entry.updatedAt" and "seconds" in info.value.message


def test_it_refuses_a_file_that_is_not_an_sqlite_database(tmp_path):
    state = sqlite_copy(tmp_path)
    (state / "state" / "openclaw.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="cannot be opened read-only as an SQLite database"):
        read_state_dir(state)


@pytest.mark.parametrize("form", FORMS)
def test_it_merges_the_stores_with_main_winning_over_an_agents_copy(form):
    snapshot = read_state_dir(FIXTURES / form)
    merged, conflicts = snapshot.merged()
    main = main_store(snapshot)
    assert list(merged.profiles)[: len(main.profiles)] == list(main.profiles)
    assert "anthropic:ops" in merged.profiles  # only agent ops has it
    assert merged.order["anthropic"] == main.order["anthropic"]  # not ops's own order
    assert merged.usage["anthropic:backup1"] is main.usage["anthropic:backup1"]
    assert conflicts == []  # ops holds copies of main's credentials, unchanged


def test_it_names_a_profile_whose_credential_differs_between_stores(tmp_path):
    state = shutil.copytree(FIXTURES / "split-json", tmp_path / "state-dir")
    path = state / "agents" / "ops" / "agent" / "auth-profiles.json"
    data = json.loads(path.read_text())
    data["profiles"]["anthropic:backup2"]["key"] = "sk-ant-rotated-in-ops-only"
    path.write_text(json.dumps(data))
    snapshot = read_state_dir(state)
    merged, conflicts = snapshot.merged()
    assert merged.profiles["anthropic:backup2"].secret == "sk-ant-api03-gen-backup2-2222222222"
    assert len(conflicts) == 1 and conflicts[0].startswith("anthropic:backup2: ")
    assert "rotated" not in conflicts[0] and "2222" not in conflicts[0]


def test_it_skips_a_session_row_openclaw_marked_invalid(tmp_path):
    state = sqlite_copy(tmp_path)
    db = state / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    edit_cell(db, "UPDATE session_nodes SET entry_valid = -1 WHERE session_key = 'agent:main:main'")
    snapshot = read_state_dir(state)
    assert "agent:main:main" not in {s.key for s in snapshot.sessions()}
    assert len(snapshot.sessions()) == 5
    assert snapshot.warnings == [f"{db}: session_nodes[\"agent:main:main\"] skipped: openclaw marked its entry "
                                 "invalid (entry_valid = -1)"]
