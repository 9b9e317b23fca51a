"""The client's error → outcome table and Retry-After parsing: every row, and the fail-open ranking rules."""

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from authbroker_client import (
    OUTCOME_RULES,
    OUTCOMES,
    classify_exception,
    classify_status,
    parse_retry_after,
)
from authbroker_client.failopen import CircuitBreaker, FailOpenState
from authbroker_client.types import ProviderSnapshot

# (status, provider error body, expected outcome, the table row it exercises)
CASES = [
    (429, {"error": {"type": "rate_limit_error", "message": "Number of requests exceeded"}}, "rate_limit",
     "429 Too Many Requests"),
    (429, {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}}, "billing",
     "429 whose body speaks of quota or credit"),
    (429, "Your credit balance is too low", "billing", "429 whose body speaks of quota or credit"),
    (402, None, "billing", "402 Payment Required"),
    (400, {"error": {"message": "Your credit balance is too low to access the Anthropic API."}}, "billing",
     "400 whose body speaks of credit (Anthropic's low balance)"),
    (401, {"error": {"message": "invalid x-api-key"}}, "auth", "401/403: the key was refused"),
    (403, "Forbidden", "auth", "401/403: the key was refused"),
    (401, {"error": {"message": "This API key has been revoked"}}, "auth_permanent",
     "401/403 for a revoked or deactivated key"),
    (403, "organization deactivated", "auth_permanent", "401/403 for a revoked or deactivated key"),
    (404, {"error": {"type": "not_found_error", "message": "model: claude-9 not found"}}, "model_not_found",
     "404 naming a model"),
    (404, "Not Found", "unknown", None),
    (408, None, "timeout", "408 Request Timeout, 504 Gateway Timeout"),
    (504, "upstream timed out", "timeout", "408 Request Timeout, 504 Gateway Timeout"),
    (529, {"error": {"type": "overloaded_error"}}, "overloaded", "529 (Anthropic: overloaded)"),
    (503, "The engine is currently overloaded", "overloaded", "5xx whose body says overloaded"),
    (500, "Internal Server Error", "server_error", "any other 5xx"),
    (502, None, "server_error", "any other 5xx"),
    (503, "Service Unavailable", "server_error", "any other 5xx"),
    (400, {"error": {"message": "prompt is too long"}}, "format", "400/413/422: the request's fault"),
    (422, None, "format", "400/413/422: the request's fault"),
    (413, None, "format", "400/413/422: the request's fault"),
    (200, None, "success", None),
    (418, None, "unknown", None),
]


@pytest.mark.parametrize(("status", "body", "expected", "row"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_it_maps_each_upstream_error_to_its_outcome(status, body, expected, row):
    assert classify_status(status, body) == expected
    if row is not None:
        text = json.dumps(body).lower() if isinstance(body, dict) else str(body or "").lower()
        assert next(rule for rule in OUTCOME_RULES if rule.matches(status, text)).why == row


def test_every_row_of_the_table_is_exercised_and_names_a_real_outcome():
    assert {row for *_, row in CASES if row} == {rule.why for rule in OUTCOME_RULES}
    assert {rule.outcome for rule in OUTCOME_RULES} <= set(OUTCOMES)


class StatusError(Exception):
    def __init__(self, status_code, message, headers=None):
        super().__init__(message)
        self.status_code, self.message = status_code, message


class ReadTimeout(Exception):
    pass


def test_it_classifies_exceptions_by_status_or_kind():
    assert classify_exception(StatusError(429, "slow down")) == "rate_limit"
    assert classify_exception(StatusError(401, "key revoked")) == "auth_permanent"
    assert classify_exception(httpx.ReadTimeout("read timed out")) == "timeout"
    assert classify_exception(httpx.ConnectTimeout("connect timed out")) == "timeout"
    assert classify_exception(ReadTimeout()) == "timeout"
    assert classify_exception(TimeoutError()) == "timeout"
    assert classify_exception(ConnectionRefusedError()) == "unknown"
    response = httpx.Response(529, text='{"error": {"type": "overloaded_error"}}',
                              request=httpx.Request("POST", "http://upstream/v1/messages"))
    assert classify_exception(httpx.HTTPStatusError("529", request=response.request, response=response)) == \
        "overloaded"


NOW = datetime(2026, 4, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"Retry-After": "37"}, 37.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"Retry-After": "Tue, 07 Apr 2026 12:01:30 GMT"}, 90.0),
    ({"Retry-After": "Tue, 07 Apr 2026 11:59:00 GMT"}, 0.0),  # a date in the past: go now
    ({"retry-after-ms": "2500", "Retry-After": "60"}, 2.5),  # the precise header wins
    ({"retry-after-ms": "junk", "Retry-After": "60"}, 60.0),
    ({"Retry-After": "soon"}, None),
    ({"Retry-After": "-5"}, None),
    ({"Retry-After": "nan"}, None),
    ({}, None),
    (None, None),
    ([("Retry-After", "12")], 12.0),
    (httpx.Headers({"Retry-After": "7"}), 7.0),
])
def test_it_parses_retry_after_in_every_form(headers, seconds):
    assert parse_retry_after(headers, now=NOW) == seconds


def snapshot(strategy="ordered", **windows):
    profiles = []
    for position, name in enumerate(("default", "backup1", "backup2")):
        profiles.append({"id": f"anthropic:{name}", "provider": "anthropic", "name": name, "kind": "api_key",
                         "position": position, "enabled": True, "available": True,
                         "cooldown_until": windows.get(name)})
    return [ProviderSnapshot.from_json({"id": "anthropic", "strategy": strategy, "aliases": ["claude"],
                                        "cooldown_ladder_seconds": [60, 300], "track_failures": True,
                                        "profiles": profiles})]


def test_fail_open_ranks_from_the_snapshot_skipping_what_is_cooling():
    state = FailOpenState(now=lambda: NOW)
    state.remember_providers(snapshot(default=(NOW + timedelta(minutes=5)).isoformat()), 0)
    choice = state.select("chat:1", "claude")  # an alias resolves like on the server
    assert (choice.profile, choice.source, choice.fail_open) == ("anthropic:backup1", "fail_open", True)


def test_fail_open_ranks_past_windows_that_ended_since_the_snapshot():
    state = FailOpenState(now=lambda: NOW)
    state.remember_providers(snapshot(default=(NOW - timedelta(seconds=1)).isoformat()), 0)
    assert state.select("chat:1", "anthropic").profile == "anthropic:default"


def test_fail_open_estimates_the_ladder_and_hint_for_reports_it_buffered():
    state = FailOpenState(now=lambda: NOW)
    state.remember_providers(snapshot(), 0)
    state.observe("anthropic:default", "rate_limit", retry_after_seconds=30)
    assert state.unavailable_until("anthropic:default") == NOW + timedelta(seconds=60)  # ladder step wins
    state.observe("anthropic:backup1", "rate_limit", retry_after_seconds=600)
    assert state.unavailable_until("anthropic:backup1") == NOW + timedelta(seconds=600)  # the hint lengthens
    state.observe("anthropic:backup2", "overloaded")
    assert state.unavailable_until("anthropic:backup2") is None  # recorded only, never held against the key
    choice = state.select("chat:2", "anthropic")
    assert choice.profile == "anthropic:backup2"
    state.observe("anthropic:backup2", "billing")
    everything = state.select("chat:3", "anthropic")
    assert everything.all_unavailable and everything.profile == "anthropic:default"
    assert everything.retry_at == NOW + timedelta(seconds=60)


def test_fail_open_disables_after_the_third_auth_failure():
    state = FailOpenState(now=lambda: NOW)
    state.remember_providers(snapshot(), 0)
    for _ in range(2):
        state.observe("anthropic:default", "auth")
    first_cooldown = state.unavailable_until("anthropic:default")
    state.observe("anthropic:default", "auth")
    assert state.unavailable_until("anthropic:default") == max(first_cooldown, NOW + timedelta(minutes=30))


def test_fail_open_keeps_a_user_pin_even_when_cooling():
    state = FailOpenState(now=lambda: NOW)
    state.remember_providers(snapshot(backup2=(NOW + timedelta(minutes=5)).isoformat()), 0)
    state._pin("chat:pinned", "anthropic", "anthropic:backup2", "user")
    choice = state.select("chat:pinned", "anthropic", new_session=True)
    assert (choice.profile, choice.cooling) == ("anthropic:backup2", True)


def test_the_breaker_opens_after_its_threshold_and_lets_one_probe_through():
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown=10, monotonic=lambda: now[0])
    breaker.failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.failure()
    assert not breaker.allow() and breaker.state == "open"
    now[0] = 10.0
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # only one probe at a time
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()
