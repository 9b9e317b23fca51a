"""Writing the audit log: every state change records its events in its own transaction.

The layers above hear about them through `events_written` (the console counts and
logs them once the transaction commits), so nothing here imports them.
"""

from django.dispatch import Signal

from profiles.models import Event

SYSTEM = "system"

# Sent inside the transaction that wrote them, with `events` (a list of Event). A receiver that must
# only act on committed changes defers itself with `transaction.on_commit`.
events_written = Signal()


def new_event(kind, now, actor, before=None, after=None, reason="", **fields):
    """An unsaved event; free text is cut to its column so a long detail can never fail the change it records."""
    return Event(kind=kind, at=now, actor=(actor or SYSTEM)[:150], reason=(reason or "")[:500],
                 before=before or {}, after=after or {}, **fields)


def write_events(events):
    """Write the audit rows of one state change, in its transaction, and announce them."""
    if events:
        Event.objects.bulk_create(events)
        announce(events)


def announce(events):
    """Tell the layers above about events written (by `write_events`, or by a set-based statement)."""
    if events:
        events_written.send(sender=Event, events=list(events))
