"""authbroker-client against the real authbroker (gunicorn on loopback, its own database).

Every call, sync and async; timeouts against a server that never answers; the
circuit breaker opening and closing; and authbroker killed in the middle of a
session and started again: selects keep answering from the fail-open path, the
buffered reports are replayed once, and the state afterwards is what it would
have been had authbroker stayed up.
"""

import asyncio
import itertools
import socket
import threading
import time

import httpx
import pytest
from authbroker_client import (
    AsyncClient,
    AuthbrokerError,
    AuthbrokerUnavailable,
    Client,
    ProviderSnapshot,
    ReportResult,
    Selection,
    SessionState,
)

from tests.broker import Broker
from tests.servers import free_port

pytestmark = pytest.mark.client

_providers = itertools.count(1)


@pytest.fixture(scope="module")
def broker():
    broker = Broker(workers=2)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def provider(broker):
    """A provider of its own for each test: `<id>:default`, `backup1`, `backup2` in that order."""
    name = f"t{next(_providers)}-{int(time.time() * 1000) % 100000}"
    broker.add_profiles(name)
    return name


class FakeMonotonic:
    """The breaker's clock, moved by the test (the breaker's wait is the client's own, not a cooldown)."""

    def __init__(self):
        self.value = 1000.0

    def __call__(self):
        return self.value


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that counts the requests that actually leave the client."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sent = []

    def handle_request(self, request):
        self.sent.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


def make_client(broker, **options):
    options.setdefault("timeout", 2.0)
    return Client(broker.url, broker.token, **options)


# ---------------------------------------------------------------- every call


def test_it_selects_reports_and_fails_over_with_typed_answers(broker, provider):
    with make_client(broker) as client:
        first = client.select("chat:1", provider, explain=True)
        assert isinstance(first, Selection)
        assert (first.profile, first.source, first.fail_open) == (f"{provider}:default", "default", False)
        assert first.lease_id and first.session_id
        assert [c.profile for c in first.candidates] == [f"{provider}:{n}" for n in ("default", "backup1", "backup2")]

        result = client.report(first.profile, "rate_limit", session_key="chat:1", lease_id=first.lease_id,
                               retry_after_seconds=120)
        assert isinstance(result, ReportResult)
        assert result.profile.available is False and result.profile.cooldown_reason == "rate_limit"
        assert (result.profile.cooldown_until - result.profile.last_failure_at).total_seconds() == pytest.approx(120)
        assert (result.failover.profile, result.failover.source) == (f"{provider}:backup1", "auto")
        assert result.duplicate is False

        again = client.report(first.profile, "rate_limit", session_key="chat:1", lease_id=first.lease_id)
        assert again.duplicate is True and again.failover == result.failover

        assert client.select("chat:1", provider).profile == f"{provider}:backup1"


def test_it_resets_one_session_and_many(broker, provider):
    with make_client(broker) as client:
        choice = client.select("chat:reset", provider)
        client.report(choice.profile, "rate_limit", session_key="chat:reset", lease_id=choice.lease_id)

        reset = client.reset("chat:reset", provider, reason="new")
        assert reset.dropped == f"{provider}:backup1" and reset.carried is None
        assert reset.session_id != choice.session_id
        assert reset.selection.profile == f"{provider}:backup1" and reset.selection.source == "default"

        client.select("chat:bulk:1", provider)
        client.select("chat:bulk:2", provider)
        bulk = client.bulk_reset(["chat:bulk:1", "chat:bulk:2", "chat:never-seen"], reason="restart")
        assert (bulk.reset, bulk.fail_open) == (2, False)


def test_it_sets_and_clears_a_user_override_and_reads_the_session(broker, provider):
    with make_client(broker) as client:
        state = client.set_override("chat:pin", f"{provider}:backup2")
        assert isinstance(state, SessionState)
        assert (state.override.profile, state.override.source) == (f"{provider}:backup2", "user")
        assert client.select("chat:pin", provider).source == "user"
        assert client.get_session("chat:pin").override.profile == f"{provider}:backup2"

        cleared = client.clear_override("chat:pin", provider)
        assert cleared.override is None
        assert client.select("chat:pin", provider, new_session=True).profile == f"{provider}:default"


def test_it_pages_through_events_newest_first(broker, provider):
    with make_client(broker) as client:
        client.set_override("chat:events", f"{provider}:backup1")
        client.clear_override("chat:events", provider)
        client.set_override("chat:events", f"{provider}:backup2")

        page = client.session_events("chat:events", page_size=2)
        assert [e.kind for e in page.events] == ["override_set", "override_cleared"]
        assert page.events[0].profile == f"{provider}:backup2" and page.next_cursor
        older = client.session_events("chat:events", page_size=2, cursor=page.next_cursor)
        assert [e.kind for e in older.events] == ["override_set"]

        filtered = client.events(session_key="chat:events", kind="override_cleared")
        assert [e.kind for e in filtered.events] == ["override_cleared"]


def test_it_reads_the_providers_snapshot(broker, provider):
    with make_client(broker) as client:
        snapshots = {p.id: p for p in client.providers()}
        assert isinstance(snapshots[provider], ProviderSnapshot)
        assert [p.id for p in snapshots[provider].profiles] == [f"{provider}:{n}" for n in ("default", "backup1",
                                                                                            "backup2")]


def test_it_raises_authbroker_errors_for_bad_input_and_changes_nothing(broker, provider):
    with make_client(broker) as client:
        with pytest.raises(AuthbrokerError) as bad:
            client.report(f"{provider}:default", "sneezed")
        assert bad.value.status == 400 and "outcome" in bad.value.fields
        with pytest.raises(AuthbrokerError) as missing:
            client.get_session("chat:nobody-here")
        assert missing.value.status == 404
        assert client.breaker.state == "closed"  # a 4xx is an answer, not an outage
        assert next(p for p in client.providers() if p.id == provider).profiles[0].error_count == 0
    with Client(broker.url, "not-a-token") as stranger, pytest.raises(AuthbrokerError) as refused:
        stranger.select("chat:x", provider)
    assert refused.value.status == 401


def test_the_async_client_makes_the_same_calls(broker, provider):
    async def scenario():
        async with AsyncClient(broker.url, broker.token, timeout=2.0) as client:
            choice = await client.select("chat:async", provider)
            result = await client.report(choice.profile, "rate_limit", session_key="chat:async",
                                         lease_id=choice.lease_id)
            reset = await client.reset("chat:async", provider)
            bulk = await client.bulk_reset(["chat:async"])
            state = await client.set_override("chat:async", f"{provider}:backup2")
            cleared = await client.clear_override("chat:async")
            session = await client.get_session("chat:async")
            events = await client.session_events("chat:async")
            everything = await client.events(profile=f"{provider}:default")
            providers = await client.providers()
            return choice, result, reset, bulk, state, cleared, session, events, everything, providers

    choice, result, reset, bulk, state, cleared, session, events, everything, providers = asyncio.run(scenario())
    assert choice.profile == f"{provider}:default"
    assert result.failover.profile == f"{provider}:backup1"
    assert reset.dropped == f"{provider}:backup1" and bulk.reset == 1
    assert state.override.profile == f"{provider}:backup2" and cleared.override is None
    assert session.session_id == cleared.session_id
    assert {"override_set", "override_cleared", "override_dropped"} <= {e.kind for e in events.events}
    assert [e.kind for e in everything.events] == ["cooldown_started", "profile_created"]
    assert provider in {p.id for p in providers}


# ---------------------------------------------------------------- timeouts and the breaker


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (a hung authbroker)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_it_gives_up_after_its_timeout_on_a_hung_server(silent_server):
    with Client(silent_server, "token", timeout=0.3, connect_timeout=0.3, fail_closed=True) as client:
        started = time.monotonic()
        with pytest.raises(AuthbrokerUnavailable, match="ReadTimeout"):
            client.select("chat:hung", "anthropic")
        assert 0.3 <= time.monotonic() - started < 1.5  # one timeout: a read timeout is never retried


def test_a_dead_authbroker_costs_one_timeout_then_the_breaker_answers_at_once(broker, provider, silent_server):
    clock = FakeMonotonic()
    with make_client(broker, monotonic=clock) as warm:
        warm.select("chat:breaker", provider)
        snapshot = warm.state.snapshot  # what a client that has been running a while knows
    transport = CountingTransport()
    client = Client(silent_server, broker.token, timeout=0.3, breaker_cooldown=5.0, monotonic=clock,
                    transport=transport)
    client.state.remember_providers(list(snapshot.values()), clock())
    started = time.monotonic()
    answers = [client.select(f"chat:breaker:{n}", provider) for n in range(20)]
    elapsed = time.monotonic() - started
    assert len(transport.sent) == 1 and client.breaker.state == "open"
    assert elapsed < 0.3 + 0.5  # one timeout, and 19 answers without a request
    assert {(a.profile, a.source, a.fail_open) for a in answers} == {(f"{provider}:default", "fail_open", True)}

    clock.value += 5.0  # the breaker's wait is over: one probe goes out, fails, and the circuit opens again
    client.select("chat:breaker:probe", provider)
    client.select("chat:breaker:after-probe", provider)
    assert len(transport.sent) == 2 and client.breaker.state == "open"
    client.close()


def test_the_breaker_closes_when_authbroker_answers_again(broker, provider):
    clock = FakeMonotonic()
    transport = CountingTransport()
    with make_client(broker, monotonic=clock, transport=transport, breaker_cooldown=5.0) as client:
        client.select("chat:close", provider)
        broker.kill()
        try:
            assert client.select("chat:close", provider).fail_open is True
            assert client.breaker.state == "open"
            sent = len(transport.sent)
            client.select("chat:close", provider)
            assert len(transport.sent) == sent  # open: nothing sent
        finally:
            broker.start()
        clock.value += 5.0
        answer = client.select("chat:close", provider)
        assert answer.fail_open is False and answer.source == "default" and answer.lease_id
        assert client.breaker.state == "closed" and client.breaker.opened_count == 1


def test_fail_closed_raises_instead_of_answering(broker, provider):
    with make_client(broker, fail_closed=True) as client:
        client.select("chat:closed", provider)
        broker.kill()
        try:
            with pytest.raises(AuthbrokerUnavailable):
                client.select("chat:closed", provider)
            with pytest.raises(AuthbrokerUnavailable):
                client.report(f"{provider}:default", "success", session_key="chat:closed")
            assert not client.state.buffer
        finally:
            broker.start()


def test_a_client_that_knows_nothing_raises_rather_than_guess(silent_server):
    with Client(silent_server, "token", timeout=0.2) as client, pytest.raises(AuthbrokerUnavailable,
                                                                              match="no snapshot"):
        client.select("chat:blank", "anthropic")


# ---------------------------------------------------------------- authbroker killed mid-session


def test_it_keeps_serving_through_a_restart_and_replays_reports_once(broker, provider):
    """Killed mid-session: fail-open answers, buffered reports replayed in order once, same end state."""
    clock = FakeMonotonic()
    transport = CountingTransport()
    default, backup1 = f"{provider}:default", f"{provider}:backup1"
    with make_client(broker, monotonic=clock, transport=transport) as client:
        first = client.select("chat:outage", provider)
        other = client.select("chat:outage:other", provider)
        assert first.profile == default and other.profile == default

        broker.kill()
        try:
            # The session keeps its profile while nothing is known against it.
            kept = client.select("chat:outage", provider)
            assert (kept.profile, kept.source, kept.fail_open) == (default, "fail_open", True)
            # The call on it hit a rate limit: buffered, and the client fails the session over by itself.
            failed = client.report(default, "rate_limit", session_key="chat:outage", lease_id=first.lease_id,
                                   retry_after_seconds=90)
            assert (failed.buffered, failed.fail_open, failed.profile) == (True, True, None)
            assert failed.failover.profile == backup1
            moved = client.select("chat:outage", provider)
            assert moved.profile == backup1 and moved.fail_open
            # A new session ranks from the snapshot plus what the client saw: default is cooling.
            assert client.select("chat:outage:new", provider).profile == backup1
            client.report(backup1, "success", session_key="chat:outage")
            assert len(client.state.buffer) == 2
        finally:
            broker.start()

        clock.value += 5.0  # the breaker lets the next call probe; the buffer goes out first, in order
        after = client.select("chat:outage", provider)
        assert not client.state.buffer and len(client.state.replay_errors) == 0
        assert transport.sent[-3:] == ["POST /api/report", "POST /api/report", "POST /api/select"]
        assert (after.profile, after.source, after.fail_open) == (backup1, "auto", False)

        # The state is what it would have been had authbroker stayed up.
        profiles = {p.id: p for p in next(p for p in client.providers() if p.id == provider).profiles}
        assert profiles[default].cooldown_reason == "rate_limit" and profiles[default].error_count == 1
        assert (profiles[default].cooldown_until - profiles[default].last_failure_at).total_seconds() == \
            pytest.approx(90)
        assert profiles[backup1].last_success_at is not None and profiles[backup1].error_count == 0
        kinds = [e.kind for e in client.events(profile=default).events]
        assert kinds.count("cooldown_started") == 1
        session = client.get_session("chat:outage")
        assert (session.override.profile, session.override.source) == (backup1, "auto")

        # Replayed once: the lease was claimed by the replay, so a gateway's retry is a duplicate.
        again = client.report(default, "rate_limit", session_key="chat:outage", lease_id=first.lease_id)
        assert again.duplicate is True
        assert [e.kind for e in client.events(profile=default).events].count("cooldown_started") == 1


def test_the_buffer_is_bounded_and_keeps_the_newest(broker, provider):
    """Five writes into a buffer of three: the two oldest are dropped, the three newest replayed."""
    clock = FakeMonotonic()
    default, backup1, backup2 = (f"{provider}:{n}" for n in ("default", "backup1", "backup2"))
    with make_client(broker, monotonic=clock, buffer_size=3) as client:
        client.select("chat:bounded", provider)
        broker.kill()
        try:
            client.report(backup1, "rate_limit")  # dropped
            client.report(backup2, "rate_limit")  # dropped
            client.report(backup2, "success")
            client.report(default, "success")
            client.report(default, "success")
        finally:
            broker.start()
        assert client.state.dropped_writes == 2 and len(client.state.buffer) == 3
        clock.value += 5.0
        assert client.flush() is True
        profiles = {p.id: p for p in next(p for p in client.providers() if p.id == provider).profiles}
        assert profiles[backup1].last_failure_at is None and profiles[backup1].last_used is None
        assert profiles[backup2].last_failure_at is None and profiles[backup2].last_success_at is not None
        assert profiles[default].last_success_at is not None


def attempts(client, transport, call):
    before = len(transport.sent)
    with pytest.raises(AuthbrokerUnavailable):
        call(client)
    return len(transport.sent) - before


CALLS = {
    "select": lambda c: c.select("chat:r", "anthropic"),
    "report without a lease": lambda c: c.report("anthropic:default", "rate_limit", session_key="chat:r"),
    "report with its lease": lambda c: c.report("anthropic:default", "rate_limit", session_key="chat:r",
                                                lease_id="0123456789abcdef0.sig"),
    "reset": lambda c: c.reset("chat:r", "anthropic"),
    "bulk reset": lambda c: c.bulk_reset(),
    "set override": lambda c: c.set_override("chat:r", "anthropic:default"),
}


def test_it_retries_only_where_a_repeat_is_harmless(silent_server):
    """Refused connections (nothing sent) are retried for every call but a leaseless report; timeouts never."""
    refused = f"http://127.0.0.1:{free_port()}"
    expected_refused = {"select": 2, "report without a lease": 1, "report with its lease": 2, "reset": 2,
                        "bulk reset": 2, "set override": 2}
    for address, expected in ((refused, expected_refused), (silent_server, dict.fromkeys(CALLS, 1))):
        transport = CountingTransport()
        # fail_closed: every call raises; breaker_cooldown=0: every call goes out (the breaker is not under test)
        with Client(address, "token", timeout=0.2, connect_timeout=0.2, fail_closed=True, breaker_cooldown=0,
                    transport=transport) as client:
            assert {name: attempts(client, transport, call) for name, call in CALLS.items()} == expected


class AsyncCountingTransport(httpx.AsyncHTTPTransport):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sent = []

    async def handle_async_request(self, request):
        self.sent.append(f"{request.method} {request.url.path}")
        return await super().handle_async_request(request)


def test_the_async_client_fails_open_and_replays_too(broker, provider):
    clock = FakeMonotonic()
    transport = AsyncCountingTransport()

    async def scenario():
        async with AsyncClient(broker.url, broker.token, timeout=2.0, monotonic=clock,
                               transport=transport) as client:
            first = await client.select("chat:async-outage", provider)
            broker.kill()
            try:
                kept = await client.select("chat:async-outage", provider)
                sent = len(transport.sent)
                buffered = await client.report(first.profile, "rate_limit", session_key="chat:async-outage",
                                               lease_id=first.lease_id)
                moved = await client.select("chat:async-outage", provider)
                assert len(transport.sent) == sent  # the breaker is open: nothing went out
            finally:
                broker.start()
            clock.value += 5.0
            after = await client.select("chat:async-outage", provider)
            return first, kept, buffered, moved, after

    first, kept, buffered, moved, after = asyncio.run(scenario())
    assert (kept.profile, kept.fail_open) == (first.profile, True)
    assert buffered.buffered and buffered.failover.profile == f"{provider}:backup1"
    assert (moved.profile, moved.fail_open) == (f"{provider}:backup1", True)
    assert (after.profile, after.source, after.fail_open) == (f"{provider}:backup1", "auto", False)
    assert transport.sent[-2:] == ["POST /api/report", "POST /api/select"]
