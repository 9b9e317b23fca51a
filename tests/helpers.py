"""Small helpers that keep the tests about behaviour rather than plumbing."""

from profiles.models import Event


def select(client, session_key="agent:main:telegram:dm:42", provider="anthropic", **extra):
    response = client.post("/api/select", {"session_key": session_key, "provider": provider, **extra}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def report(client, profile, outcome, expect=200, **extra):
    response = client.post("/api/report", {"profile": profile, "outcome": outcome, **extra}, format="json")
    assert response.status_code == expect, response.content
    return response.json()


def reset(client, session_key="agent:main:telegram:dm:42", provider="anthropic", **extra):
    response = client.post(f"/api/sessions/{session_key}/reset", {"provider": provider, **extra}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def kinds(**filters):
    return list(Event.objects.filter(**filters).order_by("id").values_list("kind", flat=True))


def statements(captured):
    """The SQL a request ran, without the savepoints the test's own transaction adds around atomic blocks."""
    return [q["sql"] for q in captured if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


def pin_of(session_key="agent:main:telegram:dm:42", provider="anthropic"):
    """The session's pin on `provider` (a Pin row), or None."""
    from sessions_app.models import Pin

    return Pin.objects.filter(session__session_key=session_key, provider_id=provider).first()


def pinned(session_key="agent:main:telegram:dm:42", provider="anthropic"):
    """(profile id, source) of the session's pin on `provider`, or None."""
    pin = pin_of(session_key, provider)
    return (pin.profile_id, pin.source) if pin else None
