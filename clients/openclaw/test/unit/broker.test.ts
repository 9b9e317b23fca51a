import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { Broker } from "../../src/broker.js";
import { AuthbrokerClient, AuthbrokerUnavailable } from "../../src/client.js";
import { ContractServer } from "./contract-server.js";

let server: ContractServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function brokerFor(url: string, time = clock(), options: { failClosed?: boolean } = {}) {
  const client = new AuthbrokerClient({ baseUrl: url, token: "t", timeoutMs: 500 });
  return new Broker(client, { breakerOpenMs: 10_000, now: time.now, ...options });
}

test("select asks for the session, provider and model, and hands back the credential and lease", async () => {
  server = await new ContractServer().start();
  server.choice = { anthropic: { profile: "anthropic:backup1", secret: "sk-b1" } };
  const broker = brokerFor(server.url);

  const choice = await broker.choose("agent:main:dm:1", "anthropic", "claude-x");

  assert.deepEqual(choice, { profile: "anthropic:backup1", secret: "sk-b1", kind: "api_key", leaseId: "lease-1", via: "authbroker" });
  assert.deepEqual(server.seen[0]!.body, { session_key: "agent:main:dm:1", provider: "anthropic", model: "claude-x", explain: true });
});

test("a session's next select waits for its own report (a retry must see the failover)", async () => {
  server = await new ContractServer().start();
  server.reportDelayMs = 150;
  const broker = brokerFor(server.url);
  const first = await broker.choose("s1", "anthropic");

  void broker.report({ profile: first!.profile, outcome: "rate_limit", session_key: "s1", lease_id: first!.leaseId });
  await broker.choose("s1", "anthropic");

  assert.deepEqual(server.paths(), ["POST /api/select", "POST /api/report", "POST /api/select"]);
  assert.ok(server.arrivedAt.get(2)! >= server.answeredAt.get(1)!, "the select went out before the report was answered");
});

test("with authbroker down, select keeps the session's last profile and the breaker spares further timeouts", async () => {
  server = await new ContractServer().start();
  const time = clock();
  const broker = brokerFor(server.url, time);
  const before = await broker.choose("s1", "anthropic");
  const port = server.port;
  await server.stop();

  const during = await broker.choose("s1", "anthropic");
  assert.equal(during?.profile, before?.profile);
  assert.equal(during?.secret, "sk-default");
  assert.equal(during?.via, "fail-open");
  assert.equal(broker.breakerOpen, true);

  server = await new ContractServer().start(port); // back, but the breaker is still open: nobody asks it
  await broker.choose("s1", "anthropic");
  assert.equal(server.seen.length, 0);

  time.advance(10_001); // the breaker half-opens: the next call goes through
  const after = await broker.choose("s1", "anthropic");
  assert.equal(after?.via, "authbroker");
  assert.equal(server.seen.length, 1);
});

test("fail-open skips a profile this process saw fail, for one it has a key for", async () => {
  server = await new ContractServer().start();
  const broker = brokerFor(server.url);
  server.choice = { anthropic: { profile: "anthropic:backup1", secret: "sk-b1" } };
  await broker.choose("other", "anthropic"); // learns backup1's key
  server.choice = { anthropic: { profile: "anthropic:default", secret: "sk-default" } };
  const first = await broker.choose("s1", "anthropic");
  assert.equal(first?.profile, "anthropic:default");
  await server.stop();

  await broker.report({ profile: "anthropic:default", outcome: "rate_limit", session_key: "s1", lease_id: first!.leaseId });
  const next = await broker.choose("s1", "anthropic");

  assert.equal(next?.profile, "anthropic:backup1");
  assert.equal(next?.secret, "sk-b1");
});

test("a cold process with authbroker down has no key to offer: openclaw's own key is used", async () => {
  server = await new ContractServer().start();
  const port = server.port;
  await server.stop();
  const broker = brokerFor(`http://127.0.0.1:${port}`);

  assert.equal(await broker.choose("s1", "anthropic"), null);
});

test("reports and resets made while authbroker is down are replayed once, in order, when it is back", async () => {
  server = await new ContractServer().start();
  const time = clock();
  const broker = brokerFor(server.url, time);
  const first = await broker.choose("s1", "anthropic");
  const port = server.port;
  await server.stop();

  await broker.report({ profile: "anthropic:default", outcome: "rate_limit", session_key: "s1", lease_id: first!.leaseId });
  await broker.reset("s1", { provider: "anthropic", reason: "new" });
  await broker.report({ profile: "anthropic:default", outcome: "success", session_key: "s1" });
  assert.equal(broker.buffered, 3);

  server = await new ContractServer().start(port);
  time.advance(10_001);
  await broker.choose("s2", "anthropic");

  assert.deepEqual(server.paths(), ["POST /api/report", "POST /api/sessions/s1/reset", "POST /api/report", "POST /api/select"]);
  assert.equal(server.seen[0]!.body.lease_id, first!.leaseId);
  assert.equal(broker.buffered, 0);
  await broker.choose("s2", "anthropic");
  assert.equal(server.seen.filter((s) => s.path === "/api/report").length, 2);
});

test("5xx counts as unavailable, like a dead socket", async () => {
  server = await new ContractServer().start();
  const broker = brokerFor(server.url);
  await broker.choose("s1", "anthropic");
  server.status = 503;

  const choice = await broker.choose("s1", "anthropic");

  assert.equal(choice?.via, "fail-open");
  assert.equal(broker.breakerOpen, true);
});

test("fail-closed turns an unreachable authbroker into an error", async () => {
  server = await new ContractServer().start();
  const port = server.port;
  await server.stop();
  const broker = brokerFor(`http://127.0.0.1:${port}`, clock(), { failClosed: true });

  await assert.rejects(broker.choose("s1", "anthropic"), AuthbrokerUnavailable);
  await assert.rejects(broker.choose("s1", "anthropic"), AuthbrokerUnavailable);
});
