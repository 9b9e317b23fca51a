"""/metrics, request ids and the structured log line written for every state change."""

import logging
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from tests.helpers import report, select

KEY = "agent:main:telegram:dm:42"


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_it_counts_selections_failovers_cooldowns_and_reports(anthropic, api, clock,
                                                              django_capture_on_commit_callbacks):
    """Counters move by exactly what happened: 1 selection, 1 report, 1 cooldown, 1 failover, 1 duplicate."""
    before = {
        "selections": sample("authbroker_selections_total", source="default", all_unavailable="false"),
        "reports": sample("authbroker_reports_total", outcome="rate_limit", duplicate="false"),
        "duplicates": sample("authbroker_reports_total", outcome="rate_limit", duplicate="true"),
        "cooldowns": sample("authbroker_cooldowns_started_total", provider="anthropic", reason="rate_limit",
                            scope="profile"),
        "failovers": sample("authbroker_failovers_total", provider="anthropic"),
        "latency": sample("authbroker_request_duration_seconds_count", method="POST", route="api/select",
                          status="2xx"),
    }
    with django_capture_on_commit_callbacks(execute=True):  # metrics of state changes count on commit
        lease = select(api, session_key=KEY)["lease_id"]
        body = {"session_key": KEY, "lease_id": lease}
        assert report(api, "anthropic:default", "rate_limit", **body)["failover"]["profile"] == "anthropic:backup1"
        assert report(api, "anthropic:default", "rate_limit", **body)["duplicate"] is True
    assert sample("authbroker_selections_total", source="default", all_unavailable="false") == before["selections"] + 1
    assert sample("authbroker_reports_total", outcome="rate_limit", duplicate="false") == before["reports"] + 1
    assert sample("authbroker_reports_total", outcome="rate_limit", duplicate="true") == before["duplicates"] + 1
    assert sample("authbroker_cooldowns_started_total", provider="anthropic", reason="rate_limit",
                  scope="profile") == before["cooldowns"] + 1
    assert sample("authbroker_failovers_total", provider="anthropic") == before["failovers"] + 1
    assert sample("authbroker_request_duration_seconds_count", method="POST", route="api/select",
                  status="2xx") == before["latency"] + 1


def test_it_serves_active_cooldowns_computed_at_scrape(anthropic, api, client, clock):
    """/metrics reads what is cooling right now from the database; expiry needs no scheduler."""
    report(api, "anthropic:default", "rate_limit")
    report(api, "anthropic:backup1", "billing")
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'authbroker_active_cooldowns{provider="anthropic",reason="rate_limit",scope="profile"} 1.0' in text
    assert 'authbroker_active_disablements{provider="anthropic",reason="billing"} 1.0' in text
    assert "authbroker_database_up 1.0" in text
    for family in ("authbroker_selections_total", "authbroker_failovers_total", "authbroker_reports_total",
                   "authbroker_cooldowns_started_total", "authbroker_request_duration_seconds_bucket"):
        assert f"# TYPE {family.removesuffix('_total').removesuffix('_bucket')}" in text, family
    clock.shift(61)
    assert "authbroker_active_cooldowns{" not in client.get("/metrics").content.decode()


def test_it_echoes_a_request_id_or_makes_one(db, api):
    """X-Request-ID is echoed when well formed, replaced by a fresh one otherwise."""
    assert api.get("/api/profiles", HTTP_X_REQUEST_ID="gw-7f3a.1")["X-Request-ID"] == "gw-7f3a.1"
    made = api.get("/api/profiles", HTTP_X_REQUEST_ID="bad id\nwith newline")["X-Request-ID"]
    assert len(made) == 32 and made.isalnum()
    assert len(api.get("/healthz")["X-Request-ID"]) == 32


def test_it_logs_every_state_change_with_the_request_id(anthropic, api, clock, caplog,
                                                       django_capture_on_commit_callbacks):
    """One key=value audit line per event, carrying the request id of the call that caused it."""
    caplog.set_level(logging.INFO, logger="authbroker.audit")
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/report", {"profile": "anthropic:default", "outcome": "rate_limit",
                                 "detail": "429 from upstream"}, format="json", HTTP_X_REQUEST_ID="req-cooldown-1")
        api.put(f"/api/sessions/{KEY}/override", {"profile": "anthropic:backup2"}, format="json",
                HTTP_X_REQUEST_ID="req-override-1")
    lines = [(r.request_id, r.getMessage()) for r in caplog.records if r.name == "authbroker.audit"]
    assert len(lines) == 2
    assert lines[0][0] == "req-cooldown-1"
    assert "event=cooldown_started profile=anthropic:default provider=anthropic" in lines[0][1]
    assert 'reason="rate_limit: 429 from upstream"' in lines[0][1] and "until=2026-04-07T12:01:00+00:00" in lines[0][1]
    assert lines[1][0] == "req-override-1"
    assert f"event=override_set profile=anthropic:backup2 provider=anthropic session_key={KEY}" in lines[1][1]
    assert "source=user" in lines[1][1]


def test_it_logs_nothing_for_a_change_that_rolled_back(anthropic, api, clock, caplog, monkeypatch,
                                                      django_capture_on_commit_callbacks):
    """The audit line is written on commit: a failed request leaves no line claiming a change."""
    from sessions_app import services

    caplog.set_level(logging.INFO, logger="authbroker.audit")
    api.raise_request_exception = False

    def boom(*args, **kwargs):
        raise RuntimeError("after the events, before the commit")

    monkeypatch.setattr(services.queries, "claim_lease", boom)
    with django_capture_on_commit_callbacks(execute=True):
        lease = select(api, session_key=KEY)["lease_id"]
        response = api.post("/api/report", {"profile": "anthropic:default", "outcome": "rate_limit",
                                            "session_key": KEY, "lease_id": lease}, format="json")
    assert response.status_code == 500
    assert not [r for r in caplog.records if r.name == "authbroker.audit"]


@pytest.mark.postgres
def test_it_reports_the_skew_between_our_clock_and_the_databases(db, client):
    """Our clock moved 300 s ahead of PostgreSQL's: /readyz and /metrics both say about +300 s."""
    import time_machine

    from profiles.queries import database_now

    with time_machine.travel(database_now() + timedelta(seconds=300), tick=True):
        ready = client.get("/readyz").json()
        text = client.get("/metrics").content.decode()

    assert 299 < ready["clock_skew_seconds"] < 301
    [line] = [line for line in text.splitlines() if line.startswith("authbroker_clock_skew_seconds ")]
    assert 299 < float(line.split()[1]) < 301
