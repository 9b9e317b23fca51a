"""Guards in front of the API that must act before any view runs."""

from django.conf import settings
from django.db import InterfaceError, OperationalError

from console.api.errors import error_response


class ApiGuardMiddleware:
    """Refuse oversized bodies with 413 and answer 503 when the database is gone, as JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        is_api = request.path.startswith("/api/")
        if is_api:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return error_response(400, "malformed", "Content-Length is not a number")
            if length > settings.AUTHBROKER_MAX_BODY_BYTES:
                return error_response(413, "too_large", "request body is over 64 KiB")
        try:
            return self.get_response(request)
        except (OperationalError, InterfaceError):
            if not is_api:
                raise
            return error_response(503, "database_unavailable", "the database is unavailable; try again shortly")
