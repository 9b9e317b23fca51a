"""Charts of what happened over time, from the audit log: the same picture on every instance.

The counts come from `queries.chart_rows` (one grouped scan of the window); this module folds them into
buckets and lays out stacked bars as SVG geometry, so the page needs no charting library.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from console.ui import queries
from profiles.models import EventKind

STEP_NAMES = {"hour": "5 minutes", "day": "an hour", "week": "6 hours"}
PALETTE = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6", "#ec4899", "#84cc16", "#64748b"]
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 600, 200, 34, 22, 8


@dataclass
class Chart:
    title: str
    key: str
    note: str = ""
    series: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))  # label -> bucket -> n

    def total(self):
        return sum(sum(b.values()) for b in self.series.values())


def window_start(now, window):
    """The first bar's start: bars are aligned to their length (in UTC), the last one holds `now`."""
    length, step, *_ = queries.WINDOWS[window]
    epoch = now.timestamp()
    last = epoch - epoch % step.total_seconds()
    count = int(length / step)
    return datetime.fromtimestamp(last, tz=UTC) - step * (count - 1), step, count


def _index(row, start, step, window):
    """Which bar a grouped row belongs to."""
    bucket = row["bucket"]
    if not isinstance(bucket, datetime):  # a date (the week's bars)
        bucket = datetime(bucket.year, bucket.month, bucket.day, tzinfo=UTC)
    part = row.get("part")
    if part is not None:
        bucket += step * int(part)
    return int((bucket - start) / step)


def build(now, window):
    start, step, count = window_start(now, window)
    failovers = Chart("Failovers, by the profile that failed", "failovers",
                      "a session moved off the profile by failover (an auto pin set)")
    cooldowns = Chart("Cooldowns started, by profile", "cooldowns", "whole-profile and per-model cooldowns")
    outcomes = Chart("Failure reports that took a profile out, by outcome", "outcomes",
                     "reports that started a cooldown or a disablement")
    pins = Chart("Pins set, by source", "pins", "auto: set by failover; user: set by a person")
    per_profile = defaultdict(lambda: {"failovers": 0, "cooldowns": 0, "disabled": 0})
    by_subject, by_outcome = queries.chart_rows(start, window)
    for row in by_subject:
        index = _index(row, start, step, window)
        if not 0 <= index < count:
            continue
        n, subject = row["n"], row["subject"]
        if row["kind"] == EventKind.OVERRIDE_SET:
            pins.series[row["source"] or "unknown"][index] += n
            if row["source"] == "auto" and subject:
                failovers.series[subject][index] += n
                per_profile[subject]["failovers"] += n
        elif row["kind"] == EventKind.COOLDOWN_STARTED:
            cooldowns.series[subject][index] += n
            per_profile[subject]["cooldowns"] += n
        elif row["kind"] == EventKind.DISABLED and row["source"] != "operator":
            per_profile[subject]["disabled"] += n
    for row in by_outcome:
        index = _index(row, start, step, window)
        if 0 <= index < count and row["source"] != "operator":
            outcomes.series[row["outcome"] or "unknown"][index] += row["n"]
    ticks = [start + step * i for i in range(count)]
    charts = [_layout(chart, ticks, window) for chart in (failovers, cooldowns, outcomes, pins)]
    table = sorted(per_profile.items(), key=lambda item: (-item[1]["failovers"], item[0]))
    return {"charts": charts, "per_profile": table, "start": start, "step": STEP_NAMES[window]}


def _layout(chart, ticks, window):
    """Stacked bars: for each bucket, one rect per series, in a fixed series order (largest total first)."""
    labels = sorted(chart.series, key=lambda label: (-sum(chart.series[label].values()), label))
    colours = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    heights = [sum(chart.series[label].get(i, 0) for label in labels) for i in range(len(ticks))]
    peak = max(heights + [1])
    scale = _nice(peak)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    slot = plot_w / len(ticks)
    bars = []
    for i, tick in enumerate(ticks):
        y = TOP + plot_h
        for label in labels:
            n = chart.series[label].get(i, 0)
            if not n:
                continue
            h = plot_h * n / scale
            y -= h
            bars.append({"x": round(LEFT + i * slot + slot * 0.12, 1), "y": round(y, 1), "w": round(slot * 0.76, 1),
                         "h": round(h, 1), "colour": colours[label], "title": f"{label}: {n} at {_tick(tick, window)}"})
    every = max(len(ticks) // 6, 1)
    xlabels = [{"x": round(LEFT + i * slot + slot / 2, 1), "text": _tick(tick, window)}
               for i, tick in enumerate(ticks) if i % every == 0]
    grid = [{"y": round(TOP + plot_h - plot_h * f, 1), "value": round(scale * f)} for f in (0, 0.5, 1)]
    return {"title": chart.title, "key": chart.key, "note": chart.note, "total": chart.total(), "bars": bars,
            "legend": [(label, colours[label], sum(chart.series[label].values())) for label in labels],
            "xlabels": xlabels, "grid": grid, "width": WIDTH, "height": HEIGHT, "left": LEFT,
            "baseline": TOP + plot_h, "label_y": HEIGHT - 6}


def _nice(peak):
    """The axis top: the peak rounded up to 2, 4 or 10 times a power of ten, so the midline is a whole number."""
    magnitude = 1
    while True:
        for factor in (2, 4, 10):
            if peak <= factor * magnitude:
                return factor * magnitude
        magnitude *= 10


def _tick(moment, window):
    return moment.strftime("%a %H:%M" if window == "week" else "%H:%M")
