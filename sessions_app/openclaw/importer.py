"""Apply what `stores.py` read from openclaw to the database (DESIGN §6).

Reading and checking happen in `stores.py`, with no database: a store that is out of range or of the
wrong shape raises `StoreError` before anything is written. What remains to check needs authbroker's
own rules (provider ids and aliases, profile names, session ids as UUIDs); those checks raise
`StoreError` too, inside the one transaction the import runs in, so nothing is written either.

The stores are the truth for what they carry: a profile's kind, secret (or reference), expiry,
position and usage stats, a provider's `lastGood`, and a session's id, activity time and pin. Windows
are kept as they are; one that has ended simply reads as ended. A second import of the same stores
changes nothing and writes no events. Every change is recorded with the actor `import:openclaw`.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.db import transaction

from profiles import crypto, ids
from profiles import services as profile_services
from profiles.errors import Invalid
from profiles.events import new_event, write_events
from profiles.models import AuthProfile, EventKind, ModelCooldown, Provider, Strategy
from sessions_app.models import Pin, Session
from sessions_app.openclaw import stores
from sessions_app.openclaw.stores import StoreError, from_ms

ACTOR = "import:openclaw"
REASON = "imported from openclaw"

# Keys of AuthProfile.metadata the import owns (other keys an operator added stay). `expires` is the
# key imports before v2 kept the expiry under; it is now `expires_at` and leaves the metadata.
METADATA_KEYS = ("expires", "email", "display_name", "secret_ref")

STAT_FIELDS = ("error_count", "failure_counts", "cooldown_until", "cooldown_reason", "disabled_until",
               "disabled_reason", "last_used", "last_failure_at")
PAIR_FIELDS = ("error_count", "cooldown_until", "cooldown_reason", "last_failure_at")

PIN_PROVENANCE = {
    "explicit": "source {raw}",
    "user-link": "source user-link, read as user",
    "compaction-stamp": "no source; read as auto: a compaction stamp",
    "no-stamp": "no source; read as user: no compaction stamp",
}


@dataclass
class ImportReport:
    profiles_created: int = 0
    profiles_updated: int = 0
    profiles_unchanged: int = 0
    sessions_created: int = 0
    sessions_updated: int = 0
    sessions_unchanged: int = 0
    pins_skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # what was ignored, for the summary (stdout)
    warnings: list = field(default_factory=list)  # what a person must know (stderr): references, conflicts

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


# ---------------------------------------------------------------- entry points


def import_files(auth_profiles_path, sessions_path=None, *, now, auth_state_path=None):
    """An `auth-profiles.json` (with its `auth-state.json` in the split form) and a `sessions.json`."""
    store = stores.read_auth_files(auth_profiles_path, auth_state_path)
    sessions = stores.read_sessions_file(sessions_path) if sessions_path else None
    profiles_file, state_file = str(auth_profiles_path), str(auth_state_path or auth_profiles_path)
    origins = {("profiles", pid): profiles_file for pid in store.profiles}
    origins |= {("order", provider): state_file for provider in store.order}
    origins |= {("lastGood", provider): state_file for provider in store.last_good}
    return import_store(store, sessions, now=now, origins=origins)


def import_state_dir(path, *, now):
    """Every store under an openclaw state directory, merged into authbroker's single pool."""
    snapshot = stores.read_state_dir(path)
    merged, conflicts = snapshot.merged()
    origins = {}
    for store in snapshot.stores():  # the store each entry of the merged pool came from
        profiles_file, _, state_file = store.origin.partition(" + ")  # the split form names both files
        for profile_id in store.profiles:
            origins.setdefault(("profiles", profile_id), profiles_file)
        for provider in store.order:
            origins.setdefault(("order", provider), state_file or profiles_file)
        for provider in store.last_good:
            origins.setdefault(("lastGood", provider), state_file or profiles_file)
    warnings = list(snapshot.warnings) + [f"conflict: {line}" for line in conflicts]
    return import_store(merged, snapshot.sessions(), now=now, origins=origins, warnings=warnings)


@transaction.atomic
def import_store(store, sessions, *, now, origins=None, warnings=()):
    """Apply one AuthStore (and the sessions, when given) in one transaction; StoreError writes nothing."""
    report = ImportReport(warnings=list(warnings))
    importer = _Importer(now, report, store, origins or {})
    importer.profiles()
    importer.last_good()
    if sessions is not None:
        importer.sessions(sessions)
    return report


# ---------------------------------------------------------------- helpers


def _label(key):
    return json.dumps(key, ensure_ascii=False)


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _time(ms):
    return None if ms is None else from_ms(ms)


def _later(*windows):
    """The window (until, reason) that ends last, of those with an end; None when none has one."""
    ended = [w for w in windows if w[0] is not None]
    return max(ended, key=lambda w: w[0]) if ended else None


@dataclass
class _Wanted:
    """A profile as the store asks for it, in authbroker's terms."""

    profile: stores.Profile
    provider_id: str
    pid: str
    name: str
    stats: dict
    pairs: dict  # model -> {error_count, cooldown_until, cooldown_reason, last_failure_at}
    metadata: dict
    expires_at: datetime | None


def stats_of(usage):
    """openclaw's usage stats as authbroker's fields and (profile, model) cooldowns.

    A subscription block (`blockedUntil` / `blockedReason`) is a disable window with the block's
    reason; when the entry also has a disable window the later one is kept. A model-scoped block
    (`blockedScope: "model"`) cools that (profile, model) pair. A `cooldownModel` cools that pair only.
    """
    usage = usage or stores.Usage()
    pairs = {}
    cooldown = (_time(usage.cooldown_until), usage.cooldown_reason or "")
    if usage.cooldown_model:
        pairs[usage.cooldown_model] = {"error_count": usage.error_count, "cooldown_until": cooldown[0],
                                       "cooldown_reason": cooldown[1], "last_failure_at": _time(usage.last_failure_at)}
        cooldown = (None, "")
    disabled = (_time(usage.disabled_until), usage.disabled_reason or "")
    blocked = (_time(usage.blocked_until), usage.blocked_reason or "")
    if usage.blocked_model:
        pair = pairs.get(usage.blocked_model)
        old = (pair["cooldown_until"], pair["cooldown_reason"]) if pair else (None, "")
        until, reason = _later(old, blocked) or old
        pairs[usage.blocked_model] = {
            "error_count": pair["error_count"] if pair else 0, "cooldown_until": until, "cooldown_reason": reason,
            "last_failure_at": _time(usage.last_failure_at)}
    else:
        disabled = _later(disabled, blocked) or (None, disabled[1] or blocked[1])
    stats = {
        "error_count": usage.error_count,
        "failure_counts": dict(usage.failure_counts),
        "cooldown_until": cooldown[0],
        "cooldown_reason": cooldown[1],
        "disabled_until": disabled[0],
        "disabled_reason": disabled[1],
        "last_used": _time(usage.last_used),
        "last_failure_at": _time(usage.last_failure_at),
    }
    return stats, pairs


def describe_ref(profile):
    ref = profile.secret_ref
    field_name = stores.SECRET_FIELDS[profile.kind][1]
    return f"{field_name} {ref.source}:{ref.provider}:{ref.id}"


class _Importer:
    def __init__(self, now, report, store, origins):
        self.now = now
        self.report = report
        self.store = store
        self.origins = origins
        self.pid_of = {}  # profile id as the store spells it -> authbroker profile id

    def fail(self, part, key, where, message):
        """A StoreError naming the file the entry came from (`part`: profiles, order or lastGood)."""
        raise StoreError(self.origins.get((part, key), self.store.origin), where, message)

    def to_pid(self, raw):
        """The authbroker id for a profile id as the store spells it; None when it cannot be one."""
        if raw in self.pid_of:
            return self.pid_of[raw]
        try:
            return profile_services.resolve_profile_id(raw)
        except Invalid:
            return None

    # ------------------------------------------------------------ profiles

    def plan(self):
        """Each profile in authbroker's terms; StoreError for what authbroker cannot hold."""
        wanted, seen = [], {}
        for raw_id, profile in self.store.profiles.items():
            where = f"profiles[{_label(raw_id)}]"
            try:
                provider_id = profile_services.resolve_provider_id(profile.provider)
            except Invalid as exc:
                self.fail("profiles", raw_id, f"{where}.provider", f"is not a usable provider id ({exc.message})")
            name = raw_id.split(":", 1)[1] if ":" in raw_id else raw_id
            if not ids.PROFILE_NAME_RE.match(name):
                self.fail("profiles", raw_id, f"{where} (the id)", "has a name part that is empty, longer than 190 characters, "
                                                      "or has spaces or control characters")
            pid = f"{provider_id}:{name}"
            if pid in seen:
                self.fail("profiles", raw_id, where, f"names the same profile as profiles[{_label(seen[pid])}] ({pid})")
            seen[pid] = raw_id
            self.pid_of[raw_id] = pid
            metadata = {}
            if profile.email:
                metadata["email"] = profile.email
            if profile.display_name:
                metadata["display_name"] = profile.display_name
            if profile.secret_ref is not None:
                ref = profile.secret_ref
                metadata["secret_ref"] = {"source": ref.source, "provider": ref.provider, "id": ref.id}
            wanted.append(_Wanted(profile, provider_id, pid, name, {}, {}, metadata, _time(profile.expires)))

        usage = {}  # authbroker profile id -> Usage, whichever spelling the store used (its `profiles` key wins)
        in_store = set(self.pid_of.values())
        for raw_id, entry in self.store.usage.items():
            pid = self.to_pid(raw_id)
            if pid not in in_store:
                self.report.notes.append(f"usageStats for {raw_id!r} ignored: no such profile in the store")
            elif raw_id in self.pid_of or pid not in usage:
                usage[pid] = entry
        for w in wanted:
            w.stats, w.pairs = stats_of(usage.get(w.pid))
        return wanted

    def profiles(self):
        wanted = self.plan()
        positions = self._positions(wanted)
        existing = AuthProfile.objects.select_for_update().in_bulk([w.pid for w in wanted])
        for w in wanted:
            if w.profile.secret_ref is not None:
                self.report.warnings.append(
                    f"profile {w.pid}: imported without a secret: it is a reference ({describe_ref(w.profile)}) "
                    "that the gateway resolves; it stays selectable, and a credentials-scope select answers the "
                    "reference")
            profile = existing.get(w.pid)
            if profile is None:
                profile = profile_services.create_profile(
                    w.pid, w.profile.kind, w.profile.secret or "", self.now, ACTOR, position=positions[w.pid],
                    refresh=w.profile.refresh or "", metadata=dict(w.metadata), expires_at=w.expires_at,
                    reason=REASON, secret_ref=w.metadata.get("secret_ref"),
                )
                self._sync(profile, w, positions[w.pid])
                self.report.profiles_created += 1
            elif self._sync(profile, w, positions[w.pid]):
                self.report.profiles_updated += 1
            else:
                self.report.profiles_unchanged += 1

        for provider_id in sorted({w.provider_id for w in wanted}):
            # Explicit positions: openclaw's least-recently-used rotation is what stranded users.
            profile_services.update_provider(provider_id, self.now, ACTOR, strategy=Strategy.ORDERED,
                                             reason=f"{REASON}: profiles follow explicit positions")

    def _positions(self, wanted):
        """Positions per provider: the provider's `order` first, then its other profiles in store order."""
        by_provider = {}
        for w in wanted:
            by_provider.setdefault(w.provider_id, []).append(w.pid)
        order, spelled = {}, {}
        for provider_raw, entries in self.store.order.items():
            where = f"order[{_label(provider_raw)}]"
            try:
                provider_id = profile_services.resolve_provider_id(provider_raw)
            except Invalid as exc:
                self.fail("order", provider_raw, where, f"is not a usable provider id ({exc.message})")
            if provider_id in order:
                self.fail("order", provider_raw, where, f"lists provider {provider_id} again (as "
                                                        f"order[{_label(spelled[provider_id])}] does)")
            order[provider_id], spelled[provider_id] = entries, provider_raw
        positions = {}
        for provider_id, in_store in by_provider.items():
            listed = []
            for raw in order.get(provider_id, []):
                pid = self.to_pid(raw)
                if pid in in_store:
                    if pid not in listed:
                        listed.append(pid)
                else:
                    self.report.notes.append(f"order for {provider_id} names {raw!r}, not a {provider_id} "
                                             "profile in the store; ignored")
            ranked = listed + [pid for pid in in_store if pid not in listed]
            positions.update({pid: position for position, pid in enumerate(ranked)})
        for provider_id in order.keys() - by_provider.keys():
            self.report.notes.append(f"order for {provider_id} ignored: the store has no {provider_id} profiles")
        return positions

    def _sync(self, profile, w, position):
        """Make a stored profile match the store; one profile_changed event when anything changed."""
        before, after, fields = {}, {}, set()

        def change(name, value):
            old = getattr(profile, name)
            if old != value:
                before[name], after[name] = _jsonable(old), _jsonable(value)
                setattr(profile, name, value)
                fields.add(name)

        change("kind", w.profile.kind)
        change("position", position)
        change("expires_at", w.expires_at)
        change("metadata", {k: v for k, v in profile.metadata.items() if k not in METADATA_KEYS} | w.metadata)
        secret, refresh = w.profile.secret or "", w.profile.refresh or ""
        if self._stored_secret(profile) != (secret, refresh):
            before["secret_mask"] = profile.secret_mask
            profile.set_secret(secret, refresh)
            after["secret_mask"] = profile.secret_mask
            fields.update({"secret_encrypted", "refresh_encrypted", "secret_mask"})
        for name in STAT_FIELDS:
            change(name, w.stats[name])
        if fields:
            profile.save(update_fields=sorted(fields | {"updated_at"}))
        for model in sorted(w.pairs):
            pair_change = self._sync_model_cooldown(profile, model, w.pairs[model])
            if pair_change:
                before.setdefault("model_cooldowns", []).append(pair_change[0])
                after.setdefault("model_cooldowns", []).append(pair_change[1])
        if not before:
            return False
        write_events([new_event(EventKind.PROFILE_CHANGED, self.now, ACTOR, profile_id=profile.id,
                                provider_id=profile.provider_id, model=",".join(sorted(w.pairs))[:190],
                                reason=REASON, before=before, after=after)])
        return True

    @staticmethod
    def _stored_secret(profile):
        try:
            return profile.reveal_secret(), profile.reveal_refresh()
        except crypto.SecretUnreadable:  # no configured key reads it: the store's secret replaces it
            return None

    @staticmethod
    def _sync_model_cooldown(profile, model, wanted):
        """Make the (profile, model) cooldown match; returns (before, after) or None when unchanged."""
        shown = {"model": model, **{k: _jsonable(v) for k, v in wanted.items()}}
        pair = ModelCooldown.objects.select_for_update().filter(profile=profile, model=model).first()
        if pair is None:
            ModelCooldown.objects.create(profile=profile, model=model, **wanted)
            return {"model": model}, shown
        old = {name: getattr(pair, name) for name in PAIR_FIELDS}
        if old == wanted:
            return None
        for name, value in wanted.items():
            setattr(pair, name, value)
        pair.save(update_fields=list(PAIR_FIELDS))
        return {"model": model, **{k: _jsonable(v) for k, v in old.items()}}, shown

    # ------------------------------------------------------------ lastGood

    def last_good(self):
        events = []
        for provider_raw, profile_raw in self.store.last_good.items():
            try:
                provider_id = profile_services.resolve_provider_id(provider_raw)
            except Invalid as exc:
                self.fail("lastGood", provider_raw, f"lastGood[{_label(provider_raw)}]",
                          f"is not a usable provider id ({exc.message})")
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

    def _session_ids(self, entries):
        """The usable entries with their session ids as UUIDs; StoreError for an id that is not one."""
        usable, seen = [], {}
        for entry in entries:
            try:
                ids.validate_session_key(entry.key)
            except Invalid:
                self.report.notes.append(f"session {entry.key!r} skipped: authbroker session keys are 1–255 "
                                         "characters without '/', whitespace or control characters")
                continue
            if entry.key in seen:
                self.report.warnings.append(f"session {entry.key!r} of agent {entry.agent_id} skipped: agent "
                                            f"{seen[entry.key]} holds the same session key (read first)")
                continue
            seen[entry.key] = entry.agent_id
            where = "the entry" if "(session_nodes[" in entry.origin else f"[{_label(entry.key)}]"
            try:
                session_id = uuid.UUID(entry.session_id)
            except ValueError:
                raise StoreError(entry.origin, f"{where}.sessionId", "must be a UUID") from None
            usable.append((entry, session_id))
        return usable

    def sessions(self, entries):
        usable = self._session_ids(entries)
        existing = {s.session_key: s for s in Session.objects.select_for_update()
                    .filter(session_key__in=[e.key for e, _ in usable]).order_by("pk")}
        pins = {}
        for pin in Pin.objects.filter(session__in=list(existing.values())).order_by("session_id", "provider_id"):
            pins.setdefault(pin.session_id, {})[pin.provider_id] = pin
        wanted_pids = {self.to_pid(e.pin.profile_id) for e, _ in usable if e.pin}
        profiles = AuthProfile.objects.select_related("provider").in_bulk([p for p in wanted_pids if p])
        events = []
        for entry, session_id in usable:
            pin = None  # the profile the store pins the session to; None for no pin
            pin_known = True
            if entry.pin:
                pin = profiles.get(self.to_pid(entry.pin.profile_id))
                if pin is None:
                    pin_known = False
                    self.report.pins_skipped.append(f"session {entry.key!r} names unknown profile "
                                                    f"{entry.pin.profile_id!r}")
            session = existing.get(entry.key)
            if session is None:
                self._create_session(entry, session_id, pin, events)
                self.report.sessions_created += 1
            elif self._update_session(session, pins.get(session.pk, {}), entry, session_id, pin, pin_known, events):
                self.report.sessions_updated += 1
            else:
                self.report.sessions_unchanged += 1
        write_events(events)

    def _pin(self, session, entry, profile, events, current=...):
        store_pin = entry.pin
        why = PIN_PROVENANCE[store_pin.provenance].format(raw=store_pin.raw_source)
        _, event = session.set_pin(profile, store_pin.source, self.now, ACTOR, f"{REASON} ({why})",
                                   compaction_count=store_pin.compaction_count, current=current)
        session.provider = profile.provider
        events.append(event)

    def _create_session(self, entry, session_id, profile, events):
        session = Session(session_key=entry.key, session_id=session_id, last_activity_at=_time(entry.updated_at))
        if profile:
            session.provider = profile.provider
        session.save(force_insert=True)
        if profile:
            self._pin(session, entry, profile, events, current=None)
            session.save(update_fields=["pin_version", "provider"])

    def _update_session(self, session, pins, entry, session_id, profile, pin_known, events):
        """Bring a session in line with the store. openclaw keeps one pin per session: a pin in the store is
        the pin of its profile's provider (pins on other providers stay); no pin in the store clears them all."""
        changed = False
        if session.session_id != session_id:
            events.append(new_event(EventKind.SESSION_RESET, self.now, ACTOR, session_key=session.session_key,
                                    reason=f"{REASON}: the session id changed",
                                    before={"session_id": str(session.session_id)},
                                    after={"session_id": str(session_id)}))
            session.session_id = session_id
            changed = True
        updated_at = _time(entry.updated_at)
        if updated_at is not None and session.last_activity_at != updated_at:
            session.last_activity_at = updated_at
            changed = True
        if pin_known:
            if profile is None and pins:
                for provider_id in sorted(pins):
                    events.append(session.clear_pin(pins[provider_id], self.now, ACTOR,
                                                    f"{REASON}: the session has no pin"))
                changed = True
            elif profile is not None:
                current = pins.get(profile.provider_id)
                if (current is None or current.profile_id != profile.id or current.source != entry.pin.source
                        or current.compaction_count != entry.pin.compaction_count):
                    self._pin(session, entry, profile, events, current=current)
                    changed = True
        if changed:
            session.save()
        return changed


def sibling_state_file(auth_profiles_path):
    """The `auth-state.json` beside an auth profiles file (the split form), or None."""
    path = Path(auth_profiles_path)
    beside = path.parent / "auth-state.json"
    return beside if beside.is_file() and path.name != beside.name else None
