"""The select decisions of DESIGN §2 as plain functions of a session's state, the ranked candidates and `now`.

Like `profiles.rules`, nothing here touches the database or the clock. The services load and lock
what a decision reads, call one of these functions, and apply the `Decision` it returns: which
profile to answer with and why, and which pin to set or remove (with the event kind to record).
The lock-free sticky path calls the same `continuing` rule with only the session's own candidate
(`partial=True`); the rule answers None when the decision needs the rest of the ranking.
"""

from dataclasses import dataclass
from datetime import datetime

from profiles import rules as profile_rules

AUTO, USER, DEFAULT = "auto", "user", "default"

# Event kinds a pin change records (profiles.models.EventKind values).
PIN_SET, PIN_CLEARED, PIN_DROPPED, PIN_CARRIED = "override_set", "override_cleared", "override_dropped", "override_carried"


@dataclass(frozen=True)
class Pin:
    """A session's pin (override) on one profile."""

    profile_id: str
    source: str  # AUTO | USER


@dataclass(frozen=True)
class SessionState:
    """What a decision reads of a session, for the provider of the request."""

    pin: Pin | None  # the pin on one of this provider's profiles, if any
    last_profile_id: str | None  # the profile it was last answered with, if one of this provider's
    last_activity_at: datetime | None = None


@dataclass(frozen=True)
class Policy:
    """The provider's settings a decision depends on."""

    strategy: str = "ordered"
    last_good_id: str | None = None
    home_id: str | None = None  # the first-in-order profile an operator left on (`profiles.rules.home_profile`)
    idle_seconds: int = 300


@dataclass(frozen=True)
class PinChange:
    """Set a pin (`profile` with `source`) or remove it (`profile` None); `kind` is the event to record."""

    kind: str
    reason: str
    profile: object = None
    source: str = ""


@dataclass(frozen=True)
class Decision:
    profile: object
    source: str  # DEFAULT | AUTO | USER
    reason: str
    cooling: bool = False
    all_unavailable: bool = False
    retry_at: datetime | None = None
    pin: PinChange | None = None


def explain(candidate):
    """Why a candidate is (un)available, for reasons and `explain`."""
    if candidate.available:
        return "available"
    if candidate.until:
        return f"{candidate.reason} until {candidate.until.isoformat()}"
    return candidate.reason


def current(state):
    """(profile id, source) a continuing session is on for this provider: its pin, else its last profile."""
    if state.pin is not None:
        return state.pin.profile_id, state.pin.source
    if state.last_profile_id is not None:
        return state.last_profile_id, DEFAULT
    return None, DEFAULT


# ---------------------------------------------------------------- choices


def default_choice(ranked, strategy):
    """The first available profile in order, else the one back soonest (`all_unavailable`)."""
    choice = profile_rules.first_choice(ranked)
    if choice.available:
        why = "least recently used available profile" if strategy == "round_robin" else "first available profile in order"
        return Decision(choice.profile, DEFAULT, why)
    return Decision(choice.profile, DEFAULT,
                    f"no profile is available; {choice.profile.id} is back soonest ({choice.reason})",
                    cooling=True, all_unavailable=True, retry_at=choice.until)


def user_choice(candidate):
    """A user pin is used even while its profile cools: the person asked for it."""
    if candidate.available:
        return Decision(candidate.profile, USER, "user override")
    return Decision(candidate.profile, USER,
                    f"user override kept although {candidate.reason} until {candidate.until.isoformat()}",
                    cooling=True)


def _usable_user_pin(state, by_id):
    """The candidate of a user pin that still applies (its profile exists and is not switched off)."""
    if state.pin is None or state.pin.source != USER:
        return None
    candidate = by_id.get(state.pin.profile_id)
    if candidate is None or (not candidate.available and candidate.until is None):
        return None  # switched off (by an operator, or expired): the pin stays, the order serves meanwhile
    return candidate


# ---------------------------------------------------------------- select


def new_session(state, ranked, strategy):
    """DESIGN §2, Select for a new session: a user pin carries, an auto pin never does."""
    pinned = _usable_user_pin(state, {c.profile.id: c for c in ranked})
    if pinned is not None:
        return user_choice(pinned)
    return default_choice(ranked, strategy)


def continuing(state, ranked, policy, now, partial=False):
    """DESIGN §2, Select for a continuing session: stick, fail over, or go home after idling.

    `partial`: `ranked` holds only the session's own candidate (the lock-free path); None means
    the decision needs the whole ranking (and a lock).
    """
    by_id = {c.profile.id: c for c in ranked}
    current_id, source = current(state)
    candidate = by_id.get(current_id)
    if candidate is None:
        return None if partial else default_choice(ranked, policy.strategy)
    if source == USER:
        pinned = _usable_user_pin(state, by_id)
        if pinned is not None:
            return user_choice(pinned)
        return None if partial else default_choice(ranked, policy.strategy)
    if candidate.available:
        if profile_rules.idle_long_enough(state.last_activity_at, now, policy.idle_seconds):
            if partial:
                return None  # idle long enough to go home, if home is back: that needs the ranking
            home = by_id.get(policy.home_id)
            if (home is not None and home.available and home.profile.id != current_id
                    and (source == AUTO or policy.strategy == "ordered")):
                reason = f"{home.profile.id} is available again and the session was idle over {policy.idle_seconds} s"
                pin = PinChange(PIN_CLEARED, reason) if source == AUTO else None
                return Decision(home.profile, DEFAULT, f"returned to {home.profile.id}: {reason}", pin=pin)
        return Decision(candidate.profile, source, "continuing session keeps its profile")
    if partial:
        return None  # its profile is out: fail over under a lock
    choice = profile_rules.failover_choice(ranked, policy.last_good_id, current_id)
    if choice is not None and choice.available:
        reason = f"failover: {current_id} {explain(candidate)}"
        return Decision(choice.profile, AUTO, reason, pin=PinChange(PIN_SET, reason, choice.profile, AUTO))
    decision = default_choice(ranked, policy.strategy)
    if source == AUTO:  # v2: a pin to a profile that is out, with nowhere to go, is worth nothing
        reason = f"every profile is unavailable; the auto pin on {current_id} ({explain(candidate)}) is dropped"
        return Decision(decision.profile, decision.source, decision.reason, decision.cooling,
                        decision.all_unavailable, decision.retry_at, pin=PinChange(PIN_DROPPED, reason))
    return decision


def moves_on_failure(state, failed_id):
    """Only a session on the failed profile moves, and never one a person pinned (DESIGN §2, Outcomes)."""
    current_id, source = current(state)
    return current_id == failed_id and source != USER


def after_failure(state, failed, outcome, ranked, last_good_id):
    """A report that `failed` (a candidate, now unavailable) failed: the pin change for the session, or None."""
    if not moves_on_failure(state, failed.profile.id):
        return None
    choice = profile_rules.failover_choice(ranked, last_good_id, failed.profile.id)
    if choice is None or not choice.available:
        return None
    return PinChange(PIN_SET, f"failover: {failed.profile.id} reported {outcome}, {explain(failed)}",
                     choice.profile, AUTO)


# ---------------------------------------------------------------- boundaries


def boundary_reason(reason, source):
    if source == AUTO:
        return f"session boundary ({reason}): auto overrides never carry over"
    return f"session boundary ({reason}): user overrides carry over"


def at_boundary(pin, reason):
    """What a session boundary does to a pin: an auto pin is dropped, a user pin carried."""
    if pin is None:
        return None
    if pin.source == AUTO:
        return PinChange(PIN_DROPPED, boundary_reason(reason, AUTO))
    return PinChange(PIN_CARRIED, boundary_reason(reason, USER), source=USER)
