"""The rules of DESIGN §2 as plain functions: no database, time passed in."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from profiles import rules
from profiles.models import DEFAULT_LADDER

NOW = datetime(2026, 4, 7, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def profile(pid, position=0, enabled=True, cooldown_until=None, disabled_until=None, last_used=None,
            cooldown_reason="rate_limit", disabled_reason="billing", kind="api_key", expires_at=None):
    return SimpleNamespace(id=pid, position=position, enabled=enabled, cooldown_until=cooldown_until,
                           disabled_until=disabled_until, last_used=last_used, cooldown_reason=cooldown_reason,
                           disabled_reason=disabled_reason, kind=kind, expires_at=expires_at)


def fail(stats, outcome, now=NOW, hint=None):
    return rules.apply_failure(stats, outcome, now, DEFAULT_LADDER, hint)


# ---------------------------------------------------------------- availability


def test_it_treats_a_profile_with_no_windows_as_available():
    """Enabled, no cooldown, no disablement: available."""
    assert rules.is_available(profile("a"), NOW)


def test_it_judges_expiry_by_time_alone():
    """A window whose end has passed no longer counts, whether or not anything tidied it."""
    assert not rules.is_available(profile("a", cooldown_until=NOW + MIN), NOW)
    assert rules.is_available(profile("a", cooldown_until=NOW), NOW)
    assert rules.is_available(profile("a", disabled_until=NOW - MIN), NOW)


def test_it_names_why_a_profile_is_unavailable_and_until_when():
    """The reason is the latest window's kind and `until` is when every window has ended."""
    p = profile("a", cooldown_until=NOW + MIN, disabled_until=NOW + 5 * MIN)
    assert rules.unavailability(p, NOW) == ("disabled:billing", NOW + 5 * MIN)
    assert rules.unavailability(profile("a", enabled=False), NOW) == ("operator_disabled", None)


def test_it_cools_only_the_model_a_model_scoped_cooldown_names():
    """A (profile, model) cooldown makes the profile unavailable for that model only."""
    pair = SimpleNamespace(cooldown_until=NOW + MIN, cooldown_reason="rate_limit")
    assert rules.unavailability(profile("a"), NOW, pair) == ("model_cooldown:rate_limit", NOW + MIN)
    assert rules.is_available(profile("a"), NOW, None)


@pytest.mark.parametrize("kind", ["api_key", "token"])
def test_it_takes_an_expired_key_or_token_out_with_no_end(kind):
    """From `expires_at` on (≤ now) the credential is out, reason `expired`, until nobody knows (None)."""
    assert rules.is_available(profile("a", kind=kind, expires_at=NOW + timedelta(seconds=1)), NOW)
    assert rules.unavailability(profile("a", kind=kind, expires_at=NOW), NOW) == ("expired", None)
    cooling = profile("a", kind=kind, expires_at=NOW - MIN, cooldown_until=NOW + MIN)
    assert rules.unavailability(cooling, NOW) == ("expired", None)


def test_it_never_ranks_by_an_oauth_expiry():
    """An OAuth `expires_at` is the access token's, refreshed by the gateway: shown, never used to rank."""
    assert rules.is_available(profile("a", kind="oauth", expires_at=NOW - timedelta(days=30)), NOW)
    assert not rules.switched_off(profile("a", kind="oauth", expires_at=NOW - MIN), NOW)


def test_it_ranks_an_expired_credential_like_a_switched_off_one():
    """Expired profiles come after those that will come back, and are never a choice or a home."""
    expired = profile("a", 0, kind="token", expires_at=NOW - MIN)
    ranked = rules.rank([expired, profile("b", 1, cooldown_until=NOW + MIN)], NOW)
    assert [c.profile.id for c in ranked] == ["b", "a"]
    assert rules.first_choice(rules.rank([expired], NOW)) is None
    assert rules.home_profile([expired, profile("b", 1)], NOW).id == "b"
    assert rules.home_profile([expired, profile("b", 1)], NOW - timedelta(hours=1)).id == "a"


# ---------------------------------------------------------------- order


def test_it_ranks_available_profiles_by_position_for_ordered():
    """`ordered`: available first by position, then the soonest back, then switched off."""
    ranked = rules.rank(
        [
            profile("off", 0, enabled=False),
            profile("late", 1, cooldown_until=NOW + 10 * MIN),
            profile("soon", 2, cooldown_until=NOW + MIN),
            profile("b", 4),
            profile("a", 3),
        ],
        NOW,
    )
    assert [c.profile.id for c in ranked] == ["a", "b", "soon", "late", "off"]
    assert [c.available for c in ranked] == [True, True, False, False, False]


def test_it_ranks_least_recently_used_first_for_round_robin():
    """`round_robin`: never-used first, then the oldest use; unavailable still last."""
    ranked = rules.rank(
        [
            profile("recent", 0, last_used=NOW - MIN),
            profile("old", 1, last_used=NOW - 10 * MIN),
            profile("never", 2),
            profile("cooling", 3, cooldown_until=NOW + MIN),
        ],
        NOW,
        "round_robin",
    )
    assert [c.profile.id for c in ranked] == ["never", "old", "recent", "cooling"]


def test_it_picks_the_soonest_back_when_nothing_is_available():
    """All unavailable: the first choice is the one that comes back first."""
    ranked = rules.rank([profile("a", 0, cooldown_until=NOW + 9 * MIN), profile("b", 1, cooldown_until=NOW + MIN)],
                        NOW)
    choice = rules.first_choice(ranked)
    assert choice.profile.id == "b" and not choice.available and choice.until == NOW + MIN


def test_it_never_chooses_a_profile_an_operator_switched_off():
    """Switched-off profiles never come back by themselves, so they are never a choice."""
    assert rules.first_choice(rules.rank([profile("a", enabled=False)], NOW)) is None


def test_it_prefers_last_good_when_failing_over():
    """A continuing session fails over to `last_good` when available, else the next in order."""
    ranked = rules.rank([profile("a", 0, cooldown_until=NOW + MIN), profile("b", 1), profile("c", 2)], NOW)
    assert rules.failover_choice(ranked, "c", "a").profile.id == "c"
    assert rules.failover_choice(ranked, "a", "a").profile.id == "b"
    assert rules.failover_choice(ranked, None, "a").profile.id == "b"


def test_it_finds_home_among_enabled_profiles_by_position():
    """Home is the first-in-order profile an operator has left on, whatever its cooldown."""
    home = rules.home_profile([profile("b", 1), profile("a", 0, enabled=False), profile("c", 2)], NOW)
    assert home.id == "b"


def test_it_considers_a_session_idle_only_after_the_cache_window():
    """Idle means strictly longer than the window since the last select or report."""
    assert not rules.idle_long_enough(NOW - timedelta(seconds=300), NOW, 300)
    assert rules.idle_long_enough(NOW - timedelta(seconds=301), NOW, 300)


@pytest.mark.parametrize(
    ("source", "stamp", "expected"),
    [("auto", None, "auto"), ("user", 3, "user"), (None, 3, "auto"), (None, 0, "auto"), (None, None, "user"),
     ("", None, "user")],
)
def test_it_reads_legacy_pins_the_way_openclaw_does(source, stamp, expected):
    """Unknown provenance: a compaction stamp means `auto`, otherwise `user`."""
    assert rules.legacy_override_source(source, stamp) == expected


# ---------------------------------------------------------------- outcomes

COOLING = ("rate_limit", "timeout", "unknown", "model_not_found", "auth")
DISABLING = ("billing", "auth_permanent")
RECORDED_ONLY = ("overloaded", "server_error", "format")


def test_it_knows_exactly_the_outcomes_of_the_contract():
    """DESIGN §2's outcome values, each with a lane: a new outcome needs its entry (and a row below)."""
    assert rules.OUTCOMES == ("success", "rate_limit", "overloaded", "server_error", "timeout", "format", "unknown",
                              "model_not_found", "auth", "auth_permanent", "billing")
    assert {rules.lane(o) for o in COOLING} == {rules.Lane.COOLDOWN}
    assert {rules.lane(o) for o in DISABLING} == {rules.Lane.DISABLED}
    assert {rules.lane(o) for o in RECORDED_ONLY} == {rules.Lane.RECORDED}
    assert rules.lane("success") == rules.Lane.SUCCESS
    assert {"success", *COOLING, *DISABLING, *RECORDED_ONLY} == set(rules.OUTCOMES)


@pytest.mark.parametrize("outcome", rules.OUTCOMES)
def test_it_scopes_to_a_model_only_rate_limits_and_unknown_models(outcome):
    """With a model, only `rate_limit` and `model_not_found` cool the (profile, model) pair alone."""
    assert rules.model_scoped(outcome) == (outcome in ("rate_limit", "model_not_found"))


@pytest.mark.parametrize("outcome", COOLING)
def test_it_cools_for_a_ladder_step_on_a_cooldown_lane_outcome(outcome):
    """The cooldown lane: one more error and the ladder's first rung, named after the outcome."""
    effect = fail(rules.Stats(), outcome)
    assert effect.event == "cooldown_started"
    assert (effect.stats.error_count, effect.stats.failure_counts) == (1, {outcome: 1})
    assert (effect.stats.cooldown_until, effect.stats.cooldown_reason) == (NOW + MIN, outcome)
    assert effect.stats.disabled_until is None


@pytest.mark.parametrize(("outcome", "length"), [("billing", timedelta(hours=5)), ("auth_permanent", 30 * MIN)])
def test_it_disables_at_once_on_a_disabled_lane_outcome(outcome, length):
    """The disabled lane: a disablement from the first report, no cooldown."""
    effect = fail(rules.Stats(), outcome)
    assert effect.event == "disabled"
    assert (effect.stats.disabled_until, effect.stats.disabled_reason) == (NOW + length, outcome)
    assert effect.stats.error_count == 1 and effect.stats.cooldown_until is None


@pytest.mark.parametrize("outcome", RECORDED_ONLY)
def test_it_only_counts_and_dates_a_recorded_only_outcome(outcome):
    """Not the key's fault: failure_counts[outcome] and last_failure_at change, nothing else, no event."""
    earlier = fail(rules.Stats(), "rate_limit", NOW - 10 * MIN).stats  # a streak of one, its window over
    effect = fail(earlier, outcome, hint=3600)
    assert effect.event is None
    assert effect.stats == rules.Stats(error_count=1, failure_counts={"rate_limit": 1, outcome: 1},
                                       cooldown_until=earlier.cooldown_until, cooldown_reason="rate_limit",
                                       last_failure_at=NOW)


@pytest.mark.parametrize("outcome", RECORDED_ONLY)
def test_it_never_cools_nor_disables_for_a_storm_of_recorded_only_outcomes(outcome):
    """A hundred in a row leave the profile available and its error count at zero."""
    stats = rules.Stats()
    for second in range(100):
        effect = fail(stats, outcome, NOW + timedelta(seconds=second))
        assert effect.event is None
        stats = effect.stats
    assert (stats.error_count, stats.failure_counts) == (0, {outcome: 100})
    assert not stats.cooling(NOW + MIN) and not stats.disabled(NOW + MIN)


@pytest.mark.parametrize("outcome", RECORDED_ONLY)
def test_it_leaves_a_running_window_as_it_is_on_a_recorded_only_outcome(outcome):
    """Recorded while cooling or disabled: the window and the count stay where they were."""
    cooling = fail(rules.Stats(), "rate_limit").stats
    assert fail(cooling, outcome, NOW + timedelta(seconds=5), hint=600).stats.cooldown_until == NOW + MIN
    disabled = fail(rules.Stats(), "billing").stats
    after = fail(disabled, outcome, NOW + timedelta(seconds=5)).stats
    assert (after.disabled_until, after.error_count) == (disabled.disabled_until, 1)


def test_it_climbs_the_cooldown_ladder_for_consecutive_failures():
    """1, 5, 25, then 60 minutes (the cap) for the 1st, 2nd, 3rd, 4th+ failure."""
    stats, now, lengths = rules.Stats(), NOW, []
    for _ in range(6):
        effect = fail(stats, "rate_limit", now)
        lengths.append((effect.stats.cooldown_until - now) / MIN)
        stats, now = effect.stats, effect.stats.cooldown_until  # the next failure comes after expiry
    assert lengths == [1, 5, 25, 60, 60, 60]
    assert stats.error_count == 6 and stats.failure_counts == {"rate_limit": 6}


def test_it_does_not_escalate_a_failure_reported_while_cooling():
    """Requests in flight when the cooldown began fail too: count and deadline stay."""
    first = fail(rules.Stats(), "rate_limit")
    again = fail(first.stats, "timeout", NOW + timedelta(seconds=10))
    assert again.event is None
    assert again.stats.error_count == 1
    assert again.stats.cooldown_until == first.stats.cooldown_until
    assert again.stats.failure_counts == {"rate_limit": 1}


def test_it_lengthens_a_cooldown_with_a_retry_after_hint_but_never_shortens_it():
    """deadline = now + max(ladder step, min(hint, 24 h))."""
    assert fail(rules.Stats(), "rate_limit", hint=600).stats.cooldown_until == NOW + 10 * MIN
    assert fail(rules.Stats(), "rate_limit", hint=5).stats.cooldown_until == NOW + MIN
    capped = fail(rules.Stats(), "rate_limit", hint=10**9).stats.cooldown_until
    assert capped == NOW + timedelta(hours=24)


def test_it_lets_a_later_hint_move_a_running_cooldown_later_only():
    """While cooling, only a hint may move the deadline, and only later."""
    cooling = fail(rules.Stats(), "rate_limit").stats  # until NOW + 1 min
    later = fail(cooling, "rate_limit", NOW + timedelta(seconds=30), hint=120)
    assert later.event == "cooldown_extended"
    assert later.stats.cooldown_until == NOW + timedelta(seconds=150)
    assert later.stats.error_count == 1
    earlier = fail(cooling, "rate_limit", NOW + timedelta(seconds=30), hint=1)
    assert earlier.event is None and earlier.stats.cooldown_until == NOW + MIN


def test_it_disables_for_billing_doubling_to_a_day():
    """billing: 5 h, 10 h, 20 h, then 24 h (cap)."""
    stats, now, lengths = rules.Stats(), NOW, []
    for _ in range(4):
        effect = fail(stats, "billing", now)
        assert effect.event == "disabled"
        lengths.append((effect.stats.disabled_until - now) / timedelta(hours=1))
        stats, now = effect.stats, effect.stats.disabled_until
    assert lengths == [5, 10, 20, 24]


def test_it_cools_the_first_two_auth_failures_and_disables_on_the_third():
    """auth below its threshold is a cooldown; the 3rd consecutive one disables for 30 min."""
    stats, now = rules.Stats(), NOW
    for expected in ("cooldown_started", "cooldown_started", "disabled"):
        effect = fail(stats, "auth", now)
        assert effect.event == expected
        stats, now = effect.stats, max(filter(None, [effect.stats.cooldown_until, effect.stats.disabled_until]))
    assert stats.disabled_until - stats.last_failure_at == timedelta(minutes=30)
    assert stats.disabled_reason == "auth"


def test_it_disables_auth_permanent_at_once_doubling_to_six_hours():
    """auth_permanent: 30 min, 60, 120, 240, then 360 (cap)."""
    stats, now, lengths = rules.Stats(), NOW, []
    for _ in range(5):
        effect = fail(stats, "auth_permanent", now)
        lengths.append((effect.stats.disabled_until - now) / MIN)
        stats, now = effect.stats, effect.stats.disabled_until
    assert lengths == [30, 60, 120, 240, 360]


def test_it_keeps_counts_after_a_window_expires_so_the_next_failure_escalates():
    """Like a half-open circuit: the first failure after expiry takes the next rung."""
    first = fail(rules.Stats(), "rate_limit")
    after_expiry = fail(first.stats, "rate_limit", first.stats.cooldown_until + timedelta(seconds=1))
    assert after_expiry.stats.error_count == 2
    assert after_expiry.stats.cooldown_until - after_expiry.stats.last_failure_at == 5 * MIN


def test_it_forgets_counts_after_a_day_without_failure():
    """Counts start afresh 24 h after the last failure."""
    stats = rules.Stats(error_count=3, failure_counts={"rate_limit": 3}, last_failure_at=NOW - timedelta(hours=24))
    effect = fail(stats, "rate_limit")
    assert effect.stats.error_count == 1
    assert effect.stats.cooldown_until == NOW + MIN


def test_it_clears_counts_and_windows_on_success():
    """A success forgets every failure."""
    stats = fail(rules.Stats(), "billing").stats
    cleared = rules.success_stats(stats)
    assert (cleared.error_count, cleared.failure_counts, cleared.cooldown_until, cleared.disabled_until) == (
        0, {}, None, None)



def test_it_does_not_let_an_in_flight_auth_failure_disable_a_cooling_profile():
    """The third auth failure arriving while the second one's cooldown runs is in flight, not a new signal."""
    stats = fail(rules.Stats(), "auth").stats
    stats = fail(stats, "auth", stats.cooldown_until + timedelta(seconds=1)).stats
    again = fail(stats, "auth", stats.last_failure_at + timedelta(seconds=5))
    assert again.event is None and again.stats.disabled_until is None and again.stats.error_count == 2


def test_it_forgets_a_stale_streak_before_recording_an_outcome_that_is_not_the_keys_fault():
    """An overloaded report after a day without failures starts counts afresh, as any failure would."""
    stats = rules.Stats(error_count=3, failure_counts={"rate_limit": 3}, last_failure_at=NOW - timedelta(hours=24))
    effect = fail(stats, "overloaded")
    assert (effect.stats.error_count, effect.stats.failure_counts) == (0, {"overloaded": 1})
