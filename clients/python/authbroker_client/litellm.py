"""LiteLLM adapter: a LiteLLM `Router` whose deployments are auth profiles asks authbroker which to use.

Install with `pip install "authbroker-client[litellm]"`. Wire it with `attach(router, client)`:

- `AuthbrokerRouting` (a `CustomRoutingStrategyBase`) picks, for each attempt, the deployment whose
  `model_info.id` is the profile authbroker selects for the request's session. The session key is
  read from the request metadata (`authbroker_session_key`, then `session_key`, then `session_id`);
  a request without one gets a key of its own (`litellm:request:<trace id>`).
- `AuthbrokerCallbacks` (a `CustomLogger`) reports every attempt's outcome: success, or the failure
  mapped by `classify_exception`, with the `Retry-After` hint, the model group and the attempt's lease.

Ordering: LiteLLM may run the failure callback after the retry has already asked for a deployment.
Each pick therefore waits (at most `report_wait_seconds`) until every earlier attempt of the same
LiteLLM call has been reported, so authbroker has cooled the failed profile before it picks again.

Router settings it needs: `disable_cooldowns=True` (authbroker decides; LiteLLM's own cooldowns
would fight it) and `num_retries` ≥ the number of profiles minus one (a failover happens inside
the same call). See docs/integration.md.
"""

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from litellm.integrations.custom_logger import CustomLogger
from litellm.types.router import CustomRoutingStrategyBase

from authbroker_client.failopen import provider_of
from authbroker_client.outcomes import classify_exception, parse_retry_after

log = logging.getLogger("authbroker_client.litellm")

SESSION_KEYS = ("authbroker_session_key", "session_key", "session_id")
CALL_KEY = "authbroker_call"


@dataclass(eq=False)
class Attempt:
    """One pick: which profile, under which lease, for which call; `reported` is set once its report is done."""

    call: str
    session_key: str
    profile: str
    lease_id: str | None
    model: str | None
    claimed: bool = False
    reported: threading.Event = field(default_factory=threading.Event)


def _metadata(request):
    for name in ("metadata", "litellm_metadata"):
        bucket = request.get(name) if isinstance(request, dict) else None
        if isinstance(bucket, dict):
            return bucket
    if isinstance(request, dict):
        request["metadata"] = {}
        return request["metadata"]
    return {}


def _deployments(router):
    registry = getattr(router, "registry", None)
    if callable(registry):
        return list(registry().all())
    return list(router.model_list)


class AttemptBook:
    """The attempts picked and not yet reported, per LiteLLM call. Thread-safe and bounded."""

    def __init__(self, max_calls=10_000):
        self.max_calls = max_calls
        self._calls = OrderedDict()
        self._lock = threading.Lock()

    def add(self, attempt):
        with self._lock:
            self._calls.setdefault(attempt.call, []).append(attempt)
            self._calls.move_to_end(attempt.call)
            while len(self._calls) > self.max_calls:
                _, dropped = self._calls.popitem(last=False)
                for stale in dropped:
                    stale.reported.set()

    def pending(self, call):
        """The attempts of `call` whose report has not landed yet (in flight or not even started)."""
        with self._lock:
            return [a for a in self._calls.get(call, []) if not a.reported.is_set()]

    def claim(self, call, profile):
        """The oldest unclaimed attempt of `call` on `profile` (FIFO); it stays pending until `done`."""
        with self._lock:
            for attempt in self._calls.get(call, []):
                if attempt.profile == profile and not attempt.claimed:
                    attempt.claimed = True
                    return attempt
        return None

    def done(self, attempt):
        with self._lock:
            attempts = self._calls.get(attempt.call, [])
            if attempt in attempts:
                attempts.remove(attempt)
                if not attempts:
                    self._calls.pop(attempt.call, None)
        attempt.reported.set()


class AuthbrokerRouting(CustomRoutingStrategyBase):
    """Picks the deployment for the profile authbroker selects (one provider per model group)."""

    def __init__(self, router, client, book, *, report_wait_seconds=2.0, send_model=True,
                 session_keys=SESSION_KEYS):
        self.router = router
        self.client = client
        self.book = book
        self.report_wait_seconds = report_wait_seconds
        self.send_model = send_model
        self.session_keys = tuple(session_keys)

    def _session_key(self, request, metadata):
        for name in self.session_keys:
            value = metadata.get(name)
            if isinstance(value, str) and value:
                return value
        trace = request.get("litellm_trace_id") if isinstance(request, dict) else None
        return f"litellm:request:{trace or uuid.uuid4().hex}"

    def _group(self, model):
        group = [d for d in _deployments(self.router) if d.get("model_name") == model]
        if not group:
            raise ValueError(f"authbroker: no deployment in model group {model!r}")
        return group

    def _prepare(self, model, request):
        request = request if isinstance(request, dict) else {}
        metadata = _metadata(request)
        call = metadata.get(CALL_KEY)
        if not isinstance(call, str):
            call = metadata[CALL_KEY] = uuid.uuid4().hex
        group = self._group(model)
        providers = {provider_of(str((d.get("model_info") or {}).get("id", ""))) for d in group}
        if len(providers) != 1:
            raise ValueError(f"authbroker: model group {model!r} mixes providers {sorted(providers)}; "
                             "give each provider its own model group")
        return call, self._session_key(request, metadata), providers.pop(), group

    def _choose(self, call, session_key, model, group, selection):
        log.debug("authbroker: call %s session %s picks %s", call, session_key, selection.profile)
        for deployment in group:
            if (deployment.get("model_info") or {}).get("id") == selection.profile:
                self.book.add(Attempt(call, session_key, selection.profile, selection.lease_id,
                                      model if self.send_model else None))
                return deployment
        raise ValueError(f"authbroker chose {selection.profile!r}, which is not a deployment of {model!r}; "
                         "set each deployment's model_info.id to its auth profile id")

    def _wait_sync(self, call):
        deadline = time.monotonic() + self.report_wait_seconds
        for attempt in self.book.pending(call):
            attempt.reported.wait(max(0.0, deadline - time.monotonic()))

    async def _wait_async(self, call):
        deadline = time.monotonic() + self.report_wait_seconds
        while self.book.pending(call) and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    async def async_get_available_deployment(self, model, messages=None, input=None, specific_deployment=False,
                                             request_kwargs=None):
        call, session_key, provider, group = self._prepare(model, request_kwargs)
        await self._wait_async(call)
        selection = await asyncio.to_thread(self.client.select, session_key, provider,
                                            model=model if self.send_model else None)
        return self._choose(call, session_key, model, group, selection)

    def get_available_deployment(self, model, messages=None, input=None, specific_deployment=False,
                                 request_kwargs=None):
        call, session_key, provider, group = self._prepare(model, request_kwargs)
        self._wait_sync(call)
        selection = self.client.select(session_key, provider, model=model if self.send_model else None)
        return self._choose(call, session_key, model, group, selection)


class AuthbrokerCallbacks(CustomLogger):
    """Reports each attempt's outcome to authbroker (with its lease), then lets the next pick go."""

    def __init__(self, client, book, **kwargs):
        super().__init__(**kwargs)
        self.client = client
        self.book = book
        # LiteLLM keeps one logger per class and public primitive attributes: this makes each instance its own.
        self.instance = f"authbroker-{uuid.uuid4().hex}"

    def detach(self):
        """Stop receiving LiteLLM's callbacks (for tests and reconfiguration)."""
        import litellm

        manager = getattr(litellm, "logging_callback_manager", None)
        if manager is not None and hasattr(manager, "remove_callback_from_all_lists"):
            manager.remove_callback_from_all_lists(self)
        litellm.callbacks = [c for c in (litellm.callbacks or []) if c is not self]

    @staticmethod
    def _attempt_fields(kwargs):
        params = kwargs.get("litellm_params") or {}
        metadata = params.get("metadata") or params.get("litellm_metadata") or {}
        profile = (params.get("model_info") or {}).get("id") or (metadata.get("model_info") or {}).get("id")
        return metadata.get(CALL_KEY), profile

    def _report_args(self, kwargs, success):
        call, profile = self._attempt_fields(kwargs)
        if not call or not profile:
            return None, None
        attempt = self.book.claim(call, profile)
        log.debug("authbroker: %s callback for call %s on %s (attempt %s)", "success" if success else "failure",
                  call, profile, "found" if attempt else "unknown")
        if attempt is None:
            return None, None
        if success:
            return attempt, {"outcome": "success"}
        exc = kwargs.get("exception")
        headers = getattr(exc, "litellm_response_headers", None)
        if headers is None:
            headers = getattr(getattr(exc, "response", None), "headers", None)
        outcome = classify_exception(exc) if exc is not None else "unknown"
        status = getattr(exc, "status_code", None)
        return attempt, {"outcome": outcome, "retry_after_seconds": parse_retry_after(headers),
                         "detail": f"litellm {type(exc).__name__} {status or ''}".strip()[:200]}

    def _report(self, attempt, fields):
        log.debug("authbroker: reporting %s for %s (call %s)", fields.get("outcome"), attempt.profile, attempt.call)
        try:
            self.client.report(attempt.profile, fields.pop("outcome"), session_key=attempt.session_key,
                               lease_id=attempt.lease_id, model=attempt.model, **fields)
        except Exception:  # a report must never break the user's call
            log.exception("authbroker: report for %s failed", attempt.profile)
        finally:
            self.book.done(attempt)

    async def _areport(self, kwargs, success):
        attempt, fields = self._report_args(kwargs, success)
        if attempt is not None:
            await asyncio.to_thread(self._report, attempt, fields)

    def _sreport(self, kwargs, success):
        attempt, fields = self._report_args(kwargs, success)
        if attempt is not None:
            self._report(attempt, fields)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        await self._areport(kwargs, True)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        await self._areport(kwargs, False)

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._sreport(kwargs, True)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._sreport(kwargs, False)

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        """On the LiteLLM proxy: register the routing strategy on the proxy's router before its first pick."""
        with contextlib.suppress(ImportError):
            from litellm.proxy import proxy_server

            router = getattr(proxy_server, "llm_router", None)
            if router is not None and getattr(router, "_authbroker_attached", None) is not self:
                _register(router, AuthbrokerRouting(router, self.client, self.book))
                router._authbroker_attached = self
        return data


def _register(router, strategy):
    if hasattr(router, "register_plugin"):
        router.register_plugin(strategy)
    else:  # LiteLLM before register_plugin
        router.set_custom_routing_strategy(strategy)


def attach(router, client, *, report_wait_seconds=2.0, send_model=True, session_keys=SESSION_KEYS):
    """Route `router` through authbroker with `client` (a sync `Client`); returns (strategy, callbacks).

    The callbacks are added to `litellm.callbacks` (LiteLLM runs its callbacks globally);
    `callbacks.detach()` removes them.
    """
    import litellm

    book = AttemptBook()
    strategy = AuthbrokerRouting(router, client, book, report_wait_seconds=report_wait_seconds,
                                 send_model=send_model, session_keys=session_keys)
    callbacks = AuthbrokerCallbacks(client, book)
    _register(router, strategy)
    manager = getattr(litellm, "logging_callback_manager", None)
    if manager is not None and hasattr(manager, "add_litellm_callback"):
        manager.add_litellm_callback(callbacks)
    else:
        litellm.callbacks = [*(litellm.callbacks or []), callbacks]
    router._authbroker_attached = callbacks
    return strategy, callbacks


def proxy_callbacks(base_url, token, **client_options):
    """For the LiteLLM proxy's config.yaml: `litellm_settings.callbacks: my_module.authbroker`, where
    `authbroker = proxy_callbacks(os.environ["AUTHBROKER_URL"], os.environ["AUTHBROKER_TOKEN"])`."""
    from authbroker_client.client import Client

    return AuthbrokerCallbacks(Client(base_url, token, **client_options), AttemptBook())


__all__ = ["AttemptBook", "AuthbrokerCallbacks", "AuthbrokerRouting", "attach", "proxy_callbacks"]
