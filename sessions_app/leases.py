"""Lease ids: signed, so `select` hands them out without writing a row.

A lease id binds one selection (profile and session key) to the time it was
issued. A report proves it holds a lease by presenting the id with the same
profile and session key; the first report claims it (a `Lease` row keyed by
the id), later ones are recognised as duplicates.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.utils.crypto import constant_time_compare

from profiles.errors import Conflict, Invalid

SALT = "authbroker.lease"


@dataclass(frozen=True)
class LeaseClaim:
    lease_id: str
    issued_at: datetime


@lru_cache(maxsize=4)
def _key(secret):
    """The HMAC key `salted_hmac(SALT, …, algorithm="sha256")` derives from SECRET_KEY, derived once."""
    return hashlib.sha256((SALT + secret).encode()).digest()


def _signature(payload, profile_id, session_key):
    message = f"{payload}|{profile_id}|{session_key}".encode()
    return hmac.new(_key(settings.SECRET_KEY), message, hashlib.sha256).hexdigest()[:24]


def issue(profile_id, session_key, now):
    payload = f"{secrets.token_hex(8)}{int(now.timestamp()):x}"
    return f"{payload}.{_signature(payload, profile_id, session_key)}"


def verify(lease_id, profile_id, session_key):
    """The claim a well-formed lease id makes, or Invalid when it was not issued for this profile and session."""
    invalid = Invalid(
        "lease_id was not issued for this profile and session_key",
        {"lease_id": ["not issued for this profile and session_key"]},
    )
    if not isinstance(lease_id, str) or len(lease_id) > 64 or lease_id.count(".") != 1:
        raise invalid
    payload, signature = lease_id.split(".")
    if len(payload) < 17 or not constant_time_compare(signature, _signature(payload, profile_id, session_key or "")):
        raise invalid
    try:
        issued_at = datetime.fromtimestamp(int(payload[16:], 16), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise invalid from None
    return LeaseClaim(lease_id, issued_at)


def ensure_fresh(claim, now):
    ttl = timedelta(seconds=settings.AUTHBROKER_LEASE_TTL_SECONDS)
    if now - claim.issued_at > ttl:
        raise Conflict(
            f"lease expired: leases must be reported within {settings.AUTHBROKER_LEASE_TTL_SECONDS} s",
            {"lease_id": ["expired"]},
            code="lease_expired",
        )
