"""Request ids, request metrics, the audit log line for every state change, and /metrics.

Metrics are per process unless `PROMETHEUS_MULTIPROC_DIR` names an empty directory
shared by the processes of one instance (as `make serve` does): then every scrape
sums them (prometheus-client's multiprocess mode). Gauges about state (active
cooldowns, disablements) are not counted in memory at all: they are read from the
database at scrape time, so every instance reports the same truth.
"""

import contextvars
import logging
import os
import re
import time
import uuid

from django.db import DatabaseError, transaction
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
request_id_var = contextvars.ContextVar("request_id", default="-")
audit_log = logging.getLogger("authbroker.audit")

SELECTIONS = Counter("authbroker_selections", "Selections answered by /api/select, by source of the choice",
                     ["source", "all_unavailable"])
FAILOVERS = Counter("authbroker_failovers", "Sessions moved to another profile by failover (auto override set)",
                    ["provider"])
COOLDOWNS_STARTED = Counter("authbroker_cooldowns_started", "Cooling windows started, by provider and reason",
                            ["provider", "reason", "scope"])
DISABLEMENTS_STARTED = Counter("authbroker_disablements_started",
                               "Profiles disabled by failures or an operator, by provider and reason",
                               ["provider", "reason"])
REPORTS = Counter("authbroker_reports", "Outcome reports received, by outcome; duplicate=true for lease retries",
                  ["outcome", "duplicate"])
EVENTS = Counter("authbroker_events", "Audit events written (every state change), by kind", ["kind"])
REQUEST_LATENCY = Histogram(
    "authbroker_request_duration_seconds", "Time to answer an HTTP request, by route and status class",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


# ---------------------------------------------------------------- request context


def clean_request_id(raw):
    return raw if raw and REQUEST_ID_RE.match(raw) else uuid.uuid4().hex


class RequestContextMiddleware:
    """First in the chain: a request id (from `X-Request-ID` or new) for logs and the answer, and latency."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER, ""))
        request.request_id = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            response[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            match = getattr(request, "resolver_match", None)
            route = (match.route or match.view_name) if match else "unmatched"
            REQUEST_LATENCY.labels(request.method, route, f"{status // 100}xx").observe(time.perf_counter() - started)
            request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record (`-` outside a request)."""

    def filter(self, record):
        if not hasattr(record, "request_id"):
            # Django logs a 4xx/5xx answer (`django.request`, `django.security`) after the middleware chain
            # has returned, when the context is reset; such records carry the request itself.
            record.request_id = getattr(getattr(record, "request", None), "request_id", None) or request_id_var.get()
        return True


# ---------------------------------------------------------------- state changes


def _kv(value):
    text = "" if value is None else str(value)
    if text == "" or re.search(r'[\s"=]', text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def format_fields(**fields):
    """`key=value` pairs, values quoted when they hold spaces, quotes or `=`; empty ones left out."""
    return " ".join(f"{name}={_kv(value)}" for name, value in fields.items() if value not in (None, ""))


def _after_commit(events, request_id):
    for event in events:
        EVENTS.labels(event.kind).inc()
        after = event.after if isinstance(event.after, dict) else {}
        if event.kind == "cooldown_started":
            COOLDOWNS_STARTED.labels(event.provider_id, after.get("cooldown_reason") or "unknown",
                                     "model" if event.model else "profile").inc()
        elif event.kind == "disabled":
            DISABLEMENTS_STARTED.labels(event.provider_id, after.get("disabled_reason") or event.source or "operator"
                                        ).inc()
        elif event.kind == "override_set" and event.source == "auto":
            FAILOVERS.labels(event.provider_id).inc()
        audit_log.info(
            "state_change %s",
            format_fields(event=event.kind, profile=event.profile_id, provider=event.provider_id,
                          session_key=event.session_key, model=event.model, source=event.source, actor=event.actor,
                          reason=event.reason, at=event.at.isoformat() if event.at else "",
                          until=after.get("cooldown_until") or after.get("disabled_until") or ""),
            extra={"request_id": request_id},
        )


def on_events_written(sender, events, **kwargs):
    """Receiver of `profiles.events.events_written` (connected in `ConsoleConfig.ready`): the state
    change is counted and logged once its transaction commits, with the id of the request that made it."""
    request_id = request_id_var.get()
    transaction.on_commit(lambda: _after_commit(events, request_id))


def count_selection(selection):
    SELECTIONS.labels(selection.source, str(selection.all_unavailable).lower()).inc()


def count_report(outcome, answer):
    REPORTS.labels(outcome, str(bool(answer.get("duplicate"))).lower()).inc()


# ---------------------------------------------------------------- /metrics


class StateCollector:
    """Gauges computed from the database at scrape time: what is cooling or disabled right now."""

    def collect(self):
        from profiles.models import AuthProfile, ModelCooldown
        from profiles.queries import clock_skew_seconds

        now = timezone.now()
        cooling = GaugeMetricFamily("authbroker_active_cooldowns", "Profiles (or profile/model pairs) cooling now",
                                    labels=["provider", "reason", "scope"])
        disabled = GaugeMetricFamily("authbroker_active_disablements", "Profiles disabled by failures now",
                                     labels=["provider", "reason"])
        switched_off = GaugeMetricFamily("authbroker_profiles_switched_off", "Profiles an operator switched off",
                                         labels=["provider"])
        up = GaugeMetricFamily("authbroker_database_up", "1 when the scrape could read the database")
        skew = GaugeMetricFamily("authbroker_clock_skew_seconds",
                                 "This instance's clock minus the database's (positive: ours runs ahead)")
        try:
            measured = clock_skew_seconds()
            if measured is not None:
                skew.add_metric([], measured)
            counts = {}
            for provider, reason in AuthProfile.objects.filter(cooldown_until__gt=now).values_list(
                    "provider_id", "cooldown_reason"):
                counts[(provider, reason or "unknown", "profile")] = counts.get(
                    (provider, reason or "unknown", "profile"), 0) + 1
            for provider, reason in ModelCooldown.objects.filter(cooldown_until__gt=now).values_list(
                    "profile__provider_id", "cooldown_reason"):
                counts[(provider, reason or "unknown", "model")] = counts.get(
                    (provider, reason or "unknown", "model"), 0) + 1
            for labels, count in sorted(counts.items()):
                cooling.add_metric(list(labels), count)
            counts = {}
            for provider, reason in AuthProfile.objects.filter(disabled_until__gt=now).values_list(
                    "provider_id", "disabled_reason"):
                counts[(provider, reason or "unknown")] = counts.get((provider, reason or "unknown"), 0) + 1
            for labels, count in sorted(counts.items()):
                disabled.add_metric(list(labels), count)
            counts = {}
            for provider in AuthProfile.objects.filter(enabled=False).values_list("provider_id", flat=True):
                counts[provider] = counts.get(provider, 0) + 1
            for provider, count in sorted(counts.items()):
                switched_off.add_metric([provider], count)
            up.add_metric([], 1)
        except DatabaseError:
            up.add_metric([], 0)
            return [up]
        return [cooling, disabled, switched_off, up, *([skew] if skew.samples else [])]


def metrics(request):
    """Prometheus text format. No authentication, like /healthz: expose it on the internal network only."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    state = CollectorRegistry()
    state.register(StateCollector())
    body = generate_latest(registry) + generate_latest(state)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
