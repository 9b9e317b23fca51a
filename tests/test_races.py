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
from rest_framework.test import APIClient

from console.models import ApiToken
from profiles import services as profile_services
from profiles.models import Event
from sessions_app.models import Session
from tests.conftest import T0

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


def race(rounds, *racers, budget=20.0):
    """Run `racers` (functions of the round number) on their own threads, released together each round.

    Returns one list of results per racer (rounds run in the time budget); an exception in a racer is
    its result for that round (the test names it). Each thread keeps its connection across rounds.
    """
    barrier = threading.Barrier(len(racers))
    results = [[None] * rounds for _ in racers]
    deadline = time.monotonic() + budget
    done = [rounds]

    def run(index, racer):
        try:
            for n in range(rounds):
                barrier.wait(timeout=60)
                if time.monotonic() > deadline:
                    done[0] = min(done[0], n)
                    break
                try:
                    results[index][n] = racer(n)
                except Exception as exc:  # recorded; the assertions name it
                    results[index][n] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, racer)) for i, racer in enumerate(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r[:done[0]] for r in results]


def head_start(rng, most=0.004):
    time.sleep(rng.uniform(0, most))


def key(test, n):
    return f"agent:main:race:{test}:{n}"


def seed_sessions(tokens, keys, pin=None):
    """Each key selected once (a session on anthropic:default), then pinned by a person to `pin` if given."""
    setup = Gateway(tokens["setup"])
    for session_key in keys:
        status, answer = setup("POST", "/api/select", {"session_key": session_key, "provider": "anthropic"})
        assert status == 200 and answer["profile"] == DEFAULT, answer
        if pin:
            assert setup("PUT", f"/api/sessions/{session_key}/override", {"profile": pin})[0] == 200


def pin_of(session):
    return (session.override_profile_id, session.override_source) if session.override_profile_id else None


def check_events_replay_to_the_stored_pins():
    """Replaying each session's override events gives its stored pin, and each event starts from the replayed one.

    A pin changed without its event (cleared silently, or replaced by a write that read a stale pin)
    breaks the chain: the next event's `before`, or the final state, disagrees with the replay.
    """
    problems, current = [], {}
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


ROUNDS_PIN_VS_FAILOVER = 80


def test_it_never_replaces_a_users_pin_with_an_auto_pin_when_a_failover_races_it(tokens):
    """A person's PUT …/override and a failing report on the session's profile, at once: the person's pin stays.

    Whichever commits first, the end is the same: the report either fails the session over and the
    person's pin then replaces the auto pin, or it finds the user pin (which never fails over).
    """
    keys = [key("pin", n) for n in range(ROUNDS_PIN_VS_FAILOVER)]
    seed_sessions(tokens, keys)
    person, gateway = Gateway(tokens["a"]), Gateway(tokens["b"])
    rng = random.Random(11)
    delays = [rng.uniform(0, 0.004) for _ in keys]

    def pin(n):
        time.sleep(delays[n])
        return person("PUT", f"/api/sessions/{keys[n]}/override", {"profile": BACKUP2})

    def fail(n):  # a model-scoped rate limit: the profile itself stays available for the next rounds
        return gateway("POST", "/api/report", {"profile": DEFAULT, "outcome": "rate_limit", "session_key": keys[n],
                                               "model": f"model-{n}"})

    pins, reports = race(len(keys), pin, fail)
    assert len(pins) >= ROUNDS_PIN_VS_FAILOVER // 2, "too few rounds ran in the time budget"
    errors = [r for r in pins + reports if isinstance(r, Exception) or r[0] != 200]
    assert errors == []
    stored = {s.session_key: pin_of(s) for s in Session.objects.filter(session_key__in=keys[:len(pins)])}
    replaced = sorted(k for k, p in stored.items() if p != (BACKUP2, "user"))
    assert replaced == [], f"{len(replaced)} of {len(pins)} rounds lost the person's pin: {[stored[k] for k in replaced[:5]]}"
    assert check_events_replay_to_the_stored_pins() == []


# ---------------------------------------------------------------- 2. boundaries against pin flips


ROUNDS_BOUNDARY_VS_FLIP = 120


def test_it_never_answers_500_to_a_reset_or_new_session_select_racing_a_pin_flip(tokens):
    """A user-pinned session: its pin moves while a reset and a `new_session` select arrive; every answer is 200.

    Both boundaries lock the session a pin change has just committed on; what they read of the pin
    must be the committed pin, whole.
    """
    keys = [key("flip", n) for n in range(ROUNDS_BOUNDARY_VS_FLIP)]
    seed_sessions(tokens, keys, pin=BACKUP2)
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

    flips, resets, selects = race(len(keys), flip, reset, new_session)
    assert len(flips) >= ROUNDS_BOUNDARY_VS_FLIP // 2, "too few rounds ran in the time budget"

    def failures(results):
        return Counter(repr(r) if isinstance(r, Exception) else r[0] for r in results if
                       isinstance(r, Exception) or r[0] != 200)

    assert (failures(flips), failures(resets), failures(selects)) == (Counter(), Counter(), Counter())
    for results in (resets, selects):  # the pin both saw is a person's, so both answer with a person's pin
        answers = [r[1]["selection"] if "selection" in r[1] else r[1] for r in results]
        assert {(a["source"], a["profile"] in (BACKUP2, BACKUP3)) for a in answers} == {("user", True)}
    assert check_events_replay_to_the_stored_pins() == []


# ---------------------------------------------------------------- 3. a pin set just before the lock


ROUNDS_PIN_BEFORE_LOCK = 150


def test_it_answers_a_reset_with_the_pin_it_carried_when_the_pin_moved_just_before(tokens):
    """A reset's answer agrees with itself: the pin it says it carried is the one it answers with.

    The pin moves (from backup2 to backup3, neither among the first available profiles) just as the
    reset starts; whichever pin the reset saw under its lock, it carries that pin and answers with it.
    """
    keys = [key("carry", n) for n in range(ROUNDS_PIN_BEFORE_LOCK)]
    seed_sessions(tokens, keys, pin=BACKUP2)
    person, resetter = Gateway(tokens["a"]), Gateway(tokens["b"])
    rng = random.Random(33)
    delays = [rng.uniform(0, 0.006) for _ in keys]

    def flip(n):
        time.sleep(delays[n])  # lands anywhere from before the reset starts to after it locks
        return person("PUT", f"/api/sessions/{keys[n]}/override", {"profile": BACKUP3})

    def reset(n):
        return resetter("POST", f"/api/sessions/{keys[n]}/reset", {"provider": "anthropic", "reason": "reset"})

    flips, resets = race(len(keys), flip, reset)
    assert len(resets) >= ROUNDS_PIN_BEFORE_LOCK // 2, "too few rounds ran in the time budget"
    statuses = Counter(repr(r) if isinstance(r, Exception) else r[0] for r in flips + resets)
    disagreeing = [
        (answer["carried"], answer["selection"]["source"], answer["selection"]["profile"])
        for status, answer in (r for r in resets if not isinstance(r, Exception))
        if status == 200 and (answer["selection"]["source"], answer["selection"]["profile"]) != ("user",
                                                                                               answer["carried"])
    ]
    assert disagreeing == [], f"{len(disagreeing)} of {len(resets)} resets disagree with themselves: {disagreeing[:5]}"
    assert statuses == Counter({200: len(flips) + len(resets)})
    carried = Counter(r[1]["carried"] for r in resets)
    assert set(carried) <= {BACKUP2, BACKUP3}


# ---------------------------------------------------------------- 4. bulk reset against failovers


BULK_ROUNDS = 40
FAILOVER_SESSIONS = 60


def test_it_records_every_auto_pin_a_bulk_reset_drops_while_failovers_set_pins(tokens):
    """Bulk resets of every session while gateways fail sessions over: every auto pin that goes has its event.

    `dropped` in each answer counts exactly the `override_dropped` events that reset wrote, and the
    events replay to every session's stored pin (a pin cleared without its event breaks the replay).
    """
    keys = [key("bulk", n) for n in range(FAILOVER_SESSIONS)]
    seed_sessions(tokens, keys)
    operator = Gateway(tokens["a"])
    gateways = [Gateway(tokens[name]) for name in ("b", "c", "d")]
    answers = []

    def bulk(n):
        status, answer = operator("POST", "/api/sessions/reset", {"reason": "restart"})
        answers.append((status, answer))
        return status, answer

    def failovers(index):
        rng = random.Random(400 + index)
        gateway = gateways[index]

        def run(n):  # a few failovers per round: select the session, report its profile rate-limited
            out = []
            for step in range(4):
                session_key = rng.choice(keys)
                model = f"model-{index}-{n}-{step}"
                status, answer = gateway("POST", "/api/select", {"session_key": session_key, "provider": "anthropic",
                                                                 "model": model})
                out.append(status)
                if status == 200:
                    out.append(gateway("POST", "/api/report", {"profile": answer["profile"], "outcome": "rate_limit",
                                                               "session_key": session_key, "model": model})[0])
            return out

        return run

    results = race(BULK_ROUNDS, bulk, *(failovers(i) for i in range(len(gateways))))
    assert len(results[0]) >= BULK_ROUNDS // 2, "too few rounds ran in the time budget"
    assert [s for s, _ in answers if s != 200] == []
    others = Counter(s for r in results[1:] for round_ in r for s in (round_ if isinstance(round_, list) else [round_]))
    assert set(others) == {200}, others
    drop_events = Event.objects.filter(kind="override_dropped", actor="token:a").count()
    assert sum(a["dropped"] for _, a in answers) == drop_events
    assert sum(a["dropped"] for _, a in answers) > 0, "no bulk reset found an auto pin to drop: no race was run"
    problems = check_events_replay_to_the_stored_pins()
    assert problems == [], f"{len(problems)} pins changed without their event: {problems[:5]}"


# ---------------------------------------------------------------- 5. two bulk resets at once


ROUNDS_TWO_BULKS = 40
CHURN_SESSIONS = 80


def test_it_never_deadlocks_two_bulk_resets_while_pins_churn(tokens):
    """Two bulk resets at once (of every session, and of a list) while pins are set and moved: every answer is 200.

    A deadlock would answer 503 `retry`; a bulk reset's locks must come in one order whatever the
    other writers do.
    """
    keys = [key("churn", n) for n in range(CHURN_SESSIONS)]
    seed_sessions(tokens, keys)
    setup = Gateway(tokens["setup"])
    for n, session_key in enumerate(keys):  # half pinned by a person, a quarter failed over (auto pins)
        if n % 2 == 0:
            assert setup("PUT", f"/api/sessions/{session_key}/override", {"profile": BACKUP2})[0] == 200
        elif n % 4 == 1:
            assert setup("POST", "/api/report", {"profile": DEFAULT, "outcome": "rate_limit", "session_key": session_key,
                                                 "model": f"seed-{n}"})[0] == 200
    first, second = Gateway(tokens["a"]), Gateway(tokens["b"])
    churners = [Gateway(tokens["c"]), Gateway(tokens["d"])]

    def bulk_all(n):
        return first("POST", "/api/sessions/reset", {"reason": "restart"})

    def bulk_list(n):
        rng = random.Random(500 + n)
        return second("POST", "/api/sessions/reset", {"reason": "restart", "session_keys": rng.sample(keys, 60)})

    def churn(index):
        rng = random.Random(600 + index)

        def run(n):
            out = []
            for step in range(4):
                session_key = rng.choice(keys)
                if rng.random() < 0.5:
                    out.append(churners[index]("PUT", f"/api/sessions/{session_key}/override",
                                               {"profile": rng.choice([BACKUP1, BACKUP2, BACKUP3])})[0])
                else:
                    out.append(churners[index]("POST", "/api/report", {
                        "profile": rng.choice([DEFAULT, BACKUP1]), "outcome": "rate_limit",
                        "session_key": session_key, "model": f"churn-{index}-{n}-{step}"})[0])
            return out

        return run

    alls, lists, *churned = race(ROUNDS_TWO_BULKS, bulk_all, bulk_list, churn(0), churn(1))
    assert len(alls) >= ROUNDS_TWO_BULKS // 2, "too few rounds ran in the time budget"
    statuses = Counter(repr(r) if isinstance(r, Exception) else r[0] for r in alls + lists)
    statuses += Counter(s for results in churned for r in results for s in (r if isinstance(r, list) else [repr(r)]))
    assert statuses == Counter({200: sum(statuses.values())}), statuses
    assert check_events_replay_to_the_stored_pins() == []
