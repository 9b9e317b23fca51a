"""The console's own reads: which sessions are on a profile that is out, a profile's history, the charts.

Reads only; the rules they mirror live in `profiles.rules` (availability) and are held to it by the tests.
"""

from collections import defaultdict
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Case, CharField, Count, Prefetch, Q, Value, When
from django.db.models.functions import (
    ExtractHour,
    ExtractMinute,
    StrIndex,
    Substr,
    TruncDate,
    TruncHour,
)

from console.models import ChartCount, ChartHour
from profiles.models import Event, EventKind
from profiles.queries import unavailable_q
from sessions_app.models import Pin, Session


def _pinned_out(now):
    """Sessions with a pin (on any provider) to a profile that is out at `now`."""
    return Q(pk__in=Pin.objects.filter(unavailable_q(now, prefix="profile__")).values("session_id"))


def on_unavailable(now):
    """Sessions one of whose pins, or whose last selected profile, is out at `now` (switched off, expired,
    cooling or disabled)."""
    return _pinned_out(now) | unavailable_q(now, prefix="last_profile__")


def unavailable_counts(now):
    """{"pinned": n, "last": n, "total": n}: sessions pinned to a profile that is out, sessions whose last selected
    profile is out (pinned or not), and sessions with either."""
    return Session.objects.aggregate(
        pinned=Count("id", filter=_pinned_out(now)),
        last=Count("id", filter=unavailable_q(now, prefix="last_profile__")),
        total=Count("id", filter=on_unavailable(now)),
    )


def sessions_per_profile():
    """{profile id: {"auto": n, "user": n, "last": n}}: pins by source, and sessions whose last selection it was."""
    counts = defaultdict(lambda: {"auto": 0, "user": 0, "last": 0})
    for row in Pin.objects.values("profile_id", "source").annotate(n=Count("id")).order_by():
        counts[row["profile_id"]][row["source"]] = row["n"]
    for row in Session.objects.filter(last_profile__isnull=False).values("last_profile_id").annotate(n=Count("id")):
        counts[row["last_profile_id"]]["last"] = row["n"]
    return counts


def sessions_on_profile(profile_id):
    """Sessions pinned to the profile or last given it, most recently active first."""
    pinned = Pin.objects.filter(profile_id=profile_id).values("session_id")
    return (Session.objects.filter(Q(pk__in=pinned) | Q(last_profile_id=profile_id))
            .select_related("last_profile")
            .prefetch_related(Prefetch("pins", queryset=Pin.objects.select_related("profile").order_by("provider_id")))
            .order_by("-last_activity_at", "-id"))


def last_switch_off(profile_id):
    """The operator's `disabled` event that switched the profile off (who, when, why), or None."""
    return (Event.objects.filter(profile_id=profile_id, kind=EventKind.DISABLED, source="operator")
            .order_by("-id").first())


def profile_timeline(profile_id, limit):
    return list(Event.objects.filter(profile_id=profile_id).order_by("-id")[:limit])


# ---------------------------------------------------------------- charts over time

# window name -> (its length, one bar's length, the database's bucket: a truncation plus, inside it, a part
# of an hour or day divided into bars). Bars are folded in the database, so a week is 28 groups, not 168.
WINDOWS = {
    "hour": (timedelta(hours=1), timedelta(minutes=5), TruncHour, ExtractMinute, 5),
    "day": (timedelta(days=1), timedelta(hours=1), TruncHour, None, 1),
    "week": (timedelta(days=7), timedelta(hours=6), TruncDate, ExtractHour, 6),
}
CHART_KINDS = (EventKind.OVERRIDE_SET, EventKind.COOLDOWN_STARTED, EventKind.DISABLED)
FAILOVER_PREFIX = "failover: "  # how the services word a failover pin's reason: "failover: <profile> <why>"
_after_prefix = Substr("reason", len(FAILOVER_PREFIX) + 1)
# The profile a row counts against: for a failover the one the session left, otherwise the event's own.
SUBJECT = Case(
    When(kind=EventKind.OVERRIDE_SET, source="auto", reason__startswith=FAILOVER_PREFIX,
         then=Substr(_after_prefix, 1, StrIndex(_after_prefix, Value(" ")) - 1)),
    When(kind=EventKind.OVERRIDE_SET, then=Value("")),
    default="profile_id", output_field=CharField(),
)
# A failure report that took a profile out words the window's reason "<outcome>" or "<outcome>: <detail>".
OUTCOME_KINDS = (EventKind.COOLDOWN_STARTED, EventKind.DISABLED)
OUTCOME = Case(
    When(reason__contains=":", then=Substr("reason", 1, StrIndex("reason", Value(":")) - 1)),
    default="reason", output_field=CharField(),
)


def _buckets(window):
    _, _, trunc, part, size = WINDOWS[window]
    fields = {"bucket": trunc("at")}
    if part:
        fields["part"] = part("at") / Value(size)
    return fields


def _grouped(events, buckets):
    """The two grouped scans of chart events, with `buckets` (annotations) among the group keys:

    - by the profile counted against (`subject`) and source: for a failover (an `auto` override_set) the
      profile the session left, named first in its reason; otherwise the event's own profile;
    - by outcome, for the failure reports that took a profile out (cooldown_started, and disabled by the
      gateway): named first in the window's reason.
    """
    keys = ["kind", "source", *buckets]
    events = events.filter(kind__in=CHART_KINDS).annotate(**buckets)
    by_subject = events.annotate(subject=SUBJECT).values(*keys, "subject").annotate(n=Count("id")).order_by()
    by_outcome = (events.filter(kind__in=OUTCOME_KINDS).annotate(outcome=OUTCOME).values(*keys, "outcome")
                  .annotate(n=Count("id")).order_by())
    return list(by_subject), list(by_outcome)


# An hour is rolled up once it closed this long ago: an instance whose clock lags a little may still date an
# event in the hour just closed.
ROLLUP_GRACE = timedelta(minutes=5)


def _hour(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def closed_hour(now):
    """The start of the first hour not yet final at `now` (hours before it closed over ROLLUP_GRACE ago)."""
    return _hour(now - ROLLUP_GRACE)


def roll_up(start, end, now):
    """Make sure every closed hour in [start, end) has its counts in `ChartCount` (one grouped scan of the
    hours still missing, written with a marker per hour); concurrent callers wait for each other."""
    hours, hour = [], _hour(start)
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    if not hours or not set(hours) - set(ChartHour.objects.filter(hour__in=hours).values_list("hour", flat=True)):
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('authbroker.chart_rollup'))")
        missing = sorted(set(hours) - set(ChartHour.objects.filter(hour__in=hours).values_list("hour", flat=True)))
        if not missing:
            return
        by_subject, by_outcome = _grouped(Event.objects.filter(at__gte=missing[0], at__lt=missing[-1] + timedelta(hours=1)),
                                          {"bucket": TruncHour("at")})
        wanted = set(missing)
        ChartHour.objects.bulk_create([ChartHour(hour=h, rolled_at=now) for h in missing])
        ChartCount.objects.bulk_create(
            [ChartCount(hour_id=row["bucket"], axis="subject", kind=row["kind"], source=row["source"],
                        label=row["subject"] or "", n=row["n"]) for row in by_subject if row["bucket"] in wanted]
            + [ChartCount(hour_id=row["bucket"], axis="outcome", kind=row["kind"], source=row["source"],
                          label=row["outcome"] or "", n=row["n"]) for row in by_outcome if row["bucket"] in wanted])


def chart_rows(since, window, now=None):
    """Chart event counts since `since` per bar (`bucket`, with `part` inside it) and kind: rows by subject
    and rows by outcome (`_grouped`).

    The hour window reads the events themselves (a few thousand rows at most). A day or a week reads the
    closed hours from their rollup (`roll_up`, computed once per hour) and only the open hour from the events,
    so its cost does not grow with the number of events (docs/performance.md, "The console's charts").
    """
    if window == "hour" or now is None:
        return _grouped(Event.objects.filter(at__gte=since), _buckets(window))
    closed = max(closed_hour(now), since)
    roll_up(since, closed, now)
    by_subject, by_outcome = _grouped(Event.objects.filter(at__gte=closed), _buckets(window))
    counts = (ChartCount.objects.filter(hour__gte=since, hour__lt=closed).order_by()
              .values_list("hour_id", "axis", "kind", "source", "label", "n"))
    for hour, axis, kind, source, label, n in counts:
        row = {"kind": kind, "source": source, "bucket": hour, "n": n}
        if axis == "subject":
            by_subject.append({**row, "subject": label})
        else:
            by_outcome.append({**row, "outcome": label})
    return by_subject, by_outcome
