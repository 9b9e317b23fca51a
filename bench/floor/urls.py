from django.db import connection
from django.http import JsonResponse
from django.urls import path


def session_row(request):
    """GET /floor?id=N: one primary-key SELECT through a cursor, the row as JSON (404 when absent)."""
    try:
        pk = int(request.GET["id"])
    except (KeyError, ValueError):
        return JsonResponse({"error": "id"}, status=400)
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_key, last_profile_id, last_activity_at FROM sessions_app_session "
                       "WHERE id = %s", [pk])
        row = cursor.fetchone()
    if row is None:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse({"session_key": row[0], "profile": row[1], "last_activity_at": row[2].isoformat()})


urlpatterns = [path("floor", session_row)]
