// Upstream error -> authbroker outcome (DESIGN §2 v2 and the client issue's table).
// openclaw hands a failed call back as an assistant message whose errorMessage reads
// `429: {"type":"error","error":{...}}; Retry-After: 30 seconds` (status, provider body, hint);
// model_call_ended only carries `failureKind` for transport failures.
import type { Outcome } from "./client.js";

export interface UpstreamFailure {
  status?: number;
  /** The provider's error text or body (any case). */
  message?: string;
  /** openclaw's transport failure kind: timeout, aborted, connection_closed, connection_reset, terminated. */
  failureKind?: string;
}

const BILLING = /(quota|credit|billing|insufficient[_ ]funds|payment|balance is too low|plan limit)/i;
const REVOKED = /(revoked|deactivated|disabled|suspended|deleted|invalid[_ ]api[_ ]key|organization has been)/i;

/** The outcome to report for one failed upstream call, or null when it says nothing about the credential. */
export function outcomeForFailure(failure: UpstreamFailure): Outcome | null {
  const { status, message = "", failureKind } = failure;
  if (failureKind === "aborted") return null; // the caller gave up: nobody's fault
  if (status === undefined) {
    if (failureKind === "timeout") return "timeout";
    if (failureKind) return "server_error"; // connection closed or reset mid-call: the provider's side
    return /overloaded/i.test(message) ? "overloaded" : "unknown";
  }
  if (status === 429) return BILLING.test(message) ? "billing" : "rate_limit";
  if (status === 402) return "billing";
  if (status === 401 || status === 403) return REVOKED.test(message) ? "auth_permanent" : "auth";
  if (status === 404) return "model_not_found";
  if (status === 408 || status === 504) return "timeout";
  if (status === 529) return "overloaded";
  if (status >= 500) return /overloaded/i.test(message) ? "overloaded" : "server_error";
  if (status === 400 || status === 413 || status === 422) return BILLING.test(message) ? "billing" : "format";
  return "unknown";
}

/** Seconds from a Retry-After value: delta seconds, an HTTP-date (relative to nowMs), or null. */
export function parseRetryAfter(value: string | undefined | null, nowMs: number): number | null {
  if (value === undefined || value === null) return null;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(0, Math.ceil((when - nowMs) / 1000));
}

/** Status and Retry-After hint from openclaw's rendering of a failed call (`429: {...}; Retry-After: 30 seconds`). */
export function parseOpenclawError(errorMessage: string | undefined, nowMs: number): {
  status?: number;
  retryAfterSeconds: number | null;
  message: string;
} {
  const text = errorMessage ?? "";
  const status = /^\s*(\d{3})\b/.exec(text)?.[1];
  const hint = /Retry-After:\s*([^;]+?)\s*(?:seconds?)?\s*(?:;|$)/i.exec(text)?.[1];
  const hintMs = /retry-after-ms:\s*(\d+)/i.exec(text)?.[1];
  let retryAfterSeconds = parseRetryAfter(hint, nowMs);
  if (retryAfterSeconds === null && hintMs !== undefined) retryAfterSeconds = Number(hintMs) / 1000;
  return { status: status === undefined ? undefined : Number(status), retryAfterSeconds, message: text };
}

/** openclaw's session_end reasons -> authbroker's boundary reasons; null means "not a boundary for authbroker". */
export function resetReasonFor(reason: string | undefined): "new" | "reset" | "restart" | "expiry" | null {
  switch (reason) {
    case "new":
      return "new";
    case "reset":
    case "deleted":
      return "reset";
    case "idle":
    case "daily":
      return "expiry";
    case "restart":
    case "shutdown":
      return "restart";
    default:
      // compaction rotates openclaw's session id but continues the conversation: pins must survive it.
      return null;
  }
}
