"""The console's charts over a day or a week read closed hours from their rollup, and count the same."""

import random
from datetime import timedelta

import pytest

from console.models import ChartCount, ChartHour
from console.ui import charts, queries
from profiles.events import new_event, write_events
from profiles.models import EventKind
from profiles.queries import purge_events
from tests.conftest import T0

PROFILES = ["anthropic:default", "anthropic:backup1", "openai:work"]


def seed_events(rng, count, until):
    """Chart events (failovers, pins by a person, cooldowns, disablements) spread over the week before `until`."""
    events = []
    for _ in range(count):
        at = until - timedelta(seconds=rng.randrange(7 * 24 * 3600))
        profile = rng.choice(PROFILES)
        kind = rng.choice(["failover", "user_pin", "cooldown", "disabled", "operator_off"])
        if kind == "failover":
            events.append(new_event(EventKind.OVERRIDE_SET, at, "token:gw", source="auto", profile_id=rng.choice(PROFILES),
                                    reason=f"failover: {profile} cooldown:rate_limit until later"))
        elif kind == "user_pin":
            events.append(new_event(EventKind.OVERRIDE_SET, at, "operator:a", source="user", profile_id=profile))
        elif kind == "cooldown":
            events.append(new_event(EventKind.COOLDOWN_STARTED, at, "token:gw", profile_id=profile,
                                    reason=rng.choice(["rate_limit", "timeout: 504 from upstream"])))
        elif kind == "disabled":
            events.append(new_event(EventKind.DISABLED, at, "token:gw", profile_id=profile, reason="billing"))
        else:
            events.append(new_event(EventKind.DISABLED, at, "operator:a", source="operator", profile_id=profile,
                                    reason="switched off"))
    write_events(events)


def counted(rows):
    return sorted((r["kind"], r["source"], r.get("subject", r.get("outcome")), r["n"]) for r in rows)


@pytest.mark.parametrize("window", ["day", "week"])
def test_it_draws_the_same_charts_from_the_rollup_as_from_the_events(db, clock, monkeypatch, window):
    """Every bar of every chart: from the events alone, on the first view (which rolls up), and on the next."""
    now = T0 + timedelta(minutes=17)
    seed_events(random.Random(7), 600, now)
    clock.move_to(now)
    rolled_first = charts.build(now, window)
    assert ChartHour.objects.exists() and ChartCount.objects.exists()
    rolled_again = charts.build(now, window)
    with monkeypatch.context() as patch:  # the same page with every row read from the events
        events_only = queries.chart_rows
        patch.setattr(queries, "chart_rows", lambda since, window_, now_=None: events_only(since, window_))
        from_events = charts.build(now, window)
    assert sum(c["total"] for c in from_events["charts"]) > 0
    assert rolled_first == rolled_again == from_events


def test_it_reads_closed_hours_from_the_rollup_not_the_events(db, clock):
    """Once an hour is rolled up the week's chart no longer reads its events: deleting them changes nothing there,
    while the open hour is still read live."""
    now = T0 + timedelta(minutes=30)
    seed_events(random.Random(3), 300, now - timedelta(hours=1))
    clock.move_to(now)
    before = charts.build(now, "week")
    assert purge_events(now - timedelta(minutes=90)) > 0
    assert charts.build(now, "week") == before
    write_events([new_event(EventKind.COOLDOWN_STARTED, now, "token:gw", profile_id="anthropic:default",
                            reason="rate_limit")])
    cooldowns = next(c for c in charts.build(now, "week")["charts"] if c["key"] == "cooldowns")
    assert cooldowns["total"] == next(c for c in before["charts"] if c["key"] == "cooldowns")["total"] + 1


def test_it_leaves_the_hour_just_closed_to_the_events_for_a_grace(db, clock):
    """A lagging instance may still date an event in the hour that just closed: that hour is not rolled up yet."""
    now = T0.replace(minute=2)
    clock.move_to(now)
    charts.build(now, "day")
    assert not ChartHour.objects.filter(hour=now.replace(minute=0) - timedelta(hours=1)).exists()
    write_events([new_event(EventKind.COOLDOWN_STARTED, now - timedelta(minutes=3), "token:gw",
                            profile_id="anthropic:default", reason="rate_limit")])
    cooldowns = next(c for c in charts.build(now, "day")["charts"] if c["key"] == "cooldowns")
    assert cooldowns["total"] == 1


def test_it_rolls_up_the_closed_hours_on_schedule(db, clock):
    """The scheduled rollup counts every closed hour of the week, so the first view of a week reads no old events."""
    from console.tasks import roll_up_charts

    now = T0 + timedelta(minutes=40)
    seed_events(random.Random(5), 200, now - timedelta(hours=1))
    clock.move_to(now)
    roll_up_charts(now)
    assert ChartHour.objects.count() == 7 * 24
    rolled = charts.build(now, "week")
    assert purge_events(now - timedelta(hours=1)) > 0  # the closed hours' events gone: the charts do not change
    assert charts.build(now, "week") == rolled
