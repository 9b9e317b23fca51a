"""State changes of providers and profiles: one function each, one transaction, with its events.

The API, the console, the admin, the importer and the scheduler all call
these; none of them writes usage stats by itself.
"""

from datetime import datetime

from django.db import transaction

from profiles import crypto, ids, queries, rules
from profiles.errors import Conflict, Invalid, NotFound
from profiles.events import new_event, write_events
from profiles.models import (
    AuthProfile,
    EventKind,
    Kind,
    ModelCooldown,
    Provider,
    ProviderAlias,
    Strategy,
)
from profiles.presenters import iso

# ---------------------------------------------------------------- lookups


def resolve_provider_id(raw, field="provider"):
    """A provider id with built-in and operator-defined aliases resolved (the provider may not exist)."""
    provider_id = ids.normalize_provider_id(raw, field)
    if not Provider.objects.filter(pk=provider_id).exists():
        alias = ProviderAlias.objects.filter(pk=provider_id).values_list("provider_id", flat=True).first()
        if alias:
            return alias
    return provider_id


def resolve_profile_id(raw, field="profile"):
    provider_part, name = ids.split_profile_id(raw, field)
    return f"{resolve_provider_id(provider_part, field)}:{name}"


def get_provider(raw, field="provider"):
    provider_id = resolve_provider_id(raw, field)
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        raise NotFound(f"unknown provider {provider_id!r}", {field: ["unknown provider"]})
    return provider


# Columns a report never reads: the encrypted credentials and free-form metadata.
SECRET_FIELDS = ("secret_encrypted", "refresh_encrypted", "metadata")


def get_profile(raw, field="profile", lock=False, without_secrets=False):
    """A profile by id; an alias in the provider part is resolved only when the plain id is not found.

    `without_secrets` leaves the encrypted credentials (and metadata) in the database, for callers that
    only read and write usage stats.
    """
    provider_part, name = ids.split_profile_id(raw, field)

    def lookup(pk):
        if lock and without_secrets:  # every report: the same lookup as fixed SQL
            return queries.locked_profile(pk, without=SECRET_FIELDS)
        queryset = AuthProfile.objects.select_related("provider")
        if without_secrets:
            queryset = queryset.defer(*SECRET_FIELDS)
        if lock:
            # FOR NO KEY UPDATE: sessions referencing this profile can still be written meanwhile (their
            # foreign-key checks take KEY SHARE), so report and select never wait on each other in a cycle.
            queryset = queryset.select_for_update(of=("self",), no_key=True)
        return next(iter(queryset.filter(pk=pk).order_by()[:1]), None)

    profile = lookup(f"{provider_part}:{name}")
    if profile is None:
        target = ProviderAlias.objects.filter(pk=provider_part).values_list("provider_id", flat=True).first()
        if target:
            profile = lookup(f"{target}:{name}")
    if profile is None:
        raise NotFound(f"unknown profile '{provider_part}:{name}'", {field: ["unknown profile"]})
    return profile


def stats_snapshot(profile):
    return rules.snapshot(rules.Stats.of(profile))


# ---------------------------------------------------------------- outcomes


def record_outcome(profile, outcome, now, actor, *, model=None, retry_after_seconds=None, detail=""):
    """Apply one reported outcome to a locked `profile`; returns (events to write, model cooldown or None).

    The caller holds the row lock (`get_profile(lock=True)`) inside its
    transaction, so concurrent reports on one profile apply one after the
    other and the count is exact.
    """
    provider = profile.provider
    events = []
    fields = {"last_used"}
    profile.last_used = now
    detail = (detail or "")[:500]

    if rules.lane(outcome) == rules.Lane.SUCCESS:
        before = rules.Stats.of(profile)
        if before.cooling(now):
            events.append(
                new_event(EventKind.COOLDOWN_CLEARED, now, actor, profile_id=profile.id, provider_id=provider.id,
                          reason="success reported", before=rules.snapshot(before))
            )
        if before.disabled(now):
            events.append(
                new_event(EventKind.ENABLED, now, actor, profile_id=profile.id, provider_id=provider.id,
                          reason="success reported", before=rules.snapshot(before))
            )
        if before.error_count or before.failure_counts or before.cooldown_until or before.disabled_until:
            fields.update(rules.success_stats(before).write_to(profile))
        profile.last_success_at = now
        fields.add("last_success_at")
        if model:
            ModelCooldown.objects.filter(profile=profile, model=model).delete()
        if provider.last_good_id != profile.id:
            Provider.objects.filter(pk=provider.id).update(last_good=profile)
            provider.last_good_id = profile.id
        profile.save(update_fields=sorted(fields | {"updated_at"}))
        return events, None

    if not provider.track_failures:
        profile.last_failure_at = now
        profile.save(update_fields=["last_used", "last_failure_at", "updated_at"])
        return events, None

    if model and rules.model_scoped(outcome):
        profile.save(update_fields=["last_used", "updated_at"])
        return _record_model_failure(profile, model, outcome, now, actor, retry_after_seconds, detail)

    before = rules.Stats.of(profile)
    effect = rules.apply_failure(before, outcome, now, provider.cooldown_ladder_seconds, retry_after_seconds)
    fields.update(effect.stats.write_to(profile))
    profile.save(update_fields=sorted(fields | {"updated_at"}))
    if effect.event:
        events.append(
            new_event(effect.event, now, actor, profile_id=profile.id, provider_id=provider.id,
                      reason=f"{outcome}{': ' + detail if detail else ''}",
                      before=rules.snapshot(before), after=rules.snapshot(effect.stats))
        )
    return events, None


def _record_model_failure(profile, model, outcome, now, actor, retry_after_seconds, detail):
    pair, _ = ModelCooldown.objects.select_for_update().get_or_create(profile=profile, model=model)
    before = rules.Stats.of(pair)
    effect = rules.apply_failure(before, outcome, now, profile.provider.cooldown_ladder_seconds, retry_after_seconds)
    pair.save(update_fields=effect.stats.write_to(pair))
    if not effect.event:
        return [], pair
    return [
        new_event(effect.event, now, actor, profile_id=profile.id, provider_id=profile.provider_id, model=model,
                  reason=f"{outcome}{': ' + detail if detail else ''}",
                  before=rules.snapshot(before), after=rules.snapshot(effect.stats))
    ], pair


# ---------------------------------------------------------------- operator actions


def _locked(profile_id):
    return get_profile(profile_id, lock=True)


@transaction.atomic
def clear_cooldown(profile_id, now, actor, reason=""):
    """End a profile's cooldown (and its model cooldowns) now. Counts stay, like any expiry."""
    reason = ids.clean_reason(reason)
    profile = _locked(profile_id)
    before = stats_snapshot(profile)
    pairs = list(ModelCooldown.objects.filter(profile=profile, cooldown_until__gt=now).values_list("model", flat=True))
    ModelCooldown.objects.filter(profile=profile).update(cooldown_until=None, cooldown_reason="")
    had_cooldown = bool(profile.cooldown_until and profile.cooldown_until > now) or pairs
    profile.cooldown_until, profile.cooldown_reason = None, ""
    profile.save(update_fields=["cooldown_until", "cooldown_reason", "updated_at"])
    if had_cooldown:
        write_events([
            new_event(EventKind.COOLDOWN_CLEARED, now, actor, profile_id=profile.id, provider_id=profile.provider_id,
                      reason=reason, before=before, after={**stats_snapshot(profile), "models": pairs})
        ])
    return profile


@transaction.atomic
def disable_profile(profile_id, now, actor, reason=""):
    """Switch a profile off until an operator switches it on again."""
    reason = ids.clean_reason(reason)
    profile = _locked(profile_id)
    if profile.enabled:
        profile.enabled = False
        profile.save(update_fields=["enabled", "updated_at"])
        write_events([
            new_event(EventKind.DISABLED, now, actor, profile_id=profile.id, provider_id=profile.provider_id,
                      reason=reason or "switched off by an operator", source="operator",
                      before={"enabled": True}, after={"enabled": False})
        ])
    return profile


@transaction.atomic
def enable_profile(profile_id, now, actor, reason=""):
    """Switch a profile on and end any disablement at once (counts stay)."""
    reason = ids.clean_reason(reason)
    profile = _locked(profile_id)
    before = {"enabled": profile.enabled, **stats_snapshot(profile)}
    changed = not profile.enabled or bool(profile.disabled_until and profile.disabled_until > now)
    profile.enabled = True
    profile.disabled_until, profile.disabled_reason = None, ""
    profile.save(update_fields=["enabled", "disabled_until", "disabled_reason", "updated_at"])
    if changed:
        write_events([
            new_event(EventKind.ENABLED, now, actor, profile_id=profile.id, provider_id=profile.provider_id,
                      reason=reason or "switched on by an operator", source="operator",
                      before=before, after={"enabled": True, **stats_snapshot(profile)})
        ])
    return profile


def _validate_kind(kind):
    if kind not in Kind.values:
        raise Invalid(f"kind must be one of {', '.join(Kind.values)}", {"kind": ["unknown kind"]})


def _validate_position(position):
    if isinstance(position, bool) or not isinstance(position, int) or position < 0 or position > 1_000_000:
        raise Invalid("position must be an integer from 0 to 1000000", {"position": ["must be an integer ≥ 0"]})


@transaction.atomic
def create_profile(raw_id, kind, secret, now, actor, *, position=None, enabled=True, refresh="", metadata=None,
                   expires_at=None, reason="", secret_ref=None):
    """Create a profile; its provider is created with defaults when new.

    `secret_ref` ({source, provider, id}, openclaw's keyRef/tokenRef): the gateway resolves the secret
    itself, so the profile is created without one and the reference is kept in its metadata.
    """
    secret = crypto.Secret(secret) if isinstance(secret, str) else secret
    reason = ids.clean_reason(reason)
    provider_part, name = ids.split_profile_id(raw_id, "id")
    provider_id = resolve_provider_id(provider_part, "id")
    profile_id = f"{provider_id}:{name}"
    _validate_kind(kind)
    _validate_expires_at(expires_at)
    if secret_ref is not None:
        if secret:
            raise Invalid("give a secret or a reference to one, not both", {"secret": ["not with a reference"]})
        metadata = {**(metadata or {}), "secret_ref": dict(secret_ref)}
    elif not isinstance(secret, str) or not secret:
        raise Invalid("secret is required", {"secret": ["required"]})
    provider, created = Provider.objects.get_or_create(pk=provider_id)
    if position is None:
        last = AuthProfile.objects.filter(provider=provider).order_by("-position").values_list("position", flat=True)
        position = (last.first() + 1) if last.exists() else 0
    _validate_position(position)
    if AuthProfile.objects.filter(pk=profile_id).exists():
        raise Conflict(f"profile {profile_id!r} already exists", {"id": ["already exists"]}, code="exists")
    profile = AuthProfile(id=profile_id, provider=provider, name=name, kind=kind, position=position,
                          enabled=bool(enabled), metadata=metadata or {}, expires_at=expires_at)
    profile.set_secret(secret, refresh)
    profile.save(force_insert=True)
    after = {"kind": kind, "position": position, "enabled": profile.enabled, "secret_mask": profile.secret_mask}
    if expires_at is not None:
        after["expires_at"] = expires_at.isoformat()
    if secret_ref is not None:
        after["secret_ref"] = dict(secret_ref)
    write_events([
        new_event(EventKind.PROFILE_CREATED, now, actor, profile_id=profile_id, provider_id=provider_id,
                  reason=reason, after=after)
    ])
    return profile


def _validate_expires_at(expires_at):
    if expires_at is not None and (not isinstance(expires_at, datetime) or expires_at.tzinfo is None):
        raise Invalid("expires_at must be a timestamp with a zone", {"expires_at": ["timestamp with a zone"]})


UNCHANGED = object()


@transaction.atomic
def update_profile(profile_id, now, actor, *, kind=None, secret=None, position=None, enabled=None,
                   expires_at=UNCHANGED, reason=""):
    """Change a profile. A new secret without a new `expires_at` ends the old credential's expiry
    (docs/decisions.md); `expires_at=None` removes it."""
    reason = ids.clean_reason(reason)
    if expires_at is not UNCHANGED:
        _validate_expires_at(expires_at)
    profile = _locked(profile_id)
    before, after = {}, {}
    if kind is not None and kind != profile.kind:
        _validate_kind(kind)
        before["kind"], after["kind"] = profile.kind, kind
        profile.kind = kind
    if position is not None and position != profile.position:
        _validate_position(position)
        before["position"], after["position"] = profile.position, position
        profile.position = position
    if secret is not None:
        secret = crypto.Secret(secret) if isinstance(secret, str) else secret
        if not isinstance(secret, str) or not secret:
            raise Invalid("secret must be a non-empty string", {"secret": ["must be a non-empty string"]})
        before["secret_mask"] = profile.secret_mask
        profile.set_secret(secret)
        after["secret_mask"] = profile.secret_mask
        if expires_at is UNCHANGED:
            expires_at = None  # the expiry was the old credential's
    if expires_at is not UNCHANGED and expires_at != profile.expires_at:
        before["expires_at"], after["expires_at"] = iso(profile.expires_at), iso(expires_at)
        profile.expires_at = expires_at
    events = []
    if before:
        events.append(new_event(EventKind.PROFILE_CHANGED, now, actor, profile_id=profile.id,
                                provider_id=profile.provider_id, reason=reason, before=before, after=after))
    profile.save()
    write_events(events)
    if enabled is not None and bool(enabled) != profile.enabled:
        (enable_profile if enabled else disable_profile)(profile.id, now, actor, reason)
        profile.refresh_from_db()
    return profile


@transaction.atomic
def delete_profile(profile_id, now, actor, reason=""):
    """Delete a profile. Sessions pinned to it must have lost their pins first, in the same transaction
    (`sessions_app.services.delete_profile` does both): this layer knows nothing of sessions."""
    reason = ids.clean_reason(reason)
    profile = _locked(profile_id)
    events = [new_event(EventKind.PROFILE_DELETED, now, actor, profile_id=profile.id,
                        provider_id=profile.provider_id, reason=reason,
                        before={"kind": profile.kind, "position": profile.position})]
    profile_id = profile.pk
    profile.delete()
    write_events(events)
    profile.pk = profile_id  # the answer shows what was deleted
    return profile


@transaction.atomic
def reorder_profiles(provider_id, ordered_ids, now, actor, reason=""):
    """Give a provider's profiles positions 0, 1, 2… in the order given."""
    reason = ids.clean_reason(reason)
    provider = get_provider(provider_id)
    profiles = {p.id: p for p in AuthProfile.objects.select_for_update(no_key=True).filter(provider=provider)}
    wanted = [resolve_profile_id(pid, "order") for pid in ordered_ids]
    if sorted(wanted) != sorted(profiles) or len(set(wanted)) != len(wanted):
        raise Invalid("order must list every profile of the provider exactly once", {"order": ["incomplete or repeated"]})
    before = {pid: profiles[pid].position for pid in profiles}
    for position, pid in enumerate(wanted):
        profiles[pid].position = position
    AuthProfile.objects.bulk_update(profiles.values(), ["position"])
    write_events([new_event(EventKind.PROVIDER_CHANGED, now, actor, provider_id=provider.id, reason=reason,
                            before={"order": sorted(before, key=lambda k: (before[k], k))}, after={"order": wanted})])
    return provider


def _validate_ladder(ladder):
    if (
        not isinstance(ladder, list)
        or not 1 <= len(ladder) <= 20
        or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 86400 for s in ladder)
    ):
        raise Invalid(
            "cooldown_ladder_seconds must be a list of 1–20 whole seconds, each 1–86400",
            {"cooldown_ladder_seconds": ["list of 1–20 integers from 1 to 86400"]},
        )


@transaction.atomic
def update_provider(provider_id, now, actor, *, strategy=None, cooldown_ladder_seconds=None, aliases=None,
                    track_failures=None, reason=""):
    reason = ids.clean_reason(reason)
    provider = Provider.objects.select_for_update(no_key=True).get(pk=get_provider(provider_id).pk)
    before, after = {}, {}
    if strategy is not None and strategy != provider.strategy:
        if strategy not in Strategy.values:
            raise Invalid(f"strategy must be one of {', '.join(Strategy.values)}", {"strategy": ["unknown strategy"]})
        before["strategy"], after["strategy"] = provider.strategy, strategy
        provider.strategy = strategy
    if cooldown_ladder_seconds is not None and cooldown_ladder_seconds != provider.cooldown_ladder_seconds:
        _validate_ladder(cooldown_ladder_seconds)
        before["cooldown_ladder_seconds"] = provider.cooldown_ladder_seconds
        after["cooldown_ladder_seconds"] = provider.cooldown_ladder_seconds = cooldown_ladder_seconds
    if track_failures is not None and bool(track_failures) != provider.track_failures:
        before["track_failures"], after["track_failures"] = provider.track_failures, bool(track_failures)
        provider.track_failures = bool(track_failures)
    if aliases is not None:
        if not isinstance(aliases, list):
            raise Invalid("aliases must be a list of provider slugs", {"aliases": ["must be a list"]})
        wanted = sorted({ids.normalize_provider_id(a, "aliases") for a in aliases} - {provider.id})
        current = sorted(provider.aliases.values_list("alias", flat=True))
        if wanted != current:
            clash = Provider.objects.filter(pk__in=wanted).values_list("id", flat=True)
            taken = ProviderAlias.objects.filter(pk__in=wanted).exclude(provider=provider).values_list("alias", flat=True)
            if clash or taken:
                names = sorted({*clash, *taken})
                raise Conflict(f"aliases already name another provider: {', '.join(names)}", {"aliases": names},
                               code="alias_taken")
            provider.aliases.all().delete()
            ProviderAlias.objects.bulk_create([ProviderAlias(alias=a, provider=provider) for a in wanted])
            before["aliases"], after["aliases"] = current, wanted
    if before:
        provider.save()
        write_events([new_event(EventKind.PROVIDER_CHANGED, now, actor, provider_id=provider.id, reason=reason,
                                before=before, after=after)])
    return provider
