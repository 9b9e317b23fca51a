"""The few profiles a decision loads (profiles.services, `now=`) lead to the same choice as all of them."""

import random
from datetime import timedelta

from profiles import rules
from profiles import services as profile_services
from profiles.models import AuthProfile, ModelCooldown, Provider, Strategy
from sessions_app import queries
from sessions_app.models import Session
from tests.conftest import T0

NAMES = ["a", "B", "b", "z", "_", "Z1", "k", "~m"]


def _scramble(rng, provider):
    """Random windows, switches, kinds and expiries, positions (with ties), uses and model cooldowns; a random
    last_good."""
    profiles = list(AuthProfile.objects.filter(provider=provider))
    for p in profiles:
        p.position = rng.choice([0, 1, 1, 2, 5])
        p.enabled = rng.random() > 0.15
        p.cooldown_until = T0 + timedelta(seconds=rng.choice([-60, 30, 90])) if rng.random() < 0.4 else None
        p.disabled_until = T0 + timedelta(seconds=rng.choice([-60, 600])) if rng.random() < 0.2 else None
        p.kind = rng.choice(["api_key", "token", "oauth"])
        p.expires_at = T0 + timedelta(seconds=rng.choice([-60, 0, 60])) if rng.random() < 0.3 else None
        p.last_used = T0 - timedelta(seconds=rng.randrange(1000)) if rng.random() < 0.7 else None
        p.save()
        ModelCooldown.objects.filter(profile=p).delete()
        if rng.random() < 0.3:
            ModelCooldown.objects.create(profile=p, model="m1", cooldown_reason="rate_limit",
                                         cooldown_until=T0 + timedelta(seconds=rng.choice([-5, 45])))
    provider.strategy = rng.choice([Strategy.ORDERED, Strategy.ROUND_ROBIN])
    provider.last_good = rng.choice(profiles + [None])
    provider.save()
    return profiles


def test_it_chooses_from_the_candidates_as_from_every_profile(db):
    """First choice, failover target and home agree for 150 random states of one provider."""
    rng = random.Random(6)
    for name in NAMES:
        profile_services.create_profile(f"acme:{name}", "api_key", "sk-test-0123456789abcdef", T0, "test")
    provider = Provider.objects.get(pk="acme")
    session = Session.objects.create(session_key="s1", last_activity_at=T0)
    compared = 0
    for _ in range(150):
        profiles = _scramble(rng, provider)
        leaving = rng.choice(profiles)
        session.last_profile = leaving
        pinned = rng.choice(profiles + [None])
        session.save()
        model = rng.choice([None, "m1"])
        everything, all_cooldowns = queries.provider_profiles("acme", model)
        own = (leaving.id,) + ((pinned.id,) if pinned else ())  # the session's last profile and its pin
        few, cooldowns = queries.provider_profiles("acme", model, now=T0, ids=own)
        if not any(rules.is_available(p, T0, cooldowns.get(p.id)) for p in few if p.id != leaving.id):
            continue  # the callers load every profile then
        compared += 1
        full = rules.rank(everything, T0, provider.strategy, all_cooldowns)
        part = rules.rank(few, T0, provider.strategy, cooldowns)
        assert rules.first_choice(part).profile.id == rules.first_choice(full).profile.id
        assert (rules.failover_choice(part, provider.last_good_id, leaving.id).profile.id
                == rules.failover_choice(full, provider.last_good_id, leaving.id).profile.id)
        assert rules.home_profile(few, T0) == rules.home_profile(everything, T0)
        by_id = {c.profile.id: c for c in part}
        for pid in {leaving.id, pinned.id if pinned else None, provider.last_good_id} - {None}:
            assert by_id[pid] == next(c for c in full if c.profile.id == pid)
    assert compared > 100
