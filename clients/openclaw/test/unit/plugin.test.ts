import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { AuthbrokerPlugin, parseConfig } from "../../src/plugin.js";
import { ContractServer } from "./contract-server.js";

let server: ContractServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

const MODEL = { id: "claude-x", api: "anthropic-messages", provider: "anthropic-brokered", headers: { "x-trace": "1" } } as any;

/** Stands in for openclaw's stream function (the third party here): records what it was called with. */
function upstreamStream(final: { stopReason: string; errorMessage?: string }) {
  const calls: any[] = [];
  const fn = (model: any, _context: unknown, options?: { sessionId?: string }) => {
    calls.push({ model, options });
    return { result: async () => final };
  };
  return { fn, calls };
}

async function settle(server: ContractServer, count: number) {
  for (let i = 0; i < 100 && server.seen.length < count; i++) await new Promise((r) => setTimeout(r, 10));
}

test("config needs authbroker's URL and token", () => {
  assert.throws(() => parseConfig({ token: "t" }), /baseUrl/);
  assert.throws(() => parseConfig({ baseUrl: "http://x" }), /token/);
  assert.equal(parseConfig({ baseUrl: "http://x", token: "t" }).token, "t");
});

test("a brokered call carries the key authbroker chose, and its success is reported with the lease", async () => {
  server = await new ContractServer().start();
  server.choice = { anthropic: { profile: "anthropic:backup1", secret: "sk-b1" } };
  const plugin = new AuthbrokerPlugin({ baseUrl: server.url, token: "t" });
  plugin.noteSession("sid-1", "agent:main:dm:7");
  const upstream = upstreamStream({ stopReason: "stop" });

  const wrapped = plugin.wrapStream("anthropic-brokered", upstream.fn);
  await wrapped(MODEL, {}, { sessionId: "sid-1" });
  await settle(server, 2);

  assert.deepEqual(upstream.calls[0].model.headers, { "x-trace": "1", "x-api-key": "sk-b1" });
  assert.equal(server.seen[0]!.body.session_key, "agent:main:dm:7");
  assert.deepEqual(server.seen[1]!.body, { profile: "anthropic:backup1", outcome: "success", session_key: "agent:main:dm:7", lease_id: "lease-1", model: "claude-x" });
});

test("a 429 is reported as a rate limit with openclaw's Retry-After hint", async () => {
  server = await new ContractServer().start();
  const plugin = new AuthbrokerPlugin({ baseUrl: server.url, token: "t" });
  const upstream = upstreamStream({ stopReason: "error", errorMessage: '429: {"type":"error","error":{"type":"rate_limit_error"}}; Retry-After: 37 seconds' });

  await plugin.wrapStream("anthropic-brokered", upstream.fn)(MODEL, {}, { sessionId: "sid-2" });
  await settle(server, 2);

  const report = server.seen[1]!.body;
  assert.equal(report.outcome, "rate_limit");
  assert.equal(report.retry_after_seconds, 37);
  assert.equal(report.session_key, "openclaw:sid-2"); // no hook named this session's key
});

test("an aborted call is not reported", async () => {
  server = await new ContractServer().start();
  const plugin = new AuthbrokerPlugin({ baseUrl: server.url, token: "t" });
  const upstream = upstreamStream({ stopReason: "aborted" });

  await plugin.wrapStream("anthropic-brokered", upstream.fn)(MODEL, {}, { sessionId: "sid-3" });
  await new Promise((r) => setTimeout(r, 100));

  assert.deepEqual(server.paths(), ["POST /api/select"]);
});

test("/new announced by before_reset and session_end is one boundary; the next /new is another", async () => {
  server = await new ContractServer().start();
  const plugin = new AuthbrokerPlugin({ baseUrl: server.url, token: "t" });

  await plugin.boundary("before_reset", "agent:main:dm:7", "new");
  await plugin.boundary("session_end", "agent:main:dm:7", "new");
  await plugin.boundary("before_reset", "agent:main:dm:7", "new");
  await plugin.boundary("session_end", "agent:main:dm:7", "new");
  await plugin.boundary("session_end", "agent:main:dm:7", "idle");
  await plugin.boundary("session_end", "agent:main:dm:7", "compaction");

  assert.deepEqual(server.seen.map((s) => [s.path, s.body.reason]), [
    ["/api/sessions/agent%3Amain%3Adm%3A7/reset", "new"],
    ["/api/sessions/agent%3Amain%3Adm%3A7/reset", "new"],
    ["/api/sessions/agent%3Amain%3Adm%3A7/reset", "expiry"],
  ]);
});

test("gateway start bulk-resets as a restart, unless switched off", async () => {
  server = await new ContractServer().start();
  await new AuthbrokerPlugin({ baseUrl: server.url, token: "t" }).gatewayStart();
  await new AuthbrokerPlugin({ baseUrl: server.url, token: "t", resetAllOnGatewayStart: false }).gatewayStart();

  assert.deepEqual(server.seen.map((s) => [s.path, s.body]), [["/api/sessions/reset", { reason: "restart" }]]);
});

test("model_call_ended of an unbrokered provider is reported only when openclaw names the profile", async () => {
  server = await new ContractServer().start();
  const plugin = new AuthbrokerPlugin({ baseUrl: server.url, token: "t" });
  const ended = { provider: "anthropic", model: "claude-x", outcome: "error" as const, failureKind: "timeout", sessionKey: "k" };

  await plugin.observedCallEnded(ended); // stock openclaw 2026.9.6: no profile id
  await plugin.observedCallEnded({ ...ended, provider: "anthropic-brokered", authProfileId: "anthropic:default" }); // the wrapper reports those
  await plugin.observedCallEnded({ ...ended, authProfileId: "anthropic:default" }); // with the upstream patch
  await plugin.observedCallEnded({ ...ended, failureKind: undefined, httpStatus: 529, authProfileId: "anthropic:backup1" });

  assert.deepEqual(server.seen.map((s) => s.body), [
    { profile: "anthropic:default", outcome: "timeout", session_key: "k", model: "claude-x" },
    { profile: "anthropic:backup1", outcome: "overloaded", session_key: "k", model: "claude-x" },
  ]);
});

test("before_model_resolve names authbroker's profile for delegated providers only", async () => {
  server = await new ContractServer().start();
  server.choice = { anthropic: { profile: "anthropic:backup1", secret: "sk-b1" } };
  const plugin = new AuthbrokerPlugin({ baseUrl: server.url, token: "t", delegateProviders: ["anthropic"] });

  assert.deepEqual(await plugin.profileForTurn("agent:main:dm:1", "anthropic"), { authProfileOverride: "anthropic:backup1" });
  assert.equal(await plugin.profileForTurn("agent:main:dm:1", "openai"), undefined);
  assert.equal(await plugin.profileForTurn(undefined, "anthropic"), undefined);
  assert.equal(server.seen.length, 1);
});
