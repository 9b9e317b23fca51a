"""Typed answers: one dataclass per answer of DESIGN §3, each built from the JSON with `from_json`.

Unknown fields are kept in `raw`, so a newer server never breaks an older client.
Answers made by the client itself while authbroker is unreachable say so:
`fail_open=True` (and `source="fail_open"` on a selection).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def ts(value):
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Candidate:
    profile: str
    available: bool
    reason: str
    until: datetime | None

    @classmethod
    def from_json(cls, data):
        return cls(data["profile"], bool(data["available"]), data.get("reason") or "", ts(data.get("until")))


@dataclass(frozen=True)
class Credential:
    """The credential a `credentials`-scope select hands out: the secret, or (for a profile imported from
    openclaw with a keyRef/tokenRef) `secret` None and `ref` ({source, provider, id}) for the gateway to
    resolve itself."""

    kind: str
    secret: str | None
    raw: dict = field(default_factory=dict, repr=False)
    ref: dict | None = None

    def __repr__(self):  # never print a secret
        return f"Credential(kind={self.kind!r}, secret=***, ref={self.ref!r})"

    @classmethod
    def from_json(cls, data):
        return cls(data.get("kind", ""), data.get("secret"), dict(data), data.get("ref"))


@dataclass(frozen=True)
class Selection:
    """Which profile to use now. `source` is default, auto, user, or fail_open (made by the client)."""

    profile: str
    source: str
    session_key: str
    session_id: str | None
    lease_id: str | None
    reason: str
    cooling: bool = False
    all_unavailable: bool = False
    retry_at: datetime | None = None
    candidates: tuple[Candidate, ...] | None = None
    credential: Credential | None = None
    fail_open: bool = False
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data):
        candidates = data.get("candidates")
        credential = data.get("credential")
        return cls(
            profile=data["profile"], source=data["source"], session_key=data["session_key"],
            session_id=data.get("session_id"), lease_id=data.get("lease_id") or None, reason=data.get("reason", ""),
            cooling=bool(data.get("cooling")), all_unavailable=bool(data.get("all_unavailable")),
            retry_at=ts(data.get("retry_at")),
            candidates=tuple(Candidate.from_json(c) for c in candidates) if candidates is not None else None,
            credential=Credential.from_json(credential) if credential else None, raw=dict(data),
        )


@dataclass(frozen=True)
class ProfileState:
    id: str
    provider: str
    name: str
    kind: str
    position: int
    enabled: bool
    available: bool
    error_count: int = 0
    cooldown_until: datetime | None = None
    cooldown_reason: str | None = None
    disabled_until: datetime | None = None
    disabled_reason: str | None = None
    last_used: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    failure_counts: dict = field(default_factory=dict)
    secret_mask: str | None = None
    expires_at: datetime | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data):
        return cls(
            id=data["id"], provider=data["provider"], name=data.get("name", ""), kind=data.get("kind", ""),
            position=int(data.get("position", 0)), enabled=bool(data.get("enabled", True)),
            available=bool(data.get("available", True)), error_count=int(data.get("error_count") or 0),
            cooldown_until=ts(data.get("cooldown_until")), cooldown_reason=data.get("cooldown_reason"),
            disabled_until=ts(data.get("disabled_until")), disabled_reason=data.get("disabled_reason"),
            last_used=ts(data.get("last_used")), last_success_at=ts(data.get("last_success_at")),
            last_failure_at=ts(data.get("last_failure_at")), failure_counts=dict(data.get("failure_counts") or {}),
            secret_mask=data.get("secret_mask"), expires_at=ts(data.get("expires_at")), raw=dict(data),
        )


@dataclass(frozen=True)
class Failover:
    profile: str
    source: str


@dataclass(frozen=True)
class ReportResult:
    """What a report did. `profile` is None when the report was buffered (fail-open): nothing is known yet."""

    profile: ProfileState | None
    failover: Failover | None
    duplicate: bool = False
    fail_open: bool = False
    buffered: bool = False
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data):
        failover = data.get("failover")
        return cls(
            profile=ProfileState.from_json(data["profile"]) if data.get("profile") else None,
            failover=Failover(failover["profile"], failover.get("source", "auto")) if failover else None,
            duplicate=bool(data.get("duplicate")), raw=dict(data),
        )


@dataclass(frozen=True)
class ResetResult:
    session_id: str | None
    carried: str | None
    dropped: str | None
    selection: Selection
    fail_open: bool = False
    buffered: bool = False
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data):
        return cls(data.get("session_id"), data.get("carried"), data.get("dropped"),
                   Selection.from_json(data["selection"]), raw=dict(data))


@dataclass(frozen=True)
class BulkResetResult:
    reset: int
    dropped: int
    carried: int
    fail_open: bool = False
    buffered: bool = False
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data):
        return cls(int(data.get("reset", 0)), int(data.get("dropped", 0)), int(data.get("carried", 0)),
                   raw=dict(data))


@dataclass(frozen=True)
class Override:
    profile: str
    source: str
    provider: str | None = None
    set_at: datetime | None = None
    set_by: str | None = None
    reason: str | None = None

    @classmethod
    def from_json(cls, data):
        return cls(data["profile"], data.get("source", ""), data.get("provider"), ts(data.get("set_at")),
                   data.get("set_by"), data.get("reason"))


@dataclass(frozen=True)
class SessionState:
    session_key: str
    session_id: str | None
    override: Override | None
    overrides: tuple[Override, ...]
    last_profile: str | None
    provider: str | None = None
    updated_at: datetime | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data):
        override = data.get("override")
        overrides = data.get("overrides")
        if overrides is None:  # a server before DESIGN v2 shows only the current provider's pin
            overrides = [override] if override else []
        return cls(
            session_key=data["session_key"], session_id=data.get("session_id"),
            override=Override.from_json(override) if override else None,
            overrides=tuple(Override.from_json(o) for o in overrides), last_profile=data.get("last_profile"),
            provider=data.get("provider"), updated_at=ts(data.get("updated_at")), raw=dict(data),
        )


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    kind: str
    actor: str
    reason: str
    source: str | None
    session_key: str | None
    profile: str | None
    provider: str | None
    model: str | None
    before: Any
    after: Any

    @classmethod
    def from_json(cls, data):
        return cls(
            id=data["id"], at=ts(data["at"]), kind=data["kind"], actor=data.get("actor", ""),
            reason=data.get("reason", ""), source=data.get("source") or None,
            session_key=data.get("session_key") or None, profile=data.get("profile") or None,
            provider=data.get("provider") or None, model=data.get("model") or None, before=data.get("before"),
            after=data.get("after"),
        )


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest first; `next_cursor` fetches the next (older) page."""

    events: tuple[Event, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data):
        return cls(tuple(Event.from_json(e) for e in data.get("results", [])), _cursor(data.get("next")))


def _cursor(url):
    if not url:
        return None
    from urllib.parse import parse_qs, urlsplit

    return (parse_qs(urlsplit(url).query).get("cursor") or [None])[0]


@dataclass(frozen=True)
class ProviderSnapshot:
    id: str
    strategy: str
    last_good: str | None
    profiles: tuple[ProfileState, ...]
    aliases: tuple[str, ...] = ()
    track_failures: bool = True
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data):
        return cls(data["id"], data.get("strategy", "ordered"), data.get("last_good"),
                   tuple(ProfileState.from_json(p) for p in data.get("profiles", [])),
                   tuple(data.get("aliases") or ()), bool(data.get("track_failures", True)), raw=dict(data))
