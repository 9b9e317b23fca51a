"""The rules of DESIGN §2 as plain functions of their inputs and `now`.

Nothing here touches the database or the clock: callers read `now` once per
request or task (`django.utils.timezone.now()`) and pass it down, so every rule
can be tested by handing it a time.
"""

from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum

AUTH_DISABLE_THRESHOLD = 3
COUNTS_FORGOTTEN_AFTER = timedelta(hours=24)
MAX_RETRY_HINT = timedelta(hours=24)
BILLING_BASE, BILLING_CAP = timedelta(hours=5), timedelta(hours=24)
AUTH_BASE, AUTH_CAP = timedelta(minutes=30), timedelta(hours=6)


# ---------------------------------------------------------------- outcome lanes


class Lane(StrEnum):
    SUCCESS = "success"  # forgets every failure
    COOLDOWN = "cooldown"  # a window from the provider's ladder
    DISABLED = "disabled"  # a longer window, doubling per consecutive failure of its family
    RECORDED = "recorded"  # not the credential's fault: counted, never held against it


@dataclass(frozen=True)
class OutcomeRule:
    """What one reported outcome does (DESIGN §2, Outcomes).

    `model_scoped`: with a model, it cools only that (profile, model) pair.
    `disables_at`: a cooldown-lane outcome whose n-th consecutive report disables instead.
    `disable`: (family, base, cap) of the disablement; outcomes of one family share its doubling.
    """

    lane: Lane
    model_scoped: bool = False
    disables_at: int | None = None
    disable: tuple | None = None


_AUTH_DISABLE = ("auth", AUTH_BASE, AUTH_CAP)
_BILLING_DISABLE = ("billing", BILLING_BASE, BILLING_CAP)

# One entry per outcome value, in the order the API lists them.
OUTCOME_RULES = {
    "success": OutcomeRule(Lane.SUCCESS),
    "rate_limit": OutcomeRule(Lane.COOLDOWN, model_scoped=True),
    "overloaded": OutcomeRule(Lane.RECORDED),
    "server_error": OutcomeRule(Lane.RECORDED),
    "timeout": OutcomeRule(Lane.COOLDOWN),
    "format": OutcomeRule(Lane.RECORDED),
    "unknown": OutcomeRule(Lane.COOLDOWN),
    "model_not_found": OutcomeRule(Lane.COOLDOWN, model_scoped=True),
    "auth": OutcomeRule(Lane.COOLDOWN, disables_at=AUTH_DISABLE_THRESHOLD, disable=_AUTH_DISABLE),
    "auth_permanent": OutcomeRule(Lane.DISABLED, disable=_AUTH_DISABLE),
    "billing": OutcomeRule(Lane.DISABLED, disable=_BILLING_DISABLE),
}
OUTCOMES = tuple(OUTCOME_RULES)


def lane(outcome):
    return OUTCOME_RULES[outcome].lane


def model_scoped(outcome):
    return OUTCOME_RULES[outcome].model_scoped


# ---------------------------------------------------------------- availability


@dataclass(frozen=True)
class Candidate:
    """One profile as ranked for a decision: why it is (un)available and until when."""

    profile: object
    available: bool
    reason: str
    until: object = None  # datetime when it becomes available; None if available or never (switched off)


# Kinds whose `expires_at` is the credential's own end. An OAuth `expires_at` is its access token's,
# which the gateway refreshes: shown, never used to rank.
EXPIRING_KINDS = frozenset({"api_key", "token"})


def expired(profile, now):
    """An API key or token past its `expires_at` is out until an operator writes a new secret or expiry."""
    return profile.kind in EXPIRING_KINDS and profile.expires_at is not None and profile.expires_at <= now


def switched_off(profile, now):
    """Out with no end in sight: switched off by an operator, or expired. Ranked last, never chosen."""
    return not profile.enabled or expired(profile, now)


def unavailability(profile, now, model_cooldown=None):
    """(reason, until) why `profile` cannot be used at `now`, or (None, None) when it can.

    Windows that ended are simply over: expiry is judged here, by time, so a
    late scheduler never changes a decision. `until` is when every window
    has ended; an operator switch or an expired credential has no end (`until` None).
    """
    if not profile.enabled:
        return "operator_disabled", None
    if expired(profile, now):
        return "expired", None
    reasons = []
    if profile.disabled_until and profile.disabled_until > now:
        reasons.append((f"disabled:{profile.disabled_reason or 'unknown'}", profile.disabled_until))
    if profile.cooldown_until and profile.cooldown_until > now:
        reasons.append((f"cooldown:{profile.cooldown_reason or 'unknown'}", profile.cooldown_until))
    if model_cooldown is not None and model_cooldown.cooldown_until and model_cooldown.cooldown_until > now:
        reasons.append((f"model_cooldown:{model_cooldown.cooldown_reason or 'unknown'}", model_cooldown.cooldown_until))
    if not reasons:
        return None, None
    return reasons[0][0], max(until for _, until in reasons)


def is_available(profile, now, model_cooldown=None):
    return unavailability(profile, now, model_cooldown)[0] is None


def rank(profiles, now, strategy="ordered", model_cooldowns=None):
    """Rank a provider's profiles for a decision.

    Available profiles first: by explicit position (`ordered`) or least
    recently used first (`round_robin`). Then those that will come back,
    soonest first; profiles an operator switched off come last.
    """
    model_cooldowns = model_cooldowns or {}
    available, waiting, switched_off = [], [], []
    for profile in profiles:
        reason, until = unavailability(profile, now, model_cooldowns.get(profile.id))
        if reason is None:
            available.append(Candidate(profile, True, "available"))
        elif until is None:
            switched_off.append(Candidate(profile, False, reason))
        else:
            waiting.append(Candidate(profile, False, reason, until))

    def by_position(c):
        return (c.profile.position, c.profile.id)

    if strategy == "round_robin":
        available.sort(key=lambda c: (c.profile.last_used is not None, c.profile.last_used or now, *by_position(c)))
    else:
        available.sort(key=by_position)
    waiting.sort(key=lambda c: (c.until, *by_position(c)))
    switched_off.sort(key=by_position)
    return available + waiting + switched_off


def first_choice(ranked):
    """The profile for a new session: first available, else the soonest back; None if none can be."""
    for candidate in ranked:
        if candidate.available or candidate.until is not None:
            return candidate
    return None


def failover_choice(ranked, last_good_id, leaving_id):
    """Where a continuing session goes when its profile fails: `last_good` first if available, then order."""
    usable = [c for c in ranked if c.profile.id != leaving_id]
    for candidate in usable:
        if candidate.available and candidate.profile.id == last_good_id:
            return candidate
    return first_choice(usable)


def home_profile(profiles, now):
    """The first-in-order profile that is not switched off (`switched_off`): where sessions belong."""
    enabled = sorted((p for p in profiles if not switched_off(p, now)), key=lambda p: (p.position, p.id))
    return enabled[0] if enabled else None


def idle_long_enough(last_activity_at, now, idle_seconds):
    """A session idle longer than the cache window may move without losing a warm prompt cache."""
    return last_activity_at is None or (now - last_activity_at).total_seconds() > idle_seconds


def legacy_override_source(source, compaction_count):
    """Read a pin of unknown provenance the way openclaw does: a compaction stamp means `auto`."""
    if source in ("auto", "user"):
        return source
    return "auto" if compaction_count is not None else "user"


# ---------------------------------------------------------------- outcomes


@dataclass
class Stats:
    """The failure-tracking part of a profile (or of a profile/model pair)."""

    error_count: int = 0
    failure_counts: dict = field(default_factory=dict)
    cooldown_until: object = None
    cooldown_reason: str = ""
    disabled_until: object = None
    disabled_reason: str = ""
    last_failure_at: object = None

    FIELDS = (
        "error_count",
        "failure_counts",
        "cooldown_until",
        "cooldown_reason",
        "disabled_until",
        "disabled_reason",
        "last_failure_at",
    )

    @classmethod
    def of(cls, obj):
        """Read the fields `obj` has (a model-scoped cooldown has no disablement)."""
        return cls(**{name: getattr(obj, name) for name in cls.FIELDS if hasattr(obj, name)})

    def write_to(self, obj):
        """Copy the fields back; returns their names for `save(update_fields=...)`."""
        names = [name for name in self.FIELDS if hasattr(obj, name)]
        for name in names:
            setattr(obj, name, getattr(self, name))
        return names

    def cooling(self, now):
        return bool(self.cooldown_until and self.cooldown_until > now)

    def disabled(self, now):
        return bool(self.disabled_until and self.disabled_until > now)


@dataclass(frozen=True)
class Effect:
    """What an outcome does: the new stats and the event kind to record (None: nothing to record)."""

    stats: Stats
    event: str | None


def forget_stale_counts(stats, now):
    """Counts start afresh after 24 h with no failure."""
    if stats.last_failure_at and now - stats.last_failure_at >= COUNTS_FORGOTTEN_AFTER:
        return replace(stats, error_count=0, failure_counts={})
    return stats


def ladder_step(ladder, error_count):
    """Cooldown length for the n-th consecutive failure; the last rung is the cap."""
    index = min(max(error_count, 1), len(ladder)) - 1
    return timedelta(seconds=ladder[index])


def doubling(base, cap, n):
    return min(base * (2 ** max(n - 1, 0)), cap)


def clamp_hint(retry_after_seconds):
    if retry_after_seconds is None:
        return timedelta(0)
    return min(timedelta(seconds=retry_after_seconds), MAX_RETRY_HINT)


def success_stats(stats):
    """A success forgets every failure: counts to zero, windows cleared."""
    return Stats(last_failure_at=stats.last_failure_at)


def _disablements(counts, family):
    """How many consecutive disablements of `family` the counts amount to (each outcome from its threshold on)."""
    return sum(
        max(counts.get(outcome, 0) - (rule.disables_at or 1) + 1, 0)
        for outcome, rule in OUTCOME_RULES.items()
        if rule.disable is not None and rule.disable[0] == family
    )


def _disables(rule, counts, outcome, out_of_service):
    if rule.lane == Lane.DISABLED:
        return True
    # a threshold outcome in flight while the profile is out of service does not count toward disabling it
    return rule.disables_at is not None and not out_of_service and counts.get(outcome, 0) + 1 >= rule.disables_at


def apply_failure(stats, outcome, now, ladder, retry_after_seconds=None):
    """Apply one failure report to `stats` at `now` (DESIGN §2, Outcomes), by the outcome's lane.

    A recorded-only outcome is counted and dated, nothing else. A failure while the profile is already
    out of service does not escalate: requests in flight when the window began fail too. Only a later
    `retry_after_seconds` hint may move a running cooldown later.
    """
    rule = OUTCOME_RULES[outcome]
    stats = forget_stale_counts(stats, now)
    counts = dict(stats.failure_counts)

    if rule.lane == Lane.RECORDED:
        counts[outcome] = counts.get(outcome, 0) + 1
        return Effect(replace(stats, failure_counts=counts, last_failure_at=now), None)

    hint = clamp_hint(retry_after_seconds)
    out_of_service = stats.cooling(now) or stats.disabled(now)

    if _disables(rule, counts, outcome, out_of_service):
        if stats.disabled(now):
            return Effect(replace(stats, last_failure_at=now), None)
        counts[outcome] = counts.get(outcome, 0) + 1
        family, base, cap = rule.disable
        new = replace(
            stats,
            error_count=stats.error_count + 1,
            failure_counts=counts,
            disabled_until=now + doubling(base, cap, _disablements(counts, family)),
            disabled_reason=outcome,
            last_failure_at=now,
        )
        return Effect(new, "disabled")

    if out_of_service:
        later = now + hint
        if retry_after_seconds is not None and stats.cooling(now) and later > stats.cooldown_until:
            return Effect(replace(stats, cooldown_until=later, last_failure_at=now), "cooldown_extended")
        return Effect(replace(stats, last_failure_at=now), None)

    counts[outcome] = counts.get(outcome, 0) + 1
    error_count = stats.error_count + 1
    deadline = now + max(ladder_step(ladder, error_count), hint)
    new = replace(
        stats,
        error_count=error_count,
        failure_counts=counts,
        cooldown_until=deadline,
        cooldown_reason=outcome,
        last_failure_at=now,
    )
    return Effect(new, "cooldown_started")


def snapshot(stats):
    """JSON-ready view of stats for an event's before/after."""
    out = {}
    for name in Stats.FIELDS:
        value = getattr(stats, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return out
