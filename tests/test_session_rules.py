"""The select decisions (sessions_app.rules) as plain functions: no database, time passed in."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from profiles import rules as profile_rules
from sessions_app import rules

NOW = datetime(2026, 4, 7, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
IDLE = 300


def profile(name, position, **windows):
    fields = dict(kind="api_key", expires_at=None, enabled=True, cooldown_until=None, disabled_until=None, last_used=None,
                  cooldown_reason="rate_limit", disabled_reason="billing")
    fields.update(windows)
    return SimpleNamespace(id=f"anthropic:{name}", position=position, **fields)


def ranked(*profiles, strategy="ordered"):
    return profile_rules.rank(list(profiles), NOW, strategy)


def default(**windows):
    return profile("default", 0, **windows)


def backup1(**windows):
    return profile("backup1", 1, **windows)


def backup2(**windows):
    return profile("backup2", 2, **windows)


COOLING = {"cooldown_until": NOW + 5 * MIN}
OFF = {"enabled": False}


def state(pin=None, source="auto", last=None, idle_for=timedelta(0)):
    return rules.SessionState(rules.Pin(f"anthropic:{pin}", source) if pin else None,
                              f"anthropic:{last}" if last else None, NOW - idle_for)


def policy(strategy="ordered", last_good=None, home="default"):
    return rules.Policy(strategy, f"anthropic:{last_good}" if last_good else None,
                        f"anthropic:{home}" if home else None, IDLE)


# ---------------------------------------------------------------- new session


def test_it_starts_a_new_session_on_the_first_available_profile():
    decision = rules.new_session(state(), ranked(default(), backup1()), "ordered")
    assert (decision.profile.id, decision.source, decision.pin) == ("anthropic:default", "default", None)


def test_it_never_carries_an_auto_pin_into_a_new_session():
    """The seed bug: an auto pin on a backup must not follow the person into /new."""
    decision = rules.new_session(state(pin="backup1", source="auto"), ranked(default(), backup1()), "ordered")
    assert (decision.profile.id, decision.source) == ("anthropic:default", "default")


def test_it_carries_a_user_pin_into_a_new_session_even_while_it_cools():
    decision = rules.new_session(state(pin="backup2", source="user"),
                                 ranked(default(), backup1(), backup2(**COOLING)), "ordered")
    assert (decision.profile.id, decision.source, decision.cooling) == ("anthropic:backup2", "user", True)
    assert "cooldown:rate_limit" in decision.reason


def test_it_serves_a_user_pin_on_a_switched_off_profile_from_the_order():
    decision = rules.new_session(state(pin="backup2", source="user"), ranked(default(), backup2(**OFF)), "ordered")
    assert (decision.profile.id, decision.source) == ("anthropic:default", "default")


def test_it_passes_over_a_cooling_profile_for_a_new_session():
    decision = rules.new_session(state(), ranked(default(**COOLING), backup1()), "ordered")
    assert decision.profile.id == "anthropic:backup1"


def test_it_answers_the_soonest_back_when_every_profile_is_out():
    decision = rules.new_session(state(), ranked(default(cooldown_until=NOW + 9 * MIN),
                                                 backup1(cooldown_until=NOW + 2 * MIN)), "ordered")
    assert (decision.profile.id, decision.all_unavailable, decision.retry_at) == (
        "anthropic:backup1", True, NOW + 2 * MIN)


# ---------------------------------------------------------------- continuing session


def test_it_keeps_a_continuing_session_on_its_profile():
    decision = rules.continuing(state(last="backup1", idle_for=MIN), ranked(default(), backup1()), policy(), NOW)
    assert (decision.profile.id, decision.source, decision.pin) == ("anthropic:backup1", "default", None)


def test_it_fails_a_continuing_session_over_with_an_auto_pin():
    decision = rules.continuing(state(last="default"), ranked(default(**COOLING), backup1()), policy(), NOW)
    assert (decision.profile.id, decision.source) == ("anthropic:backup1", "auto")
    assert (decision.pin.kind, decision.pin.profile.id, decision.pin.source) == (
        "override_set", "anthropic:backup1", "auto")


def test_it_fails_over_to_last_good_first():
    decision = rules.continuing(state(last="default"), ranked(default(**COOLING), backup1(), backup2()),
                                policy(last_good="backup2"), NOW)
    assert decision.profile.id == "anthropic:backup2"


def test_it_sends_an_idle_auto_pinned_session_home_and_clears_the_pin():
    decision = rules.continuing(state(pin="backup1", idle_for=timedelta(seconds=IDLE + 1)),
                                ranked(default(), backup1()), policy(), NOW)
    assert (decision.profile.id, decision.source) == ("anthropic:default", "default")
    assert (decision.pin.kind, decision.pin.profile) == ("override_cleared", None)


def test_it_keeps_a_busy_auto_pinned_session_where_its_cache_is_warm():
    decision = rules.continuing(state(pin="backup1", idle_for=timedelta(seconds=IDLE - 1)),
                                ranked(default(), backup1()), policy(), NOW)
    assert (decision.profile.id, decision.source, decision.pin) == ("anthropic:backup1", "auto", None)


def test_it_never_sends_a_round_robin_default_session_home():
    decision = rules.continuing(state(last="backup1", idle_for=timedelta(hours=1)),
                                ranked(default(), backup1(), strategy="round_robin"),
                                policy(strategy="round_robin"), NOW)
    assert decision.profile.id == "anthropic:backup1"


def test_it_keeps_a_user_pin_on_a_cooling_profile_for_a_continuing_session():
    decision = rules.continuing(state(pin="backup2", source="user"), ranked(default(), backup2(**COOLING)),
                                policy(), NOW)
    assert (decision.profile.id, decision.source, decision.cooling, decision.pin) == (
        "anthropic:backup2", "user", True, None)


@pytest.mark.parametrize("case", ["failover", "idle", "switched_off_user_pin", "no_profile_yet"])
def test_it_asks_for_the_whole_ranking_on_the_lock_free_path(case):
    """With only the session's own candidate (`partial`), anything but staying put needs the lock."""
    if case == "failover":
        args = state(last="default"), [ranked(default(**COOLING))[0]]
    elif case == "idle":
        args = state(pin="backup1", idle_for=timedelta(hours=1)), [ranked(backup1())[0]]
    elif case == "switched_off_user_pin":
        args = state(pin="backup2", source="user"), [ranked(backup2(**OFF))[0]]
    else:
        args = state(), []
    assert rules.continuing(*args, rules.Policy(idle_seconds=IDLE), NOW, partial=True) is None


def test_it_decides_the_same_on_the_lock_free_path_when_the_session_stays():
    full = rules.continuing(state(pin="backup1", idle_for=MIN), ranked(default(), backup1()), policy(), NOW)
    partial = rules.continuing(state(pin="backup1", idle_for=MIN), [ranked(backup1())[0]],
                               rules.Policy(idle_seconds=IDLE), NOW, partial=True)
    assert (partial.profile.id, partial.source, partial.reason) == (full.profile.id, full.source, full.reason)


# ---------------------------------------------------------------- reports and boundaries


def test_it_fails_over_the_session_on_the_profile_that_failed():
    failed = ranked(default(**COOLING))[0]
    change = rules.after_failure(state(last="default"), failed, "rate_limit",
                                 ranked(default(**COOLING), backup1()), None)
    assert (change.profile.id, change.source) == ("anthropic:backup1", "auto")
    assert "anthropic:default reported rate_limit" in change.reason


def test_it_leaves_a_session_alone_when_the_failed_profile_is_not_its_own():
    failed = ranked(default(**COOLING))[0]
    assert rules.after_failure(state(pin="backup1"), failed, "rate_limit", ranked(backup1(), backup2()), None) is None


def test_it_never_fails_over_a_user_pin():
    failed = ranked(backup2(**COOLING))[0]
    assert not rules.moves_on_failure(state(pin="backup2", source="user"), failed.profile.id)
    assert rules.after_failure(state(pin="backup2", source="user"), failed, "rate_limit",
                               ranked(default(), backup2(**COOLING)), None) is None


@pytest.mark.parametrize(("source", "kind"), [("auto", "override_dropped"), ("user", "override_carried")])
def test_it_drops_auto_pins_and_carries_user_pins_at_a_boundary(source, kind):
    change = rules.at_boundary(rules.Pin("anthropic:backup1", source), "restart")
    assert change.kind == kind
    assert "restart" in change.reason


def test_it_has_nothing_to_do_at_a_boundary_without_a_pin():
    assert rules.at_boundary(None, "new") is None


def test_it_drops_an_auto_pin_when_every_profile_is_out():
    """v2: the answer is the soonest back, `source: default`, and the stale auto pin goes with an event."""
    decision = rules.continuing(state(pin="backup1"), ranked(default(cooldown_until=NOW + 9 * MIN),
                                                             backup1(cooldown_until=NOW + 2 * MIN)), policy(), NOW)
    assert (decision.profile.id, decision.source, decision.all_unavailable) == ("anthropic:backup1", "default", True)
    assert (decision.pin.kind, decision.pin.profile) == ("override_dropped", None)


def test_it_has_no_pin_to_drop_for_an_unpinned_session_when_every_profile_is_out():
    decision = rules.continuing(state(last="default"), ranked(default(cooldown_until=NOW + 9 * MIN),
                                                              backup1(cooldown_until=NOW + 2 * MIN)), policy(), NOW)
    assert (decision.all_unavailable, decision.pin) == (True, None)
