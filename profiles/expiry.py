"""Scheduled tidying of usage stats: windows that ended are cleared and recorded, once.

Selection never waits for this: `profiles.rules` judges every window by time
at each read (DESIGN §2). These functions only make state match time and
write the `cooldown_expired` / `disable_expired` events an operator reads in
the audit log, so a late or stopped scheduler changes no decision.

A worker's clock may run ahead of the web servers' (DESIGN §2, v2). So the job
never trusts its own clock alone: it takes the earlier of its clock and the
database's as the time of the run (events are never dated in the future), and
it only clears windows that ended more than `AUTHBROKER_EXPIRY_GRACE_SECONDS`
(default 60) before that, so a web server whose clock is behind the database's
by less than the grace never sees a window end early.

Each row is claimed with a compare-and-swap update: the UPDATE names the
values this run read, and a count other than 1 means another run (or a
report, or an operator) changed the row first, so this run skips it. Two
workers running at the same moment therefore record each expiry once.
"""

from dataclasses import asdict, dataclass, replace
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from profiles import rules
from profiles.events import SYSTEM, new_event, write_events
from profiles.models import AuthProfile, EventKind, ModelCooldown
from profiles.queries import database_now

# The fields a claim compares: every report and operator action that touches
# a window or the counts changes at least one of them.
PROFILE_CLAIM_FIELDS = ("cooldown_until", "disabled_until", "last_failure_at", "error_count")
PAIR_CLAIM_FIELDS = ("cooldown_until", "last_failure_at", "error_count")


@dataclass
class ExpiryCounts:
    cooldowns_expired: int = 0
    disables_expired: int = 0
    model_cooldowns_expired: int = 0
    counts_forgotten: int = 0

    def as_dict(self):
        return asdict(self)


def expire_cooldowns(now):
    """Clear every window that ended a grace period before the run, one event per expiry; returns the counts.

    `now` is the worker's clock; the run's time is the earlier of it and the database's clock.
    Counts survive a window's expiry (a failed first request afterwards
    escalates); they are zeroed only once the last failure is
    `rules.COUNTS_FORGOTTEN_AFTER` old, which the rules already treat as zero.
    """
    counts = ExpiryCounts()
    db_now = database_now()
    now = min(now, db_now) if db_now is not None else now
    ended_by = now - timedelta(seconds=settings.AUTHBROKER_EXPIRY_GRACE_SECONDS)
    stale_before = now - rules.COUNTS_FORGOTTEN_AFTER
    has_counts = Q(error_count__gt=0) | ~Q(failure_counts={})

    due_profiles = AuthProfile.objects.filter(
        Q(cooldown_until__lte=ended_by) | Q(disabled_until__lte=ended_by)
        | (Q(last_failure_at__lte=stale_before) & has_counts)
    ).order_by("pk")
    for profile in due_profiles.iterator():
        _tidy_profile(profile, now, ended_by, counts)

    due_pairs = ModelCooldown.objects.filter(
        Q(cooldown_until__lte=ended_by) | Q(last_failure_at__lte=stale_before, error_count__gt=0)
    ).select_related("profile").order_by("pk")
    for pair in due_pairs.iterator():
        _tidy_pair(pair, now, ended_by, counts)
    return counts


def _ended(until, now):
    return until is not None and until <= now


def _tidy_profile(profile, now, ended_by, counts):
    before = rules.Stats.of(profile)
    after = replace(rules.forget_stale_counts(before, now))  # a copy: `before` stays as read
    cooldown_ended = _ended(before.cooldown_until, ended_by)
    disable_ended = _ended(before.disabled_until, ended_by)
    if cooldown_ended:
        after.cooldown_until, after.cooldown_reason = None, ""
    if disable_ended:
        after.disabled_until, after.disabled_reason = None, ""
    if after == before:
        return
    changes = {name: getattr(after, name) for name in rules.Stats.FIELDS if getattr(after, name) != getattr(before, name)}
    claim = {name: getattr(before, name) for name in PROFILE_CLAIM_FIELDS}
    with transaction.atomic():
        if AuthProfile.objects.filter(pk=profile.pk, **claim).update(**changes, updated_at=now) != 1:
            return  # another run, a report or an operator got there first
        events = []
        common = {"profile_id": profile.pk, "provider_id": profile.provider_id,
                  "before": rules.snapshot(before), "after": rules.snapshot(after)}
        if cooldown_ended:
            events.append(new_event(EventKind.COOLDOWN_EXPIRED, now, SYSTEM, **common,
                                    reason=_ended_reason("cooldown", before.cooldown_reason, before.cooldown_until)))
        if disable_ended:
            events.append(new_event(EventKind.DISABLE_EXPIRED, now, SYSTEM, **common,
                                    reason=_ended_reason("disablement", before.disabled_reason, before.disabled_until)))
        write_events(events)
    counts.cooldowns_expired += cooldown_ended
    counts.disables_expired += disable_ended
    counts.counts_forgotten += (after.error_count, after.failure_counts) != (before.error_count, before.failure_counts)


def _tidy_pair(pair, now, ended_by, counts):
    before = rules.Stats.of(pair)
    after = replace(rules.forget_stale_counts(before, now))  # a copy: `before` stays as read
    cooldown_ended = _ended(before.cooldown_until, ended_by)
    if cooldown_ended:
        after.cooldown_until, after.cooldown_reason = None, ""
    changes = {name: getattr(after, name) for name in ("error_count", "cooldown_until", "cooldown_reason")
               if getattr(after, name) != getattr(before, name)}
    if not changes:
        return
    claim = {name: getattr(before, name) for name in PAIR_CLAIM_FIELDS}
    with transaction.atomic():
        if ModelCooldown.objects.filter(pk=pair.pk, **claim).update(**changes) != 1:
            return
        if cooldown_ended:
            write_events([
                new_event(EventKind.COOLDOWN_EXPIRED, now, SYSTEM, profile_id=pair.profile_id,
                          provider_id=pair.profile.provider_id, model=pair.model,
                          reason=_ended_reason("model cooldown", before.cooldown_reason, before.cooldown_until),
                          before=_pair_snapshot(before), after=_pair_snapshot(after))
            ])
    counts.model_cooldowns_expired += cooldown_ended
    counts.counts_forgotten += after.error_count != before.error_count


def _pair_snapshot(stats):
    full = rules.snapshot(stats)
    return {name: full[name] for name in ("error_count", "cooldown_until", "cooldown_reason", "last_failure_at")}


def _ended_reason(what, reason, until):
    return f"{what} ({reason or 'unknown'}) ended at {until.isoformat()}"
