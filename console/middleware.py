"""Guards in front of the API that must act before any view runs."""

import io

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponseBadRequest

from console.api.errors import error_response


def _raw_path(request):
    """The path as the client sent it, still percent-encoded, where the server tells us (gunicorn: RAW_URI,
    uWSGI and others: REQUEST_URI); None where it does not."""
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    return raw.split("?", 1)[0] if raw else None


class ApiGuardMiddleware:
    """Refuse what no view should see (a NUL byte in the path, an encoded '/' that would re-route an id,
    oversized bodies), read chunked bodies, and answer 503 when the database is gone, as JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        is_api = request.path.startswith("/api/")
        if "\x00" in request.path:  # PostgreSQL cannot even compare such a string: refuse it at the door
            if is_api:
                return error_response(400, "malformed", "the path contains a NUL byte")
            return HttpResponseBadRequest("The path contains a NUL byte.", content_type="text/plain")
        if is_api:
            raw = _raw_path(request)
            if raw is not None and "%2f" in raw.lower():
                # Decoded, `x%2Fevents` would reach another view (`x` + `/events`); no id contains '/'.
                return error_response(400, "malformed", "an encoded '/' (%2F) is not allowed in a path: "
                                                        "session keys and profile ids never contain '/'")
            refused = self._read_chunked(request)
            if refused is not None:
                return refused
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

    @staticmethod
    def _read_chunked(request):
        """A body sent with `Transfer-Encoding: chunked` has no Content-Length, so Django would read it as
        empty. Read it (at most the size limit) where the server de-chunks and marks the end of the input
        (`wsgi.input_terminated`, as gunicorn does), else refuse it with 411."""
        if "chunked" not in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return None
        if not request.META.get("wsgi.input_terminated"):
            return error_response(411, "length_required", "send the body with a Content-Length")
        limit = settings.AUTHBROKER_MAX_BODY_BYTES
        body = request.META["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            return error_response(413, "too_large", "request body is over 64 KiB")
        request.META["CONTENT_LENGTH"] = str(len(body))
        request._stream = io.BytesIO(body)  # what HttpRequest.read() and request.body read from
        return None
