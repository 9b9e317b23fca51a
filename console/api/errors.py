"""One error format for the whole API: {"error": {"code", "message", "fields"?}}."""

import logging

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from profiles.crypto import SecretUnreadable
from profiles.errors import ServiceError

logger = logging.getLogger("authbroker.api")

# PostgreSQL's deadlock_detected, serialization_failure and lock_not_available (DATABASE_LOCK_TIMEOUT_MS):
# transient, not an outage.
TRANSIENT_SQLSTATES = {"40P01", "40001", "55P03"}

CODES = {
    exceptions.ParseError: "malformed",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid",
}


def error_body(code, message, fields=None):
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def error_response(status_code, code, message, fields=None):
    return JsonResponse(error_body(code, message, fields), status=status_code)


def _flatten(detail):
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [str(item) if not isinstance(item, dict | list) else _flatten(item) for item in detail]
    return str(detail)


def api_exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status)
    if isinstance(exc, IntegrityError):
        logger.info("integrity conflict: %s", type(exc).__name__)
        return Response(error_body("conflict", "the request conflicts with a concurrent change; retry it"),
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DataError):
        return Response(error_body("invalid", "a value is out of range or too long"), status=400)
    if isinstance(exc, SecretUnreadable):
        logger.error("a stored secret cannot be decrypted with the configured AUTHBROKER_ENCRYPTION_KEYS")
        return Response(error_body("secret_unreadable", "a stored secret cannot be decrypted; check the keys"),
                        status=500)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("too_large", "request body is over 64 KiB"), status=413)
    if isinstance(exc, OperationalError) and getattr(exc.__cause__, "sqlstate", None) in TRANSIENT_SQLSTATES:
        # A deadlock or serialization failure: the transaction was rolled back whole; a retry is safe.
        logger.warning("transaction rolled back by the database (%s)", exc.__cause__.sqlstate)
        return Response(error_body("retry", "a concurrent change collided with this one; nothing was changed; "
                                            "retry"),
                        status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})
    if isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    ):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return Response(error_body("database_unavailable", "the database is unavailable; try again shortly"),
                        status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = CODES.get(type(exc), "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail) if isinstance(exc.detail, dict) else {"non_field_errors": _flatten(exc.detail)}
        message = "; ".join(
            f"{name}: {msgs[0] if isinstance(msgs, list) and msgs else msgs}" for name, msgs in fields.items()
        )
        response.data = error_body(code, message or "invalid input", fields)
    else:
        response.data = error_body(code, str(exc.detail) if hasattr(exc, "detail") else str(exc))
    return response
