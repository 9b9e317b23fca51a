"""The session layer's speed tricks, apart from the decisions: fixed SQL for the hot paths.

Each function here returns exactly what a plain ORM query would; `tests/test_candidates.py` and
`tests/test_queries.py` hold them to the rules on random data.
"""

import json
from contextlib import nullcontext
from functools import lru_cache

from django.db import OperationalError, connection, transaction
from django.db.models import BigIntegerField, BooleanField, OuterRef, Subquery
from django.db.models.expressions import RawSQL

from profiles import rules
from profiles.models import AuthProfile, Event, ModelCooldown, Provider, Strategy
from profiles.queries import from_row
from sessions_app.models import BulkReset, Lease, Pin, Session


def first(queryset):
    """The one row of a unique lookup, or None: no ORDER BY (the model's default ordering costs a sort
    and, in Django's compiler, a comparison of every selected column), just LIMIT 1."""
    return next(iter(queryset.order_by()[:1]), None)


# ---------------------------------------------------------------- decision candidates


# How many available profiles, in order, a decision can need: the first, and the next one when the
# first is the profile a session is leaving.
FEW_AVAILABLE = 2


@lru_cache(maxsize=16)
def _candidates_sql(vendor, with_model, extra_ids):
    """The SQL of `_decision_candidates`, written once per shape (Django would compile it on every call).

    Each part is a plain SELECT of ids; LIMITed parts are wrapped so SQLite accepts them in a UNION.
    Ties on position are broken by id in code-point order, as the rules (Python) compare strings.
    """
    profile, provider = AuthProfile._meta.db_table, Provider._meta.db_table
    collate = ' COLLATE "C"' if vendor == "postgresql" else ""  # SQLite's BINARY compares code points already
    order = f"c.position, c.id{collate}"
    kinds = ", ".join(f"'{kind}'" for kind in sorted(rules.EXPIRING_KINDS))
    left_on = f"c.enabled AND (c.expires_at IS NULL OR c.expires_at > %s OR c.kind NOT IN ({kinds}))"  # switched_off
    available = (f"c.provider_id = %s AND {left_on} AND (c.disabled_until IS NULL OR c.disabled_until <= %s) "
                 "AND (c.cooldown_until IS NULL OR c.cooldown_until <= %s)")
    if with_model:
        available += (f" AND NOT EXISTS (SELECT 1 FROM {ModelCooldown._meta.db_table} AS m "
                      "WHERE m.profile_id = c.id AND m.model = %s AND m.cooldown_until > %s)")
    parts = [
        f"SELECT id FROM (SELECT c.id FROM {profile} AS c WHERE {available} "
        f"ORDER BY {order} LIMIT {FEW_AVAILABLE}) AS by_position",
        f"SELECT id FROM (SELECT c.id FROM {profile} AS c WHERE {available} AND EXISTS "
        f"(SELECT 1 FROM {provider} AS p WHERE p.id = %s AND p.strategy = '{Strategy.ROUND_ROBIN.value}') "
        f"ORDER BY c.last_used ASC NULLS FIRST, {order} LIMIT {FEW_AVAILABLE}) AS by_use",
        f"SELECT id FROM (SELECT c.id FROM {profile} AS c WHERE c.provider_id = %s AND {left_on} "
        f"ORDER BY {order} LIMIT 1) AS home",
        f"SELECT last_good_id FROM {provider} WHERE id = %s",
    ]
    parts += [f"SELECT c.id FROM {profile} AS c WHERE c.id = %s AND c.provider_id = %s"] * extra_ids
    union = " UNION ALL ".join(parts)
    if vendor == "postgresql":  # the ids first, then primary-key lookups (IN invites a scan of every profile)
        return f'"{profile}"."id" = ANY(ARRAY({union}))'
    return f'"{profile}"."id" IN ({union})'


def _decision_candidates(provider_id, model, now, ids_):
    """Which of a provider's profiles a decision at `now` can pick: (sql, params) of a condition on their ids.

    The first FEW_AVAILABLE available profiles in position order and, for a round-robin provider,
    least recently used first; the first profile not switched off (`rules.home_profile`: where a
    continuing session belongs); `last_good`; and `ids_` (the profiles the session is on or pinned to).
    Availability here is `rules.unavailability`'s, written in SQL.
    """
    available = [provider_id, now, now, now] + ([model, now] if model else [])
    params = available + available + [provider_id, provider_id, now, provider_id]
    for profile_id in ids_:
        params += [profile_id, provider_id]
    sql = _candidates_sql(connection.vendor, bool(model), len(ids_))
    return sql, params


def provider_profiles(provider_id, model=None, *, now=None, ids=()):
    """A provider's profiles, each with its cooldown for `model` (if any) fetched in the same query.

    With `now`, only those a decision at `now` can pick (`_decision_candidates`): a handful of rows
    however many profiles the provider has. The rules rank them exactly as they would rank all of
    them as long as one is available; when none is, the answer is the profile back soonest, and the
    caller must ask again without `now` for every profile.
    """
    if now is None:
        queryset = AuthProfile.objects.filter(provider_id=provider_id)
    else:  # every part of the candidates' SQL is this provider's: a lookup by primary key, not a provider scan
        sql, params = _decision_candidates(provider_id, model, now, ids)
        queryset = AuthProfile.objects.filter(RawSQL(sql, params, output_field=BooleanField()))
    queryset = queryset.select_related("provider")
    if model:
        pair = ModelCooldown.objects.filter(profile=OuterRef("pk"), model=model)
        queryset = queryset.annotate(
            model_cooldown_until=Subquery(pair.values("cooldown_until")[:1]),
            model_cooldown_reason=Subquery(pair.values("cooldown_reason")[:1]),
        )
    profiles = [p for p in queryset if p.provider_id == provider_id]  # (a last_good of another provider)
    cooldowns = {}
    for profile in profiles:
        until = getattr(profile, "model_cooldown_until", None)
        if until is not None:
            cooldowns[profile.id] = ModelCooldown(
                profile_id=profile.id, model=model, cooldown_until=until, cooldown_reason=profile.model_cooldown_reason
            )
    return profiles, cooldowns




# ---------------------------------------------------------------- the session's own rows


def latest_epoch_sql():
    """The id of the latest reset of every session (0 before the first): a subquery for a statement."""
    return f"(SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(BulkReset._meta.db_table)})"


def lock_session(key):
    """The session row, locked (FOR UPDATE of the row alone), with `latest_epoch` annotated; or None.

    Nothing is joined: after a lock wait PostgreSQL re-reads the locked row but would join it to
    related rows as they were before the wait (EvalPlanQual). Its pins and profiles are read after
    the lock (`pins_of`, `provider_profiles`).
    """
    queryset = Session.objects.select_for_update().filter(session_key=key).annotate(
        latest_epoch=RawSQL(latest_epoch_sql(), [], output_field=BigIntegerField()))
    return first(queryset)


def pins_of(session):
    """A session's pins by provider id (read after its lock)."""
    return {pin.provider_id: pin for pin in Pin.objects.filter(session_id=session.pk).order_by()}


def insert_if_new(session):
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: True (and `session` saved) when this call created the row.

    One statement instead of an insert and a re-read; when another request created the key first, the
    insert waits for it, does nothing, and the caller locks that row.
    """
    fields = [f for f in Session._meta.concrete_fields if not f.primary_key and f.name != "epoch"]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    params = [f.get_db_prep_save(f.pre_save(session, True), connection) for f in fields]
    table, pk = connection.ops.quote_name(Session._meta.db_table), connection.ops.quote_name(Session._meta.pk.column)
    unique = connection.ops.quote_name(Session._meta.get_field("session_key").column)
    with connection.cursor() as cursor:
        cursor.execute(  # a new session has passed every reset so far
            f"INSERT INTO {table} ({columns}, epoch) VALUES ({', '.join(['%s'] * len(fields))}, "
            f"{latest_epoch_sql()}) ON CONFLICT ({unique}) DO NOTHING RETURNING {pk}, epoch",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return False
    session.pk, session.epoch = row
    session.latest_epoch = session.epoch
    session._state.adding, session._state.db = False, connection.alias
    return True


_PROFILE_COLUMNS = ("id", "provider_id", "kind", "enabled", "expires_at", "cooldown_until", "cooldown_reason",
                    "disabled_until", "disabled_reason")


_STICKY_SESSION_COLUMNS = ("id", "session_id", "last_profile_id", "pin_version", "boundary_pending", "epoch",
                           "last_activity_at", "provider_id")
_COOLDOWN_COLUMNS = ("profile_id", "model", "cooldown_until", "cooldown_reason")


@lru_cache(maxsize=8)
def _sticky_sql(vendor, with_model, with_secret):
    session, pin, profile, cooldown = (connection.ops.quote_name(m._meta.db_table)
                                       for m in (Session, Pin, AuthProfile, ModelCooldown))
    columns = _PROFILE_COLUMNS + (("secret_encrypted",) if with_secret else ())
    select = [*(f"s.{column}" for column in _STICKY_SESSION_COLUMNS), latest_epoch_sql(), "pin.source"]
    joins = [f"LEFT JOIN {pin} AS pin ON pin.session_id = s.id AND pin.provider_id = %s",
             f"LEFT JOIN {profile} AS pp ON pp.id = pin.profile_id",
             f"LEFT JOIN {profile} AS lp ON lp.id = s.last_profile_id AND lp.provider_id = %s"]
    for alias in ("pp", "lp"):
        select += [f"{alias}.{column}" for column in columns]
        if with_model:
            select += [f"{alias}_mc.cooldown_until", f"{alias}_mc.cooldown_reason"]
            joins.append(f"LEFT JOIN {cooldown} AS {alias}_mc ON {alias}_mc.profile_id = {alias}.id "
                         f"AND {alias}_mc.model = %s")
    return f"SELECT {', '.join(select)} FROM {session} AS s {' '.join(joins)} WHERE s.session_key = %s"


def _fields(model, names):
    return [model._meta.get_field(name) for name in names]


def sticky_read(key, provider_id, model, with_secret=False):
    """What the lock-free select reads, in one query and without a lock: (session, (profile id, source) of
    its pin on `provider_id` or None, {profile id: (profile, model cooldown or None)}) for that pin's
    profile and its last profile (when that provider's); (None, None, {}) for an unknown key.

    The session carries `latest_epoch`, the latest reset of every session, to tell a pending boundary.
    """
    params = [provider_id, provider_id] + ([model, model] if model else []) + [key]
    with connection.cursor() as cursor:
        cursor.execute(_sticky_sql(connection.vendor, bool(model), with_secret), params)
        row = cursor.fetchone()
    if row is None:
        return None, None, {}
    session = from_row(Session, _fields(Session, _STICKY_SESSION_COLUMNS), row[:8])
    session.session_key = key
    session.latest_epoch = row[8]
    pin_source = row[9]
    columns = _PROFILE_COLUMNS + (("secret_encrypted",) if with_secret else ())
    width = len(columns) + (2 if model else 0)
    profiles = {}
    for start in (10, 10 + width):
        values = row[start:start + width]
        if values[0] is None or values[0] in profiles:
            continue
        profile = from_row(AuthProfile, _fields(AuthProfile, columns), values[:len(columns)])
        cooldown = None
        if model and values[len(columns)] is not None:
            cooldown = from_row(ModelCooldown, _fields(ModelCooldown, _COOLDOWN_COLUMNS),
                                (profile.id, model, values[len(columns)], values[len(columns) + 1] or ""))
        profiles[profile.id] = (profile, cooldown)
    pinned = row[10] if pin_source else None
    return session, (pinned, pin_source) if pinned else None, profiles


# How long the lock-free select waits for a session row another writer holds before it answers without its
# stamp. A report holds a session for milliseconds; a reset of every session holds the sessions whose auto pins
# it drops for seconds, and a continuing select must not wait for that (issue 11: no select blocked for more
# than a moment).
TOUCH_LOCK_WAIT_MS = 50

LOCKED = "locked"  # touch's answer when another writer held the row past TOUCH_LOCK_WAIT_MS


def touch(session, now, last_profile_id=None, provider_id=None):
    """Stamp a continuing session's activity (and the profile it is on): one UPDATE, committed asynchronously.

    Returns True when stamped; False when the session no longer has the id and pins (`pin_version`) that
    were read (a reset or an override changed it meanwhile), so the caller decides again under the lock;
    LOCKED when another writer holds the row longer than TOUCH_LOCK_WAIT_MS (PostgreSQL): its change has
    not committed, so what was read is still the committed state, and the caller answers from it without
    the stamp (the select is ordered before that writer's change).

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
    if provider_id is not None:  # the session's current provider (its `override` in the API) moved
        columns.append("provider_id = %s")
        params.append(provider_id)
    condition = "id = %s AND session_id = %s AND pin_version = %s"
    params += [session.pk, Session._meta.get_field("session_id").get_db_prep_value(session.session_id, connection),
               session.pin_version]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET {', '.join(columns)} WHERE {condition}", params)
            return cursor.rowcount == 1
    # both settings last for this statement's own transaction only (set_config(…, true)); the lock wait
    # happens after the row passed these conditions
    condition += (" AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
                  f" AND set_config('lock_timeout', '{TOUCH_LOCK_WAIT_MS}ms', true) IS NOT NULL")
    sql = f"UPDATE {table} SET {', '.join(columns)} WHERE {condition}"
    try:
        # inside an atomic block (a test's), a savepoint keeps a lock timeout from aborting the whole block
        with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount == 1
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == "55P03":  # lock_not_available
            return LOCKED
        raise


def _stamp_sql():
    """UPDATE of a reporting session's activity; parameters: now, provider id, session key."""
    table = connection.ops.quote_name(Session._meta.db_table)
    return f"UPDATE {table} SET last_activity_at = %s, provider_id = %s WHERE session_key = %s"


def stamp_session(key, now, provider_id):
    """A report on a session that stays where it is: its activity and provider, one UPDATE (fixed SQL;
    the ORM's `.update()` would be compiled anew on every report)."""
    with connection.cursor() as cursor:
        cursor.execute(_stamp_sql(),
                       [connection.ops.adapt_datetimefield_value(now), provider_id, key])


def claim_lease(lease, stamp=None):
    """INSERT the first report on a lease; False when another report already claimed it.

    `stamp` (session key, now, provider id): `stamp_session` too, in the same statement on PostgreSQL
    (a data-modifying WITH), so a success report sends one statement fewer. When the lease was claimed
    already the caller rolls the transaction back, stamp and all, as it did with two statements.
    """
    fields = list(Lease._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    params = [f.get_db_prep_save(getattr(lease, f.attname), connection) for f in fields]
    table = connection.ops.quote_name(Lease._meta.db_table)
    pk = connection.ops.quote_name(Lease._meta.pk.column)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT ({pk}) DO NOTHING RETURNING {pk}"
    if stamp is not None:
        key, now, provider_id = stamp
        if connection.vendor == "postgresql":
            sql = f"WITH stamped AS ({_stamp_sql()}) {sql}"
            params = [connection.ops.adapt_datetimefield_value(now), provider_id, key, *params]
        else:  # SQLite has no UPDATE inside WITH
            stamp_session(key, now, provider_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


# ---------------------------------------------------------------- bulk reset


def serialize_bulk_resets():
    """Two bulk resets never interleave (so never deadlock): a transaction-scoped advisory lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('authbroker.bulk_reset'))")


_EVENT_COLUMNS = ("at", "kind", "actor", "reason", "source", "session_key", "profile_id", "provider_id", "model",
                  "before", "after")


def drop_every_auto_pin(now, actor, reason):
    """Drop every session's auto pins and write an `override_dropped` event for each, in one statement
    (PostgreSQL). Returns the rows of the events written, for `events_of` to turn into Events once the
    transaction no longer holds the sessions' locks.

    The sessions holding auto pins are locked first, in id order, as every other writer locks a
    session before its pins: two writers never wait on each other in a cycle. They are found by
    primary key from the pins (`= ANY(ARRAY(…))`), not by a scan of every session. What is dropped is
    read from the deleted rows themselves, so a pin changed meanwhile is dropped with its event or, if
    it was set after this statement began, left for the session's next select, which drops it as
    belonging to the session before the reset.
    """
    session, pin, event = (connection.ops.quote_name(m._meta.db_table) for m in (Session, Pin, Event))
    sql = f"""
        WITH owners AS (
            SELECT id FROM {session} WHERE id = ANY(ARRAY(SELECT session_id FROM {pin} WHERE source = 'auto'))
            ORDER BY id FOR UPDATE
        ), gone AS (
            DELETE FROM {pin} AS p USING owners WHERE p.session_id = owners.id AND p.source = 'auto'
            RETURNING p.session_id, p.provider_id, p.profile_id, p.set_at, p.set_by, p.reason
        ), bumped AS (
            UPDATE {session} AS s SET pin_version = s.pin_version + 1
            FROM (SELECT DISTINCT session_id FROM gone) AS g WHERE s.id = g.session_id
            RETURNING s.id, s.session_key
        )
        INSERT INTO {event} ({", ".join(_EVENT_COLUMNS)})
        SELECT %s, %s, %s, %s, 'auto', bumped.session_key, gone.profile_id, gone.provider_id, '',
               jsonb_build_object('provider', gone.provider_id, 'profile', gone.profile_id, 'source', 'auto',
                                  'set_at', gone.set_at, 'set_by', gone.set_by, 'reason', gone.reason),
               '{{}}'::jsonb
        FROM gone JOIN bumped ON bumped.id = gone.session_id
        ORDER BY gone.session_id, gone.provider_id
        RETURNING id, {", ".join(_EVENT_COLUMNS)}
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, "override_dropped", actor, reason])
        return cursor.fetchall()


def events_of(rows):
    """Events from the rows `drop_every_auto_pin` returned (building 50,000 models takes a while: done
    after the commit, so no session stays locked meanwhile)."""
    events = []
    for row in rows:
        fields = dict(zip(_EVENT_COLUMNS, row[1:], strict=True))
        for name in ("before", "after"):  # jsonb may come back as text, as Django's own reads expect
            if isinstance(fields[name], str):
                fields[name] = json.loads(fields[name])
        event = Event(id=row[0], **fields)
        event._state.adding = False
        events.append(event)
    return events
