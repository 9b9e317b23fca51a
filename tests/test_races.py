"""Races on one session (issue 11, items 1–5): real threads, each with its own PostgreSQL connection.

Each test releases its racers together, round after round (a race test that passes once proves
little), through the real API (DRF's test client, so views, services and SQL are all the real
ones). A round's racers are released by one barrier; a small random head start for one side walks
the interleavings across the window where the race lives. Nothing is mocked.
"""

import random
import threading
import time
from collections import Counter

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from console.models import ApiToken
from profiles import services as profile_services
from profiles.models import AuthProfile, Event
from sessions_app import services as session_services
from sessions_app.models import Pin, Session
from tests.conftest import T0
from tests.factories import PinFactory, SessionFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

NAMES = ("default", "backup1", "backup2", "backup3")
DEFAULT, BACKUP1, BACKUP2, BACKUP3 = (f"anthropic:{name}" for name in NAMES)


@pytest.fixture
def tokens(transactional_db, settings):
    """Four profiles of one provider and a few gateway tokens (each racer may act under its own name)."""
    assert connection.vendor == "postgresql"
    settings.AUTHBROKER_THROTTLE_RATE = None  # the races send hundreds of requests a second from one test
    for name in NAMES:
        profile_services.create_profile(f"anthropic:{name}", "api_key", f"sk-{name}-0123456789abcdef", T0, "test")
    return {name: ApiToken.issue(name, ["gateway", "admin"])[1] for name in ("setup", "a", "b", "c", "d")}


class Gateway:
    """One racer's HTTP client (the real API in this process, on this thread's own database connection)."""

    def __init__(self, raw_token):
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")

    def __call__(self, method, path, body=None):
        response = getattr(self.client, method.lower())(path, body, format="json")
        try:
            answer = response.json()
        except ValueError:
            answer = response.content[:300]
        return response.status_code, answer


def race(rounds, *racers, background=(), budget=20.0):
    """Run `racers` (functions of the round number) on their own threads, released together each round,
    while each of `background` (functions of a step number) runs in a loop on its own thread until they end.

    Returns (one list of results per racer, one list per background loop); an exception is the result
    of its call (the test names it). The rounds stop early at `budget` seconds (the tests check that
    enough ran). Each thread keeps its own database connection throughout.
    """
    deadline = time.monotonic() + budget
    out_of_time = threading.Event()  # decided once per round, by the barrier's action, for every racer alike
    barrier = threading.Barrier(len(racers), action=lambda: time.monotonic() > deadline and out_of_time.set())
    results = [[] for _ in racers]
    loops = [[] for _ in background]
    stop = threading.Event()

    def call(function, n):
        try:
            return function(n)
        except Exception as exc:  # recorded; the assertions name it
            return exc

    def run(index, racer):
        try:
            for n in range(rounds):
                barrier.wait(timeout=60)
                if out_of_time.is_set():
                    break
                results[index].append(call(racer, n))
        finally:
            connections.close_all()

    def loop(index, function):
        try:
            step = 0
            while not stop.is_set():
                loops[index].append(call(function, step))
                step += 1
        finally:
            connections.close_all()

    helpers = [threading.Thread(target=loop, args=(i, f)) for i, f in enumerate(background)]
    threads = [threading.Thread(target=run, args=(i, racer)) for i, racer in enumerate(racers)]
    for thread in helpers + threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    for thread in helpers:
        thread.join()
    done = min(len(r) for r in results)
    return [r[:done] for r in results], loops


def failures(results):
    """The answers other than 200 (and the exceptions), counted."""
    flat = [x for r in results for x in (r if isinstance(r, list) else [r])]
    return Counter(repr(r) if isinstance(r, Exception) else r[0] for r in flat
                   if isinstance(r, Exception) or r[0] != 200)


def key(test, n):
    return f"agent:main:race:{test}:{n}"


def seed_sessions(keys, pin=None):
    """Each key selected once (a session on anthropic:default), then pinned by a person to `pin` if given."""
    for session_key in keys:
        selection = session_services.select_profile(session_key=session_key, provider="anthropic",
                                                    now=timezone.now(), actor="seed", with_lease=False)
        assert selection.profile.id == DEFAULT
        if pin:
            session_services.set_user_override(session_key=session_key, profile=pin, now=timezone.now(), actor="seed")


def seed_user_pinned_ballast(count):
    """`count` more sessions a person pinned to backup2, written in one INSERT: the rows a bulk reset carries.

    Returns their pins (written without events) for `check_events_replay_to_the_stored_pins` to start from.
    """
    backup2 = AuthProfile.objects.get(pk=BACKUP2)
    sessions = Session.objects.bulk_create(
        SessionFactory.build(session_key=key("ballast", n), provider_id="anthropic", last_profile=backup2)
        for n in range(count))
    Pin.objects.bulk_create(PinFactory.build(session=session, profile=backup2) for session in sessions)
    return {key("ballast", n): (BACKUP2, "user") for n in range(count)}


def pin_of(session):
    pin = Pin.objects.filter(session=session, provider_id="anthropic").first()
    return (pin.profile_id, pin.source) if pin else None


def check_events_replay_to_the_stored_pins(initial=None):
    """Replaying each session's override events gives its stored pin, and each event starts from the replayed one.

    A pin changed without its event (cleared silently, or replaced by a write that read a stale pin)
    breaks the chain: the next event's `before`, or the final state, disagrees with the replay.
    """
    problems, current = [], dict(initial or {})
    for event in Event.objects.exclude(session_key="").order_by("id"):
        key_, pin = event.session_key, current.get(event.session_key)
        if event.kind == "override_set":
            before = event.before or None
            was = (before["profile"], before["source"]) if before else None
            if was != pin:
                problems.append(f"{key_}: override_set (event {event.id}) starts from {was}, replay has {pin}")
            current[key_] = (event.profile_id, event.source)
        elif event.kind in ("override_cleared", "override_dropped"):
            if pin is None or pin[0] != event.profile_id or (event.kind == "override_dropped" and pin[1] != "auto"):
                problems.append(f"{key_}: {event.kind} of {event.profile_id} (event {event.id}), replay has {pin}")
            current[key_] = None
    for session in Session.objects.all():
        if current.get(session.session_key) != pin_of(session):
            problems.append(f"{session.session_key}: stored pin {pin_of(session)}, "
                            f"events replay to {current.get(session.session_key)}")
    return problems


# ---------------------------------------------------------------- 1. a user pin against a failover


ROUNDS_PIN_VS_FAILOVER = 60


def test_it_never_replaces_a_users_pin_with_an_auto_pin_when_a_failover_races_it(tokens):
    """A person's PUT …/override and a failing report on the session's profile, at once: the person's pin stays.

    Whichever commits first, the end is the same: the report either fails the session over and the
    person's pin then replaces the auto pin, or it finds the user pin (which never fails over).
    """
    keys = [key("pin", n) for n in range(ROUNDS_PIN_VS_FAILOVER)]
    seed_sessions(keys)
    person, gateway = Gateway(tokens["a"]), Gateway(tokens["b"])
    rng = random.Random(11)
    delays = [rng.uniform(0, 0.004) for _ in keys]

    def pin(n):
        time.sleep(delays[n])
        return person("PUT", f"/api/sessions/{keys[n]}/override", {"profile": BACKUP2})

    def fail(n):  # a model-scoped rate limit: the profile itself stays available for the next rounds
        return gateway("POST", "/api/report", {"profile": DEFAULT, "outcome": "rate_limit", "session_key": keys[n],
                                               "model": f"model-{n}"})

    (pins, reports), _ = race(len(keys), pin, fail)
    stored = {s.session_key: pin_of(s) for s in Session.objects.filter(session_key__in=keys[:len(pins)])}
    replaced = sorted(k for k, p in stored.items() if p != (BACKUP2, "user"))
    assert replaced == [], \
        f"{len(replaced)} of {len(pins)} rounds lost the person's pin: {[stored[k] for k in replaced[:3]]}"
    assert failures([pins, reports]) == Counter()
    assert check_events_replay_to_the_stored_pins() == []
    assert len(pins) >= ROUNDS_PIN_VS_FAILOVER // 2, "too few rounds ran in the time budget"


# ---------------------------------------------------------------- 2. boundaries against pin flips


ROUNDS_BOUNDARY_VS_FLIP = 60


def test_it_never_answers_500_to_a_reset_or_new_session_select_racing_a_pin_flip(tokens):
    """A user-pinned session: its pin moves while a reset and a `new_session` select arrive; every answer is 200.

    Both boundaries lock the session a pin change has just committed on; what they read of the pin
    must be the committed pin, whole. (The test client raises what a server would answer 500 with.)
    """
    keys = [key("flip", n) for n in range(ROUNDS_BOUNDARY_VS_FLIP)]
    seed_sessions(keys, pin=BACKUP2)
    person, resetter, selector = Gateway(tokens["a"]), Gateway(tokens["b"]), Gateway(tokens["c"])
    rng = random.Random(22)
    delays = [(rng.uniform(0, 0.004), rng.uniform(0, 0.004)) for _ in keys]

    def flip(n):
        return person("PUT", f"/api/sessions/{keys[n]}/override", {"profile": BACKUP3})

    def reset(n):
        time.sleep(delays[n][0])
        return resetter("POST", f"/api/sessions/{keys[n]}/reset", {"provider": "anthropic", "reason": "reset"})

    def new_session(n):
        time.sleep(delays[n][1])
        return selector("POST", "/api/select", {"session_key": keys[n], "provider": "anthropic", "new_session": True})

    (flips, resets, selects), _ = race(len(keys), flip, reset, new_session)
    assert (failures(resets), failures(selects), failures(flips)) == (Counter(), Counter(), Counter()), \
        f"of {len(resets)} rounds: resets, new-session selects, pin flips that failed"
    for results in (resets, selects):  # the pin both saw is a person's, so both answer with a person's pin
        answers = [r[1]["selection"] if "selection" in r[1] else r[1] for r in results]
        assert {(a["source"], a["profile"] in (BACKUP2, BACKUP3)) for a in answers} == {("user", True)}
    assert check_events_replay_to_the_stored_pins() == []
    assert len(flips) >= ROUNDS_BOUNDARY_VS_FLIP // 2, "too few rounds ran in the time budget"


# ---------------------------------------------------------------- 3. a pin set just before the lock


ROUNDS_PIN_BEFORE_LOCK = 50
PAIRS_PIN_BEFORE_LOCK = 3


def test_it_answers_a_reset_with_the_pin_it_carried_when_the_pin_moved_just_before(tokens):
    """A reset's answer agrees with itself: the pin it says it carried is the one it answers with.

    The pin moves (from backup2 to backup3, neither among the first available profiles) just as the
    reset starts; whichever pin the reset saw under its lock, it carries that pin and answers with it.
    Several pairs (a person, a gateway; each pair its own session) race at once, each round.
    """
    keys = [[key(f"carry{pair}", n) for n in range(ROUNDS_PIN_BEFORE_LOCK)] for pair in range(PAIRS_PIN_BEFORE_LOCK)]
    seed_sessions([k for pair in keys for k in pair], pin=BACKUP2)
    rng = random.Random(33)
    offsets = [[rng.uniform(-0.004, 0.004) for _ in range(ROUNDS_PIN_BEFORE_LOCK)] for _ in keys]

    def flip(pair):
        person = Gateway(tokens["a"])

        def run(n):
            time.sleep(max(0.0, offsets[pair][n]))
            return person("PUT", f"/api/sessions/{keys[pair][n]}/override", {"profile": BACKUP3})
        return run

    def reset(pair):
        gateway = Gateway(tokens["b"])

        def run(n):
            time.sleep(max(0.0, -offsets[pair][n]))
            return gateway("POST", f"/api/sessions/{keys[pair][n]}/reset", {"provider": "anthropic", "reason": "reset"})
        return run

    results, _ = race(ROUNDS_PIN_BEFORE_LOCK, *(make(p) for p in range(len(keys)) for make in (flip, reset)))
    resets = [r for pair in results[1::2] for r in pair]
    disagreeing = [
        (answer["carried"], answer["selection"]["source"], answer["selection"]["profile"])
        for status, answer in (r for r in resets if not isinstance(r, Exception))
        if status == 200 and (answer["selection"]["source"], answer["selection"]["profile"]) != ("user",
                                                                                               answer["carried"])
    ]
    assert disagreeing == [], f"{len(disagreeing)} of {len(resets)} resets disagree with themselves: {disagreeing[:3]}"
    assert failures(results) == Counter()
    assert len(resets) >= ROUNDS_PIN_BEFORE_LOCK * PAIRS_PIN_BEFORE_LOCK // 2, "too few rounds ran in the time budget"


# ---------------------------------------------------------------- 4. bulk reset against failovers


BULK_ROUNDS = 25
MIN_BULK_ROUNDS = 5  # the slow old bulk reset ran 7 in its budget on a loaded machine, and failed
FAILOVER_SESSIONS = 60
BALLAST = 400


def fail_over(gateway, keys, rng, tag):
    """One gateway's loop step: select a session, then report its profile rate-limited (model-scoped, so
    the profile stays available to the other sessions) — a failover that sets an auto pin."""
    def step(n):
        session_key, model = rng.choice(keys), f"model-{tag}-{n}"
        status, answer = gateway("POST", "/api/select", {"session_key": session_key, "provider": "anthropic",
                                                         "model": model})
        if status != 200:
            return status, answer
        return gateway("POST", "/api/report", {"profile": answer["profile"], "outcome": "rate_limit",
                                               "session_key": session_key, "model": model})
    return step


def test_it_records_every_auto_pin_a_bulk_reset_drops_while_failovers_set_pins(tokens):
    """Bulk resets of every session while gateways fail sessions over: every auto pin that goes has its event.

    `dropped` in the answers counts exactly the `override_dropped` events the resets wrote, and the
    events replay to every session's stored pin (a pin cleared without its event breaks the replay).
    """
    keys = [key("bulk", n) for n in range(FAILOVER_SESSIONS)]
    seed_sessions(keys)
    ballast = seed_user_pinned_ballast(BALLAST)  # many pins for each reset to read and carry: a long reset
    operator = Gateway(tokens["a"])
    rng = random.Random(44)

    def bulk(n):
        time.sleep(rng.uniform(0, 0.02))  # failovers commit at every point of the reset's life
        return operator("POST", "/api/sessions/reset", {"reason": "restart"})

    gateways = [fail_over(Gateway(tokens[name]), keys, random.Random(400 + i), name)
                for i, name in enumerate(("b", "c", "d"))]
    (bulks,), loops = race(BULK_ROUNDS, bulk, background=gateways, budget=30.0)
    problems = check_events_replay_to_the_stored_pins(ballast)
    assert problems == [], f"{len(problems)} pins changed without their event: {problems[:3]}"
    assert failures([bulks, *loops]) == Counter()
    dropped = sum(answer["dropped"] for _, answer in bulks)
    assert dropped == Event.objects.filter(kind="override_dropped", actor="token:a").count()
    assert dropped > 0, "no bulk reset found an auto pin to drop: no race was run"
    assert len(bulks) >= MIN_BULK_ROUNDS, "too few rounds ran in the time budget"


# ---------------------------------------------------------------- 5. two bulk resets at once


ROUNDS_TWO_BULKS = 40
CHURN_SESSIONS = 80


def test_it_never_deadlocks_concurrent_bulk_resets_while_pins_churn(tokens):
    """Bulk resets at once (of every session, and of two lists) while pins come and go: every answer is 200.

    A deadlock would answer 503 `retry`; a bulk reset's locks must come in one order whatever the
    other writers do.
    """
    keys = [key("churn", n) for n in range(CHURN_SESSIONS)]
    seed_sessions(keys, pin=BACKUP2)
    ballast = seed_user_pinned_ballast(BALLAST)
    operators = [Gateway(tokens[name]) for name in ("a", "b", "setup")]

    def bulk_all(n):
        return operators[0]("POST", "/api/sessions/reset", {"reason": "restart"})

    def bulk_list(index):
        rng = random.Random(500 + index)

        def run(n):  # a list the other resets' rows interleave with
            return operators[index]("POST", "/api/sessions/reset",
                                    {"reason": "restart", "session_keys": rng.sample(keys + list(ballast), 200)})
        return run

    def pins(gateway, rng):
        def step(n):
            session_key = rng.choice(keys)
            if rng.random() < 0.3:
                return gateway("DELETE", f"/api/sessions/{session_key}/override")
            return gateway("PUT", f"/api/sessions/{session_key}/override",
                           {"profile": rng.choice([BACKUP1, BACKUP2, BACKUP3])})
        return step

    churn = [pins(Gateway(tokens["c"]), random.Random(600)),
             fail_over(Gateway(tokens["d"]), keys, random.Random(700), "d")]
    (alls, *lists), loops = race(ROUNDS_TWO_BULKS, bulk_all, bulk_list(1), bulk_list(2), background=churn,
                                 budget=30.0)
    assert failures([alls, *lists, *loops]) == Counter(), f"of {len(alls)} rounds of three bulk resets at once"
    assert check_events_replay_to_the_stored_pins(ballast) == []
    assert len(alls) >= MIN_BULK_ROUNDS, "too few rounds ran in the time budget"


# ---------------------------------------------------------------- 6. a continuing select never waits on a held session


def test_it_answers_a_continuing_select_without_waiting_for_a_writer_holding_the_session(tokens):
    """Another transaction holds the session row (as a reset of every session holds the sessions whose auto
    pins it drops): a continuing select answers from the committed state within a moment, and stamps the
    session again once the row is free."""
    import threading

    from django.db import connections

    key_ = key("held", 0)
    seed_sessions([key_])
    gateway = Gateway(tokens["a"])
    assert gateway("POST", "/api/select", {"session_key": key_, "provider": "anthropic"})[0] == 200
    before = Session.objects.get(session_key=key_).last_activity_at
    holding, release = threading.Event(), threading.Event()

    def hold():
        with connections["default"].cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT id FROM sessions_app_session WHERE session_key = %s FOR UPDATE", [key_])
            holding.set()
            release.wait(30)
            cursor.execute("ROLLBACK")
        connections["default"].close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        status, body = gateway("POST", "/api/select", {"session_key": key_, "provider": "anthropic"})
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(30)
    assert status == 200 and body["profile"] == DEFAULT and body["source"] == "default"
    assert waited < 2.0, f"the select waited {waited:.2f} s for the held row"
    assert Session.objects.get(session_key=key_).last_activity_at == before  # answered without its stamp
    assert gateway("POST", "/api/select", {"session_key": key_, "provider": "anthropic"})[0] == 200
    assert Session.objects.get(session_key=key_).last_activity_at > before  # the row free: stamped again
