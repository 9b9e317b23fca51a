"""Sessions: select, report, reset and overrides. One function per state change, one transaction each.

The decision itself is made by the plain rules in `profiles.rules`; these
functions load what the rules need, lock what they change and write the
events in the same transaction as the change they record.
"""

import math
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Func, OuterRef, Subquery

from profiles import ids, rules
from profiles import services as profile_services
from profiles.errors import Conflict, Invalid, NotFound
from profiles.events import SYSTEM, new_event, write_events
from profiles.models import AuthProfile, EventKind, ModelCooldown, Strategy
from profiles.presenters import profile_state
from sessions_app import leases, queries
from sessions_app.models import Lease, OverrideSource, Session

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


def _explain_reason(candidate):
    if candidate.available:
        return "available"
    if candidate.until:
        return f"{candidate.reason} until {candidate.until.isoformat()}"
    return candidate.reason


def _current(session, provider_id):
    """The profile a continuing session is on for this provider, and why: (profile, source)."""
    pinned = session.override_profile
    if pinned is not None and pinned.provider_id == provider_id:
        return pinned, session.override_source
    last = session.last_profile
    if last is not None and last.provider_id == provider_id:
        return last, "default"
    return None, "default"


# ---------------------------------------------------------------- select


# What the lock-free path reads: the session's own small fields and, of its two profiles, what
# availability and the answer need. The rest of each profile row (the encrypted secret above all) stays
# in the database unless the caller hands the credential out; the locked path reads whole rows.
_STICKY_SESSION_FIELDS = ("session_key", "session_id", "last_profile", "override_profile", "override_source",
                          "boundary_pending", "last_activity_at")
_STICKY_PROFILE_FIELDS = ("provider", "kind", "enabled", "expires_at", "cooldown_until", "cooldown_reason",
                          "disabled_until", "disabled_reason")


def _session_with_model_cooldowns(model, with_secret=False):
    profile_fields = _STICKY_PROFILE_FIELDS + (("secret_encrypted",) if with_secret else ())
    queryset = Session.objects.select_related("override_profile", "last_profile").only(
        *_STICKY_SESSION_FIELDS,
        *(f"{related}__{name}" for related in ("override_profile", "last_profile") for name in profile_fields),
    )
    if model:
        for prefix, column in (("override", "override_profile"), ("last", "last_profile")):
            pair = ModelCooldown.objects.filter(profile=OuterRef(column), model=model)
            queryset = queryset.annotate(**{
                f"{prefix}_mc_until": Subquery(pair.values("cooldown_until")[:1]),
                f"{prefix}_mc_reason": Subquery(pair.values("cooldown_reason")[:1]),
            })
    return queryset


def _annotated_cooldown(session, profile, model):
    if not model or profile is None:
        return None
    prefix = "override" if profile is session.override_profile else "last"
    until = getattr(session, f"{prefix}_mc_until", None)
    if until is None:
        return None
    return ModelCooldown(profile_id=profile.id, model=model, cooldown_until=until,
                         cooldown_reason=getattr(session, f"{prefix}_mc_reason", ""))


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
        session = queries.first(_session_with_model_cooldowns(model, with_secret).filter(session_key=key))
        known_missing = session is None
        if session is not None and not session.boundary_pending:
            selection = _sticky(session, provider_id, now, model)
    if selection is None:
        selection = _select_locked(key, provider, provider_id, now, actor, new_session, model, explain,
                                   known_missing)
    if with_lease:
        selection.lease_id = leases.issue(selection.profile.id, key, now)
    return selection


def _sticky(session, provider_id, now, model):
    """The lock-free path: a continuing session that keeps its profile. None when something must change."""
    current, source = _current(session, provider_id)
    if current is None or rules.switched_off(current, now):
        return None
    reason, until = rules.unavailability(current, now, _annotated_cooldown(session, current, model))
    if source == OverrideSource.USER:
        selection = _user_selection(session, current, reason, until)
    elif reason is not None:
        return None  # its profile is out: fail over under a lock
    elif rules.idle_long_enough(session.last_activity_at, now, settings.AUTHBROKER_CACHE_IDLE_SECONDS):
        return None  # idle long enough to go home if it is not there and home is back
    else:
        selection = Selection(current, source, session, "continuing session keeps its profile")
    if not _touch(session, now, current.id if session.last_profile_id != current.id else None):
        return None  # a reset or an override changed the session since we read it: decide under the lock
    session.last_activity_at = now
    return selection


def _touch(session, now, last_profile_id=None):
    """Stamp a continuing session's activity (and the profile it is on): one UPDATE, committed asynchronously.

    Only if the session still has the id and pin that were read: returns False when a reset or an
    override changed it meanwhile, so the caller decides again under the lock.

    The stamp changes no decision by itself (it only dates the idle window of DESIGN §2), so it is not
    worth a disk flush: waiting for one cost more than the rest of a sticky select (docs/performance.md).
    `set_config('synchronous_commit', 'off', true)` applies to this statement's own transaction only; a
    crash of the database server can lose the last fraction of a second of stamps, never a cooldown, an
    override, an event or a lease (those commit synchronously as before), and PostgreSQL stays consistent.
    Plain SQL: the ORM would compile this fixed statement anew on every call.
    """
    table = connection.ops.quote_name(Session._meta.db_table)
    columns = ["last_activity_at = %s"]
    params = [connection.ops.adapt_datetimefield_value(now)]
    if last_profile_id is not None:
        columns.append("last_profile_id = %s")
        params.append(last_profile_id)
    condition = "id = %s AND session_id = %s AND override_profile_id IS NOT DISTINCT FROM %s"
    params += [session.pk, Session._meta.get_field("session_id").get_db_prep_value(session.session_id, connection),
               session.override_profile_id]
    if connection.vendor == "postgresql":
        condition += " AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {', '.join(columns)} WHERE {condition}", params)
        return cursor.rowcount == 1


def _user_selection(session, profile, reason, until):
    if reason is None:
        return Selection(profile, OverrideSource.USER, session, "user override")
    return Selection(profile, OverrideSource.USER, session,
                     f"user override kept although {reason} until {until.isoformat()}", cooling=True)


def _decision_profiles(provider_id, model, now, session_key=None, ids=(), leaving=None):
    """(profiles, model cooldowns) enough for a decision at `now`: the few candidates while one of them
    (other than `leaving`) is available, else every profile of the provider (to find the one back soonest)."""
    profiles, cooldowns = queries.provider_profiles(provider_id, model, now=now, session_key=session_key,
                                                             ids=ids)
    if any(p.id != leaving and rules.is_available(p, now, cooldowns.get(p.id)) for p in profiles):
        return profiles, cooldowns
    return queries.provider_profiles(provider_id, model)


def _load_provider(provider_raw, provider_id, model, now=None, session_key=None):
    """(provider, profiles, model cooldowns); 404 for an unknown provider, 409 when it has no profiles.

    With `now`, only the profiles a decision at `now` needs (`_decision_profiles`); without, all of them.
    """
    if now is None:
        profiles, cooldowns = queries.provider_profiles(provider_id, model)
    else:
        profiles, cooldowns = _decision_profiles(provider_id, model, now, session_key)
    if not profiles:
        provider = profile_services.get_provider(provider_raw)
        if provider.id != provider_id:
            profiles, cooldowns = queries.provider_profiles(provider.id, model)
        if not profiles:
            raise Conflict(f"provider {provider.id!r} has no profiles", {"provider": ["has no profiles"]},
                           code="no_profiles")
    return profiles[0].provider, profiles, cooldowns


def _ranked_profiles(provider_raw, provider_id, model, now, candidates_only=True, session_key=None):
    """(provider, profiles, ranked candidates, first choice); 409 when no profile can ever be chosen.

    `candidates_only` loads just the profiles a decision at `now` can pick (`_decision_profiles`);
    `explain` wants every profile ranked.
    """
    provider, profiles, cooldowns = _load_provider(provider_raw, provider_id, model,
                                                   now=now if candidates_only else None, session_key=session_key)
    ranked = rules.rank(profiles, now, provider.strategy, cooldowns)
    first = rules.first_choice(ranked)
    if first is None:
        raise Conflict(f"provider {provider.id!r} has no profile an operator has left on",
                       {"provider": ["every profile is switched off"]}, code="no_usable_profile")
    return provider, profiles, ranked, first


def _lock_or_create(key, now, known_missing=False, **defaults):
    """The session row, locked; created first when the key is new. Returns (session, created)."""
    queryset = Session.objects.select_for_update(of=("self",)).select_related("override_profile", "last_profile")
    session = None if known_missing else queries.first(queryset.filter(session_key=key))
    if session is not None:
        return session, False
    candidate = Session(session_key=key, last_activity_at=now, **defaults)
    if _insert_if_new(candidate):
        return candidate, True  # our own new row: no other transaction can lock it before we commit
    return queryset.get(session_key=key), False


def _insert_if_new(session):
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: True (and `session` saved) when this call created the row.

    One statement instead of an insert and a re-read; when another request created the key first, the
    insert waits for it, does nothing, and the caller reads that row under a lock.
    """
    fields = [f for f in Session._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    params = [f.get_db_prep_save(f.pre_save(session, True), connection) for f in fields]
    table, pk = connection.ops.quote_name(Session._meta.db_table), connection.ops.quote_name(Session._meta.pk.column)
    unique = connection.ops.quote_name(Session._meta.get_field("session_key").column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))}) "
            f"ON CONFLICT ({unique}) DO NOTHING RETURNING {pk}",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return False
    session.pk = row[0]
    session._state.adding, session._state.db = False, connection.alias
    return True


def _select_locked(key, provider_raw, provider_id, now, actor, new_session, model, explain, known_missing):
    with transaction.atomic():
        provider, profiles, ranked, first = _ranked_profiles(
            provider_raw, provider_id, model, now, candidates_only=not explain, session_key=key)
        session, created = _lock_or_create(key, now, known_missing, provider=provider, last_profile=first.profile)
        events = []
        if created:
            selection = _new_session_choice(session, provider, ranked)
        elif new_session or session.boundary_pending:
            if not session.boundary_pending:
                _start_boundary(session, now, actor, "new", events)
            elif session.override_source == OverrideSource.AUTO:
                # a failover after the bulk reset set this pin: it belongs to the old session
                _clear_override(session, now, actor, "session boundary (restart): auto overrides never carry over",
                                events, kind=EventKind.OVERRIDE_DROPPED)
            session.boundary_pending = False
            selection = _new_session_choice(session, provider, ranked)
        else:
            selection = _continuing_choice(session, provider, profiles, ranked, now, actor, events)
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


def _new_session_choice(session, provider, ranked):
    """DESIGN §2, Select for a new session: a user pin carries, an auto pin never does."""
    by_id = {c.profile.id: c for c in ranked}
    pinned = session.override_profile
    if session.override_source == OverrideSource.USER and pinned is not None and pinned.provider_id == provider.id:
        candidate = by_id.get(pinned.id)
        if candidate is not None and (candidate.available or candidate.until is not None):  # not switched off
            return _user_selection(session, candidate.profile, None if candidate.available else candidate.reason,
                                   candidate.until)
    return _default_choice(session, provider, ranked)


def _default_choice(session, provider, ranked):
    choice = rules.first_choice(ranked)
    if choice.available:
        why = "least recently used available profile" if provider.strategy == Strategy.ROUND_ROBIN else (
            "first available profile in order")
        return Selection(choice.profile, "default", session, why)
    return Selection(choice.profile, "default", session,
                     f"no profile is available; {choice.profile.id} is back soonest ({choice.reason})",
                     cooling=True, all_unavailable=True, retry_at=choice.until)


def _continuing_choice(session, provider, profiles, ranked, now, actor, events):
    """DESIGN §2, Select for a continuing session: stick, fail over, or go home after idling."""
    current, source = _current(session, provider.id)
    by_id = {c.profile.id: c for c in ranked}
    candidate = by_id.get(current.id) if current is not None else None
    if candidate is None:
        return _default_choice(session, provider, ranked)
    if source == OverrideSource.USER:
        if candidate.available or candidate.until is not None:  # not switched off
            return _user_selection(session, candidate.profile, None if candidate.available else candidate.reason,
                                   candidate.until)
        return _default_choice(session, provider, ranked)  # the person's pin stays for when it is switched on
    if candidate.available:
        home = rules.home_profile(profiles, now)
        if (
            home is not None
            and (source == OverrideSource.AUTO or provider.strategy == Strategy.ORDERED)
            and home.id != current.id
            and by_id[home.id].available
            and rules.idle_long_enough(session.last_activity_at, now, settings.AUTHBROKER_CACHE_IDLE_SECONDS)
        ):
            reason = f"{home.id} is available again and the session was idle over " \
                     f"{settings.AUTHBROKER_CACHE_IDLE_SECONDS} s"
            if source == OverrideSource.AUTO:
                _clear_override(session, now, SYSTEM, reason, events)
            return Selection(home, "default", session, f"returned to {home.id}: {reason}")
        return Selection(candidate.profile, source, session, "continuing session keeps its profile")
    choice = rules.failover_choice(ranked, provider.last_good_id, current.id)
    if choice is not None and choice.available:
        reason = f"failover: {current.id} {_explain_reason(candidate)}"
        _set_override(session, choice.profile, OverrideSource.AUTO, now, actor, reason, events)
        return Selection(choice.profile, OverrideSource.AUTO, session, reason)
    return _default_choice(session, provider, ranked)


# ---------------------------------------------------------------- overrides and boundaries


def _set_override(session, profile, source, now, actor, reason, events):
    before = override_state(session)
    session.override_profile = profile
    session.override_source = source
    session.override_set_at = now
    session.override_set_by = actor[:150]
    session.override_reason = (reason or "")[:500]
    session.override_compaction_count = None
    events.append(new_event(EventKind.OVERRIDE_SET, now, actor, session_key=session.session_key,
                            profile_id=profile.id, provider_id=profile.provider_id, source=source,
                            reason=session.override_reason, before=before, after=override_state(session)))


def _clear_override(session, now, actor, reason, events, kind=EventKind.OVERRIDE_CLEARED):
    before = override_state(session)
    events.append(new_event(kind, now, actor, session_key=session.session_key,
                            profile_id=session.override_profile_id or "",
                            provider_id=session.override_profile.provider_id if session.override_profile else "",
                            source=session.override_source, reason=(reason or "")[:500], before=before, after={}))
    session.override_profile = None
    session.override_source = ""
    session.override_set_at = now
    session.override_set_by = actor[:150]
    session.override_reason = (reason or "")[:500]
    session.override_compaction_count = None


def _start_boundary(session, now, actor, reason, events):
    """A session boundary: new session id, an auto pin dropped, a user pin carried. Returns (carried, dropped)."""
    old_id = session.session_id
    session.session_id = uuid.uuid4()
    carried = dropped = None
    if session.override_profile_id:
        if session.override_source == OverrideSource.AUTO:
            dropped = session.override_profile_id
            _clear_override(session, now, actor, f"session boundary ({reason}): auto overrides never carry over",
                            events, kind=EventKind.OVERRIDE_DROPPED)
        else:
            carried = session.override_profile_id
            events.append(new_event(EventKind.OVERRIDE_CARRIED, now, actor, session_key=session.session_key,
                                    profile_id=carried, provider_id=session.override_profile.provider_id,
                                    source=session.override_source,
                                    reason=f"session boundary ({reason}): user overrides carry over",
                                    before=override_state(session), after=override_state(session)))
    events.append(new_event(EventKind.SESSION_RESET, now, actor, session_key=session.session_key, reason=reason,
                            before={"session_id": str(old_id)}, after={"session_id": str(session.session_id),
                                                                        "carried": carried, "dropped": dropped}))
    return carried, dropped


def _validate_reset_reason(reason):
    if reason not in RESET_REASONS:
        raise Invalid(f"reason must be one of {', '.join(RESET_REASONS)}", {"reason": ["unknown reason"]})


def reset_session(*, session_key, provider, now, actor, reason="reset", model=None):
    """`/new`, `/reset`, a restart or expiry for one session; answers with the new selection."""
    key = ids.validate_session_key(session_key)
    provider_id = ids.normalize_provider_id(provider)
    model = clean_model(model)
    _validate_reset_reason(reason)
    with transaction.atomic():
        provider_obj, _, ranked, first = _ranked_profiles(provider, provider_id, model, now, session_key=key)
        session, _ = _lock_or_create(key, now, provider=provider_obj, last_profile=first.profile)
        events = []
        carried, dropped = _start_boundary(session, now, actor, reason, events)
        session.boundary_pending = False
        selection = _new_session_choice(session, provider_obj, ranked)
        _remember(session, selection, provider_obj, now)
        write_events(events)
    _mark_used(selection, provider_obj, now)
    selection.lease_id = leases.issue(selection.profile.id, key, now)
    return ResetResult(session, carried, dropped, selection)


class RandomUUID(Func):
    """A fresh random UUID per row, computed by the database (bulk reset of many sessions)."""

    output_field = Session._meta.get_field("session_id")

    def as_sql(self, compiler, connection, **extra):
        return "gen_random_uuid()", []

    def as_sqlite(self, compiler, connection, **extra):
        return "lower(hex(randomblob(16)))", []


def bulk_reset(*, now, actor, reason="restart", session_keys=None):
    """A boundary for many sessions at once (a gateway restart). The next select of each starts afresh."""
    _validate_reset_reason(reason)
    if session_keys is not None:
        if not isinstance(session_keys, list) or len(session_keys) > MAX_BULK_KEYS:
            raise Invalid(f"session_keys must be a list of at most {MAX_BULK_KEYS} keys",
                          {"session_keys": [f"list of at most {MAX_BULK_KEYS} keys"]})
        keys = [ids.validate_session_key(k, "session_keys") for k in session_keys]
    with transaction.atomic():
        sessions = Session.objects.all() if session_keys is None else Session.objects.filter(session_key__in=keys)
        pinned = list(sessions.filter(override_profile__isnull=False).select_for_update(of=("self",))
                      .select_related("override_profile"))
        events, dropped, carried = [], 0, 0
        for session in pinned:
            if session.override_source == OverrideSource.AUTO:
                dropped += 1
                _clear_override(session, now, actor, f"session boundary ({reason}): auto overrides never carry over",
                                events, kind=EventKind.OVERRIDE_DROPPED)
            else:
                carried += 1
                events.append(new_event(EventKind.OVERRIDE_CARRIED, now, actor, session_key=session.session_key,
                                        profile_id=session.override_profile_id,
                                        provider_id=session.override_profile.provider_id,
                                        source=session.override_source,
                                        reason=f"session boundary ({reason}): user overrides carry over",
                                        before=override_state(session), after=override_state(session)))
        sessions.filter(override_source=OverrideSource.AUTO).update(
            override_profile=None, override_source="", override_set_at=now, override_set_by=actor[:150],
            override_reason=f"session boundary ({reason}): auto overrides never carry over",
            override_compaction_count=None,
        )
        reset = sessions.update(session_id=RandomUUID(), boundary_pending=True, updated_at=now)
        events.append(new_event(EventKind.SESSION_RESET, now, actor, reason=reason,
                                after={"sessions": reset, "dropped": dropped, "carried": carried,
                                       "session_keys": keys if session_keys is not None else "all"}))
        write_events(events)
    return {"reset": reset, "dropped": dropped, "carried": carried}


def set_user_override(*, session_key, profile, now, actor, reason=""):
    """Pin a session to a profile because a person asked: it carries across boundaries."""
    key = ids.validate_session_key(session_key)
    reason = ids.clean_reason(reason)
    with transaction.atomic():
        target = profile_services.get_profile(profile)
        session, _ = _lock_or_create(key, now, provider=target.provider)
        events = []
        _set_override(session, target, OverrideSource.USER, now, actor, reason or "set by a person", events)
        session.provider = target.provider
        session.save()
        write_events(events)
    return session


def clear_override(*, session_key, now, actor, reason=""):
    key = ids.validate_session_key(session_key)
    reason = ids.clean_reason(reason)
    with transaction.atomic():
        session = (Session.objects.select_for_update(of=("self",)).select_related("override_profile", "last_profile")
                   .filter(session_key=key).first())
        if session is None:
            raise NotFound(f"unknown session {key!r}", {"session_key": ["unknown session"]})
        if session.override_profile_id:
            events = []
            _clear_override(session, now, actor, reason or "cleared by a person", events)
            session.save()
            write_events(events)
    return session


@transaction.atomic
def delete_profile(profile_id, now, actor, reason=""):
    """Delete a profile; sessions pinned to it lose the pin, with an event each, in the same transaction."""
    profile = profile_services.get_profile(profile_id, lock=True)
    pinned = list(Session.objects.select_for_update(of=("self",)).filter(override_profile=profile).order_by("pk"))
    events = []
    for session in pinned:
        session.override_profile = profile  # (the pin's provider, for the event)
        _clear_override(session, now, actor, "profile deleted", events)
        session.save()
    write_events(events)
    return profile_services.delete_profile(profile.id, now, actor, reason)


def get_session(session_key):
    key = ids.validate_session_key(session_key)
    session = Session.objects.select_related("override_profile", "last_profile").filter(session_key=key).first()
    if session is None:
        raise NotFound(f"unknown session {key!r}", {"session_key": ["unknown session"]})
    return session


def override_state(session):
    if not session.override_profile_id:
        return None
    return {
        "profile": session.override_profile_id,
        "source": session.override_source,
        "set_at": session.override_set_at.isoformat() if session.override_set_at else None,
        "set_by": session.override_set_by,
        "reason": session.override_reason,
    }


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
    return float(min(value, rules.MAX_RETRY_HINT.total_seconds()))


def report_outcome(*, profile, outcome, now, actor, session_key=None, lease_id=None, model=None,
                   retry_after_seconds=None, detail=""):
    """Apply an outcome the gateway reports (DESIGN §2, Outcomes); a retried lease gets the first answer.

    With a lease and no `session_key`, the session is the one the lease was issued for.
    """
    if outcome not in rules.OUTCOMES:
        raise Invalid(f"outcome must be one of {', '.join(rules.OUTCOMES)}", {"outcome": ["unknown outcome"]})
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
            failover = _after_report(key, target, outcome, pair, now, actor, events) if key else None
            answer = {"profile": profile_state(target, now), "failover": failover, "duplicate": False}
            if claim is not None and not _claim_lease(claim, key or "", target.id, outcome, answer, now):
                raise _DuplicateLease(claim.lease_id)
            write_events(events)
    except _DuplicateLease as duplicate:
        stored = Lease.objects.get(pk=duplicate.lease_id)
        return {**stored.answer, "duplicate": True}
    return answer


def _claim_lease(claim, session_key, profile_id, outcome, answer, now):
    """Record the first report on a lease; False when another report already claimed it."""
    lease = Lease(lease_id=claim.lease_id, session_key=session_key, profile_id=profile_id,
                  issued_at=claim.issued_at, reported_at=now, outcome=outcome, answer=answer)
    fields = [f for f in Lease._meta.concrete_fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    params = [f.get_db_prep_save(getattr(lease, f.attname), connection) for f in fields]
    table = connection.ops.quote_name(Lease._meta.db_table)
    pk = connection.ops.quote_name(Lease._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT ({pk}) DO NOTHING RETURNING {pk}",
            params,
        )
        return cursor.fetchone() is not None


def _after_report(key, profile, outcome, pair, now, actor, events):
    """Touch the reporting session and fail it over when the profile it is on just became unavailable."""
    still_usable = outcome == "success" or rules.is_available(profile, now, pair)
    if still_usable:
        Session.objects.filter(session_key=key).update(last_activity_at=now)
        return None
    # The whole session row (it is saved back), but of its two profiles only what names them.
    session = queries.first(Session.objects.select_for_update(of=("self",)).select_related("override_profile", "last_profile")
                     .only(*(f.name for f in Session._meta.concrete_fields), "override_profile__provider",
                           "last_profile__provider")
                     .filter(session_key=key))
    if session is None:
        return None
    session.last_activity_at = now
    current, source = _current(session, profile.provider_id)
    if current is None or current.id != profile.id or source == OverrideSource.USER:
        session.save(update_fields=["last_activity_at"])
        return None
    provider = profile.provider
    profiles, cooldowns = _decision_profiles(provider.id, pair.model if pair else None, now, ids=(profile.id,),
                                             leaving=profile.id)
    ranked = rules.rank(profiles, now, provider.strategy, cooldowns)
    choice = rules.failover_choice(ranked, provider.last_good_id, profile.id)
    if choice is None or not choice.available:
        session.save(update_fields=["last_activity_at"])
        return None
    by_id = {c.profile.id: c for c in ranked}
    reason = f"failover: {profile.id} reported {outcome}, {_explain_reason(by_id[profile.id])}"
    _set_override(session, choice.profile, OverrideSource.AUTO, now, actor, reason, events)
    session.last_profile = choice.profile
    session.save()
    return {"profile": choice.profile.id, "source": OverrideSource.AUTO.value}
