import assert from "node:assert/strict";
import { test } from "node:test";
import { outcomeForFailure, parseOpenclawError, parseRetryAfter, resetReasonFor } from "../../src/outcomes.js";

// One row per rule of the mapping (DESIGN §2 v2, the client issue's table).
const TABLE: Array<[string, Parameters<typeof outcomeForFailure>[0], ReturnType<typeof outcomeForFailure>]> = [
  ["429 is a rate limit", { status: 429, message: "rate_limit_error: slow down" }, "rate_limit"],
  ["429 about quota is billing", { status: 429, message: "You exceeded your current quota" }, "billing"],
  ["402 is billing", { status: 402, message: "" }, "billing"],
  ["400 about a low credit balance is billing", { status: 400, message: "Your credit balance is too low" }, "billing"],
  ["401 is auth", { status: 401, message: "invalid x-api-key" }, "auth"],
  ["401 expired token is auth", { status: 401, message: "token expired" }, "auth"],
  ["403 is auth", { status: 403, message: "permission_error" }, "auth"],
  ["403 for a deactivated key is permanent", { status: 403, message: "This API key has been deactivated" }, "auth_permanent"],
  ["404 is a missing model", { status: 404, message: "model: claude-nope" }, "model_not_found"],
  ["408 is a timeout", { status: 408 }, "timeout"],
  ["504 is a timeout", { status: 504 }, "timeout"],
  ["529 is overload, recorded only", { status: 529, message: "overloaded_error" }, "overloaded"],
  ["500 saying overloaded is overload", { status: 500, message: "Overloaded" }, "overloaded"],
  ["other 5xx is the provider's fault", { status: 502, message: "bad gateway" }, "server_error"],
  ["400 is the request's fault", { status: 400, message: "invalid_request_error" }, "format"],
  ["422 is the request's fault", { status: 422 }, "format"],
  ["an unexpected status is unknown", { status: 418 }, "unknown"],
  ["a transport timeout is a timeout", { failureKind: "timeout" }, "timeout"],
  ["a reset connection is the provider's side", { failureKind: "connection_reset" }, "server_error"],
  ["an abort is nobody's fault", { status: 429, failureKind: "aborted" }, null],
  ["no status and no kind is unknown", { message: "something odd" }, "unknown"],
];

for (const [name, failure, expected] of TABLE) {
  test(`outcome: ${name}`, () => {
    assert.equal(outcomeForFailure(failure), expected);
  });
}

test("Retry-After in seconds, as an HTTP-date, or unusable", () => {
  const now = Date.parse("2026-11-30T12:00:00Z");
  assert.equal(parseRetryAfter("37", now), 37);
  assert.equal(parseRetryAfter("1.5", now), 1.5);
  assert.equal(parseRetryAfter("Mon, 30 Nov 2026 12:01:30 GMT", now), 90);
  assert.equal(parseRetryAfter("Mon, 30 Nov 2026 11:59:00 GMT", now), 0);
  assert.equal(parseRetryAfter("soon", now), null);
  assert.equal(parseRetryAfter(undefined, now), null);
});

test("openclaw's rendering of a failed call gives the status and the hint", () => {
  const now = Date.parse("2026-11-30T12:00:00Z");
  const text = '429: {"error":{"message":"Number of requests has exceeded your rate limit","type":"rate_limit_error"},"type":"error"}; Retry-After: 30 seconds';
  const parsed = parseOpenclawError(text, now);
  assert.equal(parsed.status, 429);
  assert.equal(parsed.retryAfterSeconds, 30);
  assert.equal(parseOpenclawError("529: overloaded", now).retryAfterSeconds, null);
  assert.equal(parseOpenclawError("429: slow; retry-after-ms: 2500", now).retryAfterSeconds, 2.5);
  assert.equal(parseOpenclawError("socket hang up", now).status, undefined);
});

test("openclaw's session_end reasons map to authbroker boundaries; compaction is not one", () => {
  assert.equal(resetReasonFor("new"), "new");
  assert.equal(resetReasonFor("reset"), "reset");
  assert.equal(resetReasonFor("deleted"), "reset");
  assert.equal(resetReasonFor("idle"), "expiry");
  assert.equal(resetReasonFor("daily"), "expiry");
  assert.equal(resetReasonFor("restart"), "restart");
  assert.equal(resetReasonFor("shutdown"), "restart");
  assert.equal(resetReasonFor("compaction"), null);
  assert.equal(resetReasonFor("unknown"), null);
  assert.equal(resetReasonFor(undefined), null);
});
