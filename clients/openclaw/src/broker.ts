// The plugin's view of authbroker: the three calls a gateway makes, with fail-open (DESIGN §8).
//
// When authbroker cannot be reached (connection refused, timeout, 5xx):
// - select keeps the session's last profile, else ranks the profiles this process has seen
//   (in authbroker's last ranking), skipping those it saw fail itself; only profiles whose
//   secret it has been given can be used, so a cold process with a dead authbroker falls back
//   to the key openclaw is configured with;
// - reports and resets are buffered (bounded, oldest dropped) and replayed in order once
//   authbroker answers again (reports carry their lease, so a replay is idempotent);
// - a circuit breaker makes a dead authbroker cost one timeout per `breakerOpenMs`, not one per call.
// `failClosed: true` turns every one of these into an error instead.
import {
  type AuthbrokerClient,
  AuthbrokerRejected,
  AuthbrokerUnavailable,
  type BulkResetRequest,
  type Outcome,
  type ReportRequest,
  type ResetRequest,
  type SelectAnswer,
} from "./client.js";

export interface Choice {
  profile: string;
  /** The credential to send upstream, or null when authbroker holds none (openclaw's own key is used). */
  secret: string | null;
  kind: string | null;
  leaseId: string | null;
  /** Where the choice came from: authbroker's answer, or the plugin's fail-open path. */
  via: "authbroker" | "fail-open";
}

export interface BrokerOptions {
  breakerOpenMs?: number;
  bufferLimit?: number;
  failClosed?: boolean;
  now?: () => number;
  log?: (message: string) => void;
}

type Buffered =
  | { kind: "report"; body: ReportRequest }
  | { kind: "reset"; sessionKey: string; body: ResetRequest }
  | { kind: "bulk"; body: BulkResetRequest };

// Outcomes that put a credential in a cooldown or disabled window (DESIGN §2); the rest are recorded only.
const HELD_AGAINST_KEY: ReadonlySet<Outcome> = new Set([
  "rate_limit", "timeout", "unknown", "model_not_found", "auth", "auth_permanent", "billing",
]);

export class Broker {
  private readonly breakerOpenMs: number;
  private readonly bufferLimit: number;
  private readonly failClosed: boolean;
  private readonly now: () => number;
  private readonly log: (message: string) => void;
  private openUntil = 0;
  private readonly buffer: Buffered[] = [];
  private flushing: Promise<void> | null = null;
  private readonly lastChoice = new Map<string, string>();
  private readonly secrets = new Map<string, { kind: string; secret: string }>();
  private readonly ranking = new Map<string, string[]>();
  private readonly sawFail = new Map<string, number>();
  private readonly pending = new Map<string, Promise<unknown>>();
  dropped = 0;

  constructor(private readonly client: AuthbrokerClient, options: BrokerOptions = {}) {
    this.breakerOpenMs = options.breakerOpenMs ?? 10_000;
    this.bufferLimit = options.bufferLimit ?? 1000;
    this.failClosed = options.failClosed ?? false;
    this.now = options.now ?? Date.now;
    this.log = options.log ?? (() => {});
  }

  /** True while the breaker is open (authbroker failed recently and is not being asked). */
  get breakerOpen(): boolean {
    return this.now() < this.openUntil;
  }

  get buffered(): number {
    return this.buffer.length;
  }

  /** Which credential this session uses now for `provider`. Waits for the session's own reports first. */
  async choose(sessionKey: string, provider: string, model?: string): Promise<Choice | null> {
    await this.pending.get(sessionKey)?.catch(() => undefined);
    const answer = await this.attempt(async () => {
      await this.flush();
      return this.client.select({ session_key: sessionKey, provider, model, explain: true });
    });
    if (answer !== undefined) return this.remember(sessionKey, provider, answer);
    return this.failOpen(sessionKey, provider);
  }

  /** Reports one outcome. Later `choose` calls for the same session wait for it (a retry must see its failover). */
  report(body: ReportRequest): Promise<void> {
    if (HELD_AGAINST_KEY.has(body.outcome)) {
      this.sawFail.set(body.profile, this.now() + 1000 * Math.max(60, body.retry_after_seconds ?? 0));
    } else if (body.outcome === "success") {
      this.sawFail.delete(body.profile);
    }
    const done = this.send({ kind: "report", body });
    this.track(body.session_key ?? "", done);
    return done;
  }

  private track(sessionKey: string, done: Promise<void>): void {
    this.pending.set(sessionKey, done);
    done.then(
      () => this.pending.get(sessionKey) === done && this.pending.delete(sessionKey),
      () => this.pending.get(sessionKey) === done && this.pending.delete(sessionKey),
    );
  }

  /** A session boundary: new session id, auto pins dropped, user pins carried. */
  reset(sessionKey: string, body: ResetRequest): Promise<void> {
    this.lastChoice.forEach((_profile, slot) => {
      if (slot.startsWith(`${sessionKey}\u0000`)) this.lastChoice.delete(slot);
    });
    const done = this.send({ kind: "reset", sessionKey, body });
    this.track(sessionKey, done);
    return done;
  }

  bulkReset(body: BulkResetRequest): Promise<void> {
    this.lastChoice.clear();
    return this.send({ kind: "bulk", body });
  }

  /** Replays buffered calls in order; stops at the first that still cannot reach authbroker. */
  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.buffer.length === 0) return;
    this.flushing = (async () => {
      try {
        while (this.buffer.length > 0) {
          const item = this.buffer[0]!;
          try {
            await this.perform(item);
          } catch (error) {
            if (error instanceof AuthbrokerUnavailable) throw error;
            this.log(`authbroker refused a replayed ${item.kind}: ${(error as Error).message}`);
          }
          this.buffer.shift();
        }
      } finally {
        this.flushing = null;
      }
    })();
    return this.flushing;
  }

  private async send(item: Buffered): Promise<void> {
    const sent = await this.attempt(async () => {
      await this.flush();
      await this.perform(item);
      return true;
    });
    if (sent === undefined) this.keep(item);
  }

  private perform(item: Buffered): Promise<unknown> {
    switch (item.kind) {
      case "report":
        return this.client.report(item.body);
      case "reset":
        return this.client.reset(item.sessionKey, item.body);
      case "bulk":
        return this.client.bulkReset(item.body);
    }
  }

  /** Runs `call` unless the breaker is open; undefined means "authbroker is unavailable, fail open". */
  private async attempt<T>(call: () => Promise<T>): Promise<T | undefined> {
    if (this.breakerOpen) {
      if (this.failClosed) throw new AuthbrokerUnavailable("authbroker unavailable (circuit open)");
      return undefined;
    }
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof AuthbrokerUnavailable)) {
        if (error instanceof AuthbrokerRejected) this.log(error.message);
        throw error;
      }
      this.openUntil = this.now() + this.breakerOpenMs;
      this.log(`authbroker unavailable, failing ${this.failClosed ? "closed" : "open"}: ${error.message}`);
      if (this.failClosed) throw error;
      return undefined;
    }
  }

  private keep(item: Buffered): void {
    this.buffer.push(item);
    while (this.buffer.length > this.bufferLimit) {
      this.buffer.shift();
      this.dropped += 1;
    }
  }

  private remember(sessionKey: string, provider: string, answer: SelectAnswer): Choice {
    this.lastChoice.set(`${sessionKey}\u0000${provider}`, answer.profile);
    if (answer.candidates?.length) this.ranking.set(provider, answer.candidates.map((c) => c.profile));
    if (answer.credential) this.secrets.set(answer.profile, answer.credential);
    const credential = answer.credential ?? null;
    return {
      profile: answer.profile,
      secret: credential?.secret ?? null,
      kind: credential?.kind ?? null,
      leaseId: answer.lease_id,
      via: "authbroker",
    };
  }

  private failOpen(sessionKey: string, provider: string): Choice | null {
    const now = this.now();
    const usable = (profile: string) => this.secrets.has(profile) && (this.sawFail.get(profile) ?? 0) <= now;
    const last = this.lastChoice.get(`${sessionKey}\u0000${provider}`);
    const profile = last && usable(last) ? last : (this.ranking.get(provider) ?? []).find(usable);
    if (!profile) return null;
    this.lastChoice.set(`${sessionKey}\u0000${provider}`, profile);
    const credential = this.secrets.get(profile)!;
    return { profile, secret: credential.secret, kind: credential.kind, leaseId: null, via: "fail-open" };
  }
}
