"""A real LiteLLM Router routed by authbroker, against a fake OpenAI-compatible upstream on loopback.

Three deployments of one model group, each an auth profile (`model_info.id`).
The upstream is a small threaded HTTP server the test scripts per API key; the
authbroker is the real service (gunicorn, its own database) whose clock the
test moves. Nothing leaves the machine.
"""

import asyncio
import json
import os
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price list from the internet
litellm = pytest.importorskip("litellm")

from authbroker_client import Client  # noqa: E402
from authbroker_client.litellm import attach  # noqa: E402

from tests.broker import Broker  # noqa: E402

pytestmark = pytest.mark.litellm

SESSION = "agent:main:telegram:dm:42"


class Upstream:
    """An OpenAI-compatible chat endpoint; `behaviour[api_key]` is (status, headers, error body) or None (200)."""

    def __init__(self):
        self.behaviour = {}
        self.calls = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                key = self.headers.get("authorization", "").removeprefix("Bearer ")
                upstream.calls.append(key)
                scripted = upstream.behaviour.get(key)
                if scripted is None:
                    status, headers = 200, {}
                    payload = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": f"answered with {key}"}}],
                               "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}
                else:
                    status, headers, payload = scripted
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def broker():
    broker = Broker(workers=1)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def upstream():
    upstream = Upstream()
    yield upstream
    upstream.close()


@pytest.fixture
def gateway(broker, upstream):
    """Build a Router for one provider's three profiles, routed and reported through authbroker."""
    made = []

    def build(provider):
        broker.add_profiles(provider)
        model_list = [{
            "model_name": "claude",
            "litellm_params": {"model": "openai/claude-sonnet", "api_base": upstream.base,
                               "api_key": f"sk-{provider}-{name}", "max_retries": 0},
            "model_info": {"id": f"{provider}:{name}"},
        } for name in ("default", "backup1", "backup2")]
        # The settings the adapter needs: LiteLLM's own cooldowns off, retries on (a failover within the call).
        router = litellm.Router(model_list=model_list, num_retries=2, disable_cooldowns=True, retry_after=0)
        client = Client(broker.url, broker.token, timeout=2.0)
        _, callbacks = attach(router, client)
        made.append((client, callbacks))
        return router, client

    yield build
    for client, callbacks in made:
        callbacks.detach()
        client.close()


@pytest.fixture(scope="module")
def loop():
    """One event loop for the module, running in its own thread as a gateway's would: LiteLLM's logging
    worker (which runs the success callbacks) lives in it, after each call returns."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def chat(loop, router, session_key):
    call = router.acompletion(model="claude", messages=[{"role": "user", "content": "hello"}],
                              metadata={"session_key": session_key})
    return asyncio.run_coroutine_threadsafe(call, loop).result(timeout=60)


def profiles(client, provider):
    return {p.id: p for p in next(p for p in client.providers() if p.id == provider).profiles}


def wait_for(predicate, timeout=10.0):
    """Callbacks may still be reporting after the call returned; wait for the report to land."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("authbroker never saw the report")


def test_the_seed_scenario_end_to_end(broker, upstream, gateway, loop):
    """default answers 429 + retry-after: cooled, the call fails over to backup1, /new gets default back later."""
    router, client = gateway("anthropic")
    upstream.behaviour["sk-anthropic-default"] = (
        429, {"retry-after": "90"}, {"error": {"type": "rate_limit_error", "message": "rate limited"}})

    answer = chat(loop, router, SESSION)
    assert answer.choices[0].message.content == "answered with sk-anthropic-backup1"
    assert upstream.calls == ["sk-anthropic-default", "sk-anthropic-backup1"]  # one LiteLLM call, two attempts
    wait_for(lambda: profiles(client, "anthropic")["anthropic:backup1"].last_success_at)
    # The adapter reports the model group, so the cooldown is on (anthropic:default, claude), 90 s (the hint).
    cooled = client.events(profile="anthropic:default", kind="cooldown_started").events
    assert len(cooled) == 1 and cooled[0].model == "claude" and cooled[0].reason.startswith("rate_limit")
    assert (datetime.fromisoformat(cooled[0].after["cooldown_until"]) - cooled[0].at).total_seconds() == \
        pytest.approx(90)
    candidates = {c.profile: c for c in client.select("agent:probe", "anthropic", model="claude",
                                                      explain=True).candidates}
    assert (candidates["anthropic:default"].available, candidates["anthropic:default"].reason) == (
        False, "model_cooldown:rate_limit")
    session = client.get_session(SESSION)
    assert (session.override.profile, session.override.source) == ("anthropic:backup1", "auto")

    # The conversation goes on: sticky on backup1, default is not tried.
    upstream.behaviour.pop("sk-anthropic-default")
    upstream.calls.clear()
    chat(loop, router, SESSION)
    assert upstream.calls == ["sk-anthropic-backup1"]

    # /new while default still cools: the auto pin is dropped, and the new session still avoids default.
    assert client.reset(SESSION, "anthropic", reason="new").dropped == "anthropic:backup1"
    upstream.calls.clear()
    chat(loop, router, SESSION)
    assert upstream.calls == ["sk-anthropic-backup1"]
    # The cooldown ends (authbroker's clock moves 91 s): the next /new gets default back.
    broker.shift(91)
    client.reset(SESSION, "anthropic", reason="new")
    upstream.calls.clear()
    answer = chat(loop, router, SESSION)
    assert upstream.calls == ["sk-anthropic-default"]
    assert answer.choices[0].message.content == "answered with sk-anthropic-default"

    # The events say why, oldest first: the failover names the rate limit, the boundaries drop the auto pin.
    story = [(e.kind, e.profile, e.source) for e in reversed(client.session_events(SESSION).events)]
    assert story[0] == ("override_set", "anthropic:backup1", "auto")
    assert ("override_dropped", "anthropic:backup1", "auto") in story
    failover = client.events(session_key=SESSION, kind="override_set").events[-1]
    assert "anthropic:default reported rate_limit" in failover.reason


def test_a_529_storm_cools_nothing(broker, upstream, gateway, loop):
    """DESIGN v2: `overloaded` is recorded, never held against a key; no cooldown, no failover."""
    router, client = gateway("storm")
    for name in ("default", "backup1", "backup2"):
        upstream.behaviour[f"sk-storm-{name}"] = (529, {}, {"error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"}})
    for n in range(4):
        with pytest.raises(Exception) as failed:  # noqa: PT011 (LiteLLM's exception class for a 529 is its own)
            chat(loop, router, f"agent:storm:{n}")
        assert getattr(failed.value, "status_code", None) == 529
    assert set(upstream.calls) == {"sk-storm-default"}  # rotating keys cannot cure an overloaded provider
    state = wait_for(lambda: (s := profiles(client, "storm"))["storm:default"].failure_counts.get("overloaded", 0)
                     >= 12 and s)
    for profile in state.values():
        assert profile.available and profile.error_count == 0 and profile.cooldown_until is None
    assert state["storm:default"].failure_counts == {"overloaded": 12}
    assert client.events(profile="storm:default", kind="cooldown_started").events == ()
    assert client.get_session("agent:storm:0").override is None

    upstream.behaviour.clear()
    upstream.calls.clear()
    chat(loop, router, "agent:storm:after")
    assert upstream.calls == ["sk-storm-default"]


def test_an_auth_failure_disables_the_key_after_the_third(broker, upstream, gateway, loop):
    router, client = gateway("keys")
    upstream.behaviour["sk-keys-default"] = (401, {}, {"error": {"type": "authentication_error",
                                                                 "message": "invalid x-api-key"}})
    for n, wait in enumerate((61, 301, 0)):
        upstream.calls.clear()
        answer = chat(loop, router, f"agent:keys:{n}")
        assert upstream.calls == ["sk-keys-default", "sk-keys-backup1"]  # failed over within the call
        assert answer.choices[0].message.content == "answered with sk-keys-backup1"
        wait_for(lambda n=n: profiles(client, "keys")["keys:default"].failure_counts.get("auth", 0) == n + 1)
        broker.shift(wait)  # let the cooldown end so the next new session tries default again
    default = profiles(client, "keys")["keys:default"]
    assert (default.disabled_reason, default.error_count) == ("auth", 3)
    assert (default.disabled_until - default.last_failure_at).total_seconds() == pytest.approx(30 * 60)
    assert [e.kind for e in client.events(profile="keys:default", kind="disabled").events] == ["disabled"]

    broker.shift(301)  # longer than any cooldown so far, shorter than the disablement
    upstream.calls.clear()
    chat(loop, router, "agent:keys:after")
    assert upstream.calls == ["sk-keys-backup1"]  # the disabled key is not tried at all


class SlowReportingClient(Client):
    """A real client whose reports reach authbroker late (a slow network), as a delayed callback would."""

    def report(self, *args, **kwargs):
        time.sleep(0.4)
        return super().report(*args, **kwargs)


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_the_retry_is_picked_after_a_slow_failure_report_lands(broker, upstream, loop, mode):
    """A failure report that takes 0.4 s still lands before the retry's pick: the call fails over, not back.

    LiteLLM 1.110 itself runs the failure callback before retrying; the adapter's pick also waits for the
    previous attempt's report, so this holds on versions or paths that run callbacks in the background.
    """
    provider = f"slow{mode}"
    broker.add_profiles(provider)
    model_list = [{"model_name": "claude",
                   "litellm_params": {"model": "openai/claude-sonnet", "api_base": upstream.base,
                                      "api_key": f"sk-{provider}-{name}", "max_retries": 0},
                   "model_info": {"id": f"{provider}:{name}"}} for name in ("default", "backup1", "backup2")]
    router = litellm.Router(model_list=model_list, num_retries=2, disable_cooldowns=True, retry_after=0)
    client = SlowReportingClient(broker.url, broker.token, timeout=2.0)
    _, callbacks = attach(router, client)
    upstream.behaviour[f"sk-{provider}-default"] = (429, {}, {"error": {"message": "rate limited"}})
    try:
        if mode == "async":
            chat(loop, router, f"agent:{provider}:1")
        else:
            router.completion(model="claude", messages=[{"role": "user", "content": "hello"}],
                              metadata={"session_key": f"agent:{provider}:1"})
        wait_for(lambda: profiles(client, provider)[f"{provider}:backup1"].last_success_at)
    finally:
        callbacks.detach()
        client.close()
    assert upstream.calls == [f"sk-{provider}-default", f"sk-{provider}-backup1"]


@pytest.mark.parametrize(("wait", "retry_goes_to"), [(2.0, "backup1"), (0.0, "default")],
                         ids=["waits-for-the-report", "without-the-wait-the-failed-key-again"])
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_pick_waits_for_the_report_still_in_flight(broker, mode, wait, retry_goes_to):
    """When the failure callback runs in the background, the retry's pick waits for its report to land."""
    provider = f"inflight{mode}{int(wait)}"
    broker.add_profiles(provider)
    model_list = [{"model_name": "claude",
                   "litellm_params": {"model": "openai/claude-sonnet", "api_base": "http://127.0.0.1:9/v1",
                                      "api_key": f"sk-{name}"},
                   "model_info": {"id": f"{provider}:{name}"}} for name in ("default", "backup1", "backup2")]
    router = litellm.Router(model_list=model_list, num_retries=2, disable_cooldowns=True, retry_after=0)
    client = SlowReportingClient(broker.url, broker.token, timeout=2.0)
    strategy, callbacks = attach(router, client, report_wait_seconds=wait)

    def pick(request):
        if mode == "async":
            return asyncio.run(strategy.async_get_available_deployment("claude", request_kwargs=request))
        return strategy.get_available_deployment("claude", request_kwargs=request)

    try:
        request = {"metadata": {"session_key": f"agent:{provider}:1"}}
        first = pick(request)
        assert first["model_info"]["id"] == f"{provider}:default"
        upstream_request = httpx.Request("POST", "http://upstream/v1/chat/completions")
        failure = httpx.HTTPStatusError("429", request=upstream_request, response=httpx.Response(
            429, headers={"retry-after": "30"}, text="rate limited", request=upstream_request))
        kwargs = {"litellm_params": {"metadata": request["metadata"], "model_info": first["model_info"]},
                  "exception": failure}
        reporter = threading.Thread(target=callbacks.log_failure_event, args=(kwargs, None, None, None))
        reporter.start()  # the report takes 0.4 s; the retry asks for a deployment meanwhile
        second = pick(request)
        reporter.join()
    finally:
        callbacks.detach()
        client.close()
    assert second["model_info"]["id"] == f"{provider}:{retry_goes_to}"
