"""The API's documentation and its small consistencies: one timestamp format, null for absent names,
schema names, descriptions, examples and the error codes each operation can answer."""

import re

from tests.helpers import report, select

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?\+00:00$")


def schema(client):
    return client.get("/api/schema", HTTP_ACCEPT="application/json").json()


def test_it_writes_every_timestamp_one_way_in_events_and_profiles(anthropic, admin_api):
    select(admin_api)
    answer = report(admin_api, "anthropic:default", "rate_limit", session_key="agent:main:telegram:dm:42")
    stamps = [answer["profile"]["cooldown_until"], answer["profile"]["last_failure_at"]]
    stamps += [event["at"] for event in admin_api.get("/api/events").json()["results"]]
    stamps += [p["last_used"] for p in admin_api.get("/api/profiles").json() if p["last_used"]]
    assert len(stamps) > 4
    assert all(ISO_WITH_OFFSET.match(stamp) for stamp in stamps), stamps


def test_it_answers_null_for_an_event_without_a_profile_or_provider(anthropic, api):
    select(api)
    api.post("/api/sessions/agent:main:telegram:dm:42/reset", {"provider": "anthropic"}, format="json")
    bulk = api.post("/api/sessions/reset", {"reason": "restart"}, format="json")
    assert bulk.status_code == 200
    events = api.get("/api/events", {"kind": "session_reset"}).json()["results"]
    unnamed = [e for e in events if not e["session_key"]]
    assert unnamed and all(e["profile"] is None and e["provider"] is None for e in unnamed)
    named = api.get("/api/events", {"kind": "profile_created"}).json()["results"]
    assert {e["profile"] for e in named} == {"anthropic:default", "anthropic:backup1", "anthropic:backup2"}


def test_it_names_schemas_once_and_describes_select_and_report(client, db):
    document = schema(client)
    names = list(document["components"]["schemas"])
    assert "SelectRequest" in names and "ReportRequest" in names
    assert not [name for name in names if name.endswith("RequestRequest")]
    refs = re.findall(r'"#/components/schemas/([A-Za-z]+)"', str(document).replace("'", '"'))
    assert set(refs) <= set(names)
    for path in ("/api/select", "/api/report"):
        operation = document["paths"][path]["post"]
        assert len(operation["description"]) > 80
        examples = operation["requestBody"]["content"]["application/json"]["examples"]
        assert all(example["value"].get("model", "claude-sonnet-4-5") == "claude-sonnet-4-5"
                   for example in examples.values())
        assert any(example["value"].get("model") == "claude-sonnet-4-5" for example in examples.values())


def test_it_lists_only_the_errors_each_operation_can_answer(client, db):
    paths = schema(client)["paths"]
    assert not {"415", "409", "404"} & set(paths["/api/profiles"]["get"]["responses"])
    assert {"400", "404", "409", "413", "415"} <= set(paths["/api/report"]["post"]["responses"])
    assert "409" not in paths["/api/sessions/{session_key}/override"]["put"]["responses"]
    assert "405" not in paths["/api/select"]["post"]["responses"]
    conflict = paths["/api/profiles"]["post"]["responses"]["409"]
    assert conflict["description"] == "a profile with that id exists"
    assert conflict["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_it_documents_the_413_a_get_with_a_large_body_gets(api):
    """The guard refuses any body over 64 KiB before the view, a GET's too, so every operation lists 413."""
    response = api.generic("GET", "/api/profiles", "x" * 70000, content_type="application/json")
    assert response.status_code == 413
    assert "413" in schema(api)["paths"]["/api/profiles"]["get"]["responses"]
