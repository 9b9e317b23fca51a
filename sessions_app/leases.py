"""Lease ids: signed, so `select` hands them out without writing a row.

A lease id binds one selection (profile and session key) to the time it was
issued, and carries the session key itself, so a report may present the
lease without repeating the key (DESIGN §2, Outcomes v2). A report proves it
holds a lease by presenting the id with the same profile (and, if it names
one, the same session key); the first report claims it (a `Lease` row keyed
by the id's short form, without the key), later ones are recognised as
duplicates.

Form: `<payload>.<session key, base64url>.<signature>`; the signature covers
payload, profile and session key. Ids of the first form, `<payload>.<signature>`,
are still accepted with their session key.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.utils.crypto import constant_time_compare

from profiles.errors import Conflict, Invalid

# A 255-character session key of 4-byte characters, base64url: 1360; payload and signature: under 60.
MAX_LENGTH = 1500
SALT = "authbroker.lease"


@dataclass(frozen=True)
class LeaseClaim:
    lease_id: str  # the short form `<payload>.<signature>`: what a `Lease` row is keyed by
    issued_at: datetime
    session_key: str  # the session the lease was issued for


@lru_cache(maxsize=4)
def _key(secret):
    """The HMAC key `salted_hmac(SALT, …, algorithm="sha256")` derives from SECRET_KEY, derived once."""
    return hashlib.sha256((SALT + secret).encode()).digest()


def _signature(payload, profile_id, session_key):
    message = f"{payload}|{profile_id}|{session_key}".encode()
    return hmac.new(_key(settings.SECRET_KEY), message, hashlib.sha256).hexdigest()[:24]


def _encode(session_key):
    return base64.urlsafe_b64encode(session_key.encode()).decode().rstrip("=")


def _decode(text):
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def issue(profile_id, session_key, now):
    payload = f"{secrets.token_hex(8)}{int(now.timestamp()):x}"
    return f"{payload}.{_encode(session_key)}.{_signature(payload, profile_id, session_key)}"


def verify(lease_id, profile_id, session_key=None):
    """The claim a well-formed lease id makes, or Invalid when it was not issued for this profile and session.

    Without `session_key`, the session is the one the lease carries; with it, it must be that one.
    """
    invalid = Invalid(
        "lease_id was not issued for this profile and session_key",
        {"lease_id": ["not issued for this profile and session_key"]},
    )
    if not isinstance(lease_id, str) or len(lease_id) > MAX_LENGTH or lease_id.count(".") not in (1, 2):
        raise invalid
    parts = lease_id.split(".")
    payload, signature = parts[0], parts[-1]
    carried = _decode(parts[1]) if len(parts) == 3 else None
    if len(parts) == 3 and (carried is None or _encode(carried) != parts[1]):
        raise invalid
    if session_key is not None and carried is not None and session_key != carried:
        raise invalid
    key = session_key if session_key is not None else (carried or "")
    if len(payload) < 17 or not constant_time_compare(signature, _signature(payload, profile_id, key)):
        raise invalid
    try:
        issued_at = datetime.fromtimestamp(int(payload[16:], 16), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise invalid from None
    return LeaseClaim(f"{payload}.{signature}", issued_at, key)


def ensure_fresh(claim, now):
    ttl = timedelta(seconds=settings.AUTHBROKER_LEASE_TTL_SECONDS)
    if now - claim.issued_at > ttl:
        raise Conflict(
            f"lease expired: leases must be reported within {settings.AUTHBROKER_LEASE_TTL_SECONDS} s",
            {"lease_id": ["expired"]},
            code="lease_expired",
        )
