"""Bearer-token authentication and scope permissions for the gateway API."""

import functools
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling

from console.api import queries
from console.models import ApiToken, hash_token

logger = logging.getLogger("authbroker.api")


class TokenPrincipal:
    """What `request.user` is for an API call: the token's name and scopes."""

    is_authenticated = True
    is_staff = False

    def __init__(self, token):
        self.token = token
        self.username = token.name

    def __str__(self):
        return self.username


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("invalid token") from None
        # Only SHA-256 hashes are stored, and the token is found by its hash. That is the
        # constant-time comparison: a timing difference in the index lookup can only reveal
        # how much of a *hash* matched, and hashes of guesses say nothing about a real token
        # (256 random bits), so no byte-by-byte comparison of the secret ever happens.
        # Fixed SQL, read afresh on every call (queries.active_token): a revoked token is refused at once.
        token = queries.active_token(hash_token(raw))
        if token is None:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        return TokenPrincipal(token), token

    def authenticate_header(self, request):
        return self.keyword


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@functools.lru_cache(maxsize=8)
def _parse_rate(rate):
    """`6000/min` -> (6000, 60): requests allowed per fixed window, and the window in seconds."""
    number, _, period = rate.partition("/")
    return int(number), _PERIODS[period[:1]]


class TokenRateThrottle(throttling.BaseThrottle):
    """Per-token request rate (`AUTHBROKER_THROTTLE_RATE`): 429 with `Retry-After` when over it.

    A fixed window: one counter per token and window in Django's cache (`cache.incr`), nothing else per
    request; the counter expires with its window. The cache is local memory per process unless CACHE_URL
    points at Redis, which shares the count across processes and instances (docs/operations.md). A window
    allows up to twice the rate across its boundary, which is fine for a guard against runaway clients.
    If the cache cannot be reached the request is let through: the throttle must not take the API down.
    """

    def allow_request(self, request, view):
        rate = settings.AUTHBROKER_THROTTLE_RATE
        token = request.auth
        if rate is None or not isinstance(token, ApiToken):
            return True  # unauthenticated requests are refused before they cost anything
        limit, seconds = _parse_rate(rate)
        now = time.time()
        window = int(now // seconds)
        key = f"authbroker:throttle:{token.pk}:{seconds}:{window}"
        try:
            count = _increment(key, seconds)
        except Exception:  # noqa: BLE001 (a cache outage must not refuse every request)
            logger.warning("throttle cache unavailable; request let through", exc_info=True)
            return True
        if count <= limit:
            return True
        self.retry_after = max(1, math.ceil((window + 1) * seconds - now))
        return False

    def wait(self):
        return self.retry_after


def _increment(key, seconds):
    """The window's count after this request: one `incr`, or an `add` for the window's first request."""
    try:
        return cache.incr(key)
    except ValueError:  # no counter yet for this window
        if cache.add(key, 1, timeout=seconds + 1):
            return 1
        return cache.incr(key)  # another process created it meanwhile


class _Scope(permissions.BasePermission):
    scope = ""
    message = "this token lacks the required scope"

    def has_permission(self, request, view):
        token = request.auth
        if not isinstance(token, ApiToken):
            return False
        if self.scope == "gateway":
            return token.has_scope("gateway") or token.has_scope("admin")
        return token.has_scope(self.scope)


class GatewayScope(_Scope):
    scope = "gateway"
    message = "this token needs the 'gateway' scope"


class AdminScope(_Scope):
    scope = "admin"
    message = "this token needs the 'admin' scope"


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "console.api.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "create_api_token NAME [--scope …]"}
