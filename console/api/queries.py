"""The API layer's speed tricks, apart from the views: fixed SQL for what every call does."""

from functools import lru_cache

from django.db import connection

from console.models import ApiToken


@lru_cache(maxsize=2)
def _token_sql(vendor):
    """Written once: the ORM would build and compile this fixed lookup on every API call."""
    q = connection.ops.quote_name
    return (f"SELECT {q('id')}, {q('name')}, {q('scopes')} FROM {q(ApiToken._meta.db_table)} "
            f"WHERE {q('token_hash')} = %s AND {q('revoked_at')} IS NULL")


def active_token(token_hash):
    """The unrevoked token with this hash, with the columns a request reads (id, name, scopes); or None.

    Read from the database on every call, never cached: a token revoked a moment ago is refused by
    the next request. The same answer as `ApiToken.objects.filter(token_hash=…, revoked_at=None)`
    (tests/test_access.py holds both to it).
    """
    with connection.cursor() as cursor:
        cursor.execute(_token_sql(connection.vendor), [token_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    scopes = ApiToken._meta.get_field("scopes").from_db_value(row[2], None, connection)
    token = ApiToken(id=row[0], name=row[1], scopes=scopes)
    token._state.adding, token._state.db = False, connection.alias
    return token
