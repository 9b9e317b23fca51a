// The upstream proposal at work: openclaw's own `anthropic` provider and auth profiles, on an openclaw
// with upstream/openclaw-2026.9.6-auth-profile-hooks.patch applied (`make test-openclaw-patched` prepares
// that copy and points OPENCLAW_ENTRY at it). A stock openclaw fails both tests: it ignores
// `authProfileOverride` and its model_call_ended names no profile.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Authbroker, FakeAnthropic, json, OpenclawGateway, waitFor } from "../e2e/harness.js";

const broker = new Authbroker();
const upstream = new FakeAnthropic();
let gateway: OpenclawGateway;
let admin = "";

async function eventsFor(query: string): Promise<Array<{ kind: string; profile: string; session_key?: string; source?: string }>> {
  const answer = await json("GET", `${broker.url}/api/events?${query}`, undefined, admin);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body.results.reverse();
}

before(async () => {
  assert.ok(process.env.OPENCLAW_ENTRY, "run through `make test-openclaw-patched` (OPENCLAW_ENTRY = the patched openclaw)");
  await broker.start();
  await upstream.start();
  admin = broker.token("e2e-admin", "admin");
  const pluginToken = broker.token("openclaw-plugin", "gateway", "credentials");
  for (const [name, position] of [["default", 0], ["backup1", 1]] as const) {
    const created = await json("POST", `${broker.url}/api/profiles`, { id: `anthropic:${name}`, kind: "api_key", secret: `sk-test-${name}`, position }, admin);
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  gateway = new OpenclawGateway(upstream.url, { url: broker.url, token: pluginToken }, "delegated");
  // openclaw holds the same two keys in its own store, in the same order.
  await gateway.addOpenclawProfile("anthropic:default", "sk-test-default");
  await gateway.addOpenclawProfile("anthropic:backup1", "sk-test-backup1");
  await gateway.start();
});

after(async () => {
  await gateway?.stop();
  await upstream.stop();
  await broker.stop();
});

test("the turn runs on the profile authbroker names (an operator's pin), not openclaw's first in order", async () => {
  const pinned = await json("PUT", `${broker.url}/api/sessions/agent:main:pinned/override`, { profile: "anthropic:backup1" }, admin);
  assert.equal(pinned.status, 200, JSON.stringify(pinned.body));
  upstream.seen.length = 0;

  const turn = await gateway.turn("agent:main:pinned", "hello");

  assert.match(turn.text, /answered with sk-test-backup1/);
  // The turn's call; openclaw may make side calls afterwards (a session title) with a profile of its own choosing.
  assert.equal(upstream.seen[0], "sk-test-backup1");
});

test("model_call_ended names the profile and the status: authbroker holds the 401 against the right key", async () => {
  // A 401 makes openclaw rotate to its next profile inside the turn (a 429 is retried on the same profile).
  upstream.failing.set("sk-test-default", { status: 401 });
  upstream.seen.length = 0;

  const turn = await gateway.turn("agent:main:seed", "hello");

  assert.match(turn.text, /answered with sk-test-backup1/);
  // openclaw retries the 401 once on the same profile, then rotates (its own order).
  assert.equal(upstream.seen[0], "sk-test-default");
  assert.equal(upstream.seen.at(-1), "sk-test-backup1");
  assert.ok(upstream.seen.every((key) => key === "sk-test-default" || key === "sk-test-backup1"), upstream.seen.join());
  // The hook is fire-and-forget: wait for its reports to land.
  await waitFor("reports", async () => (await eventsFor("profile=anthropic:default&kind=cooldown_started")).length === 1, 20_000);
  const failed = (await json("GET", `${broker.url}/api/profiles/anthropic:default`, undefined, admin)).body;
  assert.equal(failed.cooldown_reason, "auth", JSON.stringify(failed));
  assert.ok(failed.failure_counts.auth >= 1, JSON.stringify(failed));
  await waitFor("success report", async () => (await json("GET", `${broker.url}/api/profiles/anthropic:backup1`, undefined, admin)).body.last_success_at !== null, 20_000);
});
