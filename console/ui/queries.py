"""The console's own reads: which sessions are on a profile that is out, a profile's history, the charts.

Reads only; the rules they mirror live in `profiles.rules` (availability) and are held to it by the tests.
"""

from collections import defaultdict
from datetime import timedelta

from django.db.models import Case, CharField, Count, Q, Value, When
from django.db.models.functions import StrIndex, Substr, TruncHour, TruncMinute

from console.ui.display import pinned_to_unavailable
from profiles.models import Event, EventKind
from sessions_app.models import Session


def on_unavailable(now):
    """Sessions whose pin or whose last selected profile is out at `now` (switched off, cooling or disabled)."""
    return pinned_to_unavailable(now) | pinned_to_unavailable(now, prefix="last_profile__")


def unavailable_counts(now):
    """{"pinned": n, "last": n, "total": n}: sessions pinned to a profile that is out, sessions whose last selected
    profile is out (pinned or not), and sessions with either."""
    return Session.objects.aggregate(
        pinned=Count("id", filter=pinned_to_unavailable(now)),
        last=Count("id", filter=pinned_to_unavailable(now, prefix="last_profile__")),
        total=Count("id", filter=on_unavailable(now)),
    )


def sessions_per_profile():
    """{profile id: {"auto": n, "user": n, "last": n}}: pins by source, and sessions whose last selection it was."""
    counts = defaultdict(lambda: {"auto": 0, "user": 0, "last": 0})
    for row in (Session.objects.filter(override_profile__isnull=False)
                .values("override_profile_id", "override_source").annotate(n=Count("id"))):
        counts[row["override_profile_id"]][row["override_source"]] = row["n"]
    for row in Session.objects.filter(last_profile__isnull=False).values("last_profile_id").annotate(n=Count("id")):
        counts[row["last_profile_id"]]["last"] = row["n"]
    return counts


def sessions_on_profile(profile_id):
    """Sessions pinned to the profile or last given it, most recently active first."""
    return (Session.objects.filter(Q(override_profile_id=profile_id) | Q(last_profile_id=profile_id))
            .select_related("override_profile", "last_profile").order_by("-last_activity_at", "-id"))


def last_switch_off(profile_id):
    """The operator's `disabled` event that switched the profile off (who, when, why), or None."""
    return (Event.objects.filter(profile_id=profile_id, kind=EventKind.DISABLED, source="operator")
            .order_by("-id").first())


def profile_timeline(profile_id, limit):
    return list(Event.objects.filter(profile_id=profile_id).order_by("-id")[:limit])


# ---------------------------------------------------------------- charts over time

# (window name, its length, the bucket the database truncates to, buckets folded into one bar)
WINDOWS = {
    "hour": (timedelta(hours=1), TruncMinute, timedelta(minutes=5)),
    "day": (timedelta(days=1), TruncHour, timedelta(hours=1)),
    "week": (timedelta(days=7), TruncHour, timedelta(hours=6)),
}
CHART_KINDS = (EventKind.OVERRIDE_SET, EventKind.COOLDOWN_STARTED, EventKind.DISABLED)
FAILOVER_PREFIX = "failover: "  # how the services word a failover pin's reason: "failover: <profile> <why>"
_after_prefix = Substr("reason", len(FAILOVER_PREFIX) + 1)
FAILED_PROFILE = Case(
    When(kind=EventKind.OVERRIDE_SET, source="auto", reason__startswith=FAILOVER_PREFIX,
         then=Substr(_after_prefix, 1, StrIndex(_after_prefix, Value(" ")) - 1)),
    default=Value(""), output_field=CharField(),
)


def chart_rows(since, trunc):
    """Event counts since `since` grouped by (bucket, kind, source, profile, failed profile, outcome).

    One scan of the window through the (kind, at) index. A failover is an `auto` override_set whose reason
    names the profile the session left, the one that caused it. A failure report that took a profile out
    (cooldown_started, disabled by the gateway) names its outcome in the window's reason.
    """
    return (Event.objects.filter(at__gte=since, kind__in=CHART_KINDS)
            .annotate(bucket=trunc("at"), failed_profile=FAILED_PROFILE)
            .values("bucket", "kind", "source", "profile_id", "failed_profile", "after__cooldown_reason",
                    "after__disabled_reason")
            .annotate(n=Count("id"))
            .order_by())
