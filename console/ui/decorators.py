"""Access to the console: staff only."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied


def staff_required(view):
    """Anonymous visitors go to the login page; a logged-in user who is not staff gets 403."""

    @wraps(view)
    def check(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("the console is for staff")
        return view(request, *args, **kwargs)

    return login_required(check)


def operator(request):
    """The actor every console action records: `operator:<username>` (cut to the column's 150 characters)."""
    return f"operator:{request.user.get_username()}"[:150]
