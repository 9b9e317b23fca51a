"""Liveness and readiness probes: no authentication, no session, no database for liveness."""

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from console.api.errors import error_response
from profiles.queries import clock_skew_seconds


def healthz(request):
    """The process is up and answering."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Ready to serve: the database answers. Also says how far our clock is from the database's (DESIGN §2)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        skew = clock_skew_seconds()
    except Exception:  # any failure to reach the database means not ready
        connection.close_if_unusable_or_obsolete()
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok", "clock_skew_seconds": skew})


@csrf_exempt  # a token client never has a CSRF cookie: an unknown path is a 404 whatever the method
def api_not_found(request):
    """Unknown API paths answer in the API's error format, not with an HTML page."""
    return error_response(404, "not_found", f"no such endpoint: {request.path}")
