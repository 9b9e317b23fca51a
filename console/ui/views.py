"""The operator console's pages: providers board, sessions, a session's timeline, the audit log.

Pages only read. Every change is an action in `console.ui.actions`, which calls
the same service functions as the API.
"""

import csv
import json
from collections import defaultdict

from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from console.ui.decorators import staff_required
from console.ui.display import (
    expiry_note,
    model_cooldown_status,
    pinned_to_unavailable,
    profile_status,
)
from console.ui.forms import EventFilterForm, OverrideForm, SessionFilterForm
from profiles.models import AuthProfile, Event, EventKind, ModelCooldown, Provider
from sessions_app.models import OverrideSource, Pin, Session

SESSIONS_PER_PAGE = 25
EVENTS_PER_PAGE = 50
TIMELINE_LIMIT = 200


def _page(request, queryset, per_page):
    """(page, query string of the other parameters) for the pager links."""
    page = Paginator(queryset, per_page).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return page, params.urlencode()


# ---------------------------------------------------------------- providers board


@staff_required
def providers(request):
    now = timezone.now()
    pinned = defaultdict(dict)
    for row in Pin.objects.values("profile_id", "source").annotate(n=Count("id")).order_by():
        pinned[row["profile_id"]][row["source"]] = row["n"]
    models = defaultdict(list)
    for pair in ModelCooldown.objects.filter(Q(cooldown_until__gt=now) | Q(error_count__gt=0)):
        models[pair.profile_id].append((pair, model_cooldown_status(pair, now)))
    rows = defaultdict(list)
    for profile in AuthProfile.objects.order_by("provider_id", "position", "id"):
        rows[profile.provider_id].append({
            "profile": profile,
            "status": profile_status(profile, now),
            "expiry": expiry_note(profile, now),
            "models": models.get(profile.id, []),
            "pinned_auto": pinned[profile.id].get(OverrideSource.AUTO, 0),
            "pinned_user": pinned[profile.id].get(OverrideSource.USER, 0),
        })
    board = [{"provider": provider, "aliases": [a.alias for a in provider.aliases.all()], "rows": rows[provider.id]}
             for provider in Provider.objects.prefetch_related("aliases")]
    return render(request, "console/providers.html", {"board": board, "now": now, "nav": "providers"})


# ---------------------------------------------------------------- sessions


def filter_sessions(form, now):
    queryset = Session.objects.select_related("provider", "last_profile").prefetch_related(PINS)
    if not form.is_valid():
        return queryset.none() if form.is_bound else queryset
    data = form.cleaned_data
    if data["q"]:
        queryset = queryset.filter(session_key__icontains=data["q"])
    if data["provider"]:
        queryset = queryset.filter(provider_id=data["provider"])
    if data["source"] == "none":
        queryset = queryset.filter(pins__isnull=True)
    elif data["source"]:
        queryset = queryset.filter(pk__in=Pin.objects.filter(source=data["source"]).values("session_id"))
    if data["profile"]:
        queryset = queryset.filter(Q(pk__in=Pin.objects.filter(profile_id=data["profile"]).values("session_id"))
                                   | Q(last_profile_id=data["profile"]))
    if data["unavailable"]:
        queryset = queryset.filter(pk__in=Pin.objects.filter(pinned_to_unavailable(now, "profile__"))
                                   .values("session_id"))
    return queryset


PINS = Prefetch("pins", queryset=Pin.objects.select_related("profile").order_by("provider_id"))


def pin_rows(session, now):
    """A session's pins (prefetched with their profiles), each with its profile's status."""
    return [{"pin": pin, "status": profile_status(pin.profile, now)} for pin in session.pins.all()]


@staff_required
def sessions(request):
    now = timezone.now()
    form = SessionFilterForm(request.GET or None)
    page, query = _page(request, filter_sessions(form, now), SESSIONS_PER_PAGE)
    rows = []
    for session in page:
        pins = pin_rows(session, now)
        rows.append({"session": session, "pins": pins,
                     "unavailable": any(not row["status"].available for row in pins)})
    return render(request, "console/sessions.html", {
        "form": form, "page": page, "rows": rows, "query": query, "now": now, "nav": "sessions",
        "stuck": Pin.objects.filter(pinned_to_unavailable(now, "profile__")).values("session_id").distinct().count(),
    })


def _describe(event):
    """One line saying what an event changed, from its before/after."""
    before, after = event.before or {}, event.after or {}
    if event.kind == EventKind.SESSION_RESET:
        if "session_id" in after:
            return f"session id {before.get('session_id', '?')} → {after['session_id']}"
        return f"{after.get('sessions', '?')} sessions reset ({after.get('dropped', 0)} auto pins dropped, " \
               f"{after.get('carried', 0)} user pins carried)"
    if event.kind == EventKind.OVERRIDE_SET:
        was = (before or {}).get("profile")
        now_on = (after or {}).get("profile")
        return f"{was or 'no override'} → {now_on} ({(after or {}).get('source', '')})"
    if event.kind in (EventKind.OVERRIDE_CLEARED, EventKind.OVERRIDE_DROPPED):
        return f"{(before or {}).get('profile', '?')} ({(before or {}).get('source', '')}) → no override"
    if event.kind == EventKind.OVERRIDE_CARRIED:
        return f"{(after or {}).get('profile', '?')} kept across the boundary"
    if event.kind in (EventKind.COOLDOWN_STARTED, EventKind.COOLDOWN_EXTENDED):
        return f"cooling until {after.get('cooldown_until')} (error count {after.get('error_count')})"
    if event.kind == EventKind.DISABLED and after.get("disabled_until"):
        return f"disabled until {after.get('disabled_until')}"
    if event.kind == EventKind.PROVIDER_CHANGED:
        return ", ".join(f"{key}: {before.get(key)} → {after.get(key)}" for key in after)
    if event.kind == EventKind.PROFILE_CHANGED:
        return ", ".join(f"{key}: {before.get(key)} → {after.get(key)}" for key in after)
    return ""


@staff_required
def session_detail(request, session_key):
    now = timezone.now()
    session = (Session.objects.select_related("provider", "last_profile").prefetch_related(PINS)
               .filter(session_key=session_key).first())
    if session is None:
        raise Http404("unknown session")
    events = list(Event.objects.filter(session_key=session.session_key)[:TIMELINE_LIMIT + 1])
    return render(request, "console/session_detail.html", {
        "session": session,
        "pins": pin_rows(session, now),
        "last_status": profile_status(session.last_profile, now),
        "timeline": [(e, _describe(e)) for e in events[:TIMELINE_LIMIT]],
        "truncated": len(events) > TIMELINE_LIMIT,
        "override_form": OverrideForm(provider_id=session.provider_id),
        "now": now,
        "nav": "sessions",
    })


# ---------------------------------------------------------------- audit log


def filter_events(form):
    queryset = Event.objects.order_by("-at", "-id")
    if not form.is_valid():
        return queryset.none() if form.is_bound else queryset
    data = form.cleaned_data
    if data["kind"]:
        queryset = queryset.filter(kind=data["kind"])
    if data["profile"]:
        queryset = queryset.filter(profile_id=data["profile"].strip())
    if data["session"]:
        queryset = queryset.filter(session_key=data["session"].strip())
    if data["source"] == "none":
        queryset = queryset.filter(source="")
    elif data["source"]:
        queryset = queryset.filter(source=data["source"])
    if data["actor"]:
        queryset = queryset.filter(actor__icontains=data["actor"].strip())
    if data["since"]:
        queryset = queryset.filter(at__gte=data["since"])
    if data["until"]:
        queryset = queryset.filter(at__lt=data["until"])
    return queryset


@staff_required
def events(request):
    form = EventFilterForm(request.GET or None)
    page, query = _page(request, filter_events(form), EVENTS_PER_PAGE)
    params = request.GET.copy()
    params.pop("page", None)
    return render(request, "console/events.html", {
        "form": form, "page": page, "rows": [(e, _describe(e)) for e in page], "query": query,
        "export_query": params.urlencode(), "nav": "events",
        "profile_ids": AuthProfile.objects.values_list("id", flat=True),
    })


CSV_COLUMNS = ["id", "at", "kind", "actor", "source", "session_key", "profile_id", "provider_id", "model", "reason",
               "before", "after"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    def write(self, value):
        return value


def _cell(value):
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def _csv_rows(queryset):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in queryset.iterator(chunk_size=2000):
        yield writer.writerow([
            event.id, event.at.isoformat(), event.kind, _cell(event.actor), event.source, _cell(event.session_key),
            _cell(event.profile_id), event.provider_id, _cell(event.model), _cell(event.reason),
            json.dumps(event.before, sort_keys=True), json.dumps(event.after, sort_keys=True),
        ])


@staff_required
def events_csv(request):
    form = EventFilterForm(request.GET or None)
    response = StreamingHttpResponse(_csv_rows(filter_events(form)), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="authbroker-events-{stamp}.csv"'
    return response
