"""The session layer's speed tricks, apart from the decisions: fixed SQL for the hot paths.

Each function here returns exactly what a plain ORM query would; `tests/test_candidates.py` and
`tests/test_queries.py` hold them to the rules on random data.
"""

import json
from functools import lru_cache

from django.db import connection
from django.db.models import BooleanField, OuterRef, Subquery
from django.db.models.expressions import RawSQL

from profiles.models import AuthProfile, Event, ModelCooldown, Provider, Strategy
from sessions_app.models import Lease, Session


def first(queryset):
    """The one row of a unique lookup, or None: no ORDER BY (the model's default ordering costs a sort
    and, in Django's compiler, a comparison of every selected column), just LIMIT 1."""
    return next(iter(queryset.order_by()[:1]), None)


# ---------------------------------------------------------------- decision candidates


# How many available profiles, in order, a decision can need: the first, and the next one when the
# first is the profile a session is leaving.
FEW_AVAILABLE = 2


@lru_cache(maxsize=16)
def _candidates_sql(vendor, with_model, with_session, extra_ids):
    """The SQL of `_decision_candidates`, written once per shape (Django would compile it on every call).

    Each part is a plain SELECT of ids; LIMITed parts are wrapped so SQLite accepts them in a UNION.
    Ties on position are broken by id in code-point order, as the rules (Python) compare strings.
    """
    profile, provider = AuthProfile._meta.db_table, Provider._meta.db_table
    collate = ' COLLATE "C"' if vendor == "postgresql" else ""  # SQLite's BINARY compares code points already
    order = f"c.position, c.id{collate}"
    available = ("c.provider_id = %s AND c.enabled AND (c.disabled_until IS NULL OR c.disabled_until <= %s) "
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
        f"SELECT id FROM (SELECT c.id FROM {profile} AS c WHERE c.provider_id = %s AND c.enabled "
        f"ORDER BY {order} LIMIT 1) AS home",
        f"SELECT last_good_id FROM {provider} WHERE id = %s",
    ]
    if with_session:  # the session's profiles, when they are this provider's
        session = Session._meta.db_table
        parts += [f"SELECT c.id FROM {session} AS s JOIN {profile} AS c ON c.id = s.{column} "
                  "WHERE s.session_key = %s AND c.provider_id = %s"
                  for column in ("override_profile_id", "last_profile_id")]
    parts += [f"SELECT c.id FROM {profile} AS c WHERE c.id = %s AND c.provider_id = %s"] * extra_ids
    union = " UNION ALL ".join(parts)
    if vendor == "postgresql":  # the ids first, then primary-key lookups (IN invites a scan of every profile)
        return f'"{profile}"."id" = ANY(ARRAY({union}))'
    return f'"{profile}"."id" IN ({union})'


def _decision_candidates(provider_id, model, now, session_key, ids_):
    """Which of a provider's profiles a decision at `now` can pick: (sql, params) of a condition on their ids.

    The first FEW_AVAILABLE available profiles in position order and, for a round-robin provider,
    least recently used first; the first profile an operator left on (where a continuing session
    belongs); `last_good`; the profiles the session `session_key` is on or pinned to; and `ids_`.
    Availability here is `rules.unavailability`'s, written in SQL.
    """
    available = [provider_id, now, now] + ([model, now] if model else [])
    params = available + available + [provider_id, provider_id, provider_id]
    if session_key is not None:
        params += [session_key, provider_id, session_key, provider_id]
    for profile_id in ids_:
        params += [profile_id, provider_id]
    sql = _candidates_sql(connection.vendor, bool(model), session_key is not None, len(ids_))
    return sql, params


def provider_profiles(provider_id, model=None, *, now=None, session_key=None, ids=()):
    """A provider's profiles, each with its cooldown for `model` (if any) fetched in the same query.

    With `now`, only those a decision at `now` can pick (`_decision_candidates`): a handful of rows
    however many profiles the provider has. The rules rank them exactly as they would rank all of
    them as long as one is available; when none is, the answer is the profile back soonest, and the
    caller must ask again without `now` for every profile.
    """
    if now is None:
        queryset = AuthProfile.objects.filter(provider_id=provider_id)
    else:  # every part of the candidates' SQL is this provider's: a lookup by primary key, not a provider scan
        sql, params = _decision_candidates(provider_id, model, now, session_key, ids)
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


def lock_session(key):
    """The session row, locked (FOR UPDATE of the row alone), or None.

    Nothing is joined: after a lock wait PostgreSQL re-reads the locked row but would join it to
    related rows as they were before the wait (EvalPlanQual). The profiles a decision reads are
    loaded after the lock, by id.
    """
    return first(Session.objects.select_for_update().filter(session_key=key))


def insert_if_new(session):
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: True (and `session` saved) when this call created the row.

    One statement instead of an insert and a re-read; when another request created the key first, the
    insert waits for it, does nothing, and the caller locks that row.
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


# What the lock-free path reads: the session's own small fields and, of its two profiles, what
# availability and the answer need. The rest of each profile row (the encrypted secret above all) stays
# in the database unless the caller hands the credential out; the locked path reads whole rows.
_STICKY_SESSION_FIELDS = ("session_key", "session_id", "last_profile", "override_profile", "override_source",
                          "boundary_pending", "last_activity_at")
_STICKY_PROFILE_FIELDS = ("provider", "kind", "enabled", "cooldown_until", "cooldown_reason", "disabled_until",
                          "disabled_reason")


def sticky_read(key, model, with_secret=False):
    """(session, {profile id: (profile, model cooldown or None)}) without a lock, or (None, {}).

    One query: the session, its pinned and last profiles, and their cooldowns for `model`.
    """
    profile_fields = _STICKY_PROFILE_FIELDS + (("secret_encrypted",) if with_secret else ())
    queryset = Session.objects.select_related("override_profile", "last_profile").only(
        *_STICKY_SESSION_FIELDS,
        *(f"{related}__{name}" for related in ("override_profile", "last_profile") for name in profile_fields),
    )
    prefixes = (("override", "override_profile"), ("last", "last_profile"))
    if model:
        for prefix, column in prefixes:
            pair = ModelCooldown.objects.filter(profile=OuterRef(column), model=model)
            queryset = queryset.annotate(**{
                f"{prefix}_mc_until": Subquery(pair.values("cooldown_until")[:1]),
                f"{prefix}_mc_reason": Subquery(pair.values("cooldown_reason")[:1]),
            })
    session = first(queryset.filter(session_key=key))
    if session is None:
        return None, {}
    profiles = {}
    for prefix, column in prefixes:
        profile = getattr(session, column)
        if profile is None or profile.id in profiles:
            continue
        until = getattr(session, f"{prefix}_mc_until", None)
        cooldown = None if until is None else ModelCooldown(
            profile_id=profile.id, model=model, cooldown_until=until,
            cooldown_reason=getattr(session, f"{prefix}_mc_reason", ""))
        profiles[profile.id] = (profile, cooldown)
    return session, profiles


def touch(session, now, last_profile_id=None):
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


def claim_lease(lease):
    """INSERT the first report on a lease; False when another report already claimed it."""
    fields = list(Lease._meta.concrete_fields)
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


# ---------------------------------------------------------------- bulk reset


def serialize_bulk_resets():
    """Two bulk resets never interleave (so never deadlock): a transaction-scoped advisory lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('authbroker.bulk_reset'))")


_EVENT_COLUMNS = ("at", "kind", "actor", "reason", "source", "session_key", "profile_id", "provider_id", "model",
                  "before", "after")


def drop_auto_pins(keys, now, actor, reason):
    """Drop every auto pin (of the sessions `keys`, or all) and write an `override_dropped` event for each,
    in one statement. Returns the events written.

    The pinned rows are locked first, in id order (a stable order: two writers never wait on each other
    in a cycle), and what is dropped is read from the locked rows, so a pin set meanwhile is either
    dropped with its event or, if it was set after this statement began, left to the session's next
    select (which drops it as belonging to the old session).
    """
    session_table = connection.ops.quote_name(Session._meta.db_table)
    event_table = connection.ops.quote_name(Event._meta.db_table)
    only = "AND session_key = ANY(%s)" if keys is not None else ""
    params = ([list(keys)] if keys is not None else []) + [now, actor, reason, now, "override_dropped", actor,
                                                             reason]
    sql = f"""
        WITH locked AS (
            SELECT id, session_key, override_profile_id AS profile_id, override_set_at, override_set_by,
                   override_reason
            FROM {session_table} WHERE override_source = 'auto' {only} ORDER BY id FOR UPDATE
        ), cleared AS (
            UPDATE {session_table} AS s
            SET override_profile_id = NULL, override_source = '', override_set_at = %s, override_set_by = %s,
                override_reason = %s, override_compaction_count = NULL
            FROM locked WHERE s.id = locked.id
            RETURNING locked.*
        )
        INSERT INTO {event_table} ({", ".join(_EVENT_COLUMNS)})
        SELECT %s, %s, %s, %s, 'auto', session_key, profile_id, split_part(profile_id, ':', 1), '',
               jsonb_build_object('profile', profile_id, 'source', 'auto', 'set_at', override_set_at,
                                  'set_by', override_set_by, 'reason', override_reason),
               '{{}}'::jsonb
        FROM cleared ORDER BY id
        RETURNING id, {", ".join(_EVENT_COLUMNS)}
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
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
