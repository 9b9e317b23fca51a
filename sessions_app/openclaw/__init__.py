"""Interop with openclaw (DESIGN §6): import and export its `auth-profiles.json` and `sessions.json`.

Reading is in two steps. First both files are parsed and checked without
touching the database, so a file that does not parse imports nothing and
the error names the file and the problem. Then everything is applied in one
transaction, comparing with what is stored: a second import of the same files
changes nothing and writes no events.

The files are the truth for what they carry: a profile's kind, secret,
position and usage stats, a provider's `lastGood`, and a session's id,
activity time and pin. Windows are kept as they are in the file; one that has
ended simply reads as ended (availability is judged by time at every read).
"""

import json
import math
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.db import transaction

from profiles import crypto, ids, rules
from profiles import services as profile_services
from profiles.errors import Invalid
from profiles.events import new_event, write_events
from profiles.models import AuthProfile, EventKind, Kind, ModelCooldown, Provider, Strategy
from sessions_app.models import OverrideSource, Pin, Session

ACTOR = "import:openclaw"
REASON = "imported from openclaw"

# openclaw credential type → the field holding its secret.
SECRET_FIELDS = {Kind.API_KEY: "key", Kind.TOKEN: "token", Kind.OAUTH: "access"}
# Non-secret extras of a credential, kept in AuthProfile.metadata and written back on export.
EXTRA_FIELDS = ("expires", "email")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
MAX_MS = (datetime(9999, 12, 31, tzinfo=UTC) - EPOCH) // ONE_MS
REASON_MAX = 32  # AuthProfile.cooldown_reason / disabled_reason
MODEL_MAX = 190


class FileProblem(Exception):
    """An openclaw file that cannot be imported; the message names the file and the problem."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# ---------------------------------------------------------------- time


def from_ms(ms):
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(moment):
    return (moment - EPOCH) // ONE_MS


# ---------------------------------------------------------------- parsing (no database)


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _label(key):
    return json.dumps(key, ensure_ascii=False)


class _Checker:
    """Type checks that raise a FileProblem naming the file, the place and what was expected.

    Values are never echoed back: they may be secrets.
    """

    def __init__(self, path):
        self.path = path

    def fail(self, where, problem):
        raise FileProblem(self.path, f"{where} {problem}")

    def obj(self, value, where):
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, not {_json_type(value)}")
        return value

    def optional_obj(self, value, where):
        return {} if value is None else self.obj(value, where)

    def string(self, value, where, *, optional=False, max_length=None):
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {_json_type(value)}")
        if max_length is not None and len(value) > max_length:
            self.fail(where, f"must be at most {max_length} characters")
        return value

    def count(self, value, where):
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(where, f"must be a whole number ≥ 0, not {_json_type(value)}")
        return value

    def timestamp(self, value, where):
        """Epoch milliseconds (openclaw's `Date.now()`), or None when absent."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"must be a time in epoch milliseconds (a number), not {_json_type(value)}")
        if not math.isfinite(value) or not 0 <= value <= MAX_MS:
            self.fail(where, "must be a time in epoch milliseconds between 1970 and 9999")
        return from_ms(round(value))

    def provider_id(self, value, where):
        try:
            return ids.normalize_provider_id(value)
        except Invalid as exc:
            self.fail(where, f"is not a usable provider id ({exc.message})")


@dataclass
class FileProfile:
    raw_id: str
    provider: str  # normalised, built-in aliases resolved; operator aliases are resolved on import
    name: str
    kind: str
    secret: str
    refresh: str = ""
    extras: dict = field(default_factory=dict)


@dataclass
class FileStats:
    error_count: int = 0
    failure_counts: dict = field(default_factory=dict)
    cooldown_until: datetime | None = None
    cooldown_reason: str = ""
    cooldown_model: str = ""
    disabled_until: datetime | None = None
    disabled_reason: str = ""
    last_used: datetime | None = None
    last_failure_at: datetime | None = None


@dataclass
class AuthFile:
    profiles: list
    order: dict  # provider (normalised) → [raw profile id, …]
    last_good: dict  # provider (normalised) → raw profile id
    usage: dict  # raw profile id → FileStats


@dataclass
class FileSession:
    key: str
    session_id: uuid.UUID
    updated_at: datetime | None
    override: str | None
    source: str | None
    compaction_count: int | None


def read_json(path):
    """The parsed content of `path`; a FileProblem when it cannot be read or is not JSON."""

    def no_constants(name):
        raise ValueError(f"{name} is not valid JSON")

    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise FileProblem(path, f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise FileProblem(path, "is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise FileProblem(path, f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:
        raise FileProblem(path, f"is not valid JSON: {exc}") from None


def parse_auth_profiles(data, path):
    """Check the shape of an `auth-profiles.json` document and return an AuthFile."""
    check = _Checker(path)
    check.obj(data, "the file")
    if "profiles" not in data:
        check.fail("the file", 'has no "profiles" object')
    raw_profiles = check.obj(data["profiles"], '"profiles"')

    profiles, seen = [], {}
    for raw_id, entry in raw_profiles.items():
        where = f"profiles[{_label(raw_id)}]"
        check.obj(entry, where)
        prefix, name = raw_id.split(":", 1) if ":" in raw_id else (None, raw_id)
        provider_raw = check.string(entry.get("provider"), f"{where}.provider", optional=True) or prefix
        if not provider_raw:
            check.fail(where, 'has no "provider" and its id has no "provider:" prefix')
        provider = check.provider_id(provider_raw, f"{where}.provider")
        if not ids.PROFILE_NAME_RE.match(name):
            check.fail(where, "has a name part that is empty, too long or has slashes, spaces or control characters")
        kind = entry.get("type")
        if not isinstance(kind, str) or kind not in SECRET_FIELDS:
            check.fail(f"{where}.type", f"must be one of {', '.join(SECRET_FIELDS)}")
        secret_field = SECRET_FIELDS[kind]
        secret = check.string(entry.get(secret_field), f"{where}.{secret_field}")
        if not secret:
            check.fail(f"{where}.{secret_field}", "must not be empty")
        refresh = ""
        if kind == Kind.OAUTH:
            refresh = check.string(entry.get("refresh"), f"{where}.refresh", optional=True) or ""
        extras = {}
        if entry.get("expires") is not None:
            check.timestamp(entry["expires"], f"{where}.expires")
            extras["expires"] = entry["expires"]
        if entry.get("email") is not None:
            extras["email"] = check.string(entry["email"], f"{where}.email", max_length=320)
        profile_id = f"{provider}:{name}"
        if profile_id in seen:
            check.fail(where, f"names the same profile as profiles[{_label(seen[profile_id])}] ({profile_id})")
        seen[profile_id] = raw_id
        profiles.append(FileProfile(raw_id, provider, name, kind, secret, refresh, extras))

    order = {}
    for provider_raw, entries in check.optional_obj(data.get("order"), '"order"').items():
        where = f"order[{_label(provider_raw)}]"
        provider = check.provider_id(provider_raw, where)
        if not isinstance(entries, list):
            check.fail(where, f"must be a list of profile ids, not {_json_type(entries)}")
        for i, entry in enumerate(entries):
            check.string(entry, f"{where}[{i}]")
        if provider in order:
            check.fail(where, "lists a provider that another entry of \"order\" already lists")
        order[provider] = entries

    last_good = {}
    for provider_raw, profile_raw in check.optional_obj(data.get("lastGood"), '"lastGood"').items():
        where = f"lastGood[{_label(provider_raw)}]"
        last_good[check.provider_id(provider_raw, where)] = check.string(profile_raw, where)

    usage = {}
    for raw_id, entry in check.optional_obj(data.get("usageStats"), '"usageStats"').items():
        usage[raw_id] = _parse_stats(check, entry, f"usageStats[{_label(raw_id)}]")
    return AuthFile(profiles, order, last_good, usage)


def _parse_stats(check, entry, where):
    check.obj(entry, where)
    counts = {}
    for reason, n in check.optional_obj(entry.get("failureCounts"), f"{where}.failureCounts").items():
        counts[reason] = check.count(n, f"{where}.failureCounts[{_label(reason)}]")
    model = check.string(entry.get("cooldownModel"), f"{where}.cooldownModel", optional=True, max_length=MODEL_MAX)
    return FileStats(
        error_count=check.count(entry.get("errorCount"), f"{where}.errorCount"),
        failure_counts=counts,
        cooldown_until=check.timestamp(entry.get("cooldownUntil"), f"{where}.cooldownUntil"),
        cooldown_reason=check.string(entry.get("cooldownReason"), f"{where}.cooldownReason", optional=True,
                                     max_length=REASON_MAX) or "",
        cooldown_model=model or "",
        disabled_until=check.timestamp(entry.get("disabledUntil"), f"{where}.disabledUntil"),
        disabled_reason=check.string(entry.get("disabledReason"), f"{where}.disabledReason", optional=True,
                                     max_length=REASON_MAX) or "",
        last_used=check.timestamp(entry.get("lastUsed"), f"{where}.lastUsed"),
        last_failure_at=check.timestamp(entry.get("lastFailureAt"), f"{where}.lastFailureAt"),
    )


def parse_sessions(data, path):
    """Check the shape of a `sessions.json` document (entries keyed by session key)."""
    check = _Checker(path)
    check.obj(data, "the file")
    sessions = []
    for key, entry in data.items():
        where = f"[{_label(key)}]"
        check.obj(entry, where)
        raw_id = check.string(entry.get("sessionId"), f"{where}.sessionId")
        try:
            session_id = uuid.UUID(raw_id)
        except ValueError:
            check.fail(f"{where}.sessionId", "must be a UUID")
        override = check.string(entry.get("authProfileOverride"), f"{where}.authProfileOverride", optional=True)
        source = entry.get("authProfileOverrideSource")
        if source is not None and source not in OverrideSource.values:
            check.fail(f"{where}.authProfileOverrideSource", 'must be "auto" or "user"')
        stamp = entry.get("authProfileOverrideCompactionCount")
        compaction = None if stamp is None else check.count(stamp, f"{where}.authProfileOverrideCompactionCount")
        sessions.append(FileSession(
            key=key,
            session_id=session_id,
            updated_at=check.timestamp(entry.get("updatedAt"), f"{where}.updatedAt"),
            override=override or None,
            source=source,
            compaction_count=compaction,
        ))
    return sessions


# ---------------------------------------------------------------- import


@dataclass
class ImportReport:
    profiles_created: int = 0
    profiles_updated: int = 0
    profiles_unchanged: int = 0
    sessions_created: int = 0
    sessions_updated: int = 0
    sessions_unchanged: int = 0
    pins_skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def lines(self):
        """A short summary for people: counts, then what was skipped and why. Never a secret."""
        out = [
            f"Profiles: {self.profiles_created} created, {self.profiles_updated} updated, "
            f"{self.profiles_unchanged} unchanged.",
            f"Sessions: {self.sessions_created} created, {self.sessions_updated} updated, "
            f"{self.sessions_unchanged} unchanged; {len(self.pins_skipped)} pins skipped.",
        ]
        out += [f"  pin skipped: {line}" for line in self.pins_skipped]
        out += [f"  note: {line}" for line in self.notes]
        return out


def import_files(auth_profiles_path, sessions_path=None, *, now):
    """Parse both files, then import them in one transaction. On a FileProblem nothing is written."""
    auth = parse_auth_profiles(read_json(auth_profiles_path), auth_profiles_path)
    sessions = parse_sessions(read_json(sessions_path), sessions_path) if sessions_path else None
    return import_parsed(auth, sessions, now=now, auth_path=auth_profiles_path)


@transaction.atomic
def import_parsed(auth, sessions, *, now, auth_path="auth-profiles.json"):
    report = ImportReport()
    importer = _Importer(now, report, auth_path)
    importer.profiles(auth)
    importer.last_good(auth)
    if sessions is not None:
        importer.sessions(sessions)
    return report


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return value


STAT_FIELDS = ("error_count", "failure_counts", "cooldown_until", "cooldown_reason", "disabled_until",
               "disabled_reason", "last_used", "last_failure_at")
PAIR_FIELDS = ("error_count", "cooldown_until", "cooldown_reason", "last_failure_at")


class _Importer:
    def __init__(self, now, report, auth_path):
        self.now = now
        self.report = report
        self.auth_path = auth_path
        self.pid_of = {}  # raw profile id in the file → authbroker profile id

    def to_pid(self, raw):
        """The authbroker id for a profile id as the files spell it; None when it cannot be one."""
        if raw in self.pid_of:
            return self.pid_of[raw]
        try:
            return profile_services.resolve_profile_id(raw)
        except Invalid:
            return None

    # ------------------------------------------------------------ profiles

    def profiles(self, auth):
        resolved = []
        for fp in auth.profiles:
            provider_id = profile_services.resolve_provider_id(fp.provider)
            pid = f"{provider_id}:{fp.name}"
            if pid in self.pid_of.values():
                raise FileProblem(self.auth_path, f"profiles[{_label(fp.raw_id)}] names a profile listed twice ({pid})")
            self.pid_of[fp.raw_id] = pid
            resolved.append((fp, provider_id, pid))
        positions = self._positions(auth, resolved)

        usage = {}  # authbroker profile id → stats, whichever spelling the file used (its `profiles` key wins)
        in_file = set(self.pid_of.values())
        for raw_id, stats in auth.usage.items():
            pid = self.to_pid(raw_id)
            if pid not in in_file:
                self.report.notes.append(f"usageStats for {raw_id!r} ignored: no such profile in the file")
            elif raw_id in self.pid_of or pid not in usage:
                usage[pid] = stats

        existing = AuthProfile.objects.select_for_update().in_bulk([pid for _, _, pid in resolved])
        for fp, _, pid in resolved:
            stats = usage.get(pid, FileStats())
            profile = existing.get(pid)
            if profile is None:
                profile = profile_services.create_profile(
                    pid, fp.kind, fp.secret, self.now, ACTOR, position=positions[pid], refresh=fp.refresh,
                    metadata=dict(fp.extras), reason=REASON,
                )
                self._sync(profile, fp, stats, positions[pid])
                self.report.profiles_created += 1
            elif self._sync(profile, fp, stats, positions[pid]):
                self.report.profiles_updated += 1
            else:
                self.report.profiles_unchanged += 1

        for provider_id in sorted({provider_id for _, provider_id, _ in resolved}):
            # Explicit positions: openclaw's least-recently-used rotation is what stranded users.
            profile_services.update_provider(provider_id, self.now, ACTOR, strategy=Strategy.ORDERED,
                                             reason=f"{REASON}: profiles follow explicit positions")

    def _positions(self, auth, resolved):
        """Positions per provider: the provider's `order` first, then its other profiles in file order."""
        by_provider = {}
        for _, provider_id, pid in resolved:
            by_provider.setdefault(provider_id, []).append(pid)
        order = {}
        for provider_raw, entries in auth.order.items():
            provider_id = profile_services.resolve_provider_id(provider_raw)
            if provider_id in order:
                raise FileProblem(self.auth_path, f"order[{_label(provider_raw)}] lists provider {provider_id} twice")
            order[provider_id] = entries
        positions = {}
        for provider_id, in_file in by_provider.items():
            listed = []
            for raw in order.get(provider_id, []):
                pid = self.to_pid(raw)
                if pid in in_file:
                    if pid not in listed:
                        listed.append(pid)
                else:
                    self.report.notes.append(f"order for {provider_id} names {raw!r}, not a {provider_id} "
                                             "profile in the file; ignored")
            ranked = listed + [pid for pid in in_file if pid not in listed]
            positions.update({pid: position for position, pid in enumerate(ranked)})
        for provider_id in order.keys() - by_provider.keys():
            self.report.notes.append(f"order for {provider_id} ignored: the file has no {provider_id} profiles")
        return positions

    def _sync(self, profile, fp, stats, position):
        """Make a stored profile match the file; one profile_changed event when anything changed."""
        before, after, fields = {}, {}, set()

        def change(name, value, shown=None):
            old = getattr(profile, name)
            if old != value:
                before[shown or name], after[shown or name] = _jsonable(old), _jsonable(value)
                setattr(profile, name, value)
                fields.add(name)

        change("kind", fp.kind)
        change("position", position)
        metadata = {k: v for k, v in profile.metadata.items() if k not in EXTRA_FIELDS} | fp.extras
        change("metadata", metadata)
        if self._stored_secret(profile) != (fp.secret, fp.refresh):
            before["secret_mask"] = profile.secret_mask
            profile.set_secret(fp.secret, fp.refresh)
            after["secret_mask"] = profile.secret_mask
            fields.update({"secret_encrypted", "refresh_encrypted", "secret_mask"})

        model = stats.cooldown_model
        wanted = {
            "error_count": stats.error_count,
            "failure_counts": stats.failure_counts,
            "cooldown_until": None if model else stats.cooldown_until,
            "cooldown_reason": "" if model else stats.cooldown_reason,
            "disabled_until": stats.disabled_until,
            "disabled_reason": stats.disabled_reason,
            "last_used": stats.last_used,
            "last_failure_at": stats.last_failure_at,
        }
        for name in STAT_FIELDS:
            change(name, wanted[name])
        if fields:
            profile.save(update_fields=sorted(fields | {"updated_at"}))
        pair_change = self._sync_model_cooldown(profile, stats) if model else None
        if pair_change:
            before["model_cooldown"], after["model_cooldown"] = pair_change
        if not before:
            return False
        write_events([new_event(EventKind.PROFILE_CHANGED, self.now, ACTOR, profile_id=profile.id,
                                provider_id=profile.provider_id, model=model, reason=REASON,
                                before=before, after=after)])
        return True

    @staticmethod
    def _stored_secret(profile):
        try:
            return profile.reveal_secret(), profile.reveal_refresh()
        except crypto.SecretUnreadable:  # no configured key reads it: the file's secret replaces it
            return None

    def _sync_model_cooldown(self, profile, stats):
        """A `cooldownModel` cools that (profile, model) pair only; returns (before, after) or None."""
        wanted = {
            "error_count": stats.error_count,
            "cooldown_until": stats.cooldown_until,
            "cooldown_reason": stats.cooldown_reason,
            "last_failure_at": stats.last_failure_at,
        }
        pair = ModelCooldown.objects.select_for_update().filter(profile=profile, model=stats.cooldown_model).first()
        if pair is None:
            ModelCooldown.objects.create(profile=profile, model=stats.cooldown_model, **wanted)
            return None, {"model": stats.cooldown_model, **{k: _jsonable(v) for k, v in wanted.items()}}
        old = {name: getattr(pair, name) for name in PAIR_FIELDS}
        if old == wanted:
            return None
        for name, value in wanted.items():
            setattr(pair, name, value)
        pair.save(update_fields=list(PAIR_FIELDS))
        return ({"model": pair.model, **{k: _jsonable(v) for k, v in old.items()}},
                {"model": pair.model, **{k: _jsonable(v) for k, v in wanted.items()}})

    # ------------------------------------------------------------ lastGood

    def last_good(self, auth):
        events = []
        for provider_raw, profile_raw in auth.last_good.items():
            provider_id = profile_services.resolve_provider_id(provider_raw)
            provider = Provider.objects.select_for_update().filter(pk=provider_id).first()
            pid = self.to_pid(profile_raw)
            if provider is None or pid is None or not AuthProfile.objects.filter(pk=pid, provider=provider).exists():
                self.report.notes.append(f"lastGood for {provider_id} ignored: {profile_raw!r} is not one of its "
                                         "profiles")
                continue
            if provider.last_good_id != pid:
                events.append(new_event(EventKind.PROVIDER_CHANGED, self.now, ACTOR, provider_id=provider_id,
                                        profile_id=pid, reason=REASON, before={"last_good": provider.last_good_id},
                                        after={"last_good": pid}))
                Provider.objects.filter(pk=provider_id).update(last_good_id=pid, updated_at=self.now)
        write_events(events)

    # ------------------------------------------------------------ sessions

    def sessions(self, entries):
        usable = []
        for entry in entries:
            try:
                ids.validate_session_key(entry.key)
            except Invalid:
                self.report.notes.append(f"session {entry.key!r} skipped: authbroker session keys are 1–255 "
                                         "characters without '/', whitespace or control characters")
                continue
            usable.append(entry)
        existing = {s.session_key: s for s in Session.objects.select_for_update()
                    .filter(session_key__in=[e.key for e in usable]).order_by("pk")}
        pins = {}
        for pin in Pin.objects.filter(session__in=list(existing.values())).order_by("session_id", "provider_id"):
            pins.setdefault(pin.session_id, {})[pin.provider_id] = pin
        wanted_pids = {self.to_pid(e.override) for e in usable if e.override}
        profiles = AuthProfile.objects.select_related("provider").in_bulk([p for p in wanted_pids if p])
        events = []
        for entry in usable:
            pin = None  # (profile, source) the file asks for; None for no pin
            pin_known = True
            if entry.override:
                profile = profiles.get(self.to_pid(entry.override))
                if profile is None:
                    pin_known = False
                    self.report.pins_skipped.append(f"session {entry.key!r} names unknown profile "
                                                    f"{entry.override!r}")
                else:
                    pin = (profile, rules.legacy_override_source(entry.source, entry.compaction_count))
            session = existing.get(entry.key)
            if session is None:
                self._create_session(entry, pin, events)
                self.report.sessions_created += 1
            elif self._update_session(session, pins.get(session.pk, {}), entry, pin, pin_known, events):
                self.report.sessions_updated += 1
            else:
                self.report.sessions_unchanged += 1
        write_events(events)

    def _pin_reason(self, entry, source):
        if entry.source:
            return f"{REASON} (source {source})"
        stamp = "a compaction stamp" if entry.compaction_count is not None else "no compaction stamp"
        return f"{REASON} (no source; read as {source}: {stamp})"

    def _pin(self, session, entry, pin, events):
        profile, source = pin
        _, event = session.set_pin(profile, source, self.now, ACTOR, self._pin_reason(entry, source),
                                   compaction_count=entry.compaction_count)
        session.provider = profile.provider
        events.append(event)

    def _create_session(self, entry, pin, events):
        session = Session(session_key=entry.key, session_id=entry.session_id, last_activity_at=entry.updated_at)
        if pin:
            session.provider = pin[0].provider
        session.save(force_insert=True)
        if pin:
            self._pin(session, entry, pin, events)
            session.save(update_fields=["pin_version", "provider"])

    def _update_session(self, session, pins, entry, pin, pin_known, events):
        """Bring a session in line with the file. openclaw keeps one pin per session: a pin in the file is
        the pin of its profile's provider (pins on other providers stay); no pin in the file clears them all."""
        changed = False
        if session.session_id != entry.session_id:
            events.append(new_event(EventKind.SESSION_RESET, self.now, ACTOR, session_key=session.session_key,
                                    reason=f"{REASON}: the session id changed",
                                    before={"session_id": str(session.session_id)},
                                    after={"session_id": str(entry.session_id)}))
            session.session_id = entry.session_id
            changed = True
        if entry.updated_at is not None and session.last_activity_at != entry.updated_at:
            session.last_activity_at = entry.updated_at
            changed = True
        if pin_known:
            if pin is None and pins:
                for provider_id in sorted(pins):
                    events.append(session.clear_pin(pins[provider_id], self.now, ACTOR,
                                                    f"{REASON}: the session has no pin"))
                changed = True
            elif pin is not None:
                current = pins.get(pin[0].provider_id)
                if (current is None or current.profile_id != pin[0].id or current.source != pin[1]
                        or current.compaction_count != entry.compaction_count):
                    self._pin(session, entry, pin, events)
                    changed = True
        if changed:
            session.save()
        return changed


# ---------------------------------------------------------------- export


def export_auth_profiles():
    """`auth-profiles.json` as openclaw reads it. Holds decrypted secrets: write it with `write_private_json`."""
    profiles = list(AuthProfile.objects.order_by("provider_id", "position", "id"))
    pairs = {}
    for pair in ModelCooldown.objects.filter(cooldown_until__isnull=False).order_by("cooldown_until", "model"):
        pairs[pair.profile_id] = pair  # openclaw keeps one model cooldown per profile: the latest one
    out, order, usage = {}, {}, {}
    for profile in profiles:
        secret_field = SECRET_FIELDS[profile.kind]
        entry = {"type": profile.kind, "provider": profile.provider_id, secret_field: profile.reveal_secret()}
        refresh = profile.reveal_refresh()
        if refresh:
            entry["refresh"] = refresh
        entry.update({k: profile.metadata[k] for k in EXTRA_FIELDS if k in profile.metadata})
        out[profile.id] = entry
        order.setdefault(profile.provider_id, []).append(profile.id)
        stats = _usage_stats(profile, pairs.get(profile.id))
        if stats:
            usage[profile.id] = stats
    last_good = dict(Provider.objects.filter(last_good__isnull=False).order_by("id").values_list("id", "last_good"))
    return {"version": 1, "profiles": out, "order": order, "lastGood": last_good, "usageStats": usage}


def _usage_stats(profile, pair):
    stats = {}
    if profile.last_used:
        stats["lastUsed"] = to_ms(profile.last_used)
    if profile.cooldown_until:
        stats["cooldownUntil"] = to_ms(profile.cooldown_until)
        if profile.cooldown_reason:
            stats["cooldownReason"] = profile.cooldown_reason
    elif pair is not None:
        stats["cooldownUntil"] = to_ms(pair.cooldown_until)
        if pair.cooldown_reason:
            stats["cooldownReason"] = pair.cooldown_reason
        stats["cooldownModel"] = pair.model
    elif profile.cooldown_reason:
        stats["cooldownReason"] = profile.cooldown_reason
    if profile.disabled_until:
        stats["disabledUntil"] = to_ms(profile.disabled_until)
    if profile.disabled_reason:
        stats["disabledReason"] = profile.disabled_reason
    if profile.last_failure_at:
        stats["lastFailureAt"] = to_ms(profile.last_failure_at)
    if profile.failure_counts:
        stats["failureCounts"] = dict(profile.failure_counts)
    if stats or profile.error_count:
        return {"errorCount": profile.error_count, **stats}
    return {}


def export_sessions():
    """`sessions.json` entries: session id, activity time and the pin with its source.

    openclaw holds one pin per session: the pin of the session's current provider is exported, or, when
    it has none there, its most recently set pin.
    """
    out = {}
    pins = {}
    for pin in Pin.objects.order_by("session_id", "set_at", "provider_id"):
        pins.setdefault(pin.session_id, []).append(pin)
    for session in Session.objects.order_by("session_key"):
        entry = {"sessionId": str(session.session_id)}
        if session.last_activity_at is not None:
            entry["updatedAt"] = to_ms(session.last_activity_at)
        own = pins.get(session.pk, [])
        pin = next((p for p in own if p.provider_id == session.provider_id), own[-1] if own else None)
        if pin is not None:
            entry["authProfileOverride"] = pin.profile_id
            entry["authProfileOverrideSource"] = pin.source
            if pin.compaction_count is not None:
                entry["authProfileOverrideCompactionCount"] = pin.compaction_count
        out[session.session_key] = entry
    return out


def write_private_json(path, data):
    """Write `data` to `path` readable by its owner only (0600), replacing the file atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_files(auth_profiles_path, sessions_path=None):
    """Write the files; returns (profiles written, sessions written or None)."""
    with transaction.atomic():
        auth = export_auth_profiles()
        sessions = export_sessions() if sessions_path else None
    write_private_json(auth_profiles_path, auth)
    if sessions is not None:
        write_private_json(sessions_path, sessions)
    return len(auth["profiles"]), (len(sessions) if sessions is not None else None)
