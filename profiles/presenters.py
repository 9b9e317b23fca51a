"""Plain JSON views of providers and profiles, shared by the API, lease answers and the exporter."""

from profiles import rules


def iso(value):
    return value.isoformat() if value is not None else None


def profile_state(profile, now):
    """DESIGN §3 profile state. The secret is never part of it, only its mask."""
    return {
        "id": profile.id,
        "provider": profile.provider_id,
        "name": profile.name,
        "kind": profile.kind,
        "position": profile.position,
        "enabled": profile.enabled,
        "available": rules.is_available(profile, now),
        "error_count": profile.error_count,
        "cooldown_until": iso(profile.cooldown_until),
        "cooldown_reason": profile.cooldown_reason or None,
        "disabled_until": iso(profile.disabled_until),
        "disabled_reason": profile.disabled_reason or None,
        "last_used": iso(profile.last_used),
        "last_success_at": iso(profile.last_success_at),
        "last_failure_at": iso(profile.last_failure_at),
        "failure_counts": profile.failure_counts or {},
        "secret_mask": profile.secret_mask,
        "expires_at": iso(profile.expires_at),
    }


def provider_state(provider, profiles, aliases, now):
    return {
        "id": provider.id,
        "aliases": aliases,
        "strategy": provider.strategy,
        "cooldown_ladder_seconds": provider.cooldown_ladder_seconds,
        "track_failures": provider.track_failures,
        "last_good": provider.last_good_id,
        "profiles": [profile_state(p, now) for p in sorted(profiles, key=lambda p: (p.position, p.id))],
    }
