"""The operator console's pages: providers board, a profile, sessions, a session's timeline, the audit log.

Pages only read. Every change is an action in `console.ui.actions`, which calls
the same service functions as the API.
"""

import csv
import json
from collections import defaultdict

from django.core.paginator import Paginator
from django.db.models import Prefetch, Q
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from console.ui import charts, queries
from console.ui.decorators import staff_required
from console.ui.display import expiry_note, human_time, model_cooldown_status, profile_status
from console.ui.forms import EventFilterForm, OverrideForm, SessionFilterForm
from profiles.models import AuthProfile, Event, EventKind, ModelCooldown, Provider
from sessions_app.models import Pin, Session

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
    on_profile = queries.sessions_per_profile()
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
            "sessions": on_profile.get(profile.id, {"auto": 0, "user": 0, "last": 0}),
        })
    board = [{"provider": provider, "aliases": [a.alias for a in provider.aliases.all()], "rows": rows[provider.id]}
             for provider in Provider.objects.prefetch_related("aliases")]
    return render(request, "console/providers.html", {
        "board": board, "now": now, "nav": "providers", "out": queries.unavailable_counts(now),
    })


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
        queryset = queryset.filter(queries.on_unavailable(now))
    return queryset


PINS = Prefetch("pins", queryset=Pin.objects.select_related("profile").order_by("provider_id"))


def pin_rows(session, now):
    """A session's pins (prefetched with their profiles), each with its profile's status."""
    return [{"pin": pin, "status": profile_status(pin.profile, now)} for pin in session.pins.all()]


def session_row(session, now):
    """A session as the lists show it: its pins with their status, its last selection's, and which is out."""
    pins = pin_rows(session, now)
    return {"session": session, "pins": pins, "pin_out": any(not row["status"].available for row in pins),
            "last_status": profile_status(session.last_profile, now)}


@staff_required
def sessions(request):
    now = timezone.now()
    form = SessionFilterForm(request.GET or None)
    page, query = _page(request, filter_sessions(form, now), SESSIONS_PER_PAGE)
    rows = [session_row(s, now) for s in page]
    return render(request, "console/sessions.html", {
        "form": form, "page": page, "rows": rows, "query": query, "now": now, "nav": "sessions",
        "out": queries.unavailable_counts(now),
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
        return f"cooling until {human_time(after.get('cooldown_until'))} (error count {after.get('error_count')})"
    if event.kind == EventKind.DISABLED and after.get("disabled_until"):
        return f"disabled until {human_time(after.get('disabled_until'))}"
    if event.kind in (EventKind.PROVIDER_CHANGED, EventKind.PROFILE_CHANGED):
        return ", ".join(f"{key}: {human_time(before.get(key))} → {human_time(after.get(key))}" for key in after)
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


# ---------------------------------------------------------------- a profile


@staff_required
def profile_detail(request, profile_id):
    now = timezone.now()
    profile = AuthProfile.objects.select_related("provider").filter(pk=profile_id).first()
    if profile is None:
        raise Http404("unknown profile")
    events = queries.profile_timeline(profile.id, TIMELINE_LIMIT + 1)
    sessions = queries.sessions_on_profile(profile.id)
    shown = list(sessions[:SESSIONS_PER_PAGE])
    return render(request, "console/profile.html", {
        "profile": profile,
        "status": profile_status(profile, now),
        "models": [(pair, model_cooldown_status(pair, now)) for pair in profile.model_cooldowns.all()],
        "switched_off": None if profile.enabled else queries.last_switch_off(profile.id),
        "sessions": [session_row(s, now) for s in shown],
        "sessions_total": len(shown) if len(shown) < SESSIONS_PER_PAGE else sessions.count(),
        "timeline": [(e, _describe(e)) for e in events[:TIMELINE_LIMIT]],
        "truncated": len(events) > TIMELINE_LIMIT,
        "is_last_good": profile.provider.last_good_id == profile.id,
        "now": now,
        "nav": "providers",
    })


# ---------------------------------------------------------------- over time


@staff_required
def over_time(request):
    window = request.GET.get("window", "hour")
    if window not in queries.WINDOWS:
        return render(request, "console/charts.html", {
            "error": f"Unknown window {window[:20]!r}: choose hour, day or week.", "windows": list(queries.WINDOWS),
            "window": "hour", "nav": "charts",
        }, status=400)
    now = timezone.now()
    return render(request, "console/charts.html", {
        **charts.build(now, window), "window": window, "windows": list(queries.WINDOWS), "now": now, "nav": "charts",
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
