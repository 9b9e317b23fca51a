// A small typed client for authbroker's HTTP API. Every request and answer type comes from
// src/generated/api.ts, which scripts/generate-api-types.mjs regenerates from the service's /api/schema.
import type { components } from "./generated/api.js";

type Schemas = components["schemas"];
export type SelectRequest = Schemas["SelectRequest"];
export type SelectAnswer = Schemas["SelectAnswer"];
export type ReportRequest = Omit<Schemas["ReportRequest"], "outcome"> & { outcome: Outcome };
export type ReportAnswer = Schemas["ReportAnswer"];
export type ResetRequest = Schemas["ResetRequest"];
export type ResetAnswer = Schemas["ResetAnswer"];
export type ResetReason = Schemas["ReasonEnum"];
export type BulkResetRequest = Schemas["BulkResetRequest"];
export type BulkResetAnswer = Schemas["BulkResetAnswer"];
export type SessionState = Schemas["SessionState"];
export type Event = Schemas["Event"];
// DESIGN v2 adds `server_error` to the outcomes; it is accepted here ahead of the schema that names it.
export type Outcome = Schemas["OutcomeEnum"] | "server_error";

/** authbroker could not be reached, timed out, or answered 5xx: the caller may fail open. */
export class AuthbrokerUnavailable extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = "AuthbrokerUnavailable";
  }
}

/** authbroker answered 4xx: the request itself is wrong, retrying it will not help. */
export class AuthbrokerRejected extends Error {
  constructor(message: string, readonly status: number, readonly code?: string) {
    super(message);
    this.name = "AuthbrokerRejected";
  }
}

export interface ClientOptions {
  baseUrl: string;
  token: string;
  timeoutMs?: number;
}

export class AuthbrokerClient {
  private readonly baseUrl: string;
  private readonly token: string;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  select(body: SelectRequest): Promise<SelectAnswer> {
    return this.call("POST", "/api/select", body);
  }

  report(body: ReportRequest): Promise<ReportAnswer> {
    return this.call("POST", "/api/report", body);
  }

  reset(sessionKey: string, body: ResetRequest): Promise<ResetAnswer> {
    return this.call("POST", `/api/sessions/${encodeURIComponent(sessionKey)}/reset`, body);
  }

  bulkReset(body: BulkResetRequest): Promise<BulkResetAnswer> {
    return this.call("POST", "/api/sessions/reset", body);
  }

  session(sessionKey: string): Promise<SessionState> {
    return this.call("GET", `/api/sessions/${encodeURIComponent(sessionKey)}`);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers: {
          Accept: "application/json",
          Authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      throw new AuthbrokerUnavailable(`${method} ${path}: ${(error as Error).message}`);
    }
    const text = await response.text().catch(() => "");
    if (response.status >= 500) {
      throw new AuthbrokerUnavailable(`${method} ${path}: HTTP ${response.status}`, response.status);
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      throw new AuthbrokerUnavailable(`${method} ${path}: HTTP ${response.status} with a body that is not JSON`);
    }
    if (!response.ok) {
      const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new AuthbrokerRejected(
        `${method} ${path}: HTTP ${response.status} ${error?.code ?? ""} ${error?.message ?? ""}`.trim(),
        response.status,
        error?.code,
      );
    }
    return parsed as T;
  }
}
