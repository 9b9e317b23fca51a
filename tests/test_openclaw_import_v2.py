"""import_openclaw --state-dir and export_openclaw on the stores the real openclaw wrote (DESIGN §6, v2).

The oracle is `<form>.view.json`: what openclaw's own readers returned for the store it had just
written (tests/fixtures/openclaw/generate.mjs). The expectations below are derived from it with
DESIGN §6's mappings, independently of the importer.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from io import StringIO
from pathlib import Path
from unittest import mock

import pytest
import time_machine
from django.core.management import base as management_base
from django.core.management import call_command, load_command_class
from django.db import connection

from profiles.models import AuthProfile, Event, ModelCooldown, Provider
from sessions_app.models import Pin, Session
from sessions_app.openclaw import from_ms
from tests.conftest import make_client
from tests.helpers import select

FIXTURES = Path(__file__).parent / "fixtures" / "openclaw"
FORMS = ["single-json", "split-json", "sqlite"]
SECRET_FIELDS = {"api_key": ("key", "keyRef"), "token": ("token", "tokenRef"), "oauth": ("access", "oauthRef")}
ROOT = Path(__file__).resolve().parent.parent


def view(form):
    return json.loads((FIXTURES / f"{form}.view.json").read_text())


def t0(form):
    return from_ms(view(form)["t0"])


def run(*args):
    """Run a management command; (stdout, stderr)."""
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_cli(*args):
    """Run a management command the way manage.py does (errors become a message and an exit code):
    (exit code, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    command = type(load_command_class("sessions_app", args[0]))(stdout=out, stderr=err)
    # run_from_argv closes every connection when it ends, which would end the test's transaction.
    with mock.patch.object(management_base.connections, "close_all"):
        try:
            command.run_from_argv(["manage.py", *args])
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def written():
    """How many rows of each kind the database holds."""
    return (Provider.objects.count(), AuthProfile.objects.count(), ModelCooldown.objects.count(),
            Session.objects.count(), Pin.objects.count(), Event.objects.count())


NOTHING = (0, 0, 0, 0, 0, 0)


@pytest.fixture(params=FORMS)
def form(request):
    return request.param


@pytest.fixture
def at_t0(form):
    with time_machine.travel(t0(form), tick=False) as traveller:
        yield traveller


@pytest.fixture
def imported(db, form, at_t0):
    out, err = run("import_openclaw", "--state-dir", str(FIXTURES / form))
    return out, err


# ---------------------------------------------------------------- the oracle, with DESIGN §6's mappings


def ms(value):
    return None if value is None else from_ms(value)


def later(*windows):
    ended = [w for w in windows if w[0] is not None]
    return max(ended, key=lambda w: w[0]) if ended else None


def expected_profiles(form):
    """Per profile id: what DESIGN §6 says the import holds, from openclaw's own view of its stores."""
    agents = view(form)["agents"]
    stores = [agents["main"]["authStore"]] + [a["authStore"] for k, a in agents.items() if k != "main"]
    profiles, usage, order = {}, {}, {}
    for store in stores:  # the first store holding an id wins: main (the shared store), then the others
        for pid, entry in store["profiles"].items():
            profiles.setdefault(pid, entry)
        for pid, stats in store.get("usageStats", {}).items():
            usage.setdefault(pid, stats)
        for provider, ids in store.get("order", {}).items():
            order.setdefault(provider, ids)
    out = {}
    by_provider = {}
    for pid, entry in profiles.items():
        by_provider.setdefault(entry["provider"], []).append(pid)
    positions = {}
    for provider, pids in by_provider.items():
        ranked = [p for p in order.get(provider, []) if p in pids]
        ranked += [p for p in pids if p not in ranked]
        positions.update({p: i for i, p in enumerate(ranked)})
    for pid, entry in profiles.items():
        kind = entry["type"]
        secret_field, ref_field = SECRET_FIELDS[kind]
        stats = usage.get(pid, {})
        cooldown = (ms(stats.get("cooldownUntil")), stats.get("cooldownReason", ""))
        pair = None
        if stats.get("cooldownModel"):
            pair = (stats["cooldownModel"], *cooldown)
            cooldown = (None, "")
        disabled = later((ms(stats.get("disabledUntil")), stats.get("disabledReason", "")),
                         (ms(stats.get("blockedUntil")), stats.get("blockedReason", ""))) or (None, "")
        out[pid] = {
            "kind": kind,
            "secret": entry.get(secret_field) or "",
            "secret_ref": entry.get(ref_field),
            "expires_at": ms(entry.get("expires")),
            "position": positions[pid],
            "error_count": stats.get("errorCount", 0),
            "failure_counts": stats.get("failureCounts", {}),
            "cooldown": cooldown,
            "disabled": disabled,
            "last_used": ms(stats.get("lastUsed")),
            "last_failure_at": ms(stats.get("lastFailureAt")),
            "pair": pair,
        }
    return out


def stored_profiles():
    out = {}
    for p in AuthProfile.objects.all():
        pair = p.model_cooldowns.first()
        out[p.id] = {
            "kind": p.kind,
            "secret": p.reveal_secret(),
            "secret_ref": p.metadata.get("secret_ref"),
            "expires_at": p.expires_at,
            "position": p.position,
            "error_count": p.error_count,
            "failure_counts": p.failure_counts,
            "cooldown": (p.cooldown_until, p.cooldown_reason),
            "disabled": (p.disabled_until, p.disabled_reason),
            "last_used": p.last_used,
            "last_failure_at": p.last_failure_at,
            "pair": (pair.model, pair.cooldown_until, pair.cooldown_reason) if pair else None,
        }
    return out


def expected_sessions(form):
    out = {}
    for key, entry in view(form)["agents"]["main"]["sessions"].items():
        pin = None
        if entry.get("authProfileOverride"):
            source = entry.get("authProfileOverrideSource")
            stamp = entry.get("authProfileOverrideCompactionCount")
            if source == "user-link":
                source = "user"
            elif source is None:
                source = "auto" if stamp is not None else "user"
            pin = (entry["authProfileOverride"].split(":")[0], entry["authProfileOverride"], source, stamp)
        out[key] = (entry["sessionId"], ms(entry.get("updatedAt")), [pin] if pin else [])
    return out


def stored_sessions():
    return {
        s.session_key: (str(s.session_id), s.last_activity_at,
                        [(p.provider_id, p.profile_id, p.source, p.compaction_count) for p in s.pins.all()])
        for s in Session.objects.all()
    }


def state():
    """Everything the import writes, as comparable rows."""
    return (sorted(AuthProfile.objects.values_list()), sorted(ModelCooldown.objects.values_list()),
            sorted(Session.objects.values_list()), sorted(Pin.objects.values_list()),
            sorted(Provider.objects.values_list()))


# ---------------------------------------------------------------- each form


def test_it_imports_every_profile_as_openclaw_sees_it(form, imported):
    """Kinds, secrets or references, expiries, positions, windows (blocks as disable windows) and stats."""
    assert stored_profiles() == expected_profiles(form)


def test_it_imports_every_session_and_pin_as_openclaw_sees_it(form, imported):
    """Session ids, activity, and each pin with its source (user-link and unstamped pins read as DESIGN says)."""
    assert stored_sessions() == expected_sessions(form)


def test_it_sets_last_good_and_ordered_strategy(form, imported):
    """Each provider takes openclaw's lastGood and explicit positions."""
    last_good = view(form)["agents"]["main"]["authStore"]["lastGood"]
    assert {p.id: (p.last_good_id, p.strategy) for p in Provider.objects.all()} == {
        provider: (profile, "ordered") for provider, profile in last_good.items()}


def test_it_warns_about_each_reference_by_name_on_stderr(form, imported):
    """A profile whose secret is a reference imports without one, with a warning naming it."""
    out, err = imported
    assert "Profiles: 6 created, 0 updated, 0 unchanged." in out
    refs = [pid for pid, p in expected_profiles(form).items() if p["secret_ref"]]
    assert sorted(refs) == ["anthropic:ops", "openai:work"]
    for pid in refs:
        assert f"warning: profile {pid}: imported without a secret" in err
    assert "warning" not in out


def test_it_changes_nothing_the_second_time(form, imported, at_t0):
    """A second import of the same stores changes no row and writes no event."""
    before, events = state(), Event.objects.count()
    at_t0.shift(3600)
    out, _ = run("import_openclaw", "--state-dir", str(FIXTURES / form))
    assert "Profiles: 0 created, 0 updated, 6 unchanged." in out
    assert "0 created, 0 updated" in out.splitlines()[1]
    assert state() == before
    assert Event.objects.count() == events


def test_it_keeps_a_subscription_block_through_select(db):
    """On the 2026.9 store, openai:work is blocked (subscription_limit): new sessions go elsewhere, and the
    user-link pin on it is kept as a user pin, cooling."""
    with time_machine.travel(t0("sqlite"), tick=False):
        run("import_openclaw", "--state-dir", str(FIXTURES / "sqlite"))
        api = make_client(["gateway"])
        fresh = select(api, "agent:main:new:1", "openai", explain=True)
        pinned = select(api, "agent:main:whatsapp:dm:7", "openai")
    work = next(c for c in fresh["candidates"] if c["profile"] == "openai:work")
    assert (work["available"], work["reason"]) == (False, "disabled:subscription_limit")
    assert work["until"].startswith("2026-09-10T17:00:12.345")
    assert fresh["profile"] == "openai:personal"
    assert (pinned["profile"], pinned["source"], pinned["cooling"]) == ("openai:work", "user", True)


def test_it_answers_a_reference_instead_of_a_secret_with_the_credentials_scope(db):
    """A credentials-scope select of a profile imported with a reference answers the reference, secret null;
    a profile with a secret still answers its secret."""
    with time_machine.travel(t0("split-json"), tick=False):
        run("import_openclaw", "--state-dir", str(FIXTURES / "split-json"))
        api = make_client(["gateway", "credentials"])
        token = select(api, "agent:ops:a", "anthropic", new_session=True)
        api.put("/api/sessions/agent:ops:b/override", {"profile": "openai:work"}, format="json")
        env = select(api, "agent:ops:b", "openai")
        plain = select(api, "agent:main:c", "openai")
    assert token["profile"] == "anthropic:default"
    assert token["credential"] == {"kind": "token", "secret": "sk-ant-oat01-gen-default-0000000000"}
    assert env["profile"] == "openai:work"
    assert env["credential"] == {"kind": "api_key", "secret": None,
                                 "ref": {"source": "env", "provider": "default", "id": "OPENAI_API_KEY"}}
    assert plain["credential"] == {"kind": "api_key", "secret": "sk-proj-gen-personal-3333333333"}


def test_it_expires_an_imported_token_at_its_expiry(db):
    """`expires` becomes expires_at: anthropic:ops (a tokenRef, expiring a week after t0) is expired after it."""
    with time_machine.travel(t0("split-json"), tick=False) as traveller:
        run("import_openclaw", "--state-dir", str(FIXTURES / "split-json"))
        api = make_client(["gateway"])
        before = select(api, "agent:ops:x", "anthropic", explain=True)
        traveller.move_to(from_ms(1789646400000))
        after = select(api, "agent:ops:y", "anthropic", explain=True)
    state_before = next(c for c in before["candidates"] if c["profile"] == "anthropic:ops")
    state_after = next(c for c in after["candidates"] if c["profile"] == "anthropic:ops")
    assert state_before["available"] is True
    assert (state_after["available"], state_after["reason"]) == (False, "expired")


def test_it_reads_the_split_form_beside_a_single_auth_profiles_file(db):
    """`--auth-profiles` alone reads the auth-state.json beside it, so the split form's stats arrive."""
    agent = FIXTURES / "split-json" / "agents" / "main"
    with time_machine.travel(t0("split-json"), tick=False):
        out, err = run("import_openclaw", "--auth-profiles", str(agent / "agent" / "auth-profiles.json"),
                       "--sessions", str(agent / "sessions" / "sessions.json"))
    assert "auth-state.json beside it" in err
    backup1 = AuthProfile.objects.get(pk="anthropic:backup1")
    assert (backup1.error_count, backup1.cooldown_until) == (2, from_ms(1789041636900))
    assert Session.objects.count() == 5


# ---------------------------------------------------------------- bad numbers and shapes, through the command


def copy_form(tmp_path, form):
    target = tmp_path / form
    shutil.copytree(FIXTURES / form, target)
    return target


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def split(tmp_path, change, name="auth-state.json", agent="main"):
    root = copy_form(tmp_path, "split-json")
    folder = "sessions" if name == "sessions.json" else "agent"
    edit_json(root / "agents" / agent / folder / name, change)
    return root, root / "agents" / agent / folder / name


def raw_split(tmp_path, text, name="auth-state.json"):
    root = copy_form(tmp_path, "split-json")
    path = root / "agents" / "main" / "agent" / name
    path.write_text(text)
    return root, path


def stats(data, pid="anthropic:backup1"):
    return data["usageStats"][pid]


def _count_5e9(tmp_path):
    root, path = split(tmp_path, lambda d: stats(d).update(errorCount=5_000_000_000))
    return root, path, 'usageStats["anthropic:backup1"].errorCount', "is 5000000000, out of range"


def _count_3e9_float(tmp_path):
    state = (FIXTURES / "split-json/agents/main/agent/auth-state.json").read_text()
    root, path = raw_split(tmp_path, state.replace('"errorCount": 2', '"errorCount": 3e9'))
    return root, path, 'usageStats["anthropic:backup1"].errorCount', "out of range: counts must lie in 0..2147483647"


def _count_10_400(tmp_path):
    state = (FIXTURES / "split-json/agents/main/agent/auth-state.json").read_text()
    root, path = raw_split(tmp_path, state.replace('"errorCount": 2', '"errorCount": 1' + "0" * 400))
    return root, path, 'usageStats["anthropic:backup1"].errorCount', "out of range"


def _count_negative(tmp_path):
    root, path = split(tmp_path, lambda d: stats(d)["failureCounts"].update(rate_limit=-1))
    return root, path, 'usageStats["anthropic:backup1"].failureCounts["rate_limit"]', "is -1, out of range"


def _epoch_seconds(tmp_path):
    root, path = split(tmp_path, lambda d: stats(d).update(cooldownUntil=1789041636))
    return root, path, 'usageStats["anthropic:backup1"].cooldownUntil', "looks like epoch seconds"


def _epoch_past_9999(tmp_path):
    root, path = split(tmp_path, lambda d: stats(d).update(lastFailureAt=10**16))
    return root, path, 'usageStats["anthropic:backup1"].lastFailureAt', "out of range: epoch milliseconds"


def _nan(tmp_path):
    state = (FIXTURES / "split-json/agents/main/agent/auth-state.json").read_text()
    root, path = raw_split(tmp_path, state.replace('"errorCount": 2', '"errorCount": NaN'))
    return root, path, None, "is not valid JSON"


def _duplicate_key(tmp_path):
    state = (FIXTURES / "split-json/agents/main/agent/auth-state.json").read_text()
    root, path = raw_split(tmp_path, state.replace('"errorCount": 2', '"errorCount": 2, "errorCount": 0'))
    return root, path, None, 'the key "errorCount" appears twice'


def _huge_secret(tmp_path):
    root, path = split(tmp_path, lambda d: d["profiles"]["anthropic:backup2"].update(key="k" * 20_000),
                       name="auth-profiles.json")
    return root, path, 'profiles["anthropic:backup2"].key', "above the secret size limit of 16384 bytes"


def _secret_null(tmp_path):
    root, path = split(tmp_path, lambda d: d["profiles"]["anthropic:backup2"].update(key=None),
                       name="auth-profiles.json")
    return root, path, 'profiles["anthropic:backup2"]', 'has neither "key" nor "keyRef"'


def _reason_too_long(tmp_path):
    root, path = split(tmp_path, lambda d: stats(d).update(cooldownReason="r" * 33))
    return root, path, 'usageStats["anthropic:backup1"].cooldownReason', "above the limit of 32"


def _unknown_pin_source(tmp_path):
    root, path = split(tmp_path, lambda d: d["agent:main:main"].update(authProfileOverrideSource="robot"),
                       name="sessions.json")
    return root, path, '["agent:main:main"].authProfileOverrideSource', "must be one of auto, user, user-link"


def _session_id_not_a_uuid(tmp_path):
    root, path = split(tmp_path, lambda d: d["agent:main:main"].update(sessionId="not-a-uuid"),
                       name="sessions.json")
    return root, path, '["agent:main:main"].sessionId', "must be a UUID"


def _profile_name_with_a_space(tmp_path):
    def change(d):
        d["profiles"]["anthropic:has space"] = d["profiles"]["anthropic:backup2"]
    root, path = split(tmp_path, change, name="auth-profiles.json")
    return root, path, 'profiles["anthropic:has space"] (the id)', "has a name part"


def _provider_not_a_slug(tmp_path):
    root, path = split(tmp_path, lambda d: d["profiles"]["anthropic:backup2"].update(provider="an thropic"),
                       name="auth-profiles.json")
    return root, path, 'profiles["anthropic:backup2"].provider', "is not a usable provider id"


def _sqlite_count_5e9(tmp_path):
    root = copy_form(tmp_path, "sqlite")
    db_path = root / "state" / "openclaw.sqlite"
    db = sqlite3.connect(db_path)
    (value,) = db.execute("SELECT value_json FROM config_machine_state WHERE state_key = 'authProfiles.state'"
                          ).fetchone()
    data = json.loads(value)
    data["usageStats"]["anthropic:backup2"]["errorCount"] = 5_000_000_000
    db.execute("UPDATE config_machine_state SET value_json = ? WHERE state_key = 'authProfiles.state'",
               (json.dumps(data),))
    db.commit()
    db.close()
    return (root, f'{db_path} (config_machine_state["authProfiles.state"].value_json)',
            'usageStats["anthropic:backup2"].errorCount', "is 5000000000, out of range")


CATALOGUE = [_count_5e9, _count_3e9_float, _count_10_400, _count_negative, _epoch_seconds, _epoch_past_9999, _nan,
             _duplicate_key, _huge_secret, _secret_null, _reason_too_long, _unknown_pin_source,
             _session_id_not_a_uuid, _profile_name_with_a_space, _provider_not_a_slug, _sqlite_count_5e9]


@pytest.mark.parametrize("make", CATALOGUE, ids=[f.__name__.lstrip("_") for f in CATALOGUE])
def test_it_refuses_a_bad_store_naming_file_and_field_and_writes_nothing(db, tmp_path, make):
    """Exit code 1, `file: field: message` on stderr, and not one row written."""
    root, path, where, message = make(tmp_path)
    with time_machine.travel(t0("split-json"), tick=False):
        code, out, err = run_cli("import_openclaw", "--state-dir", str(root))
    assert code == 1
    expected = f"{path}: {where}: " if where else f"{path}: "
    assert expected in err, err
    assert message in err
    assert "nothing was imported" in err
    assert out == ""
    assert written() == NOTHING


def test_it_refuses_a_bad_store_on_top_of_an_import_and_changes_nothing(db, tmp_path):
    """After a good import, a bad store changes no row and writes no event."""
    root, *_ = _count_5e9(tmp_path)
    with time_machine.travel(t0("split-json"), tick=False):
        run("import_openclaw", "--state-dir", str(FIXTURES / "split-json"))
        before, counts = state(), written()
        code, _, err = run_cli("import_openclaw", "--state-dir", str(root))
    assert code == 1 and "errorCount: is 5000000000" in err
    assert (state(), written()) == (before, counts)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_exits_non_zero_from_manage_py(tmp_path):
    """The real manage.py process: exit status 1 and the message on stderr."""
    root, path, where, message = _epoch_seconds(tmp_path)
    settings = connection.settings_dict
    url = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    proc = subprocess.run([sys.executable, "manage.py", "import_openclaw", "--state-dir", str(root)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "DATABASE_URL": url}, timeout=120)
    assert proc.returncode == 1
    assert f"{path}: {where}: " in proc.stderr and message in proc.stderr
    assert written() == NOTHING


# ---------------------------------------------------------------- export


def export_to_state_dir(target, *extra):
    agent = target / "agents" / "main"
    (agent / "agent").mkdir(parents=True)
    (agent / "sessions").mkdir(parents=True)
    return run("export_openclaw", "--auth-profiles", str(agent / "agent" / "auth-profiles.json"),
               "--sessions", str(agent / "sessions" / "sessions.json"), *extra)


def test_it_exports_the_split_form_with_expiries_blocks_and_references(db, tmp_path):
    """auth-profiles.json holds credentials (references as references, expiries), auth-state.json the rest."""
    with time_machine.travel(t0("sqlite"), tick=False):
        run("import_openclaw", "--state-dir", str(FIXTURES / "sqlite"))
        export_to_state_dir(tmp_path)
    folder = tmp_path / "agents" / "main" / "agent"
    profiles = json.loads((folder / "auth-profiles.json").read_text())
    auth_state = json.loads((folder / "auth-state.json").read_text())
    oracle = view("sqlite")["agents"]["main"]["authStore"]
    assert sorted(profiles) == ["profiles", "version"]
    assert profiles["profiles"]["openai:work"] == oracle["profiles"]["openai:work"]
    assert profiles["profiles"]["anthropic:default"] == oracle["profiles"]["anthropic:default"]
    assert profiles["profiles"]["anthropic:ops"] == {
        "type": "token", "provider": "anthropic", "tokenRef": {"source": "file", "provider": "vault",
                                                               "id": "/anthropic/ops"}, "expires": 1789646400000}
    assert sorted(auth_state) == ["lastGood", "order", "usageStats", "version"]
    work = auth_state["usageStats"]["openai:work"]
    assert (work["blockedUntil"], work["blockedReason"]) == (1789059612345, "subscription_limit")
    backup2 = auth_state["usageStats"]["anthropic:backup2"]
    assert (backup2["disabledUntil"], backup2["disabledReason"]) == (1789042212340, "billing")
    assert auth_state["order"]["anthropic"] == ["anthropic:default", "anthropic:backup1", "anthropic:backup2",
                                                "anthropic:ops"]
    for name in ("auth-profiles.json", "auth-state.json"):
        assert oct((folder / name).stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("source", FORMS)
def test_it_round_trips_export_then_import_into_an_empty_database(db, tmp_path, source):
    """Export, wipe, import the exported state directory: the same profiles, windows, pins and sessions."""
    with time_machine.travel(t0(source), tick=False):
        run("import_openclaw", "--state-dir", str(FIXTURES / source))
        profiles, sessions = stored_profiles(), stored_sessions()
        last_good = dict(Provider.objects.values_list("id", "last_good"))
        export_to_state_dir(tmp_path)
        Session.objects.all().delete()
        Provider.objects.update(last_good=None)
        AuthProfile.objects.all().delete()
        Provider.objects.all().delete()
        out, _ = run("import_openclaw", "--state-dir", str(tmp_path))
    assert "Profiles: 6 created" in out
    assert stored_profiles() == profiles
    assert stored_sessions() == sessions
    assert dict(Provider.objects.values_list("id", "last_good")) == last_good


def test_it_round_trips_export_then_import_without_a_change(db, tmp_path):
    """Importing what was just exported over the same database changes nothing and writes no event."""
    with time_machine.travel(t0("sqlite"), tick=False) as traveller:
        run("import_openclaw", "--state-dir", str(FIXTURES / "sqlite"))
        before, events = state(), Event.objects.count()
        export_to_state_dir(tmp_path)
        traveller.shift(60)
        out, _ = run("import_openclaw", "--state-dir", str(tmp_path))
    assert "Profiles: 0 created, 0 updated, 6 unchanged." in out
    assert (state(), Event.objects.count()) == (before, events)


def test_it_merges_pins_into_sessions_json_keeping_openclaws_other_fields(db, tmp_path):
    """--merge-sessions updates ids and pins, keeps every other field, and leaves openclaw-only entries alone."""
    target = tmp_path / "sessions.json"
    original = json.loads((FIXTURES / "split-json/agents/main/sessions/sessions.json").read_text())
    original["agent:main:telegram:dm:42"]["modelOverride"] = "claude-opus-4-6"
    original["agent:main:telegram:dm:42"]["deliveryContext"] = {"channel": "telegram", "to": "42"}
    original["agent:main:only-openclaw"] = {"sessionId": "33333333-4444-4555-8666-777777777777",
                                            "updatedAt": 1789041000000, "authProfileOverride": "openai:work",
                                            "authProfileOverrideSource": "user", "label": "kept"}
    target.write_text(json.dumps(original))
    with time_machine.travel(t0("split-json"), tick=False) as traveller:
        run("import_openclaw", "--state-dir", str(FIXTURES / "split-json"))
        api = make_client(["gateway"])
        traveller.shift(120)
        # the stranded session: a person pins openai:work; its anthropic auto pin stays (one pin per provider)
        api.put("/api/sessions/agent:main:telegram:dm:42/override", {"profile": "openai:work"}, format="json")
        shown = api.get("/api/sessions/agent:main:telegram:dm:42").json()
        # a boundary: a new session id, the auto pin dropped, the user pin carried
        reset_answer = api.post("/api/sessions/agent:main:main/reset", {"provider": "anthropic"}, format="json")
        select(api, "agent:main:new-in-authbroker", "anthropic")
        out, _ = run("export_openclaw", "--auth-profiles", str(tmp_path / "auth-profiles.json"),
                     "--merge-sessions", str(target))
    merged = json.loads(target.read_text())
    assert "Merged into" in out
    stranded = merged["agent:main:telegram:dm:42"]
    # openclaw keeps one pin: the pin of the session's current provider (openai, its latest pin change),
    # the one the API shows as the session's `override`
    assert [p["provider"] for p in shown["overrides"]] == ["anthropic", "openai"]
    assert (stranded["authProfileOverride"], stranded["authProfileOverrideSource"]) == ("openai:work", "user")
    assert shown["override"]["profile"] == "openai:work"
    assert "authProfileOverrideCompactionCount" not in stranded
    assert stranded["modelOverride"] == "claude-opus-4-6"
    assert stranded["deliveryContext"] == {"channel": "telegram", "to": "42"}
    assert stranded["compactionCount"] == 0
    main = merged["agent:main:main"]
    assert main["sessionId"] == reset_answer.json()["session_id"]
    assert "authProfileOverride" not in main and "authProfileOverrideCompactionCount" not in main
    assert main["compactionCount"] == 3
    assert merged["agent:main:only-openclaw"] == original["agent:main:only-openclaw"]
    assert merged["agent:main:new-in-authbroker"]["sessionId"]
    assert set(merged) == set(original) | {"agent:main:new-in-authbroker"}


def test_it_exports_a_sessions_other_pin_when_its_current_provider_has_none(db, tmp_path):
    """A session whose current provider has no pin exports its most recently set pin."""
    with time_machine.travel(t0("split-json"), tick=False) as traveller:
        run("import_openclaw", "--state-dir", str(FIXTURES / "split-json"))
        api = make_client(["gateway"])
        traveller.shift(60)
        api.put("/api/sessions/agent:main:cron:nightly-digest/override", {"profile": "openai:work"}, format="json")
        traveller.shift(60)
        select(api, "agent:main:cron:nightly-digest", "anthropic")
        run("export_openclaw", "--auth-profiles", str(tmp_path / "a.json"), "--sessions", str(tmp_path / "s.json"))
    entry = json.loads((tmp_path / "s.json").read_text())["agent:main:cron:nightly-digest"]
    assert (entry["authProfileOverride"], entry["authProfileOverrideSource"]) == ("openai:work", "user")


def test_it_refuses_to_merge_into_a_file_that_is_not_a_sessions_json(db, tmp_path):
    """A merge target that is not a JSON object of entries is named, exit 1, and left as it was."""
    target = tmp_path / "sessions.json"
    target.write_text('{"a": {"sessionId": "x"}, "a": {}}')
    code, _, err = run_cli("export_openclaw", "--auth-profiles", str(tmp_path / "a.json"),
                           "--merge-sessions", str(target))
    assert code == 1
    assert f"{target}: " in err and "appears twice" in err
    assert target.read_text() == '{"a": {"sessionId": "x"}, "a": {}}'
    assert not (tmp_path / "a.json").exists()


def test_it_writes_the_single_file_form_for_older_openclaw(db, tmp_path):
    """--single-file puts order, lastGood and usageStats into auth-profiles.json, as 2026.4.5 reads it."""
    with time_machine.travel(t0("single-json"), tick=False):
        run("import_openclaw", "--state-dir", str(FIXTURES / "single-json"))
        run("export_openclaw", "--auth-profiles", str(tmp_path / "auth-profiles.json"), "--single-file")
    data = json.loads((tmp_path / "auth-profiles.json").read_text())
    assert sorted(data) == ["lastGood", "order", "profiles", "usageStats", "version"]
    assert not (tmp_path / "auth-state.json").exists()


# ---------------------------------------------------------------- mappings in detail


def test_it_keeps_the_later_of_a_block_and_a_disablement(db, tmp_path):
    """A profile both blocked and disabled gets the window that ends later, with that window's reason."""
    def change(d):
        stats(d, "anthropic:backup2").update(blockedUntil=1789050000000, blockedReason="subscription_limit")
        stats(d, "anthropic:default").update(disabledUntil=1789045000000, disabledReason="billing",
                                             blockedUntil=1789044000000, blockedReason="subscription_limit")
    root, _ = split(tmp_path, change)
    with time_machine.travel(t0("split-json"), tick=False):
        run("import_openclaw", "--state-dir", str(root))
    backup2 = AuthProfile.objects.get(pk="anthropic:backup2")  # disabled (billing) until 1789059606975
    default = AuthProfile.objects.get(pk="anthropic:default")
    assert (backup2.disabled_until, backup2.disabled_reason) == (from_ms(1789059606975), "billing")
    assert (default.disabled_until, default.disabled_reason) == (from_ms(1789045000000), "billing")


def test_it_cools_one_model_for_a_model_scoped_block(db, tmp_path):
    """`blockedScope: "model"` blocks only that model: the (profile, model) pair cools, the profile does not."""
    root, _ = split(tmp_path, lambda d: stats(d, "anthropic:default").update(
        blockedUntil=1789050000000, blockedReason="subscription_limit", blockedModel="claude-opus-4-6",
        blockedScope="model"))
    with time_machine.travel(t0("split-json"), tick=False):
        run("import_openclaw", "--state-dir", str(root))
        api = make_client(["gateway"])
        opus = select(api, "agent:main:o", "anthropic", model="claude-opus-4-6")
        sonnet = select(api, "agent:main:s", "anthropic", model="claude-sonnet-4-6")
    default = AuthProfile.objects.get(pk="anthropic:default")
    assert (default.disabled_until, default.cooldown_until) == (None, None)
    pair = ModelCooldown.objects.get(profile=default)
    assert (pair.model, pair.cooldown_until, pair.cooldown_reason) == (
        "claude-opus-4-6", from_ms(1789050000000), "subscription_limit")
    assert opus["profile"] != "anthropic:default"
    assert sonnet["profile"] == "anthropic:default"


def test_it_reports_a_conflict_between_agents_without_the_secrets(db, tmp_path):
    """Two agents holding different credentials under one id: the first (main) wins, stderr names the id."""
    root, _ = split(tmp_path, lambda d: d["profiles"]["anthropic:backup2"].update(key="sk-ant-ops-own-key-99"),
                    name="auth-profiles.json", agent="ops")
    with time_machine.travel(t0("split-json"), tick=False):
        out, err = run("import_openclaw", "--state-dir", str(root))
    assert "warning: conflict: anthropic:backup2:" in err
    assert "sk-ant-ops-own-key-99" not in err + out
    assert "sk-ant-api03-gen-backup2-2222222222" not in err + out
    assert AuthProfile.objects.get(pk="anthropic:backup2").reveal_secret() == "sk-ant-api03-gen-backup2-2222222222"


def test_it_imports_a_session_key_held_by_two_agents_once(db, tmp_path):
    """A session key found under a second agent is skipped with a warning; the first agent's entry counts."""
    root = copy_form(tmp_path, "split-json")
    main_sessions = root / "agents" / "main" / "sessions" / "sessions.json"
    ops_sessions = root / "agents" / "ops" / "sessions"
    ops_sessions.mkdir()
    entry = json.loads(main_sessions.read_text())["agent:main:main"]
    (ops_sessions / "sessions.json").write_text(json.dumps({
        "agent:main:main": {**entry, "sessionId": "44444444-5555-4666-8777-888888888888"},
        "agent:ops:main": {"sessionId": "55555555-6666-4777-8888-999999999999", "updatedAt": 1789041000000}}))
    with time_machine.travel(t0("split-json"), tick=False):
        out, err = run("import_openclaw", "--state-dir", str(root))
    assert "session 'agent:main:main' of agent ops skipped" in err
    assert str(Session.objects.get(session_key="agent:main:main").session_id) == entry["sessionId"]
    assert Session.objects.filter(session_key="agent:ops:main").exists()
