"""How the console shows state: a profile's status for people, built on the same rules the decisions use."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from profiles import rules


@dataclass(frozen=True)
class Status:
    state: str  # "available" | "cooling" | "disabled" | "off"
    label: str
    reason: str = ""
    until: datetime | None = None

    @property
    def available(self):
        return self.state == "available"


def human_time(value):
    """An ISO timestamp from an event's before/after as people read it (`2026-05-04 10:11:12 UTC`); other values
    unchanged."""
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value


def profile_status(profile, now):
    """Why `profile` can or cannot be used at `now`, judged by `rules.unavailability` itself."""
    if profile is None:
        return None
    reason, until = rules.unavailability(profile, now)
    if reason is None:
        return Status("available", "available")
    if reason == "operator_disabled":
        return Status("off", "switched off", "by an operator")
    if reason == "expired":
        return Status("off", "expired", f"since {profile.expires_at:%Y-%m-%d %H:%M} UTC: write a new secret or expiry")
    lane, _, why = reason.partition(":")
    if lane == "disabled":
        return Status("disabled", "disabled", why, until)
    return Status("cooling", "cooling", why, until)


# How far ahead the board warns that a key or token is about to expire.
EXPIRY_WARNING = timedelta(days=7)


@dataclass(frozen=True)
class Expiry:
    at: datetime
    state: str  # "expired" | "soon" | "later" | "shown" (an OAuth access token's, refreshed by the gateway)

    @property
    def warning(self):
        return self.state in ("expired", "soon")


def expiry_note(profile, now):
    """What the board says of a profile's `expires_at`, warning a week ahead; None without one."""
    if profile.expires_at is None:
        return None
    if profile.kind not in rules.EXPIRING_KINDS:
        return Expiry(profile.expires_at, "shown")
    if rules.expired(profile, now):
        return Expiry(profile.expires_at, "expired")
    return Expiry(profile.expires_at, "soon" if profile.expires_at - now <= EXPIRY_WARNING else "later")


def model_cooldown_status(pair, now):
    if pair.cooldown_until and pair.cooldown_until > now:
        return Status("cooling", "cooling", pair.cooldown_reason or "unknown", pair.cooldown_until)
    return Status("available", "available")
