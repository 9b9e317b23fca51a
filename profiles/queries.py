"""The profile layer's speed tricks, apart from the rules and services."""

from functools import lru_cache

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from profiles import rules
from profiles.models import AuthProfile, Event, Provider


def purge_events(before):
    """Retention: delete events older than `before` (the only way events are ever removed).

    One plain DELETE: the ORM's delete() would read every row first to send signals nobody listens
    to, and events refuse it on purpose (`EventQuerySet.delete`).
    """
    table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE at < %s", [connection.ops.adapt_datetimefield_value(before)])
        return cursor.rowcount


def database_now():
    """The database server's clock (PostgreSQL's `clock_timestamp()`), or None where it cannot be read apart
    from ours (SQLite's clock is the process's own). Only for measuring skew and for the expiry job's
    bound; rules never decide on it (DESIGN §2)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def clock_skew_seconds():
    """How far the application clock runs ahead of the database's (negative: behind), in seconds, measured at
    the midpoint of the round trip; None where the database has no clock apart from ours."""
    before = timezone.now()
    db_now = database_now()
    after = timezone.now()
    if db_now is None:
        return None
    return round(((before + (after - before) / 2) - db_now).total_seconds(), 3)


def unavailable_q(now, prefix=""):
    """`rules.unavailability` as the ORM's condition on a profile (or a related one, through `prefix` such
    as "profile__"): switched off, expired, cooling or disabled at `now` (profile-wide windows; a model's
    cooldown is the model's). The one database-side statement of availability for reads by the ORM;
    `tests/test_queries.py` holds it to the rule on random profiles."""
    return Q(**{f"{prefix}isnull": False} if prefix else {}) & (
        Q(**{f"{prefix}enabled": False})
        | Q(**{f"{prefix}cooldown_until__gt": now})
        | Q(**{f"{prefix}disabled_until__gt": now})
        | Q(**{f"{prefix}expires_at__lte": now, f"{prefix}kind__in": sorted(rules.EXPIRING_KINDS)})
    )


def secret_ref(profile_id):
    """The reference a profile holds instead of a secret (`{source, provider, id}`), or None.

    Read only for a profile with no stored secret, whose select answers the reference; the hot paths
    otherwise never load the metadata.
    """
    metadata = AuthProfile.objects.filter(pk=profile_id).values_list("metadata", flat=True).first()
    ref = (metadata or {}).get("secret_ref")
    return dict(ref) if isinstance(ref, dict) else None


@lru_cache(maxsize=8)
def _locked_profile_sql(vendor, without):
    """The SQL of `locked_profile`, written once per shape (the ORM compiles a locking join on every call)."""
    q = connection.ops.quote_name
    profile_fields = [f for f in AuthProfile._meta.concrete_fields if f.name not in without]
    provider_fields = list(Provider._meta.concrete_fields)
    columns = [f"p.{q(f.column)}" for f in profile_fields] + [f"pr.{q(f.column)}" for f in provider_fields]
    lock = " FOR NO KEY UPDATE OF p" if vendor == "postgresql" else ""
    sql = (f"SELECT {', '.join(columns)} FROM {q(AuthProfile._meta.db_table)} AS p "
           f"JOIN {q(Provider._meta.db_table)} AS pr ON pr.{q('id')} = p.{q('provider_id')} "
           f"WHERE p.{q('id')} = %s{lock}")
    return sql, profile_fields, provider_fields


def from_row(model, fields, values):
    """A model instance from raw column values of `fields`, converted as the ORM converts them (JSON, dates,
    SQLite's text and integers); the model's other fields are deferred, as with `.only()`."""
    converted = []
    for field, value in zip(fields, values, strict=True):
        if value is not None:
            expression = field.get_col(model._meta.db_table)
            for converter in connection.ops.get_db_converters(expression) + field.get_db_converters(connection):
                value = converter(value, expression, connection)
        converted.append(value)
    by_name = {field.attname: value for field, value in zip(fields, converted, strict=True)}
    names = [f.attname for f in model._meta.concrete_fields if f.attname in by_name]  # from_db's order
    return model.from_db(connection.alias, names, [by_name[name] for name in names])


def locked_profile(profile_id, without=()):
    """The profile with this id and its provider, the profile's row locked FOR NO KEY UPDATE (as
    `get_profile(lock=True)`: sessions referencing it can still be written meanwhile); the fields named
    in `without` are left in the database (deferred). None when there is no such profile.

    Fixed SQL for the report, which locks its profile on every call; `tests/test_report.py` holds it to
    the ORM's answer.
    """
    sql, profile_fields, provider_fields = _locked_profile_sql(connection.vendor, tuple(without))
    with connection.cursor() as cursor:
        cursor.execute(sql, [profile_id])
        row = cursor.fetchone()
    if row is None:
        return None
    profile = from_row(AuthProfile, profile_fields, row[:len(profile_fields)])
    profile.provider = from_row(Provider, provider_fields, row[len(profile_fields):])
    return profile
