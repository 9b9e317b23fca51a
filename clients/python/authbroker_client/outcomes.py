"""From an upstream error to an authbroker outcome, and from `Retry-After` headers to seconds.

`OUTCOME_RULES` is the table (docs/integration.md prints it): the first row whose
status matches and whose text pattern (if any) is found in the provider's error
body decides. Transport failures without a status are classified by kind.
"""

import contextlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

OUTCOMES = ("success", "rate_limit", "overloaded", "server_error", "timeout", "format", "unknown",
            "model_not_found", "auth", "auth_permanent", "billing")

# Texts providers use when the key is out of money rather than over a rate (OpenAI `insufficient_quota`,
# Anthropic "credit balance is too low", Google "billing", OpenRouter "more credits").
_BILLING = re.compile(r"insufficient[_ ]quota|exceeded your current quota|quota exceeded|credit balance|"
                      r"insufficient[_ ]credits|more credits|out of credits|billing|payment required")
# Texts for a key that will never work again (as opposed to a typo or a transient auth glitch).
_PERMANENT = re.compile(r"revoked|deactivated|disabled|suspended|account (?:has been )?(?:closed|deleted)")
# A 404 that is about the model (not the URL): the model is named or the error type says so.
_MODEL = re.compile(r"model")
_OVERLOADED = re.compile(r"overloaded")


@dataclass(frozen=True)
class OutcomeRule:
    statuses: frozenset
    outcome: str
    pattern: re.Pattern | None = None
    why: str = ""

    def matches(self, status, text):
        return status in self.statuses and (self.pattern is None or self.pattern.search(text) is not None)


def _codes(*codes):
    return frozenset(codes)


_SERVER_ERRORS = frozenset(range(500, 600)) - {504, 529}

OUTCOME_RULES = (
    OutcomeRule(_codes(429), "billing", _BILLING, "429 whose body speaks of quota or credit"),
    OutcomeRule(_codes(429), "rate_limit", None, "429 Too Many Requests"),
    OutcomeRule(_codes(402), "billing", None, "402 Payment Required"),
    OutcomeRule(_codes(400), "billing", _BILLING, "400 whose body speaks of credit (Anthropic's low balance)"),
    OutcomeRule(_codes(401, 403), "auth_permanent", _PERMANENT, "401/403 for a revoked or deactivated key"),
    OutcomeRule(_codes(401, 403), "auth", None, "401/403: the key was refused"),
    OutcomeRule(_codes(404), "model_not_found", _MODEL, "404 naming a model"),
    OutcomeRule(_codes(408, 504), "timeout", None, "408 Request Timeout, 504 Gateway Timeout"),
    OutcomeRule(_codes(529), "overloaded", None, "529 (Anthropic: overloaded)"),
    OutcomeRule(_SERVER_ERRORS, "overloaded", _OVERLOADED, "5xx whose body says overloaded"),
    OutcomeRule(_SERVER_ERRORS, "server_error", None, "any other 5xx"),
    OutcomeRule(_codes(400, 413, 422), "format", None, "400/413/422: the request's fault"),
)


def _text(body):
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        try:
            body = json.dumps(body)
        except (TypeError, ValueError):
            body = str(body)
    return body.lower()


def classify_status(status, body=None):
    """The outcome for an upstream HTTP answer: `status` plus the provider's error body (text or JSON)."""
    if status is not None and 200 <= status < 300:
        return "success"
    text = _text(body)
    for rule in OUTCOME_RULES:
        if rule.matches(status, text):
            return rule.outcome
    return "unknown"


# Transport failures (no HTTP status): timeouts by the exception's class name, so the helper works with
# httpx, requests, aiohttp, openai and anthropic SDKs and asyncio alike without importing any of them.
_TIMEOUT_NAMES = re.compile(r"timeout|timedout", re.IGNORECASE)


def classify_exception(exc):
    """The outcome for an exception from an upstream call: its status if it carries one, else its kind."""
    status = _status_of(exc)
    if status is not None:
        return classify_status(status, _body_of(exc))
    for cls in type(exc).__mro__:
        if _TIMEOUT_NAMES.search(cls.__name__):
            return "timeout"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "unknown"


def _status_of(exc):
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _body_of(exc):
    parts = [str(getattr(exc, "message", "") or ""), str(exc)]
    body = getattr(exc, "body", None)
    if body is not None:
        parts.append(_text(body))
    response = getattr(exc, "response", None)
    if response is not None:
        with contextlib.suppress(Exception):  # a streamed or closed response has no text to add
            parts.append(response.text)
    return " ".join(parts)


def parse_retry_after(headers, now=None):
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP-date); None when absent or bad.

    `headers` is any mapping (case-insensitive lookups are done here) or a list of pairs.
    `now` (aware datetime) is the reference for an HTTP-date; the wall clock by default.
    """
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) or hasattr(headers, "items") else headers
    lowered = {str(k).lower(): v for k, v in items}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _number(raw_ms)
        if seconds is not None:
            return seconds / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(str(raw).strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def _number(raw):
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    if math.isnan(value) or math.isinf(value) or value < 0:
        return None
    return value
