"""What the client does alone while authbroker is unreachable (DESIGN §8).

- `CircuitBreaker`: after `threshold` failed calls in a row, calls stop going out for `cooldown`
  seconds (they answer from the fail-open path at once); then one call is let through as a probe,
  and its result closes or reopens the circuit.
- `FailOpenState`: what the client remembers to answer on its own: each session's last profile
  per provider, a snapshot of the providers (GET /api/providers), the windows it saw itself (from
  report answers, and from the reports it buffered), and the bounded buffer of writes (reports,
  resets) to replay in order once authbroker answers again.

Everything here is in memory and thread-safe; none of it does I/O.
"""

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from authbroker_client.types import Failover, ProfileState, ProviderSnapshot, Selection

DEFAULT_LADDER = (60, 300, 1500, 3600)
COOLDOWN_LANE = frozenset({"rate_limit", "timeout", "unknown", "model_not_found", "auth"})
RECORDED_ONLY = frozenset({"overloaded", "server_error", "format"})
MODEL_SCOPED = frozenset({"rate_limit", "model_not_found"})
BILLING_BASE = timedelta(hours=5)
BILLING_CAP = timedelta(hours=24)
AUTH_BASE = timedelta(minutes=30)
AUTH_CAP = timedelta(hours=6)
AUTH_THRESHOLD = 3
MAX_HINT = timedelta(hours=24)


class CircuitBreaker:
    """closed → (threshold failures) → open → (cooldown) → half-open: one probe → closed or open."""

    def __init__(self, threshold=1, cooldown=5.0, monotonic=time.monotonic):
        self.threshold = max(1, int(threshold))
        self.cooldown = float(cooldown)
        self.monotonic = monotonic
        self.state = "closed"
        self.failures = 0
        self.opened_at = None
        self.opened_count = 0  # how many times it opened (for metrics and tests)
        self._lock = threading.Lock()

    def allow(self):
        """May a call go out now? In half-open, exactly one caller (the probe) gets True."""
        with self._lock:
            if self.state == "closed":
                return True
            if self.state == "open" and self.monotonic() - self.opened_at >= self.cooldown:
                self.state = "half_open"
                return True
            return False

    def success(self):
        with self._lock:
            self.state, self.failures, self.opened_at = "closed", 0, None

    def failure(self):
        with self._lock:
            self.failures += 1
            if self.state == "half_open" or self.failures >= self.threshold:
                if self.state != "open":
                    self.opened_count += 1
                self.state, self.opened_at = "open", self.monotonic()

    def release(self):
        """A probe that ended without telling anything (an error of our own): let the next call probe."""
        with self._lock:
            if self.state == "half_open":
                self.state, self.opened_at = "open", self.monotonic() - self.cooldown


@dataclass
class PendingWrite:
    """One buffered write: replayed later in the order it was made."""

    kind: str  # "report", "reset" or "bulk_reset"
    method: str
    path: str
    body: dict
    made_at: datetime
    session_key: str | None = None
    result: object = None
    error: object = None
    done: bool = False


@dataclass
class _Window:
    until: datetime
    reason: str


@dataclass
class _Seen:
    """What the client saw of one profile by itself (reports it made or buffered)."""

    failures: int = 0
    auth_failures: int = 0
    billing_failures: int = 0
    cooldown: _Window | None = None
    disabled: _Window | None = None
    model_cooldowns: dict = field(default_factory=dict)


def provider_of(profile_id):
    return profile_id.split(":", 1)[0].strip().lower()


class FailOpenState:
    def __init__(self, buffer_size=1000, max_sessions=100_000, now=None):
        self.buffer_size = int(buffer_size)
        self.max_sessions = int(max_sessions)
        self.now = now or (lambda: datetime.now(UTC))
        self.buffer = deque()
        self.dropped_writes = 0
        self.replay_errors = deque(maxlen=100)
        self.snapshot = {}  # provider id -> ProviderSnapshot
        self.snapshot_at = None  # monotonic time of the last refresh
        self.aliases = {}
        self._sessions = OrderedDict()  # session_key -> {provider: (profile, source)}, least recent first
        self._seen = {}  # profile id -> _Seen
        self._lock = threading.RLock()

    # ------------------------------------------------------------ what authbroker told us

    def remember_providers(self, providers, at):
        with self._lock:
            self.snapshot = {p.id: p for p in providers}
            self.aliases = {alias: p.id for p in providers for alias in p.aliases}
            self.snapshot_at = at

    def remember_selection(self, selection, provider):
        if selection.fail_open:
            return
        self._pin(selection.session_key, self.resolve(provider), selection.profile, selection.source)

    def remember_report(self, result, session_key):
        """A real report answer: the profile's state replaces the snapshot's; a failover moves the session."""
        if result.profile is None:
            return
        state = result.profile
        with self._lock:
            self._seen.pop(state.id, None)  # authbroker's word replaces our own estimate
            provider = self.snapshot.get(state.provider)
            if provider is not None:
                profiles = tuple(state if p.id == state.id else p for p in provider.profiles)
                self.snapshot[state.provider] = ProviderSnapshot(
                    provider.id, provider.strategy, provider.last_good, profiles, provider.aliases,
                    provider.track_failures, provider.raw)
            if session_key and result.failover is not None:
                self._pin(session_key, state.provider, result.failover.profile, result.failover.source)

    def remember_reset(self, session_key, provider, selection):
        with self._lock:
            self._drop_auto(session_key)
        self.remember_selection(selection, provider)

    def remember_bulk_reset(self, session_keys):
        with self._lock:
            for key in list(session_keys) if session_keys is not None else list(self._sessions):
                self._drop_auto(key)

    def resolve(self, provider):
        provider = (provider or "").strip().lower()
        return self.aliases.get(provider, provider)

    def _pin(self, session_key, provider, profile, source):
        with self._lock:
            self._sessions.setdefault(session_key, {})[provider] = (profile, source)
            self._sessions.move_to_end(session_key)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)

    def _drop_auto(self, session_key):
        self.drop_pins(session_key, keep_user=True)

    def drop_pins(self, session_key, provider=None, keep_user=False):
        """Forget a session's profile for `provider` (every provider by default); `keep_user` spares user pins."""
        with self._lock:
            pins = self._sessions.get(session_key)
            if not pins:
                return
            for name in [p for p in pins if provider is None or p == self.resolve(provider)]:
                if not (keep_user and pins[name][1] == "user"):
                    del pins[name]
            if not pins:
                del self._sessions[session_key]

    def last_profile(self, session_key, provider):
        with self._lock:
            return self._sessions.get(session_key, {}).get(self.resolve(provider))

    # ------------------------------------------------------------ what we saw ourselves

    def observe(self, profile, outcome, model=None, retry_after_seconds=None):
        """Estimate, as authbroker would, the window a report we could not deliver starts (DESIGN §2)."""
        now = self.now()
        provider = self.snapshot.get(provider_of(profile))
        if outcome in RECORDED_ONLY or (provider is not None and not provider.track_failures):
            return
        with self._lock:
            seen = self._seen.setdefault(profile, _Seen())
            if outcome == "success":
                self._seen[profile] = _Seen()
                return
            hint = timedelta(seconds=min(float(retry_after_seconds), MAX_HINT.total_seconds())) \
                if retry_after_seconds is not None else timedelta(0)
            if outcome == "billing":
                seen.billing_failures += 1
                length = min(BILLING_BASE * 2 ** (seen.billing_failures - 1), BILLING_CAP)
                seen.disabled = _Window(now + length, "billing")
                return
            if outcome == "auth":
                seen.auth_failures += 1
            if outcome == "auth_permanent" or (outcome == "auth" and seen.auth_failures >= AUTH_THRESHOLD):
                seen.disabled = _Window(now + AUTH_BASE, outcome)
                return
            if outcome in MODEL_SCOPED and model:
                current = seen.model_cooldowns.get(model)
                if current is None or current.until <= now:
                    ladder = tuple(provider.raw.get("cooldown_ladder_seconds") or DEFAULT_LADDER) \
                        if provider else DEFAULT_LADDER
                    seen.model_cooldowns[model] = _Window(now + max(timedelta(seconds=ladder[0]), hint), outcome)
                elif now + hint > current.until:
                    current.until = now + hint
                return
            cooling = seen.cooldown is not None and seen.cooldown.until > now
            if cooling:
                if now + hint > seen.cooldown.until:
                    seen.cooldown.until = now + hint
                return
            seen.failures += 1
            ladder = tuple(provider.raw.get("cooldown_ladder_seconds") or DEFAULT_LADDER) \
                if provider else DEFAULT_LADDER
            step = timedelta(seconds=ladder[min(seen.failures, len(ladder)) - 1])
            seen.cooldown = _Window(now + max(step, hint), outcome)

    def unavailable_until(self, profile, model=None, now=None):
        """When `profile` is available again as far as the client knows (None: available now)."""
        now = now or self.now()
        ends = []
        with self._lock:
            state = self._snapshot_profile(profile)
            if state is not None:
                if not state.enabled:
                    return datetime.max.replace(tzinfo=UTC)
                if state.expires_at is not None and state.kind != "oauth" and state.expires_at <= now:
                    return datetime.max.replace(tzinfo=UTC)
                ends += [t for t in (state.cooldown_until, state.disabled_until) if t is not None and t > now]
            seen = self._seen.get(profile)
            if seen is not None:
                windows = [seen.cooldown, seen.disabled]
                if model:
                    windows.append(seen.model_cooldowns.get(model))
                ends += [w.until for w in windows if w is not None and w.until > now]
        return max(ends) if ends else None

    def _snapshot_profile(self, profile):
        provider = self.snapshot.get(provider_of(profile))
        if provider is None:
            return None
        return next((p for p in provider.profiles if p.id == profile), None)

    # ------------------------------------------------------------ answering alone

    def select(self, session_key, provider, model=None, new_session=False):
        """A selection made without authbroker, or None when the client knows nothing to answer with."""
        provider = self.resolve(provider)
        now = self.now()
        with self._lock:
            if new_session:
                self._drop_auto(session_key)
            kept = self._sessions.get(session_key, {}).get(provider)
            if kept is not None:
                profile, source = kept
                until = self.unavailable_until(profile, model, now)
                if until is None or source == "user":
                    self._pin(session_key, provider, profile, source)
                    return _selection(session_key, profile, "authbroker unreachable: kept the session's profile",
                                      cooling=until is not None)
            ranked = self._rank(provider, model, now)
            if not ranked:
                return None
            profile, until = ranked[0]
            self._pin(session_key, provider, profile, "fail_open")
            if until is None:
                return _selection(session_key, profile, "authbroker unreachable: first available in the snapshot")
            return _selection(session_key, profile, "authbroker unreachable: every profile is out; soonest back",
                              all_unavailable=True, retry_at=until if until.year < 9999 else None)

    def _rank(self, provider, model, now):
        snapshot = self.snapshot.get(provider)
        if snapshot is None:
            return []
        profiles = list(snapshot.profiles)
        if snapshot.strategy == "round_robin":
            oldest = datetime.min.replace(tzinfo=UTC)
            profiles.sort(key=lambda p: (p.last_used or oldest, p.position, p.id))
        else:
            profiles.sort(key=lambda p: (p.position, p.id))
        scored = [(p.id, self.unavailable_until(p.id, model, now)) for p in profiles]
        available = [(p, u) for p, u in scored if u is None]
        unavailable = sorted([(p, u) for p, u in scored if u is not None], key=lambda item: item[1])
        return available + unavailable

    def fail_over(self, session_key, profile, outcome, model=None):
        """After a failure we could not deliver: move the session off `profile` as authbroker would."""
        if outcome == "success" or outcome in RECORDED_ONLY:
            return None
        provider = provider_of(profile)
        with self._lock:
            kept = self._sessions.get(session_key, {}).get(provider)
            if kept is None or kept[0] != profile or kept[1] == "user":
                return None
            now = self.now()
            for candidate, until in self._rank(provider, model, now):
                if until is None and candidate != profile:
                    self._pin(session_key, provider, candidate, "fail_open")
                    return Failover(candidate, "auto")
            self.drop_pins(session_key, provider)
            return None

    # ------------------------------------------------------------ the buffer

    def enqueue(self, write):
        with self._lock:
            self.buffer.append(write)
            while len(self.buffer) > self.buffer_size:
                dropped = self.buffer.popleft()
                dropped.error, dropped.done = "dropped: buffer full", True
                self.dropped_writes += 1
        return write


def _selection(session_key, profile, reason, cooling=False, all_unavailable=False, retry_at=None):
    return Selection(profile=profile, source="fail_open", session_key=session_key, session_id=None, lease_id=None,
                     reason=reason, cooling=cooling, all_unavailable=all_unavailable, retry_at=retry_at,
                     fail_open=True)


__all__ = ["CircuitBreaker", "FailOpenState", "PendingWrite", "ProfileState", "provider_of"]
