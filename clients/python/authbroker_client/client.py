"""`Client` (sync) and `AsyncClient` (asyncio) for the authbroker HTTP API (DESIGN §3, §8).

Each operation is written once, as a generator that yields the HTTP calls it needs
and receives their answers (or an `AuthbrokerUnavailable` thrown in); the two
clients only differ in how they carry a call: `httpx.Client` or `httpx.AsyncClient`.

Retries, only where a repeat cannot do harm:
- select and reads: on connection errors and 5xx answers;
- report: the same, but only when it carries its `lease_id` (a repeat is then a duplicate);
- reset, bulk reset, overrides: only when the connection could not be made (nothing was sent).
A read timeout is never retried: a slow authbroker gets no second request, and the call
goes to the fail-open path. One failed call opens the circuit breaker (by default).
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from authbroker_client.failopen import CircuitBreaker, FailOpenState, PendingWrite, provider_of
from authbroker_client.types import (
    BulkResetResult,
    EventPage,
    ProviderSnapshot,
    ReportResult,
    ResetResult,
    Selection,
    SessionState,
)

SAFE, CONNECT_ONLY, NEVER = "safe", "connect", "never"


class AuthbrokerError(Exception):
    """authbroker answered with an error (4xx): the request was wrong; nothing changed."""

    def __init__(self, status, code, message, fields=None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}


class AuthbrokerUnavailable(Exception):
    """authbroker could not be reached or answered 5xx, and there was no fail-open answer (or fail_closed)."""


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict | None = None
    params: dict | None = None
    retry: str = SAFE


def _session_path(session_key, suffix=""):
    return f"/api/sessions/{quote(session_key, safe=':@')}{suffix}"


def _error(response):
    try:
        data = response.json()["error"]
        return AuthbrokerError(response.status_code, data.get("code", ""), data.get("message", ""),
                               data.get("fields"))
    except (ValueError, KeyError, TypeError):
        return AuthbrokerError(response.status_code, "http_error", response.text[:200])


def _json(response):
    if 200 <= response.status_code < 300:
        return response.json()
    raise _error(response)


def _drop_none(**fields):
    return {k: v for k, v in fields.items() if v is not None}


class _Core:
    """Configuration, fail-open state and the operations as generators; no I/O."""

    def __init__(self, base_url, token, *, timeout=1.0, connect_timeout=0.5, retries=1, retry_backoff=0.05,
                 fail_closed=False, breaker_threshold=1, breaker_cooldown=5.0, buffer_size=1000,
                 snapshot_max_age=60.0, max_sessions=100_000, monotonic=time.monotonic, now=None):
        self.base_url = base_url.rstrip("/")
        if "://" not in self.base_url:
            self.base_url = f"http://{self.base_url}"
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                        "User-Agent": "authbroker-client/0.1"}
        self.retries = max(0, int(retries))
        self.retry_backoff = float(retry_backoff)
        self.fail_closed = fail_closed
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown, monotonic)
        self.state = FailOpenState(buffer_size=buffer_size, max_sessions=max_sessions, now=now)
        self.snapshot_max_age = snapshot_max_age
        self.monotonic = monotonic
        self._flushing = False

    # ------------------------------------------------------------ what a response means for the call

    def _attempts(self, call):
        return 1 + (self.retries if call.retry != NEVER else 0)

    @staticmethod
    def _retryable(call, exc=None, response=None):
        """May this failed attempt be repeated? `exc` a transport error, or `response` a 5xx/429 answer."""
        if call.retry == NEVER:
            return False
        if exc is not None:
            nothing_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            if call.retry == CONNECT_ONLY:
                return nothing_sent
            return nothing_sent or isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError)
        return call.retry == SAFE and response is not None

    @staticmethod
    def _is_unavailable(response):
        return response.status_code >= 500 or response.status_code == 429

    # ------------------------------------------------------------ operations (generators)

    def _op_select(self, session_key, provider, model, new_session, explain):
        yield from self._op_flush()
        body = _drop_none(session_key=session_key, provider=provider, model=model)
        if new_session:
            body["new_session"] = True
        if explain:
            body["explain"] = True
        try:
            response = yield Call("POST", "/api/select", body, retry=SAFE)
        except AuthbrokerUnavailable as exc:
            if self.fail_closed:
                raise
            selection = self.state.select(session_key, provider, model=model, new_session=new_session)
            if selection is None:
                raise AuthbrokerUnavailable(f"{exc}; no snapshot or session profile to fail open with") from exc
            return selection
        selection = Selection.from_json(_json(response))
        self.state.remember_selection(selection, provider)
        if self.snapshot_max_age is not None and (
                self.state.snapshot_at is None or self.monotonic() - self.state.snapshot_at > self.snapshot_max_age):
            try:
                yield from self._op_refresh_snapshot()
            except (AuthbrokerUnavailable, AuthbrokerError):
                self.state.snapshot_at = self.monotonic()  # try again after the next interval, not every call
        return selection

    def _op_refresh_snapshot(self):
        response = yield Call("GET", "/api/providers", retry=SAFE)
        providers = [ProviderSnapshot.from_json(p) for p in _json(response)]
        self.state.remember_providers(providers, self.monotonic())
        return providers

    def _op_report(self, profile, outcome, session_key, lease_id, model, retry_after_seconds, detail):
        body = _drop_none(profile=profile, outcome=outcome, session_key=session_key, lease_id=lease_id, model=model,
                          retry_after_seconds=retry_after_seconds, detail=detail)
        write = PendingWrite("report", "POST", "/api/report", body, datetime.now(UTC))
        return (yield from self._op_write(write, self._buffered_report))

    def _buffered_report(self, write):
        body = write.body
        self.state.observe(body["profile"], body["outcome"], body.get("model"), body.get("retry_after_seconds"))
        failover = None
        if body.get("session_key"):
            failover = self.state.fail_over(body["session_key"], body["profile"], body["outcome"], body.get("model"))
        return ReportResult(profile=None, failover=failover, fail_open=True, buffered=True)

    def _op_reset(self, session_key, provider, reason):
        body = _drop_none(provider=provider, reason=reason)
        write = PendingWrite("reset", "POST", _session_path(session_key, "/reset"), body, datetime.now(UTC),
                             session_key=session_key)
        return (yield from self._op_write(write, self._buffered_reset))

    def _buffered_reset(self, write):
        key, provider = write.session_key, write.body["provider"]
        before = self.state.last_profile(key, provider)
        selection = self.state.select(key, provider, new_session=True)
        carried = before[0] if before and before[1] == "user" else None
        dropped = before[0] if before and before[1] != "user" else None
        return ResetResult(session_id=None, carried=carried, dropped=dropped, selection=selection, fail_open=True,
                           buffered=True)

    def _op_bulk_reset(self, session_keys, reason):
        body = _drop_none(session_keys=list(session_keys) if session_keys is not None else None, reason=reason)
        write = PendingWrite("bulk_reset", "POST", "/api/sessions/reset", body, datetime.now(UTC))
        return (yield from self._op_write(write, self._buffered_bulk_reset))

    def _buffered_bulk_reset(self, write):
        self.state.remember_bulk_reset(write.body.get("session_keys"))
        return BulkResetResult(0, 0, 0, fail_open=True, buffered=True)

    def _op_write(self, write, buffered_answer):
        """A write: straight out when nothing is buffered; else behind the buffered ones, in order."""
        if self.state.buffer:
            self.state.enqueue(write)
            yield from self._op_flush()
            return self._outcome_of(write, buffered_answer)
        try:
            response = yield self._write_call(write)
        except AuthbrokerUnavailable:
            if self.fail_closed:
                raise
            self.state.enqueue(write)
            return buffered_answer(write)
        return self._apply(write, _json(response))

    def _outcome_of(self, write, buffered_answer):
        if not write.done:
            return buffered_answer(write)
        if isinstance(write.error, Exception):
            raise write.error
        return write.result

    @staticmethod
    def _write_call(write):
        if write.kind == "report":
            retry = SAFE if write.body.get("lease_id") else NEVER
        else:
            retry = CONNECT_ONLY
        return Call(write.method, write.path, write.body, retry=retry)

    def _apply(self, write, data):
        """Turn a write's answer into its result, and learn from it."""
        if write.kind == "report":
            result = ReportResult.from_json(data)
            self.state.remember_report(result, write.body.get("session_key"))
        elif write.kind == "reset":
            result = ResetResult.from_json(data)
            self.state.remember_reset(write.session_key, write.body["provider"], result.selection)
        else:
            result = BulkResetResult.from_json(data)
            self.state.remember_bulk_reset(write.body.get("session_keys"))
        return result

    def _op_flush(self):
        """Replay buffered writes in order; stop (keeping the rest) at the first that cannot be delivered."""
        with self.state._lock:
            if self._flushing or not self.state.buffer:
                return not self.state.buffer
            self._flushing = True
        try:
            while True:
                with self.state._lock:
                    if not self.state.buffer:
                        return True
                    write = self.state.buffer[0]
                try:
                    response = yield self._write_call(write)
                    if (response.status_code == 409 and write.kind == "report"
                            and _error(response).code == "lease_expired"):
                        # Never claimed and now too old: deliver it without the lease (it was never applied).
                        write.body = {k: v for k, v in write.body.items() if k != "lease_id"}
                        response = yield self._write_call(write)
                except AuthbrokerUnavailable:
                    return False
                try:
                    write.result = self._apply(write, _json(response))
                except AuthbrokerError as exc:
                    write.error = exc
                    self.state.replay_errors.append((write, exc))
                write.done = True
                with self.state._lock:
                    if self.state.buffer and self.state.buffer[0] is write:
                        self.state.buffer.popleft()
        finally:
            self._flushing = False

    def _op_simple(self, call, parse):
        response = yield call
        return parse(_json(response))

    def _op_set_override(self, session_key, profile):
        response = yield Call("PUT", _session_path(session_key, "/override"), {"profile": profile},
                              retry=CONNECT_ONLY)
        state = SessionState.from_json(_json(response))
        self.state._pin(session_key, self.state.resolve(provider_of(profile)), profile, "user")
        return state

    def _op_clear_override(self, session_key, provider):
        params = {"provider": provider} if provider else None
        response = yield Call("DELETE", _session_path(session_key, "/override"), params=params, retry=CONNECT_ONLY)
        state = SessionState.from_json(_json(response))
        self.state.drop_pins(session_key, provider)
        return state

    @staticmethod
    def _event_params(cursor, page_size, **filters):
        params = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items() if v is not None}
        if cursor:
            params["cursor"] = cursor
        if page_size:
            params["page_size"] = page_size
        return params


class Client(_Core):
    """The synchronous client. Thread-safe; keep one per process (it keeps connections alive)."""

    def __init__(self, base_url, token, *, transport=None, **options):
        super().__init__(base_url, token, **options)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout,
                                  transport=transport)

    def close(self):
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, call):
        if not self.breaker.allow():
            raise AuthbrokerUnavailable("authbroker unavailable (circuit open)")
        attempts, reason = self._attempts(call), None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.retry_backoff * attempt)
            try:
                response = self._http.request(call.method, call.path, json=call.body, params=call.params)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if self._retryable(call, exc=exc):
                    continue
                break
            except BaseException:
                self.breaker.release()
                raise
            if self._is_unavailable(response):
                reason = f"HTTP {response.status_code}"
                if self._retryable(call, response=response):
                    continue
                break
            self.breaker.success()
            return response
        self.breaker.failure()
        raise AuthbrokerUnavailable(f"authbroker unavailable ({reason})")

    def _run(self, operation):
        try:
            call = next(operation)
            while True:
                try:
                    response = self._send(call)
                except AuthbrokerUnavailable as exc:
                    call = operation.throw(exc)
                else:
                    call = operation.send(response)
        except StopIteration as stop:
            return stop.value

    # ------------------------------------------------------------ the API

    def select(self, session_key, provider, *, model=None, new_session=False, explain=False) -> Selection:
        return self._run(self._op_select(session_key, provider, model, new_session, explain))

    def report(self, profile, outcome, *, session_key=None, lease_id=None, model=None, retry_after_seconds=None,
               detail=None) -> ReportResult:
        return self._run(self._op_report(profile, outcome, session_key, lease_id, model, retry_after_seconds,
                                         detail))

    def reset(self, session_key, provider, *, reason=None) -> ResetResult:
        return self._run(self._op_reset(session_key, provider, reason))

    def bulk_reset(self, session_keys=None, *, reason="restart") -> BulkResetResult:
        return self._run(self._op_bulk_reset(session_keys, reason))

    def set_override(self, session_key, profile) -> SessionState:
        return self._run(self._op_set_override(session_key, profile))

    def clear_override(self, session_key, provider=None) -> SessionState:
        return self._run(self._op_clear_override(session_key, provider))

    def get_session(self, session_key) -> SessionState:
        return self._run(self._op_simple(Call("GET", _session_path(session_key)), SessionState.from_json))

    def session_events(self, session_key, *, cursor=None, page_size=None) -> EventPage:
        params = self._event_params(cursor, page_size)
        return self._run(self._op_simple(Call("GET", _session_path(session_key, "/events"), params=params),
                                         EventPage.from_json))

    def events(self, *, kind=None, profile=None, provider=None, session_key=None, source=None, since=None,
               until=None, cursor=None, page_size=None) -> EventPage:
        params = self._event_params(cursor, page_size, kind=kind, profile=profile, provider=provider,
                                    session_key=session_key, source=source, since=since, until=until)
        return self._run(self._op_simple(Call("GET", "/api/events", params=params), EventPage.from_json))

    def providers(self) -> list[ProviderSnapshot]:
        """GET /api/providers; also refreshes the snapshot the fail-open path ranks from."""
        return self._run(self._op_refresh_snapshot())

    refresh_snapshot = providers

    def flush(self) -> bool:
        """Replay buffered writes now; True when the buffer is empty afterwards."""
        return self._run(self._op_flush())


class AsyncClient(_Core):
    """The asyncio client: the same operations, awaited. Keep one per event loop."""

    def __init__(self, base_url, token, *, transport=None, **options):
        super().__init__(base_url, token, **options)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=self.timeout,
                                       transport=transport)

    async def aclose(self):
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    async def _send(self, call):
        if not self.breaker.allow():
            raise AuthbrokerUnavailable("authbroker unavailable (circuit open)")
        attempts, reason = self._attempts(call), None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.retry_backoff * attempt)
            try:
                response = await self._http.request(call.method, call.path, json=call.body, params=call.params)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if self._retryable(call, exc=exc):
                    continue
                break
            except BaseException:
                self.breaker.release()
                raise
            if self._is_unavailable(response):
                reason = f"HTTP {response.status_code}"
                if self._retryable(call, response=response):
                    continue
                break
            self.breaker.success()
            return response
        self.breaker.failure()
        raise AuthbrokerUnavailable(f"authbroker unavailable ({reason})")

    async def _run(self, operation):
        try:
            call = next(operation)
            while True:
                try:
                    response = await self._send(call)
                except AuthbrokerUnavailable as exc:
                    call = operation.throw(exc)
                else:
                    call = operation.send(response)
        except StopIteration as stop:
            return stop.value

    async def select(self, session_key, provider, *, model=None, new_session=False, explain=False) -> Selection:
        return await self._run(self._op_select(session_key, provider, model, new_session, explain))

    async def report(self, profile, outcome, *, session_key=None, lease_id=None, model=None,
                     retry_after_seconds=None, detail=None) -> ReportResult:
        return await self._run(self._op_report(profile, outcome, session_key, lease_id, model, retry_after_seconds,
                                               detail))

    async def reset(self, session_key, provider, *, reason=None) -> ResetResult:
        return await self._run(self._op_reset(session_key, provider, reason))

    async def bulk_reset(self, session_keys=None, *, reason="restart") -> BulkResetResult:
        return await self._run(self._op_bulk_reset(session_keys, reason))

    async def set_override(self, session_key, profile) -> SessionState:
        return await self._run(self._op_set_override(session_key, profile))

    async def clear_override(self, session_key, provider=None) -> SessionState:
        return await self._run(self._op_clear_override(session_key, provider))

    async def get_session(self, session_key) -> SessionState:
        return await self._run(self._op_simple(Call("GET", _session_path(session_key)), SessionState.from_json))

    async def session_events(self, session_key, *, cursor=None, page_size=None) -> EventPage:
        params = self._event_params(cursor, page_size)
        return await self._run(self._op_simple(Call("GET", _session_path(session_key, "/events"), params=params),
                                               EventPage.from_json))

    async def events(self, *, kind=None, profile=None, provider=None, session_key=None, source=None, since=None,
                     until=None, cursor=None, page_size=None) -> EventPage:
        params = self._event_params(cursor, page_size, kind=kind, profile=profile, provider=provider,
                                    session_key=session_key, source=source, since=since, until=until)
        return await self._run(self._op_simple(Call("GET", "/api/events", params=params), EventPage.from_json))

    async def providers(self) -> list[ProviderSnapshot]:
        return await self._run(self._op_refresh_snapshot())

    refresh_snapshot = providers

    async def flush(self) -> bool:
        return await self._run(self._op_flush())
