"""Bearer-token authentication and scope permissions for the gateway API."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling

from console.models import ApiToken, hash_token


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
        # No ORDER BY (a unique lookup) and only the columns a request reads: this runs on every call.
        token = next(iter(
            ApiToken.objects.filter(token_hash=hash_token(raw), revoked_at__isnull=True)
            .only("id", "name", "scopes").order_by()[:1]
        ), None)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        return TokenPrincipal(token), token

    def authenticate_header(self, request):
        return self.keyword


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """Per-token request rate (`AUTHBROKER_THROTTLE_RATE`): 429 with `Retry-After` when over it.

    Counted in the process's cache (local memory unless CACHES says otherwise), so
    with N processes a token may make up to N times the rate; see docs/operations.md.
    """

    scope = "token"

    def get_rate(self):
        return settings.AUTHBROKER_THROTTLE_RATE

    def get_cache_key(self, request, view):
        token = request.auth
        if not isinstance(token, ApiToken):
            return None  # unauthenticated requests are refused before they cost anything
        return self.cache_format % {"scope": self.scope, "ident": token.pk}


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
