"""Prepared statements on PostgreSQL: the hot queries are planned once per connection, not per request."""

import pytest
from django.db import connection

from tests.helpers import report, select


def prepared_statements():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE from_sql = false")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.postgres
def test_it_prepares_the_hot_statements_on_the_server(api, anthropic):
    """After a few selects and reports, PostgreSQL holds the token lookup, the session read and the reports'
    reads as prepared statements of this connection (DATABASE_SERVER_SIDE_BINDING with prepare_threshold)."""
    if not connection.settings_dict["OPTIONS"].get("server_side_binding"):
        pytest.skip("DATABASE_SERVER_SIDE_BINDING=false: prepared statements switched off on purpose")
    for _ in range(8):
        select(api)
        report(api, "anthropic:default", "success")
    prepared = prepared_statements()
    assert any('"console_apitoken"' in sql and '"token_hash"' in sql for sql in prepared), prepared
    assert any(sql.lstrip().startswith("SELECT") and '"sessions_app_session"' in sql and 'session_key' in sql
               for sql in prepared), prepared
    assert any('"profiles_authprofile"' in sql for sql in prepared), prepared


@pytest.mark.postgres
def test_it_prepares_nothing_before_a_statement_repeats(api, anthropic):
    """One run of a statement is not prepared (psycopg waits for the threshold): no plan cached for one-offs."""
    if not connection.settings_dict["OPTIONS"].get("server_side_binding"):
        pytest.skip("DATABASE_SERVER_SIDE_BINDING=false: prepared statements switched off on purpose")
    select(api, session_key="agent:main:telegram:dm:once")
    assert not any('"sessions_app_session"' in sql for sql in prepared_statements())


@pytest.mark.postgres
def test_it_leaves_room_in_the_session_tables_pages_for_hot_updates(db):
    """Migration 0004 sets the session table's fillfactor, so a stamp of activity can stay in its page."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'sessions_app_session'")
        options = cursor.fetchone()[0] or []
    assert "fillfactor=80" in options, options
