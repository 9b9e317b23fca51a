"""import_openclaw and export_openclaw (DESIGN §6), on files shaped like openclaw's."""

import json
import os
import stat
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from profiles import services as profile_services
from profiles.models import AuthProfile, Event, ModelCooldown, Provider
from sessions_app.models import Pin, Session
from sessions_app.openclaw import ACTOR, from_ms
from tests.conftest import T0
from tests.helpers import pin_of, select

SAMPLE = Path(__file__).parent / "fixtures" / "openclaw"
AUTH = SAMPLE / "auth-profiles.json"
SESSIONS = SAMPLE / "sessions.json"
SECRETS = [
    "sk-ant-oat01-sample-default-0000000000",
    "sk-ant-oat01-sample-backup1-1111111111",
    "sk-ant-api03-sample-backup2-2222222222",
    "sk-proj-sample-work-3333333333",
    "sample-access-token-4444",
    "sample-refresh-token-5555",
    "sample-zai-key-6666666666",
]
STRANDED = "agent:main:telegram:dm:42"


def run(command, *args):
    """Run a management command; returns everything it printed (stdout and stderr)."""
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def import_sample(auth=AUTH, sessions=SESSIONS):
    args = ["--auth-profiles", str(auth)]
    if sessions is not None:
        args += ["--sessions", str(sessions)]
    return run("import_openclaw", *args)


def variant(tmp_path, source, change, name=None):
    """A copy of a sample file with `change(data)` applied, written into tmp_path."""
    data = json.loads(source.read_text())
    change(data)
    path = tmp_path / (name or source.name)
    path.write_text(json.dumps(data))
    return path


def nothing_imported():
    return (Provider.objects.count(), AuthProfile.objects.count(), ModelCooldown.objects.count(),
            Session.objects.count(), Event.objects.count()) == (0, 0, 0, 0, 0)


@pytest.fixture
def imported(db, clock):
    """The sample files imported at T0."""
    return import_sample()


# ---------------------------------------------------------------- profiles


def test_it_imports_each_credential_type_with_its_secret(imported):
    """token, api_key and oauth profiles arrive with their kind, secret, refresh token and oauth extras."""
    profiles = AuthProfile.objects.in_bulk()
    assert sorted(profiles) == ["anthropic:backup1", "anthropic:backup2", "anthropic:default",
                                "openai-codex:me@example.com", "openai:work", "zai:default"]
    assert profiles["anthropic:default"].kind == "token"
    assert profiles["anthropic:default"].reveal_secret() == "sk-ant-oat01-sample-default-0000000000"
    assert profiles["anthropic:backup2"].kind == "api_key"
    assert profiles["anthropic:backup2"].reveal_secret() == "sk-ant-api03-sample-backup2-2222222222"
    oauth = profiles["openai-codex:me@example.com"]
    assert (oauth.kind, oauth.name) == ("oauth", "me@example.com")
    assert oauth.reveal_secret() == "sample-access-token-4444"
    assert oauth.reveal_refresh() == "sample-refresh-token-5555"
    assert oauth.metadata == {"email": "me@example.com"}
    assert oauth.expires_at == from_ms(1775560000000)  # v2: `expires` is the profile's expires_at
    assert "Profiles: 6 created, 0 updated, 0 unchanged." in imported


def test_it_resolves_provider_aliases(imported):
    """`z.ai:default` becomes `zai:default` of provider `zai`; no `z.ai` provider appears."""
    assert AuthProfile.objects.get(pk="zai:default").provider_id == "zai"
    assert not Provider.objects.filter(pk="z.ai").exists()


def test_it_creates_unknown_providers_with_defaults(imported):
    """Providers named only by the file are created with the default ladder, tracking and `ordered`."""
    codex = Provider.objects.get(pk="openai-codex")
    assert codex.strategy == "ordered"
    assert codex.cooldown_ladder_seconds == [60, 300, 1500, 3600]
    assert codex.track_failures is True


def test_it_takes_positions_from_the_explicit_order(db, clock, tmp_path):
    """A provider's `order` gives its profiles' positions, whatever their order in `profiles`."""
    auth = variant(tmp_path, AUTH, lambda d: d["order"].update(
        anthropic=["anthropic:backup2", "anthropic:default", "anthropic:backup1"]))
    import_sample(auth, None)
    positions = dict(AuthProfile.objects.filter(provider_id="anthropic").values_list("id", "position"))
    assert positions == {"anthropic:backup2": 0, "anthropic:default": 1, "anthropic:backup1": 2}


def test_it_follows_the_file_order_and_ordered_strategy_without_an_order(db, clock, tmp_path):
    """Without `order`, positions follow the file and the strategy becomes `ordered`, even if it was round robin."""
    profile_services.create_profile("openai:old", "api_key", "sk-proj-old-0123456789", T0, "test")
    profile_services.update_provider("openai", T0, "test", strategy="round_robin")

    def two_openai_keys(data):
        data["profiles"] = {
            "openai:zeta": {"type": "api_key", "provider": "openai", "key": "sk-proj-zeta-0123456789"},
            "openai:alpha": {"type": "api_key", "provider": "openai", "key": "sk-proj-alpha-0123456789"},
        }
        data["order"], data["lastGood"], data["usageStats"] = {}, {}, {}

    import_sample(variant(tmp_path, AUTH, two_openai_keys), None)
    positions = dict(AuthProfile.objects.filter(pk__in=["openai:zeta", "openai:alpha"]).values_list("id", "position"))
    assert positions == {"openai:zeta": 0, "openai:alpha": 1}
    assert Provider.objects.get(pk="openai").strategy == "ordered"


def test_it_imports_a_model_cooldown_instead_of_a_profile_cooldown(imported):
    """`cooldownModel` cools that (profile, model) pair; the profile itself keeps its counts but no cooldown."""
    backup1 = AuthProfile.objects.get(pk="anthropic:backup1")
    assert backup1.cooldown_until is None
    assert (backup1.error_count, backup1.failure_counts) == (1, {"rate_limit": 1})
    assert backup1.last_failure_at == from_ms(1775552737656)
    pair = ModelCooldown.objects.get(profile=backup1)
    assert pair.model == "claude-opus-4-6"
    assert (pair.cooldown_until, pair.cooldown_reason) == (from_ms(1775552797656), "rate_limit")
    assert pair.error_count == 1


def test_it_imports_a_billing_disablement(imported, clock):
    """`disabledUntil` and `disabledReason` arrive as a disablement, with its failure counts."""
    backup2 = AuthProfile.objects.get(pk="anthropic:backup2")
    assert backup2.disabled_until == from_ms(1775570000000)
    assert backup2.disabled_reason == "billing"
    assert (backup2.error_count, backup2.failure_counts) == (2, {"billing": 2})
    assert backup2.last_failure_at == from_ms(1775552000000)


def test_it_imports_last_used_and_last_good(imported):
    """`lastUsed` becomes last_used; `lastGood` names each provider's last good profile."""
    assert AuthProfile.objects.get(pk="anthropic:default").last_used == from_ms(1775552848071)
    assert dict(Provider.objects.filter(last_good__isnull=False).values_list("id", "last_good")) == {
        "anthropic": "anthropic:default", "openai": "openai:work"}


def test_it_reads_epoch_milliseconds_as_utc_times(imported):
    """Times in the file are epoch milliseconds; they arrive exact, as aware UTC datetimes."""
    last_used = AuthProfile.objects.get(pk="anthropic:default").last_used
    assert last_used.isoformat() == "2026-04-07T09:07:28.071000+00:00"


# ---------------------------------------------------------------- sessions


def test_it_imports_every_kind_of_pin(imported):
    """Pins keep their source; without one, a compaction stamp reads as auto and no stamp as user."""
    pins = {s.session_key: (None, "", None) for s in Session.objects.all()}
    pins.update({p.session.session_key: (p.profile_id, p.source, p.compaction_count)
                 for p in Pin.objects.select_related("session")})
    assert pins == {
        STRANDED: ("anthropic:backup1", "auto", 0),
        "agent:main:discord:channel:1234567890": ("anthropic:backup2", "user", None),
        "agent:main:main": ("anthropic:backup1", "auto", 3),
        "agent:main:slack:dm:U999": ("openai:work", "user", None),
        "cron:nightly-digest": (None, "", None),
    }
    stranded = Session.objects.get(session_key=STRANDED)
    assert str(stranded.session_id) == "7f1c2a9e-3b4d-4e5f-8a6b-0c1d2e3f4a5b"
    assert stranded.last_activity_at == from_ms(1775552848071)
    assert (pin_of(STRANDED).set_by, stranded.provider_id) == (ACTOR, "anthropic")
    assert list(Event.objects.filter(kind="override_set").order_by("session_key")
                .values_list("session_key", "source")) == [
        ("agent:main:discord:channel:1234567890", "user"), ("agent:main:main", "auto"),
        ("agent:main:slack:dm:U999", "user"), (STRANDED, "auto")]
    assert "Sessions: 5 created, 0 updated, 0 unchanged; 0 pins skipped." in imported


def test_it_reports_and_skips_a_pin_naming_an_unknown_profile(db, clock, tmp_path):
    """A pin to a profile that does not exist is reported; the session arrives without it, the rest as usual."""
    sessions = variant(tmp_path, SESSIONS, lambda d: d[STRANDED].update(authProfileOverride="anthropic:ghost"))
    output = import_sample(AUTH, sessions)
    assert f"pin skipped: session '{STRANDED}' names unknown profile 'anthropic:ghost'" in output
    assert "1 pins skipped" in output
    assert pin_of(STRANDED) is None
    assert Pin.objects.count() == 3


def test_it_records_what_it_creates_as_the_importer(imported):
    """Every event the import writes names `import:openclaw` as its actor."""
    events = Event.objects.all()
    assert set(events.values_list("actor", flat=True)) == {ACTOR}
    assert events.filter(kind="profile_created").count() == 6
    assert set(events.filter(kind="profile_changed").values_list("profile_id", flat=True)) == {
        "anthropic:default", "anthropic:backup1", "anthropic:backup2", "openai:work"}
    assert {e.after["last_good"] for e in events.filter(kind="provider_changed")} == {
        "anthropic:default", "openai:work"}


# ---------------------------------------------------------------- idempotency and updates


def test_it_changes_nothing_the_second_time(imported, clock):
    """Importing the same files again changes no row and writes no event."""
    rows = list(AuthProfile.objects.values()), list(Session.objects.values()), list(ModelCooldown.objects.values())
    events = Event.objects.count()
    clock.shift(3600)
    output = import_sample()
    assert "Profiles: 0 created, 0 updated, 6 unchanged." in output
    assert "Sessions: 0 created, 0 updated, 5 unchanged; 0 pins skipped." in output
    assert Event.objects.count() == events
    assert (list(AuthProfile.objects.values()), list(Session.objects.values()),
            list(ModelCooldown.objects.values())) == rows


def test_it_updates_what_changed_in_the_file(imported, clock, tmp_path):
    """A new secret, new stats and a moved pin are applied, each with an event; nothing else is touched."""
    clock.shift(3600)

    def change(data):
        data["profiles"]["anthropic:default"]["token"] = "sk-ant-oat01-sample-rotated-9999999999"
        data["usageStats"]["anthropic:default"].update(errorCount=1, cooldownUntil=1775567000000,
                                                       cooldownReason="overloaded")

    auth = variant(tmp_path, AUTH, change)
    sessions = variant(tmp_path, SESSIONS, lambda d: d["agent:main:slack:dm:U999"].update(
        authProfileOverride="openai:work", authProfileOverrideSource="auto"))
    before = Event.objects.count()
    output = import_sample(auth, sessions)
    assert "Profiles: 0 created, 1 updated, 5 unchanged." in output
    assert "Sessions: 0 created, 1 updated, 4 unchanged" in output
    default = AuthProfile.objects.get(pk="anthropic:default")
    assert default.reveal_secret() == "sk-ant-oat01-sample-rotated-9999999999"
    assert (default.cooldown_until, default.cooldown_reason) == (from_ms(1775567000000), "overloaded")
    new = Event.objects.filter(pk__gt=0).order_by("id")[before:]
    assert [(e.kind, e.profile_id, e.session_key) for e in new] == [
        ("profile_changed", "anthropic:default", ""), ("override_set", "openai:work", "agent:main:slack:dm:U999")]
    assert pin_of("agent:main:slack:dm:U999", "openai").source == "auto"
    assert new[0].after["secret_mask"] == "sk-a…9999"
    assert "rotated" not in json.dumps([new[0].before, new[0].after])


# ---------------------------------------------------------------- decisions after an import


def test_it_reads_expired_windows_as_expired(imported, clock, api):
    """Once the file's windows have ended, a new session gets anthropic:default again, and the windows stay as imported."""
    clock.move_to(from_ms(1775570000000) + timedelta(minutes=1))
    answer = select(api, session_key=STRANDED, new_session=True, model="claude-opus-4-6")
    assert (answer["profile"], answer["source"]) == ("anthropic:default", "default")
    assert select(api, session_key="agent:main:telegram:dm:77")["profile"] == "anthropic:default"
    backup2 = AuthProfile.objects.get(pk="anthropic:backup2")
    assert backup2.disabled_until == from_ms(1775570000000)
    explained = select(api, session_key="agent:main:telegram:dm:78", explain=True, model="claude-opus-4-6")
    assert all(c["available"] for c in explained["candidates"])


def test_it_keeps_an_imported_disablement_that_has_not_ended(imported, api):
    """At T0 the billing disablement is still running: the person's pin keeps it, flagged as cooling."""
    answer = select(api, session_key="agent:main:discord:channel:1234567890", new_session=True)
    assert (answer["profile"], answer["source"], answer["cooling"]) == ("anthropic:backup2", "user", True)


# ---------------------------------------------------------------- bad files


def _invalid_json(tmp_path):
    path = tmp_path / "auth-profiles.json"
    path.write_text('{"profiles": {"anthropic:default": {"type": "token",}}')
    return path, None, "is not valid JSON"


def _profiles_not_an_object(tmp_path):
    return variant(tmp_path, AUTH, lambda d: d.update(profiles=["anthropic:default"])), None, \
        '"profiles": must be an object, not a list'


def _timestamp_a_string(tmp_path):
    auth = variant(tmp_path, AUTH, lambda d: d["usageStats"]["anthropic:backup1"].update(
        cooldownUntil="2026-04-07T09:06:37Z"))
    return auth, None, ('usageStats["anthropic:backup1"].cooldownUntil: must be a number, not a string')


def _order_not_an_object(tmp_path):
    return variant(tmp_path, AUTH, lambda d: d.update(order=[])), None, '"order": must be an object, not a list'


def _session_timestamp_a_string(tmp_path):
    sessions = variant(tmp_path, SESSIONS, lambda d: d[STRANDED].update(updatedAt="yesterday"))
    return AUTH, sessions, f'["{STRANDED}"].updatedAt: must be a number, not a string'


@pytest.mark.parametrize("make", [_invalid_json, _profiles_not_an_object, _order_not_an_object,
                                  _timestamp_a_string, _session_timestamp_a_string],
                         ids=["invalid-json", "profiles-not-an-object", "order-not-an-object", "timestamp-a-string",
                              "session-timestamp-a-string"])
def test_it_rejects_a_file_that_does_not_parse_and_imports_nothing(db, clock, tmp_path, make):
    """A bad file gets a clear error naming the file and the problem, and nothing at all is imported."""
    auth, sessions, problem = make(tmp_path)
    bad = sessions or auth
    with pytest.raises(CommandError) as caught:
        import_sample(auth, sessions)
    message = str(caught.value)
    assert f"cannot import {bad}: " in message
    assert problem in message
    assert "nothing was imported" in message
    assert nothing_imported()


def test_it_names_a_missing_file(db, tmp_path):
    """A file that is not there is named in the error."""
    with pytest.raises(CommandError, match="missing.json: cannot be read"):
        import_sample(tmp_path / "missing.json", None)
    assert nothing_imported()


# ---------------------------------------------------------------- export


def test_it_exports_in_openclaws_shape(imported, tmp_path):
    """The export has openclaw's profiles, order, lastGood and usageStats in epoch ms, and sessions with sources."""
    run("export_openclaw", "--auth-profiles", str(tmp_path / "a.json"), "--sessions", str(tmp_path / "s.json"))
    auth = json.loads((tmp_path / "a.json").read_text())
    assert sorted(auth) == ["profiles", "version"]  # v2: the split form, routing state in auth-state.json
    auth |= json.loads((tmp_path / "auth-state.json").read_text())
    sessions = json.loads((tmp_path / "s.json").read_text())
    assert auth["profiles"]["openai-codex:me@example.com"] == {
        "type": "oauth", "provider": "openai-codex", "access": "sample-access-token-4444",
        "refresh": "sample-refresh-token-5555", "expires": 1775560000000, "email": "me@example.com"}
    assert auth["profiles"]["zai:default"]["key"] == "sample-zai-key-6666666666"
    assert auth["order"]["anthropic"] == ["anthropic:default", "anthropic:backup1", "anthropic:backup2"]
    assert auth["lastGood"] == {"anthropic": "anthropic:default", "openai": "openai:work"}
    assert auth["usageStats"]["anthropic:backup1"] == {
        "errorCount": 1, "cooldownUntil": 1775552797656, "cooldownReason": "rate_limit",
        "cooldownModel": "claude-opus-4-6", "lastFailureAt": 1775552737656, "failureCounts": {"rate_limit": 1}}
    assert auth["usageStats"]["anthropic:backup2"]["disabledUntil"] == 1775570000000
    assert sessions["agent:main:main"] == {
        "sessionId": "11111111-2222-4333-8444-555555555555", "updatedAt": 1775551000000,
        "authProfileOverride": "anthropic:backup1", "authProfileOverrideSource": "auto",
        "authProfileOverrideCompactionCount": 3}
    assert sessions["cron:nightly-digest"] == {"sessionId": "abcdefab-cdef-4abc-8def-abcdefabcdef",
                                               "updatedAt": 1775540000000}


def test_it_round_trips_import_export_import(imported, clock, tmp_path):
    """Importing what was exported changes nothing and writes no event."""
    rows = list(AuthProfile.objects.values()), list(Session.objects.values()), list(ModelCooldown.objects.values())
    events = Event.objects.count()
    run("export_openclaw", "--auth-profiles", str(tmp_path / "a.json"), "--sessions", str(tmp_path / "s.json"))
    clock.shift(60)
    output = import_sample(tmp_path / "a.json", tmp_path / "s.json")
    assert "Profiles: 0 created, 0 updated, 6 unchanged." in output
    assert "Sessions: 0 created, 0 updated, 5 unchanged; 0 pins skipped." in output
    assert Event.objects.count() == events
    assert (list(AuthProfile.objects.values()), list(Session.objects.values()),
            list(ModelCooldown.objects.values())) == rows


def test_it_writes_the_export_readable_by_its_owner_only(imported, tmp_path):
    """The exported credential store is mode 0600, even when it replaces a world-readable file."""
    out = tmp_path / "auth-profiles.json"
    out.write_text("{}")
    os.chmod(out, 0o644)
    run("export_openclaw", "--auth-profiles", str(out), "--sessions", str(tmp_path / "sessions.json"))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "sessions.json").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_it_never_prints_or_records_secrets(db, clock, tmp_path):
    """Neither command prints a secret, nor does any event hold one; they live only in the exported file."""
    output = import_sample()
    output += import_sample()
    output += run("export_openclaw", "--auth-profiles", str(tmp_path / "a.json"))
    events = json.dumps(list(Event.objects.values("before", "after", "reason")))
    for secret in SECRETS:
        assert secret not in output
        assert secret not in events
    assert all(secret in (tmp_path / "a.json").read_text() for secret in SECRETS)


def test_it_does_not_echo_a_secret_in_a_type_error(db, tmp_path):
    """An error about a credential's field names the place, never the value found there."""
    auth = variant(tmp_path, AUTH, lambda d: d["profiles"]["anthropic:default"].update(
        type="token", token=["sk-ant-oat01-sample-default-0000000000"]))
    with pytest.raises(CommandError) as caught:
        import_sample(auth, None)
    assert 'profiles["anthropic:default"].token: must be a string, not a list' in str(caught.value)
    assert "sk-ant" not in str(caught.value)


def test_it_skips_a_session_key_authbroker_cannot_hold(db, clock, tmp_path):
    """A session key with a slash or a space is reported and skipped; the other sessions arrive."""
    sessions = variant(tmp_path, SESSIONS, lambda d: d.update({"agent:main/odd key": d["cron:nightly-digest"]}))
    output = import_sample(AUTH, sessions)
    assert "note: session 'agent:main/odd key' skipped" in output
    assert Session.objects.count() == 5


def test_it_matches_usage_stats_spelled_with_a_provider_alias(db, clock, tmp_path):
    """usageStats keyed `zai:default` apply to the profile the file calls `z.ai:default`; unknown keys are noted."""
    auth = variant(tmp_path, AUTH, lambda d: d["usageStats"].update({
        "zai:default": {"errorCount": 1, "cooldownUntil": 1775567000000, "cooldownReason": "timeout"},
        "anthropic:gone": {"errorCount": 4}}))
    output = import_sample(auth, None)
    zai = AuthProfile.objects.get(pk="zai:default")
    assert (zai.error_count, zai.cooldown_until, zai.cooldown_reason) == (1, from_ms(1775567000000), "timeout")
    assert "note: usageStats for 'anthropic:gone' ignored: no such profile in the store" in output
