"""Hostile input from a property-based fuzzer: every operation of /api/schema against a live server.

Schemathesis generates valid and invalid requests from the OpenAPI schema and
checks that no answer is a 5xx and that every answer (errors included) matches
the schema: status code, content type, headers and body. The schema's identifier
patterns and examples (console/schema.py) steer it to real profiles, providers
and sessions, so successful answers (200, 201, 204) are checked too, not only errors.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks as openapi_checks

from console.models import ApiToken
from profiles import services as profile_services
from sessions_app import services as session_services
from tests.conftest import T0

pytestmark = [pytest.mark.django_db(transaction=True)]

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture
def api_schema(live_server, transactional_db):
    return schemathesis.openapi.from_url(f"{live_server.url}/api/schema?format=json")


@pytest.fixture
def admin_token(transactional_db):
    profile_services.create_profile("anthropic:default", "api_key", "sk-fuzz-default-0123456789", T0, "test")
    profile_services.create_profile("anthropic:backup1", "api_key", "sk-fuzz-backup1-0123456789", T0, "test")
    session_services.set_user_override(session_key="agent:main:telegram:dm:42", profile="anthropic:backup1",
                                       now=T0, actor="test")  # the schema's example session exists
    return ApiToken.issue("fuzzer", ["gateway", "admin"])[1]


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_it_answers_every_generated_request_within_the_schema(case, admin_token, live_server):
    """No 5xx, and every answer matches the documented schema."""
    case.call_and_validate(base_url=live_server.url,
                           headers={"Authorization": f"Bearer {admin_token}"}, checks=CHECKS)
