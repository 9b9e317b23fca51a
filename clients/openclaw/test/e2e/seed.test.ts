// The seed bug (openclaw #62412) against a real openclaw gateway with this plugin, a real authbroker,
// and a fake Anthropic upstream: `anthropic:default` answers 429, the turn fails over to `backup1`,
// and after `/new` (once the cooldown is over on authbroker's clock) the session is on `default` again.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Authbroker, FakeAnthropic, json, OpenclawGateway, waitFor } from "./harness.js";

const broker = new Authbroker();
const upstream = new FakeAnthropic();
let gateway: OpenclawGateway;
let admin = "";
// What authbroker recorded from the gateway's start on, oldest first: "kind profile session source".
const STORY = [
  "session_reset", // gateway_start: the bulk restart boundary
  "cooldown_started anthropic:default", // the 429 the plugin reported, with its lease
  "override_set anthropic:backup1 agent:main:seed auto", // the failover openclaw's retry then used
  "override_dropped anthropic:backup1 agent:main:seed auto", // /new: the auto pin does not carry over
  "session_reset agent:main:seed", // one boundary, though openclaw fires before_reset and session_end
];

type EventRow = { kind: string; profile: string; session_key?: string; source?: string; reason?: string; actor: string };

async function events(query: string): Promise<EventRow[]> {
  const answer = await json("GET", `${broker.url}/api/events?${query}`, undefined, admin);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return (answer.body.results as EventRow[]).reverse(); // oldest first
}

async function session(key: string) {
  const answer = await json("GET", `${broker.url}/api/sessions/${encodeURIComponent(key)}`, undefined, admin);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body;
}

before(async () => {
  await broker.start();
  await upstream.start();
  admin = broker.token("e2e-admin", "admin");
  const pluginToken = broker.token("openclaw-plugin", "gateway", "credentials");
  for (const [name, position] of [["default", 0], ["backup1", 1]] as const) {
    const created = await json("POST", `${broker.url}/api/profiles`, { id: `anthropic:${name}`, kind: "api_key", secret: `sk-test-${name}`, position }, admin);
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  // A session left pinned `auto` to backup1 by an earlier failover, before this gateway starts.
  const stale = await json("POST", `${broker.url}/api/select`, { session_key: "agent:main:stale", provider: "anthropic" }, admin);
  assert.equal(stale.body.profile, "anthropic:default");
  const failed = await json("POST", `${broker.url}/api/report`, { profile: "anthropic:default", outcome: "rate_limit", session_key: "agent:main:stale", lease_id: stale.body.lease_id }, admin);
  assert.equal(failed.body.failover?.profile, "anthropic:backup1", JSON.stringify(failed.body));
  broker.advance(3600); // that cooldown is long over; the stale auto pin is not
  gateway = new OpenclawGateway(upstream.url, { url: broker.url, token: pluginToken });
  await gateway.start();
});

after(async () => {
  await gateway?.stop();
  await upstream.stop();
  await broker.stop();
});

test("gateway_start is a restart boundary: the stale auto pin is dropped", async () => {
  // openclaw runs gateway_start hooks after the gateway says "ready", once channels and sidecars are up.
  await waitFor("restart boundary", async () => (await events("session_key=agent:main:stale&kind=override_dropped")).length === 1, 90_000);
  const state = await session("agent:main:stale");
  assert.equal(state.override, null);
});

test("a 429 on default fails the turn over to backup1, chosen by authbroker", async () => {
  upstream.failing.set("sk-test-default", { status: 429, retryAfter: "0" });
  upstream.seen.length = 0;

  const turn = await gateway.turn("agent:main:seed", "hello");

  assert.match(turn.text, /answered with sk-test-backup1/);
  assert.deepEqual(upstream.seen, ["sk-test-default", "sk-test-backup1"]);
  const state = await session("agent:main:seed");
  assert.equal(state.override?.profile, "anthropic:backup1");
  assert.equal(state.override?.source, "auto");
  // The plugin reports with the model, so the cooldown is on (default, claude-test) (DESIGN §2).
  const probe = await json("POST", `${broker.url}/api/select`, { session_key: "probe:after-429", provider: "anthropic", model: "claude-test", explain: true }, admin);
  const cooling = probe.body.candidates.find((c: { profile: string }) => c.profile === "anthropic:default");
  assert.equal(cooling.available, false, JSON.stringify(probe.body));
  assert.equal(cooling.reason, "model_cooldown:rate_limit");
});

test("the same session stays on backup1 while default cools", async () => {
  upstream.failing.delete("sk-test-default"); // the upstream recovered, authbroker's cooldown has not ended
  upstream.seen.length = 0;

  const turn = await gateway.turn("agent:main:seed", "still there?");

  assert.match(turn.text, /answered with sk-test-backup1/);
  assert.deepEqual(upstream.seen, ["sk-test-backup1"]);
});

test("after /new, once the cooldown is over, the session is on default again", async () => {
  broker.advance(120); // authbroker's clock passes the 1-minute cooldown; nobody sleeps
  upstream.seen.length = 0;

  await gateway.reset("agent:main:seed", "new");
  await waitFor("reset boundary", async () => (await events("session_key=agent:main:seed&kind=override_dropped")).length === 1, 20_000);
  const turn = await gateway.turn("agent:main:seed", "new session");

  assert.match(turn.text, /answered with sk-test-default/);
  assert.deepEqual(upstream.seen, ["sk-test-default"]);
  const state = await session("agent:main:seed");
  assert.equal(state.override, null);
  assert.equal(state.last_profile, "anthropic:default");
});

test("authbroker's events tell the story, in order", async () => {
  const all: EventRow[] = [];
  let url: string | null = `${broker.url}/api/events`;
  while (url) {
    const page = await json("GET", url, undefined, admin);
    all.push(...page.body.results);
    url = page.body.next ?? null;
  }
  all.reverse(); // oldest first
  const restart = all.findIndex((e) => e.kind === "override_dropped" && e.session_key === "agent:main:stale");
  assert.ok(restart >= 0);
  const story = all.slice(restart + 1).map((e) => [e.kind, e.profile, e.session_key, e.source].filter(Boolean).join(" "));
  assert.deepEqual(story, STORY);
});
