"""The session layer's speed tricks, apart from the decisions: fixed SQL for the hot paths.

Each function here returns exactly what a plain ORM query would; `tests/test_candidates.py` and
`tests/test_queries.py` hold them to the rules on random data.
"""

from functools import lru_cache

from django.db import connection
from django.db.models import BooleanField, OuterRef, Subquery
from django.db.models.expressions import RawSQL

from profiles import rules
from profiles.models import AuthProfile, ModelCooldown, Provider, Strategy
from sessions_app.models import Session


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
    least recently used first; the first profile not switched off (`rules.home_profile`: where a
    continuing session belongs); `last_good`; the profiles the session `session_key` is on or pinned to; and `ids_`.
    Availability here is `rules.unavailability`'s, written in SQL.
    """
    available = [provider_id, now, now, now] + ([model, now] if model else [])
    params = available + available + [provider_id, provider_id, now, provider_id]
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


