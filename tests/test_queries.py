"""The database-side statements of the rules, held to the rules on random data."""

import random
from datetime import timedelta

from profiles import rules
from profiles import services as profile_services
from profiles.models import AuthProfile
from profiles.queries import unavailable_q
from tests.conftest import T0


def test_it_finds_exactly_the_profiles_the_rule_calls_unavailable(db, clock):
    """`unavailable_q` and `rules.unavailability` agree on every mix of switch, expiry, cooldown and disablement."""
    rng = random.Random(14)
    for n in range(40):
        profile_services.create_profile(f"acme:k{n}", rng.choice(["api_key", "token", "oauth"]),
                                        "sk-test-0123456789abcdef", T0, "test")
    moments = [None, T0 - timedelta(minutes=5), T0, T0 + timedelta(minutes=5)]
    for _ in range(10):
        for profile in AuthProfile.objects.all():
            profile.enabled = rng.random() > 0.2
            profile.expires_at = rng.choice(moments)
            profile.cooldown_until = rng.choice(moments)
            profile.disabled_until = rng.choice(moments)
            profile.save()
        now = T0 + timedelta(seconds=rng.choice([-1, 0, 1]))
        expected = {p.id for p in AuthProfile.objects.all() if not rules.is_available(p, now)}
        assert set(AuthProfile.objects.filter(unavailable_q(now)).values_list("id", flat=True)) == expected
