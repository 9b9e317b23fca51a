"""Sessions: select, report, reset and overrides. One function per state change, one transaction each.

Each function loads what a decision reads (locking the session row first, then reading its profiles,
so nothing it decides on can change under it), calls a rule of `sessions_app.rules`, and applies the
decision: the answer, the pin changed through the session model's methods, and the events written in
the same transaction as the change they record.
"""

import math
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from profiles import ids
from profiles import queries as profile_queries
from profiles import rules as profile_rules
from profiles import services as profile_services
from profiles.errors import Conflict, Invalid, NotFound
from profiles.events import SYSTEM, announce, new_event, write_events
from profiles.models import AuthProfile, EventKind, Strategy
from profiles.presenters import profile_state
from sessions_app import leases, queries, rules
from sessions_app.models import BulkReset, Lease, OverrideSource, Pin, Session

RESET_REASONS = ("new", "reset", "restart", "expiry")
MODEL_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,190}$")
MAX_BULK_KEYS = 1000


@dataclass
class Selection:
    profile: AuthProfile
    source: str  # "default" | "auto" | "user"
    session: Session
    reason: str
    cooling: bool = False
    all_unavailable: bool = False
    retry_at: object = None
    candidates: list | None = None
    lease_id: str = ""
    secret: str | None = None  # the decrypted credential, when the caller hands it out
    secret_ref: dict | None = None  # instead of a secret: where the gateway resolves it (openclaw keyRef/tokenRef)

    @classmethod
    def of(cls, decision, session):
        return cls(decision.profile, decision.source, session, decision.reason, decision.cooling,
                   decision.all_unavailable, decision.retry_at)


@dataclass
class ResetResult:
    session: Session
    carried: str | None
    dropped: str | None
    selection: Selection


def clean_model(model):
    if model is None or model == "":
        return None
    if not isinstance(model, str) or not MODEL_RE.match(model):
        raise Invalid("model must be a string of 1–190 printable characters", {"model": ["invalid model name"]})
    return model


def _provider_of(profile_id):
    """The provider part of a profile id (ids are `provider:name`, the provider canonical)."""
    return profile_id.split(":", 1)[0] if profile_id else None


def session_state(session, provider_id, pin=None):
    """What the rules read of a session for `provider_id`: its pin on that provider (`pin`, a Pin row or a
    (profile id, source) pair) and its last profile when it is that provider's."""
    if pin is not None and not isinstance(pin, tuple):
        pin = (pin.profile_id, pin.source)
    last = session.last_profile_id if _provider_of(session.last_profile_id) == provider_id else None
    return rules.SessionState(rules.Pin(*pin) if pin else None, last, session.last_activity_at)


def _policy(provider, profiles, now):
    home = profile_rules.home_profile(profiles, now)
    return rules.Policy(provider.strategy, provider.last_good_id, home.id if home else None,
                        settings.AUTHBROKER_CACHE_IDLE_SECONDS)


def _apply_pin(session, pins, provider_id, change, now, actor, events):
    """Apply a rule's pin change for `provider_id` to the locked session (its pins in `pins`) and record
    its event. The session row itself is saved by the caller (its `pin_version` moved)."""
    if change is None:
        return
    if change.kind == rules.PIN_CARRIED:
        events.append(session.carry_pin(pins[provider_id], now, actor, change.reason))
    elif change.profile is not None:
        pins[provider_id], event = session.set_pin(change.profile, change.source, now, actor, change.reason,
                                                   current=pins.get(provider_id))
        events.append(event)
    else:
        events.append(session.clear_pin(pins.pop(provider_id), now, actor, change.reason, kind=change.kind))


def _pending_boundary(session):
    """A reset of a list of sessions, or of every session, happened since this session's last select."""
    return session.boundary_pending or session.epoch < getattr(session, "latest_epoch", session.epoch)


# ---------------------------------------------------------------- select


def _hand_out(selection, profile):
    """The credential a `credentials` caller gets: the decrypted secret or, for a profile imported with
    a reference instead of a secret (openclaw's keyRef/tokenRef), that reference (docs/decisions.md)."""
    selection.secret = profile.reveal_secret()
    if not selection.secret:
        selection.secret_ref = profile_queries.secret_ref(profile.id)


def select_profile(*, session_key, provider, now, actor, new_session=False, model=None, explain=False,
                   with_lease=True, with_secret=False):
    """Which profile should this session use now (DESIGN §2, Select).

    `with_secret`: the caller will hand out the credential, so the lock-free path reads the encrypted
    secret too (it leaves it in the database otherwise).
    """
    key = ids.validate_session_key(session_key)
    provider_id = ids.normalize_provider_id(provider)
    model = clean_model(model)
    selection, known_missing = None, False
    if not new_session and not explain:
        session, pin, profiles = queries.sticky_read(key, provider_id, model, with_secret)
        known_missing = session is None
        if session is not None and not _pending_boundary(session):
            selection = _sticky(session, pin, profiles, provider_id, now, with_secret)
    if selection is None:
        selection = _select_locked(key, provider, provider_id, now, actor, new_session, model, explain,
                                   known_missing, with_secret)
    if with_lease:
        selection.lease_id = leases.issue(selection.profile.id, key, now)
    return selection


def _sticky(session, pin, profiles, provider_id, now, with_secret=False):
    """The lock-free path: the `continuing` rule with only the session's own candidate.

    None when the rule needs more (failover, going home, no profile of this provider yet).
    """
    state = session_state(session, provider_id, pin)
    current_id, _ = rules.current(state)
    if current_id not in profiles:
        return None
    profile, cooldown = profiles[current_id]
    reason, until = profile_rules.unavailability(profile, now, cooldown)
    candidate = profile_rules.Candidate(profile, reason is None, reason or "available", until)
    policy = rules.Policy(idle_seconds=settings.AUTHBROKER_CACHE_IDLE_SECONDS)
    decision = rules.continuing(state, [candidate], policy, now, partial=True)
    if decision is None:
        return None
    selection = Selection.of(decision, session)
    if with_secret:  # decrypted before anything is written: a secret no key reads changes nothing
        _hand_out(selection, decision.profile)
    moved = decision.profile.id if session.last_profile_id != decision.profile.id else None
    switched = provider_id if session.provider_id != provider_id else None
    stamped = queries.touch(session, now, moved, switched)
    if stamped is False:
        return None  # a reset or a pin change since we read it: decide under the lock
    if stamped is True:
        session.last_activity_at = now
    return selection  # (or LOCKED: another writer holds the row; answered from the committed state read)


def _decision_profiles(provider_id, model, now, profile_ids=(), leaving=None):
    """(profiles, model cooldowns) enough for a decision at `now`: the few candidates while one of them
    (other than `leaving`) is available, else every profile of the provider (to find the one back soonest)."""
    profiles, cooldowns = queries.provider_profiles(provider_id, model, now=now, ids=profile_ids)
    if any(p.id != leaving and profile_rules.is_available(p, now, cooldowns.get(p.id)) for p in profiles):
        return profiles, cooldowns
    return queries.provider_profiles(provider_id, model)


def _ranked_profiles(provider_raw, provider_id, model, now, candidates_only=True, profile_ids=()):
    """(provider, profiles, ranked candidates); 404 for an unknown provider, 409 when it has no profiles
    or none an operator left on.

    `candidates_only` loads just the profiles a decision at `now` can pick (`_decision_profiles`,
    always including `profile_ids`, the session's own); `explain` wants every profile ranked.
    """
    profile_ids = tuple(pid for pid in profile_ids if pid)
    if candidates_only:
        profiles, cooldowns = _decision_profiles(provider_id, model, now, profile_ids)
    else:
        profiles, cooldowns = queries.provider_profiles(provider_id, model)
    if not profiles:
        provider = profile_services.get_provider(provider_raw)
        if provider.id != provider_id:
            return _ranked_profiles(provider_raw, provider.id, model, now, candidates_only, profile_ids)
        raise Conflict(f"provider {provider.id!r} has no profiles", {"provider": ["has no profiles"]},
                       code="no_profiles")
    provider = profiles[0].provider
    ranked = profile_rules.rank(profiles, now, provider.strategy, cooldowns)
    if profile_rules.first_choice(ranked) is None:
        raise Conflict(f"provider {provider.id!r} has no profile an operator has left on",
                       {"provider": ["every profile is switched off"]}, code="no_usable_profile")
    return provider, profiles, ranked


def _lock_or_create(key, now, provider_raw, provider_id, model, known_missing=False, candidates_only=True):
    """Lock the session (created when the key is new), then read its pins and the profiles a decision needs.

    Returns (session, created, pins by provider, provider, profiles, ranked). A new key's row is
    inserted already holding the new-session answer; an existing row is locked first and everything
    the decision reads is loaded after the lock.
    """
    session = None if known_missing else queries.lock_session(key)
    if session is None:
        provider, profiles, ranked = _ranked_profiles(provider_raw, provider_id, model, now, candidates_only)
        first = profile_rules.first_choice(ranked).profile
        candidate = Session(session_key=key, last_activity_at=now, provider=provider, last_profile=first)
        if queries.insert_if_new(candidate):
            return candidate, True, {}, provider, profiles, ranked  # invisible to others until we commit
        session = queries.lock_session(key)  # created meanwhile by another request: decide on it, locked
    pins = queries.pins_of(session)
    own = (*(pin.profile_id for pin in pins.values()), session.last_profile_id)
    provider, profiles, ranked = _ranked_profiles(provider_raw, provider_id, model, now, candidates_only, own)
    return session, False, pins, provider, profiles, ranked


def _select_locked(key, provider_raw, provider_id, now, actor, new_session, model, explain, known_missing,
                   with_secret=False):
    with transaction.atomic():
        session, created, pins, provider, profiles, ranked = _lock_or_create(
            key, now, provider_raw, provider_id, model, known_missing, candidates_only=not explain)
        events = []
        if created:
            decision = rules.new_session(rules.SessionState(None, None), ranked, provider.strategy)
        elif new_session or _pending_boundary(session):
            _cross_boundary(session, pins, now, actor, new_session and not _pending_boundary(session), events)
            decision = rules.new_session(session_state(session, provider.id, pins.get(provider.id)), ranked,
                                         provider.strategy)
        else:
            decision = rules.continuing(session_state(session, provider.id, pins.get(provider.id)), ranked,
                                        _policy(provider, profiles, now), now)
            _apply_pin(session, pins, provider.id, decision.pin, now,
                       actor if decision.source == rules.AUTO else SYSTEM, events)
        selection = Selection.of(decision, session)
        if with_secret:  # inside the transaction: a secret no key reads rolls the selection back
            _hand_out(selection, decision.profile)
        _remember(session, selection, provider, now, just_created=created)
        write_events(events)
    _mark_used(selection, provider, now)
    if explain:
        selection.candidates = ranked
    return selection


def _remember(session, selection, provider, now, just_created=False):
    """Store what was answered; a row just inserted with this very answer needs no second write."""
    if not (just_created and session.last_profile_id == selection.profile.id):
        session.last_profile = selection.profile
        session.provider = provider
        session.last_activity_at = now
        session.save()


def _mark_used(selection, provider, now):
    """round_robin spreads new sessions by last use; stamped after the session's transaction, never under it."""
    if provider.strategy == Strategy.ROUND_ROBIN and selection.source == "default" and selection.profile.last_used != now:
        AuthProfile.objects.filter(pk=selection.profile.pk).update(last_used=now)


# ---------------------------------------------------------------- overrides and boundaries


def _boundary_pins(session, pins, now, actor, reason, events, carry=True):
    """A boundary's effect on every pin of a locked session (`rules.at_boundary`): each auto pin dropped,
    each user pin carried (its event written only with `carry`). Returns {provider: (change kind, profile)}."""
    changes = {}
    for pin_provider, pin in sorted(pins.items()):
        change = rules.at_boundary(rules.Pin(pin.profile_id, pin.source), reason)
        changes[pin_provider] = (change.kind, pin.profile_id)
        if carry or change.kind != rules.PIN_CARRIED:
            _apply_pin(session, pins, pin_provider, change, now, actor, events)
    return changes


def _crossed(session):
    """The session has crossed every pending boundary: a list reset's, and the latest reset of every session."""
    session.boundary_pending = False
    session.epoch = max(session.epoch, getattr(session, "latest_epoch", session.epoch))


def _start_boundary(session, pins, now, actor, reason, events, provider_id=None):
    """A session boundary: a new session id, every auto pin dropped, every user pin carried (v2: whatever
    the request's provider). Returns (carried, dropped): the pin of `provider_id` (or None)."""
    old_id = session.session_id
    session.session_id = uuid.uuid4()
    kind, profile_id = _boundary_pins(session, pins, now, actor, reason, events).get(provider_id, (None, None))
    carried = profile_id if kind == rules.PIN_CARRIED else None
    dropped = profile_id if kind == rules.PIN_DROPPED else None
    events.append(new_event(EventKind.SESSION_RESET, now, actor, session_key=session.session_key, reason=reason,
                            before={"session_id": str(old_id)}, after={"session_id": str(session.session_id),
                                                                        "carried": carried, "dropped": dropped}))
    _crossed(session)
    return carried, dropped


def _cross_boundary(session, pins, now, actor, new_session, events):
    """The first select after a boundary: `new_session`, or a reset of many sessions pending here."""
    if session.boundary_pending:
        # a reset of a list of sessions gave it a new id and handled its pins then; an auto pin now
        # was set by a failover after that reset, for the session before it
        _boundary_pins(session, pins, now, actor, "restart", events, carry=False)
        _crossed(session)
        return
    # a reset of every session only recorded itself (`BulkReset`): the session crosses it now
    _start_boundary(session, pins, now, actor, "new" if new_session else "restart", events)


def _validate_reset_reason(reason):
    if reason not in RESET_REASONS:
        raise Invalid(f"reason must be one of {', '.join(RESET_REASONS)}", {"reason": ["unknown reason"]})


def reset_session(*, session_key, provider, now, actor, reason="reset", model=None, with_secret=False):
    """`/new`, `/reset`, a restart or expiry for one session; answers with the new selection."""
    key = ids.validate_session_key(session_key)
    provider_id = ids.normalize_provider_id(provider)
    model = clean_model(model)
    _validate_reset_reason(reason)
    with transaction.atomic():
        session, _, pins, provider_obj, _, ranked = _lock_or_create(key, now, provider, provider_id, model)
        events = []
        carried, dropped = _start_boundary(session, pins, now, actor, reason, events, provider_obj.id)
        decision = rules.new_session(session_state(session, provider_obj.id, pins.get(provider_obj.id)), ranked,
                                     provider_obj.strategy)
        selection = Selection.of(decision, session)
        if with_secret:
            _hand_out(selection, decision.profile)
        _remember(session, selection, provider_obj, now)
        write_events(events)
    _mark_used(selection, provider_obj, now)
    selection.lease_id = leases.issue(selection.profile.id, key, now)
    return ResetResult(session, carried, dropped, selection)


def bulk_reset(*, now, actor, reason="restart", session_keys=None):
    """A boundary for many sessions at once (a gateway restart). The next select of each starts afresh.

    Every auto pin dropped gets its event, now. A reset of every session is one `BulkReset` row plus
    the dropped pins, however many sessions there are: each session crosses it at its next select (new
    session id, its `session_reset` event), so no session row is written or held by the reset. User pins
    carry: a reset of a list of sessions records each carried pin; a reset of every session counts them
    in its summary event (one event per user pin at every gateway restart would bury the log), and each
    session records its carried pins when it crosses the boundary.
    """
    _validate_reset_reason(reason)
    keys = None
    if session_keys is not None:
        if not isinstance(session_keys, list) or len(session_keys) > MAX_BULK_KEYS:
            raise Invalid(f"session_keys must be a list of at most {MAX_BULK_KEYS} keys",
                          {"session_keys": [f"list of at most {MAX_BULK_KEYS} keys"]})
        keys = sorted({ids.validate_session_key(k, "session_keys") for k in session_keys})
    drop_reason = rules.boundary_reason(reason, rules.AUTO)
    dropped_rows = []  # PostgreSQL: the events of the dropped pins, announced after the commit
    with transaction.atomic():
        queries.serialize_bulk_resets()
        events = []
        if keys is None:
            BulkReset.objects.create(at=now, actor=actor[:150], reason=reason)
            # counted before the sessions with auto pins are locked, so those locks are held for less time
            carried = Pin.objects.filter(source=rules.USER).count()
            reset = Session.objects.count()
            if connection.vendor == "postgresql":
                dropped_rows = queries.drop_every_auto_pin(now, actor[:150], drop_reason)
                dropped = len(dropped_rows)
            else:  # SQLite: one writer at a time, so the plain loop is safe
                for session in Session.objects.filter(pins__source=rules.AUTO).distinct().order_by("pk"):
                    _boundary_pins(session, queries.pins_of(session), now, actor, reason, events, carry=False)
                    session.save(update_fields=["pin_version", "updated_at"])
                dropped = len(events)
        else:
            dropped = carried = 0
            sessions = list(Session.objects.select_for_update().filter(session_key__in=keys).order_by("pk"))
            for session in sessions:
                kinds = [kind for kind, _ in _boundary_pins(session, queries.pins_of(session), now, actor, reason,
                                                            events).values()]
                dropped += kinds.count(rules.PIN_DROPPED)
                carried += kinds.count(rules.PIN_CARRIED)
                session.session_id = uuid.uuid4()
                session.boundary_pending = True
                session.save(update_fields=["session_id", "boundary_pending", "pin_version", "updated_at"])
            reset = len(sessions)
        events.append(new_event(EventKind.SESSION_RESET, now, actor, reason=reason,
                                after={"sessions": reset, "dropped": dropped, "carried": carried,
                                       "session_keys": keys if keys is not None else "all"}))
        write_events(events)
    announce(queries.events_of(dropped_rows))
    return {"reset": reset, "dropped": dropped, "carried": carried}


def _lock_or_insert(key, now, provider):
    """The session row, locked; inserted first when the key is new (for writes that need no decision)."""
    session = queries.lock_session(key)
    if session is None:
        session = Session(session_key=key, last_activity_at=now, provider=provider)
        if not queries.insert_if_new(session):
            session = queries.lock_session(key)
    return session


def set_user_override(*, session_key, profile, now, actor, reason=""):
    """Pin a session to a profile because a person asked (the pin of that profile's provider): it carries
    across boundaries, and pins on other providers stay as they are."""
    key = ids.validate_session_key(session_key)
    reason = ids.clean_reason(reason)
    with transaction.atomic():
        target = profile_services.get_profile(profile)
        session = _lock_or_insert(key, now, target.provider)
        _, event = session.set_pin(target, OverrideSource.USER, now, actor, reason or "set by a person")
        session.provider = target.provider
        session.save()
        write_events([event])
    return session


def clear_override(*, session_key, now, actor, reason="", provider=None):
    """Clear the session's pin on `provider` (v2), or every pin when no provider is named."""
    key = ids.validate_session_key(session_key)
    reason = ids.clean_reason(reason)
    provider_id = profile_services.get_provider(provider).id if provider is not None else None
    with transaction.atomic():
        session = queries.lock_session(key)
        if session is None:
            raise NotFound(f"unknown session {key!r}", {"session_key": ["unknown session"]})
        pins = queries.pins_of(session)
        events = [session.clear_pin(pins[p], now, actor, reason or "cleared by a person")
                  for p in sorted(pins) if provider_id is None or p == provider_id]
        if events:
            if provider_id is not None:
                session.provider_id = provider_id
            session.save()
            write_events(events)
    return session


@transaction.atomic
def delete_profile(profile_id, now, actor, reason=""):
    """Delete a profile; sessions pinned to it lose the pin, with an event each, in the same transaction."""
    profile = profile_services.get_profile(profile_id, lock=True)
    sessions = Session.objects.select_for_update().filter(pins__profile_id=profile.id).order_by("pk")
    events = []
    for session in sessions:
        pin = queries.pins_of(session).get(profile.provider_id)
        if pin is not None and pin.profile_id == profile.id:
            events.append(session.clear_pin(pin, now, actor, "profile deleted"))
            session.save(update_fields=["pin_version", "updated_at"])
    write_events(events)
    return profile_services.delete_profile(profile.id, now, actor, reason)


def get_session(session_key):
    """A session with its pins (`session.pin_list`), for reading."""
    key = ids.validate_session_key(session_key)
    session = Session.objects.select_related("last_profile").filter(session_key=key).first()
    if session is None:
        raise NotFound(f"unknown session {key!r}", {"session_key": ["unknown session"]})
    _listed_pins(session)
    return session


def override_state(session):
    """The API's `override`: the pin for the session's current provider (of its most recent select,
    report, reset or pin change), or None."""
    for pin in _listed_pins(session):
        if pin.provider_id == session.provider_id:
            return pin.state()
    return None


def overrides_state(session):
    """The API's `overrides` (v2): every pin of the session, one per provider."""
    return [pin.state() for pin in _listed_pins(session)]


def _listed_pins(session):
    """The session's pins by provider: those `get_session` read, else read now."""
    if getattr(session, "pin_list", None) is None:
        session.pin_list = list(Pin.objects.filter(session=session).order_by("provider_id"))
    return session.pin_list


# ---------------------------------------------------------------- report


class _DuplicateLease(Exception):
    def __init__(self, lease_id):
        super().__init__(lease_id)
        self.lease_id = lease_id


def _validate_retry_after(value):
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or value < 0
    ):
        raise Invalid("retry_after_seconds must be a number ≥ 0", {"retry_after_seconds": ["must be a number ≥ 0"]})
    return float(min(value, profile_rules.MAX_RETRY_HINT.total_seconds()))


def report_outcome(*, profile, outcome, now, actor, session_key=None, lease_id=None, model=None,
                   retry_after_seconds=None, detail=""):
    """Apply an outcome the gateway reports (DESIGN §2, Outcomes); a retried lease gets the first answer.

    With a lease and no `session_key`, the session is the one the lease was issued for.
    """
    if outcome not in profile_rules.OUTCOMES:
        raise Invalid(f"outcome must be one of {', '.join(profile_rules.OUTCOMES)}", {"outcome": ["unknown outcome"]})
    key = ids.validate_session_key(session_key) if session_key is not None else None
    model = clean_model(model)
    retry_after_seconds = _validate_retry_after(retry_after_seconds)
    if detail is not None and not isinstance(detail, str):
        raise Invalid("detail must be a string", {"detail": ["must be a string"]})
    ids.split_profile_id(profile)
    try:
        with transaction.atomic():
            target = profile_services.get_profile(profile, lock=True, without_secrets=True)
            claim = leases.verify(lease_id, target.id, key) if lease_id is not None else None
            if claim is not None:
                key = claim.session_key or None
                try:
                    leases.ensure_fresh(claim, now)
                except Conflict:
                    if Lease.objects.filter(pk=claim.lease_id).exists():
                        raise _DuplicateLease(claim.lease_id) from None
                    raise
            events, pair = profile_services.record_outcome(
                target, outcome, now, actor, model=model, retry_after_seconds=retry_after_seconds, detail=detail
            )
            failover, stamp = _after_report(key, target, outcome, pair, now, actor, events) if key else (None, False)
            answer = {"profile": profile_state(target, now), "failover": failover, "duplicate": False}
            stamp = (key, now, target.provider_id) if stamp else None  # the session stays: stamp its activity
            lease = None if claim is None else Lease(
                lease_id=claim.lease_id, session_key=key or "", profile_id=target.id, issued_at=claim.issued_at,
                reported_at=now, outcome=outcome, answer=answer)
            if lease is not None:
                if not queries.claim_lease(lease, stamp):  # the stamp in the same statement
                    raise _DuplicateLease(claim.lease_id)
            elif stamp is not None:
                queries.stamp_session(*stamp)
            write_events(events)
    except _DuplicateLease as duplicate:
        stored = Lease.objects.get(pk=duplicate.lease_id)
        return {**stored.answer, "duplicate": True}
    return answer


def _after_report(key, profile, outcome, pair, now, actor, events):
    """Fail the reporting session over when the profile it is on just became unavailable, stamping its
    activity. Returns (the failover answer or None, True when the caller must still stamp the session:
    the profile is still available, so nothing here needs the session's lock)."""
    reason, until = profile_rules.unavailability(profile, now, pair)
    if outcome == "success" or reason is None:
        return None, True
    session = queries.lock_session(key)  # locked first; its pins are read after the lock
    if session is None:
        return None, False
    session.last_activity_at = now
    provider = profile.provider
    session.provider_id = provider.id
    failed = profile_rules.Candidate(profile, False, reason, until)
    pins = queries.pins_of(session)
    state = session_state(session, provider.id, pins.get(provider.id))
    change = None
    if rules.moves_on_failure(state, profile.id):
        profiles, cooldowns = _decision_profiles(provider.id, pair.model if pair else None, now,
                                                 profile_ids=(profile.id,), leaving=profile.id)
        ranked = profile_rules.rank(profiles, now, provider.strategy, cooldowns)
        change = rules.after_failure(state, failed, outcome, ranked, provider.last_good_id)
    if change is None:
        session.save(update_fields=["last_activity_at", "provider"])
        return None, False
    _apply_pin(session, pins, provider.id, change, now, actor, events)
    session.last_profile = change.profile
    session.save()
    return {"profile": change.profile.id, "source": OverrideSource.AUTO.value}, False
