// The openclaw side: hooks for boundaries and outcomes, and brokered providers whose credential
// authbroker chooses per session and per call.
//
// What the stock plugin API (openclaw 2026.9.6) allows, found against the real package:
// - `wrapStreamFn` of a provider the plugin owns wraps every model call of that provider. It may be
//   async and it sees openclaw's session id, so it can ask authbroker (select with the credentials
//   scope) before each call and send the chosen key; it also sees the call's final message, so it
//   reports the outcome with the exact profile and lease. openclaw retries a rate-limited call on
//   the same (single) configured key, and that retry goes through the wrapper again: the failover
//   authbroker chose is what the retry uses.
// - `prepareRuntimeAuth` gets no session, `resolveTransportTurnState` is synchronous: neither can
//   ask authbroker per session. `before_model_resolve` can change model and provider, not the
//   auth profile; `model_call_ended` carries no profile id. Those two need upstream fields
//   (docs/openclaw-plugin.md, upstream/*.patch); the hooks below already read them when present.
import type { OpenClawPluginApi, ProviderRuntimeModel } from "openclaw/plugin-sdk/plugin-entry";
import { Broker, type Choice } from "./broker.js";
import { AuthbrokerClient } from "./client.js";
import { outcomeForFailure, parseOpenclawError, resetReasonFor } from "./outcomes.js";

export interface PluginConfig {
  baseUrl: string;
  token: string;
  /** brokered openclaw provider id -> authbroker provider id (default `anthropic-brokered` -> `anthropic`). */
  providers?: Record<string, string>;
  timeoutMs?: number;
  breakerOpenMs?: number;
  /** Bulk-reset every authbroker session when the gateway starts (default true: one gateway per authbroker). */
  resetAllOnGatewayStart?: boolean;
  failClosed?: boolean;
  /**
   * openclaw providers (with their own auth profiles named like authbroker's, e.g. `anthropic:default`)
   * whose profile authbroker names per turn through before_model_resolve's `authProfileOverride`.
   * Needs the upstream patch (upstream/*.patch); a stock openclaw ignores the field.
   */
  delegateProviders?: string[];
}

interface StreamResultLike {
  result(): Promise<{ stopReason?: string; errorMessage?: string }>;
}
type StreamFnLike = (model: ProviderRuntimeModel, context: unknown, options?: { sessionId?: string }) => unknown;

/** Fields an upstream-patched openclaw adds (docs/openclaw-plugin.md); absent on a stock 2026.9.6. */
interface PatchedModelCallEnded {
  authProfileId?: string;
  httpStatus?: number;
}

export function parseConfig(raw: unknown): PluginConfig {
  const config = (raw ?? {}) as Partial<PluginConfig>;
  if (typeof config.baseUrl !== "string" || !config.baseUrl) throw new Error("authbroker plugin: `baseUrl` is required");
  if (typeof config.token !== "string" || !config.token) throw new Error("authbroker plugin: `token` is required");
  return config as PluginConfig;
}

/** The header that carries a credential for a model's wire API. */
export function credentialHeaders(model: ProviderRuntimeModel, choice: Choice): Record<string, string> {
  const secret = choice.secret!;
  if (model.api === "anthropic-messages" && choice.kind !== "token" && choice.kind !== "oauth") {
    return { "x-api-key": secret };
  }
  return { authorization: `Bearer ${secret}` };
}

export class AuthbrokerPlugin {
  readonly broker: Broker;
  readonly providers: Record<string, string>;
  /** openclaw session id -> session key (authbroker keys sessions by the stable key). */
  private readonly sessionKeys = new Map<string, string>();
  /** session key -> the boundary before_reset just sent, which its session_end must not send again. */
  private readonly announced = new Map<string, string>();

  constructor(readonly config: PluginConfig, private readonly log: (message: string) => void = () => {}) {
    this.providers = config.providers ?? { "anthropic-brokered": "anthropic" };
    const client = new AuthbrokerClient({ baseUrl: config.baseUrl, token: config.token, timeoutMs: config.timeoutMs });
    this.broker = new Broker(client, { breakerOpenMs: config.breakerOpenMs, failClosed: config.failClosed, log });
  }

  noteSession(sessionId: string | undefined, sessionKey: string | undefined): void {
    if (sessionId && sessionKey) this.sessionKeys.set(sessionId, sessionKey);
  }

  /** The authbroker session key for an openclaw session id (the id itself when no hook has named its key). */
  sessionKeyFor(sessionId: string | undefined): string {
    if (!sessionId) return "openclaw:unknown";
    return this.sessionKeys.get(sessionId) ?? `openclaw:${sessionId}`;
  }

  /** Wraps a brokered provider's stream function: authbroker picks the key before each call, hears how it ended. */
  wrapStream(openclawProvider: string, inner: StreamFnLike): StreamFnLike {
    const provider = this.providers[openclawProvider]!;
    return async (model, context, options) => {
      const sessionKey = this.sessionKeyFor(options?.sessionId);
      const choice = await this.broker.choose(sessionKey, provider, model.id);
      if (!choice?.secret) {
        this.log(`authbroker: no brokered key for ${sessionKey}; using openclaw's configured key`);
        return inner(model, context, options);
      }
      const chosen = { ...model, headers: { ...model.headers, ...credentialHeaders(model, choice) } };
      const stream = (await inner(chosen, context, options)) as StreamResultLike;
      void this.watch(stream, choice, sessionKey, model.id);
      return stream;
    };
  }

  private async watch(stream: StreamResultLike, choice: Choice, sessionKey: string, model: string): Promise<void> {
    let final: { stopReason?: string; errorMessage?: string };
    try {
      final = await stream.result();
    } catch (error) {
      final = { stopReason: "error", errorMessage: (error as Error).message };
    }
    if (final.stopReason === "aborted") return;
    const base = { profile: choice.profile, session_key: sessionKey, lease_id: choice.leaseId, model };
    if (final.stopReason !== "error") {
      await this.broker.report({ ...base, outcome: "success" }).catch(() => undefined);
      return;
    }
    const parsed = parseOpenclawError(final.errorMessage, Date.now());
    const outcome = outcomeForFailure({ status: parsed.status, message: parsed.message });
    if (!outcome) return;
    await this.broker.report({
      ...base,
      outcome,
      retry_after_seconds: parsed.retryAfterSeconds,
      detail: parsed.message.slice(0, 500),
    }).catch(() => undefined);
  }

  /**
   * A session boundary. openclaw announces `/new` and `/reset` twice (before_reset, then session_end with
   * the same reason) and may keep the session id across it, so the pair is matched by order, not by id:
   * a session_end right after the before_reset it follows is the same boundary.
   */
  async boundary(source: "before_reset" | "session_end", sessionKey: string | undefined, reason: string | undefined): Promise<void> {
    const mapped = resetReasonFor(reason);
    if (!sessionKey || !mapped) return;
    if (source === "session_end" && this.announced.get(sessionKey) === mapped) {
      this.announced.delete(sessionKey);
      return;
    }
    if (source === "before_reset") this.announced.set(sessionKey, mapped);
    else this.announced.delete(sessionKey);
    await Promise.all(
      [...new Set(Object.values(this.providers))].map((provider) =>
        this.broker.reset(sessionKey, { provider, reason: mapped }).catch((error: Error) => this.log(error.message)),
      ),
    );
  }

  async gatewayStart(): Promise<void> {
    if (this.config.resetAllOnGatewayStart === false) return;
    await this.broker.bulkReset({ reason: "restart" }).catch((error: Error) => this.log(error.message));
  }

  /** before_model_resolve: authbroker names the auth profile for this turn (honoured by a patched openclaw only). */
  async profileForTurn(sessionKey: string | undefined, provider: string | undefined): Promise<{ authProfileOverride: string } | undefined> {
    if (!sessionKey || !provider || !this.config.delegateProviders?.includes(provider)) return undefined;
    const choice = await this.broker.choose(sessionKey, provider).catch((error: Error) => {
      this.log(error.message);
      return null;
    });
    return choice ? { authProfileOverride: choice.profile } : undefined;
  }

  /** model_call_ended of a provider authbroker does not broker: reportable only when openclaw names the profile. */
  async observedCallEnded(event: {
    provider: string;
    model: string;
    outcome: "completed" | "error";
    failureKind?: string;
    sessionKey?: string;
  } & PatchedModelCallEnded): Promise<void> {
    if (this.providers[event.provider] !== undefined) return; // the wrapper reported it, with its lease
    if (!event.authProfileId) return; // stock openclaw: no profile id on model_call_ended
    const outcome = event.outcome === "completed"
      ? "success"
      : outcomeForFailure({ status: event.httpStatus, failureKind: event.failureKind });
    if (!outcome) return;
    await this.broker.report({
      profile: event.authProfileId,
      outcome,
      session_key: event.sessionKey,
      model: event.model,
    }).catch(() => undefined);
  }
}

export function register(api: OpenClawPluginApi): void {
  const config = parseConfig(api.pluginConfig);
  const log = (message: string) => api.logger.warn?.(message);
  const plugin = new AuthbrokerPlugin(config, log);

  for (const openclawProvider of Object.keys(plugin.providers)) {
    api.registerProvider({
      id: openclawProvider,
      label: `${plugin.providers[openclawProvider]} (key chosen by authbroker)`,
      auth: [],
      wrapStreamFn: (ctx) => {
        if (!ctx.streamFn) return undefined;
        return plugin.wrapStream(openclawProvider, ctx.streamFn as StreamFnLike) as typeof ctx.streamFn;
      },
    });
  }

  api.on("gateway_start", () => plugin.gatewayStart());
  api.on("session_start", (event) => plugin.noteSession(event.sessionId, event.sessionKey));
  api.on("before_model_resolve", async (_event, ctx) => {
    plugin.noteSession(ctx.sessionId, ctx.sessionKey);
    // The result type of 2026.9.6 has no auth-profile field; the upstream patch adds `authProfileOverride`.
    return (await plugin.profileForTurn(ctx.sessionKey, ctx.modelProviderId)) as Record<string, never> | undefined;
  });
  api.on("model_call_started", (event) => plugin.noteSession(event.sessionId, event.sessionKey));
  api.on("before_reset", (event, ctx) => plugin.boundary("before_reset", ctx.sessionKey, event.reason ?? "reset"));
  api.on("session_end", (event) => plugin.boundary("session_end", event.sessionKey, event.reason));
  api.on("model_call_ended", (event) => plugin.observedCallEnded(event as typeof event & PatchedModelCallEnded));
}
