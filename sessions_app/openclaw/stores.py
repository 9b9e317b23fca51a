"""Read every form of openclaw's state into plain data (DESIGN §6): no database, no Django.

openclaw has kept its auth profiles and session pins in three forms (docs/openclaw-stores.md):

- **single-json** (2026.4.5 and earlier): `agents/<id>/agent/auth-profiles.json` holds `version`,
  `profiles`, `order`, `lastGood` and `usageStats`;
- **split-json** (2026.4.x later): `auth-profiles.json` holds `version` and `profiles`, and
  `auth-state.json` beside it holds `order`, `lastGood` and `usageStats`;
- **sqlite** (2026.9): the shared (main) store in `state/openclaw.sqlite`, table `config_machine_state`,
  rows `authProfiles.store` and `authProfiles.state` (JSON in `value_json`), and per agent
  `agents/<id>/agent/openclaw-agent.sqlite` with `auth_profile_store` / `auth_profile_state` (JSON in
  `store_json` / `state_json`) and the sessions in `session_nodes.entry_json`.

In the JSON forms the sessions are in `agents/<id>/sessions/sessions.json`.

`read_state_dir(path)` finds and reads all of them into a `Snapshot`; `read_auth_files` and
`read_sessions_file` read single files. Everything is checked before anything is returned: a value
that is out of range, of the wrong type or ambiguous raises `StoreError` naming the file, the field and
the limit, so an importer built on this imports all or nothing. Messages never repeat a string value
(it may be a secret); they may repeat a number.

SQLite databases are opened read-only (`mode=ro`), so reading a live installation changes nothing.
"""

import json
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

# ---------------------------------------------------------------- limits

# Counts (errorCount, failureCounts, compaction counts) are stored in 32-bit signed integer columns.
MAX_COUNT = 2_147_483_647
# Epoch values are milliseconds (JavaScript's Date.now()). Anything below 10^12 (2001-09-09 in ms) is
# taken for seconds: 1.7e9 s is 2023, but 1.7e9 ms is 20 days after 1970.
MIN_EPOCH_MS = 10**12
# 9999-12-31T23:59:59.999Z, the last instant a Python datetime (and PostgreSQL timestamptz) can hold.
MAX_EPOCH_MS = 253_402_300_799_999
# A credential's secret (key, token, OAuth access or refresh token), in UTF-8 bytes. API keys are under
# 200 bytes and the largest tokens seen in practice (JWT access tokens with claims) a few KiB; 16 KiB
# leaves room for those while a pasted file or a runaway value (the 50 MB key that made every select of
# its provider twenty times slower) is refused.
MAX_SECRET_BYTES = 16 * 1024
# A secret reference's fields (source, provider, id): a name or a path, never a value.
MAX_REF_CHARS = 1024
# Profiles per store, agents per state directory, sessions per state directory. Real installations
# have a handful of profiles and agents and up to hundreds of thousands of sessions; the limits keep a
# corrupt or hostile file from exhausting memory while allowing the service's own scale (1 M sessions).
MAX_PROFILES = 10_000
MAX_AGENTS = 1_000
MAX_SESSIONS = 1_000_000
# Files: an auth file with MAX_PROFILES profiles at a few KiB each; sessions.json for MAX_SESSIONS
# sessions carrying openclaw's other per-session fields.
MAX_AUTH_FILE_BYTES = 64 * 1024 * 1024
MAX_SESSIONS_FILE_BYTES = 1024 * 1024 * 1024
# Text fields (ids, reasons, model names, emails).
MAX_ID_CHARS = 255
MAX_REASON_CHARS = 32
MAX_MODEL_CHARS = 190
MAX_EMAIL_CHARS = 320
# Integers with more digits than this are out of every range above; refusing them before int()
# keeps a 10^400-digit literal from costing anything (and from Python's int-string limit).
_MAX_INT_DIGITS = 24

KINDS = ("api_key", "token", "oauth")
# openclaw's credential type -> the field holding its secret, and the field holding a reference to it.
SECRET_FIELDS = {"api_key": ("key", "keyRef"), "token": ("token", "tokenRef"), "oauth": ("access", "oauthRef")}
PIN_SOURCES = ("auto", "user", "user-link")

SHARED_DB = Path("state") / "openclaw.sqlite"
AGENT_DB = "openclaw-agent.sqlite"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


def from_ms(ms):
    """An epoch-milliseconds value (as this reader returns it) as an aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(moment):
    """An aware datetime as epoch milliseconds, the way openclaw writes times."""
    return (moment - EPOCH) // ONE_MS


class StoreError(Exception):
    """An openclaw store that cannot be read as it is; names the file, the field and the problem."""

    def __init__(self, file, field, message):
        self.file = str(file)
        self.field = field
        self.message = message
        super().__init__(f"{self.file}: {field}: {message}" if field else f"{self.file}: {message}")


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class SecretRef:
    """Where openclaw resolves a secret at run time (`keyRef`, `tokenRef`, legacy `oauthRef`)."""

    source: str
    provider: str
    id: str


@dataclass
class Profile:
    id: str  # as written, `provider:name`
    provider: str  # the credential's `provider`, else the id's prefix; trimmed and lowercased
    kind: str  # api_key | token | oauth
    secret: str | None = None  # key / token / OAuth access token
    secret_ref: SecretRef | None = None  # when set, openclaw resolves the secret from here
    refresh: str | None = None  # OAuth refresh token
    expires: int | None = None  # epoch ms: token expiry, or the OAuth access token's
    email: str | None = None
    display_name: str | None = None


@dataclass
class Usage:
    error_count: int = 0
    failure_counts: dict = field(default_factory=dict)  # reason -> count
    cooldown_until: int | None = None
    cooldown_reason: str | None = None
    cooldown_model: str | None = None
    disabled_until: int | None = None
    disabled_reason: str | None = None
    # Subscription block (2026.9): `blockedUntil` / `blockedReason` (e.g. subscription_limit),
    # `blockedSource`, and `blockedModel` when `blockedScope` is "model".
    blocked_until: int | None = None
    blocked_reason: str | None = None
    blocked_source: str | None = None
    blocked_model: str | None = None
    last_used: int | None = None
    last_failure_at: int | None = None
    last_probe_at: int | None = None


@dataclass
class AuthStore:
    origin: str  # the file(s) or table rows it was read from
    form: str  # single-json | split-json | sqlite
    profiles: dict = field(default_factory=dict)  # id -> Profile, in file order
    order: dict = field(default_factory=dict)  # provider (as written) -> [profile id, …]
    last_good: dict = field(default_factory=dict)  # provider (as written) -> profile id
    usage: dict = field(default_factory=dict)  # profile id -> Usage


@dataclass
class Pin:
    profile_id: str
    source: str  # auto | user: what authbroker holds
    raw_source: str | None  # auto | user | user-link | None, as written
    # Why `source` is what it is: "explicit" (auto/user written), "user-link" (user-link -> user),
    # "compaction-stamp" (no source, a compaction count -> auto), "no-stamp" (neither -> user).
    provenance: str
    compaction_count: int | None = None


@dataclass
class Session:
    key: str
    agent_id: str
    session_id: str
    updated_at: int | None
    pin: Pin | None
    origin: str


@dataclass
class Agent:
    id: str
    auth: AuthStore | None = None
    sessions: list = field(default_factory=list)
    sessions_form: str | None = None  # json | sqlite
    app_version: str | None = None  # schema_meta.app_version of the agent database


@dataclass
class Snapshot:
    root: Path
    shared: AuthStore | None = None  # 2026.9: state/openclaw.sqlite
    agents: dict = field(default_factory=dict)  # agent id -> Agent, `main` first
    app_version: str | None = None  # schema_meta.app_version of state/openclaw.sqlite
    warnings: list = field(default_factory=list)

    @property
    def forms(self):
        found = {s.form for s in self.stores()}
        if any(a.sessions_form == "sqlite" for a in self.agents.values()):
            found.add("sqlite")
        return found

    def stores(self):
        """Every auth store, in precedence order: the shared store, agent `main`, the other agents."""
        out = [self.shared] if self.shared else []
        return out + [a.auth for a in self.agents.values() if a.auth]

    def sessions(self):
        return [s for a in self.agents.values() for s in a.sessions]

    def merged(self):
        """One store for authbroker's single pool, and the conflicts it settled.

        openclaw copies main's profiles (and their stats, as they were then) into an agent's own store
        when the agent is created, so the same id is often in several stores. The first store in
        `stores()` order that holds an id wins for its credential and usage stats, and the first that
        has an order / lastGood for a provider wins for that provider: the shared (main) store is the
        one the gateway keeps current. An id whose credential differs between stores is named in the
        returned conflicts (never the secrets themselves).
        """
        out = AuthStore(origin=", ".join(s.origin for s in self.stores()), form="merged")
        conflicts = []
        for store in self.stores():
            for profile_id, profile in store.profiles.items():
                kept = out.profiles.setdefault(profile_id, profile)
                if kept is not profile and kept != profile:
                    conflicts.append(f"{profile_id}: {store.origin} holds a different credential than "
                                     "the store read before it; that one is kept")
            for profile_id, usage in store.usage.items():
                out.usage.setdefault(profile_id, usage)
            for provider, ids in store.order.items():
                out.order.setdefault(provider, ids)
            for provider, profile_id in store.last_good.items():
                out.last_good.setdefault(provider, profile_id)
        return out, conflicts


# ---------------------------------------------------------------- JSON


class _BigInt:
    """An integer literal too long for any limit; refused where it is used, with the field's name."""

    def __init__(self, digits):
        self.digits = digits


def _object_without_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


class _Duplicate(Exception):
    def __init__(self, key):
        self.key = key


def _parse_int(text):
    return _BigInt(text) if len(text.lstrip("-")) > _MAX_INT_DIGITS else int(text)


def _no_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def loads(text, origin):
    """JSON with the checks JSON.parse does not make: no duplicate keys, no NaN/Infinity."""
    try:
        return json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_int=_parse_int,
            parse_constant=_no_constant,
        )
    except _Duplicate as exc:
        raise StoreError(origin, None, f"the key {_label(exc.key)} appears twice in one object "
                                       "(which one counts is ambiguous)") from None
    except json.JSONDecodeError as exc:
        raise StoreError(origin, None, f"is not valid JSON: {exc.msg} (line {exc.lineno}, "
                                       f"column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise StoreError(origin, None, f"is not valid JSON: {exc}") from None


def read_json_file(path, limit):
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise StoreError(path, None, f"is {size} bytes, above the limit of {limit} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(path, None, f"cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StoreError(path, None, "is not UTF-8 text") from None
    return loads(text, path)


# ---------------------------------------------------------------- checks


def _label(key):
    return json.dumps(key, ensure_ascii=False)


def _kind_of(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | _BigInt):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


class _Check:
    """Field checks for one file (or one JSON cell of a database): each failure names file and field."""

    def __init__(self, origin):
        self.origin = origin

    def fail(self, where, message):
        raise StoreError(self.origin, where, message)

    def obj(self, value, where, *, optional=False):
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, not {_kind_of(value)}")
        return value

    def text(self, value, where, *, optional=True, limit=MAX_ID_CHARS, empty=False):
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {_kind_of(value)}")
        if not value and not empty:
            self.fail(where, "must not be empty")
        if len(value) > limit:
            self.fail(where, f"is {len(value)} characters, above the limit of {limit}")
        return value

    def number(self, value, where):
        if isinstance(value, bool) or not isinstance(value, int | float | _BigInt):
            self.fail(where, f"must be a number, not {_kind_of(value)}")
        if isinstance(value, _BigInt):
            return None  # out of every range: the caller words the limit
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(where, "must be a finite number")
        return value

    def count(self, value, where):
        """A whole number in 0..MAX_COUNT; absent means 0."""
        if value is None:
            return 0
        n = self.number(value, where)
        if n is None or isinstance(n, float) and not n.is_integer():
            if n is None:
                self.fail(where, f"is out of range: counts must lie in 0..{MAX_COUNT}")
            self.fail(where, "must be a whole number")
        n = int(n)
        if not 0 <= n <= MAX_COUNT:
            self.fail(where, f"is {n}, out of range: counts must lie in 0..{MAX_COUNT}")
        return n

    def epoch_ms(self, value, where):
        """Epoch milliseconds in MIN_EPOCH_MS..MAX_EPOCH_MS, or None when absent."""
        if value is None:
            return None
        n = self.number(value, where)
        if n is None or n > MAX_EPOCH_MS:
            self.fail(where, f"is out of range: epoch milliseconds must lie in {MIN_EPOCH_MS}.."
                             f"{MAX_EPOCH_MS} (2001-09-09 to 9999-12-31)")
        if n < MIN_EPOCH_MS:
            self.fail(where, f"is {_show(n)}, below {MIN_EPOCH_MS}: this looks like epoch seconds (or a "
                             "time before 2001-09-09); openclaw writes epoch milliseconds, so multiply "
                             "seconds by 1000")
        return int(round(n))

    def secret(self, value, where):
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {_kind_of(value)}")
        size = len(value.encode("utf-8"))
        if size > MAX_SECRET_BYTES:
            self.fail(where, f"is {size} bytes, above the secret size limit of {MAX_SECRET_BYTES} bytes")
        return value or None

    def ref(self, value, where):
        if value is None:
            return None
        ref = self.obj(value, where)
        parts = [self.text(ref.get(name), f"{where}.{name}", optional=False, limit=MAX_REF_CHARS)
                 for name in ("source", "provider", "id")]
        return SecretRef(*parts)


def _show(n):
    return str(int(n)) if float(n).is_integer() else repr(n)


# ---------------------------------------------------------------- auth stores


def _provider_of(profile_id, entry_provider):
    provider = entry_provider if entry_provider is not None else profile_id.split(":", 1)[0]
    return provider.strip().lower()


def parse_profiles(check, raw, into):
    """The `profiles` object of an auth store (any form), added to `into.profiles`."""
    profiles = check.obj(raw, '"profiles"')
    if len(profiles) > MAX_PROFILES:
        check.fail('"profiles"', f"holds {len(profiles)} profiles, above the limit of {MAX_PROFILES}")
    for profile_id, entry in profiles.items():
        where = f"profiles[{_label(profile_id)}]"
        check.text(profile_id, f"{where} (the id)", optional=False)
        check.obj(entry, where)
        kind = entry.get("type")
        if kind not in KINDS:
            check.fail(f"{where}.type", f"must be one of {', '.join(KINDS)}")
        provider_raw = check.text(entry.get("provider"), f"{where}.provider")
        if provider_raw is None and ":" not in profile_id:
            check.fail(where, 'has no "provider" and its id has no "provider:" prefix')
        secret_field, ref_field = SECRET_FIELDS[kind]
        secret = check.secret(entry.get(secret_field), f"{where}.{secret_field}")
        ref = check.ref(entry.get(ref_field), f"{where}.{ref_field}")
        if secret is None and ref is None:
            check.fail(where, f'has neither "{secret_field}" nor "{ref_field}": no secret and no '
                              "reference to one")
        refresh = check.secret(entry.get("refresh"), f"{where}.refresh") if kind == "oauth" else None
        into.profiles[profile_id] = Profile(
            id=profile_id,
            provider=_provider_of(profile_id, provider_raw),
            kind=kind,
            secret=secret,
            secret_ref=ref,
            refresh=refresh,
            expires=check.epoch_ms(entry.get("expires"), f"{where}.expires"),
            email=check.text(entry.get("email"), f"{where}.email", limit=MAX_EMAIL_CHARS),
            display_name=check.text(entry.get("displayName"), f"{where}.displayName"),
        )


def parse_state(check, data, into):
    """`order`, `lastGood` and `usageStats` (auth-state.json, or the single file, or a state cell)."""
    for provider, entries in check.obj(data.get("order"), '"order"', optional=True).items():
        where = f"order[{_label(provider)}]"
        check.text(provider, f"{where} (the provider)", optional=False)
        if not isinstance(entries, list):
            check.fail(where, f"must be a list of profile ids, not {_kind_of(entries)}")
        if len(entries) > MAX_PROFILES:
            check.fail(where, f"lists {len(entries)} ids, above the limit of {MAX_PROFILES}")
        ids = [check.text(e, f"{where}[{i}]", optional=False) for i, e in enumerate(entries)]
        if len(set(ids)) != len(ids):
            check.fail(where, "lists a profile id twice")
        into.order[provider] = ids
    for provider, profile_id in check.obj(data.get("lastGood"), '"lastGood"', optional=True).items():
        where = f"lastGood[{_label(provider)}]"
        check.text(provider, f"{where} (the provider)", optional=False)
        into.last_good[provider] = check.text(profile_id, where, optional=False)
    stats = check.obj(data.get("usageStats"), '"usageStats"', optional=True)
    if len(stats) > MAX_PROFILES:
        check.fail('"usageStats"', f"holds {len(stats)} entries, above the limit of {MAX_PROFILES}")
    for profile_id, entry in stats.items():
        into.usage[profile_id] = parse_usage(check, entry, f"usageStats[{_label(profile_id)}]")


def parse_usage(check, entry, where):
    check.obj(entry, where)
    counts = {}
    for reason, n in check.obj(entry.get("failureCounts"), f"{where}.failureCounts", optional=True).items():
        check.text(reason, f"{where}.failureCounts (a reason)", optional=False, limit=MAX_REASON_CHARS)
        counts[reason] = check.count(n, f"{where}.failureCounts[{_label(reason)}]")
    blocked_model = check.text(entry.get("blockedModel"), f"{where}.blockedModel", limit=MAX_MODEL_CHARS)
    if entry.get("blockedScope") not in (None, "model"):
        check.fail(f"{where}.blockedScope", 'must be "model" when present')

    def reason(name):
        return check.text(entry.get(name), f"{where}.{name}", limit=MAX_REASON_CHARS)

    return Usage(
        error_count=check.count(entry.get("errorCount"), f"{where}.errorCount"),
        failure_counts=counts,
        cooldown_until=check.epoch_ms(entry.get("cooldownUntil"), f"{where}.cooldownUntil"),
        cooldown_reason=reason("cooldownReason"),
        cooldown_model=check.text(entry.get("cooldownModel"), f"{where}.cooldownModel", limit=MAX_MODEL_CHARS),
        disabled_until=check.epoch_ms(entry.get("disabledUntil"), f"{where}.disabledUntil"),
        disabled_reason=reason("disabledReason"),
        blocked_until=check.epoch_ms(entry.get("blockedUntil"), f"{where}.blockedUntil"),
        blocked_reason=reason("blockedReason"),
        blocked_source=reason("blockedSource"),
        blocked_model=blocked_model if entry.get("blockedScope") == "model" else None,
        last_used=check.epoch_ms(entry.get("lastUsed"), f"{where}.lastUsed"),
        last_failure_at=check.epoch_ms(entry.get("lastFailureAt"), f"{where}.lastFailureAt"),
        last_probe_at=check.epoch_ms(entry.get("lastProbeAt"), f"{where}.lastProbeAt"),
    )


def _check_version(check, data):
    version = data.get("version")
    if version is not None:
        n = check.number(version, '"version"')
        if n is None or not isinstance(n, int) or not 1 <= n <= 1000:
            check.fail('"version"', "must be a whole number in 1..1000")


def read_auth_files(profiles_path, state_path=None):
    """An `auth-profiles.json`, with its `auth-state.json` when there is one (split form).

    In the split form the state file is the truth for `order`, `lastGood` and `usageStats`; entries
    left over in the profiles file (from before the split) count only for a provider or profile the
    state file does not mention, as openclaw 2026.4 merges them.
    """
    profiles_path = Path(profiles_path)
    data = read_json_file(profiles_path, MAX_AUTH_FILE_BYTES)
    check = _Check(profiles_path)
    check.obj(data, "the file")
    _check_version(check, data)
    if "profiles" not in data:
        check.fail(None, 'has no "profiles" object')
    form = "split-json" if state_path is not None else "single-json"
    origin = str(profiles_path) if state_path is None else f"{profiles_path} + {state_path}"
    store = AuthStore(origin=origin, form=form)
    parse_profiles(check, data["profiles"], store)
    parse_state(check, data, store)
    if state_path is not None:
        state_path = Path(state_path)
        state = read_json_file(state_path, MAX_AUTH_FILE_BYTES)
        state_check = _Check(state_path)
        state_check.obj(state, "the file")
        _check_version(state_check, state)
        from_state = AuthStore(origin=str(state_path), form=form)
        parse_state(state_check, state, from_state)
        # openclaw 2026.4 (loadPersistedAuthProfileStore): per provider / per profile, the state
        # file's entry wins over one left in auth-profiles.json.
        store.order = {**store.order, **from_state.order}
        store.last_good = {**store.last_good, **from_state.last_good}
        store.usage = {**store.usage, **from_state.usage}
    return store


# ---------------------------------------------------------------- sessions


def parse_session_entry(check, key, entry, agent_id, where):
    check.text(key, f"{where} (the session key)", optional=False)
    check.obj(entry, where)
    session_id = check.text(entry.get("sessionId"), f"{where}.sessionId", optional=False)
    override = check.text(entry.get("authProfileOverride"), f"{where}.authProfileOverride", empty=True)
    raw_source = entry.get("authProfileOverrideSource")
    if raw_source is not None and raw_source not in PIN_SOURCES:
        check.fail(f"{where}.authProfileOverrideSource", f"must be one of {', '.join(PIN_SOURCES)}")
    stamp = entry.get("authProfileOverrideCompactionCount")
    compaction = None if stamp is None else check.count(
        stamp, f"{where}.authProfileOverrideCompactionCount")
    pin = None
    if override:
        if raw_source == "user-link":
            source, provenance = "user", "user-link"
        elif raw_source is not None:
            source, provenance = raw_source, "explicit"
        elif compaction is not None:
            source, provenance = "auto", "compaction-stamp"
        else:
            source, provenance = "user", "no-stamp"
        pin = Pin(override, source, raw_source, provenance, compaction)
    return Session(
        key=key,
        agent_id=agent_id,
        session_id=session_id,
        updated_at=check.epoch_ms(entry.get("updatedAt"), f"{where}.updatedAt"),
        pin=pin,
        origin=str(check.origin),
    )


def read_sessions_file(path, agent_id="main"):
    """A `sessions.json`: an object keyed by session key."""
    path = Path(path)
    data = read_json_file(path, MAX_SESSIONS_FILE_BYTES)
    check = _Check(path)
    check.obj(data, "the file")
    if len(data) > MAX_SESSIONS:
        check.fail(None, f"holds {len(data)} sessions, above the limit of {MAX_SESSIONS}")
    return [parse_session_entry(check, key, entry, agent_id, f"[{_label(key)}]")
            for key, entry in data.items()]


# ---------------------------------------------------------------- SQLite


def _connect_read_only(path):
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(path, None, f"cannot be opened read-only as an SQLite database ({exc})") from None
    return db


def _columns(db, table):
    return {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}


def _require(db, path, table, columns):
    have = _columns(db, table)
    if not have:
        return False
    missing = [c for c in columns if c not in have]
    if missing:
        raise StoreError(path, table, f"has no column {', '.join(missing)}: not a schema this reader knows")
    return True


def _app_version(db):
    if "app_version" not in _columns(db, "schema_meta"):
        return None
    row = db.execute("SELECT app_version FROM schema_meta WHERE meta_key = 'primary'").fetchone()
    return row[0] if row else None


def _cell(path, table, key, column, value):
    origin = f"{path} ({table}[{_label(key)}].{column})"
    if not isinstance(value, str):
        raise StoreError(origin, None, "must hold JSON text")
    if len(value.encode("utf-8")) > MAX_AUTH_FILE_BYTES:
        raise StoreError(origin, None, f"is above the limit of {MAX_AUTH_FILE_BYTES} bytes")
    return origin, loads(value, origin)


def _store_from_cells(store_cell, state_cell, origin):
    """An AuthStore from a store JSON cell (`version`, `profiles`) and a state JSON cell."""
    store = AuthStore(origin=origin, form="sqlite")
    if store_cell is not None:
        cell_origin, data = store_cell
        check = _Check(cell_origin)
        check.obj(data, "the cell")
        _check_version(check, data)
        parse_profiles(check, data.get("profiles", {}), store)
    if state_cell is not None:
        cell_origin, data = state_cell
        check = _Check(cell_origin)
        check.obj(data, "the cell")
        _check_version(check, data)
        parse_state(check, data, store)
    return store


def read_shared_db(path):
    """state/openclaw.sqlite: the shared auth store (config_machine_state) and the app version."""
    db = _connect_read_only(path)
    try:
        version = _app_version(db)
        if not _require(db, path, "config_machine_state", ("state_key", "value_json")):
            return None, version
        cells = {}
        for key in ("authProfiles.store", "authProfiles.state"):
            row = db.execute("SELECT value_json FROM config_machine_state WHERE state_key = ?", (key,)).fetchone()
            if row is not None:
                cells[key] = _cell(path, "config_machine_state", key, "value_json", row[0])
    finally:
        db.close()
    if not cells:
        return None, version
    store = _store_from_cells(cells.get("authProfiles.store"), cells.get("authProfiles.state"),
                              f"{path} (config_machine_state)")
    return store, version


def read_agent_db(path, agent_id, warnings):
    """agents/<id>/agent/openclaw-agent.sqlite: the agent's own auth store and its sessions."""
    db = _connect_read_only(path)
    try:
        version = _app_version(db)
        cells = {}
        for table, key_col, json_col in (("auth_profile_store", "store_key", "store_json"),
                                         ("auth_profile_state", "state_key", "state_json")):
            if not _require(db, path, table, (key_col, json_col)):
                continue
            for key, value in db.execute(f"SELECT {key_col}, {json_col} FROM {table} ORDER BY {key_col}"):
                if key != "primary":
                    warnings.append(f"{path}: {table} row {_label(key)} ignored (only \"primary\" is read)")
                    continue
                cells[table] = _cell(path, table, key, json_col, value)
        store = None
        if cells:
            store = _store_from_cells(cells.get("auth_profile_store"), cells.get("auth_profile_state"),
                                      f"{path} (auth_profile_store, auth_profile_state)")
            if not store.profiles and not store.order and not store.last_good and not store.usage:
                store = None
        sessions = None
        if _require(db, path, "session_nodes", ("session_key", "current_session_id", "entry_json")):
            sessions = []
            total = db.execute("SELECT count(*) FROM session_nodes").fetchone()[0]
            if total > MAX_SESSIONS:
                raise StoreError(path, "session_nodes", f"holds {total} sessions, above the limit of {MAX_SESSIONS}")
            # entry_valid: 1 checked, 0 not yet checked, -1 found invalid by openclaw (which does
            # not use such an entry); those are skipped with a warning.
            valid = "entry_valid" if "entry_valid" in _columns(db, "session_nodes") else "1"
            rows = db.execute(f"SELECT session_key, current_session_id, entry_json, {valid} FROM session_nodes "
                              "ORDER BY rowid")
            for key, current_id, entry_json, entry_valid in rows:
                if entry_valid == -1:
                    warnings.append(f"{path}: session_nodes[{_label(key)}] skipped: openclaw marked its "
                                    "entry invalid (entry_valid = -1)")
                    continue
                origin, entry = _cell(path, "session_nodes", key, "entry_json", entry_json)
                check = _Check(origin)
                session = parse_session_entry(check, key, entry, agent_id, "the entry")
                if session.session_id != current_id:
                    check.fail("the entry.sessionId", "differs from the row's current_session_id")
                sessions.append(session)
    finally:
        db.close()
    return store, sessions, version


# ---------------------------------------------------------------- the state directory


def read_state_dir(path):
    """Every store form under an openclaw state directory (`~/.openclaw`, `$OPENCLAW_STATE_DIR`)."""
    root = Path(path)
    if not root.is_dir():
        raise StoreError(root, None, "is not a directory")
    snapshot = Snapshot(root=root)
    shared = root / SHARED_DB
    if shared.is_file():
        snapshot.shared, snapshot.app_version = read_shared_db(shared)

    agents_dir = root / "agents"
    agent_dirs = sorted(p for p in agents_dir.iterdir() if p.is_dir()) if agents_dir.is_dir() else []
    if len(agent_dirs) > MAX_AGENTS:
        raise StoreError(agents_dir, None, f"holds {len(agent_dirs)} agents, above the limit of {MAX_AGENTS}")
    agent_dirs.sort(key=lambda p: p.name != "main")
    total_sessions = 0
    for agent_path in agent_dirs:
        agent = Agent(id=agent_path.name)
        auth_dir = agent_path / "agent"
        db_path = auth_dir / AGENT_DB
        json_profiles = auth_dir / "auth-profiles.json"
        json_state = auth_dir / "auth-state.json"
        json_sessions = agent_path / "sessions" / "sessions.json"
        db_sessions = None
        # Since 2026.9 openclaw ignores the JSON files at run time ("retired auth profile files are
        # ignored by runtime"; `openclaw doctor --fix` migrates and archives them), so once the
        # installation keeps its store in SQLite, JSON files left in an agent directory are not read.
        retired = db_path.is_file() or snapshot.shared is not None
        if db_path.is_file():
            agent.auth, db_sessions, agent.app_version = read_agent_db(db_path, agent.id, snapshot.warnings)
        if retired:
            for stale in (json_profiles, json_state, json_sessions):
                if stale.is_file():
                    snapshot.warnings.append(
                        f"{stale}: ignored: openclaw 2026.9 keeps this agent's state in SQLite and no "
                        "longer reads it (run `openclaw doctor --fix` to migrate it, then import again)")
        elif json_profiles.is_file():
            agent.auth = read_auth_files(json_profiles, json_state if json_state.is_file() else None)
        elif json_state.is_file():
            raise StoreError(json_state, None, "has no auth-profiles.json beside it")
        if db_sessions:
            agent.sessions, agent.sessions_form = db_sessions, "sqlite"
        elif not retired and json_sessions.is_file():
            agent.sessions, agent.sessions_form = read_sessions_file(json_sessions, agent.id), "json"
        total_sessions += len(agent.sessions)
        if total_sessions > MAX_SESSIONS:
            raise StoreError(agent_path, None, f"brings the sessions to more than the limit of {MAX_SESSIONS}")
        if agent.auth or agent.sessions or db_path.is_file():
            snapshot.agents[agent.id] = agent
    if snapshot.shared is None and not snapshot.agents:
        raise StoreError(root, None, "holds no openclaw store: expected state/openclaw.sqlite or "
                                     "agents/<id>/agent/ with auth-profiles.json or openclaw-agent.sqlite")
    return snapshot

