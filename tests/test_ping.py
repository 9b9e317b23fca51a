"""GET /api/ping: the authenticated no-op the benchmark uses as its floor."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.helpers import statements


def test_it_answers_an_empty_object_to_a_gateway_token(api):
    """A valid token gets 200 and `{}`."""
    response = api.get("/api/ping")
    assert response.status_code == 200
    assert response.json() == {}


def test_it_refuses_a_missing_or_bad_token(db, client):
    """Same authentication as every other API call: 401 without a valid bearer token."""
    assert client.get("/api/ping").status_code == 401
    assert client.get("/api/ping", HTTP_AUTHORIZATION="Bearer nope").status_code == 401


def test_it_runs_in_one_query(api):
    """The floor is the token lookup and nothing else."""
    with CaptureQueriesContext(connection) as queries:
        api.get("/api/ping")
    assert len(statements(queries)) == 1, statements(queries)
