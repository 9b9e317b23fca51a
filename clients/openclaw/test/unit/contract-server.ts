// A loopback HTTP server that answers authbroker's contract (DESIGN §3) from a script, records every
// request, and can be taken down and brought back on the same port: the plugin's fail-open,
// breaker and replay are exercised over real sockets. The real service is in test/e2e.
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface Seen {
  method: string;
  path: string;
  body: any;
}

export class ContractServer {
  readonly seen: Seen[] = [];
  /** The profile select answers with, per provider. */
  choice: Record<string, { profile: string; secret: string }> = {};
  status = 200;
  /** Milliseconds before answering a report (to see who waits for it). */
  reportDelayMs = 0;
  readonly answeredAt = new Map<number, number>();
  readonly arrivedAt = new Map<number, number>();
  /** Every profile select has named, so a ranking lists them all. */
  private readonly known = new Set<string>();
  private server?: http.Server;
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<this> {
    this.server = http.createServer((req, res) => {
      let raw = "";
      req.on("data", (c) => (raw += c));
      req.on("end", () => {
        const body = raw ? JSON.parse(raw) : undefined;
        const index = this.seen.push({ method: req.method!, path: req.url!, body }) - 1;
        this.arrivedAt.set(index, performance.now());
        const delay = req.url === "/api/report" ? this.reportDelayMs : 0;
        setTimeout(() => this.respond(res, req.url!, body, index), delay);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
    this.port = (this.server!.address() as AddressInfo).port;
    return this;
  }

  private respond(res: http.ServerResponse, path: string, body: any, index: number): void {
    this.answeredAt.set(index, performance.now());
    res.writeHead(this.status, { "content-type": "application/json" });
    if (this.status >= 400) {
      res.end(JSON.stringify({ error: { code: "unavailable", message: "scripted failure" } }));
      return;
    }
    res.end(JSON.stringify(this.answer(path, body)));
  }

  private answer(path: string, body: any): unknown {
    if (path === "/api/select") {
      const chosen = this.choice[body.provider] ?? { profile: `${body.provider}:default`, secret: "sk-default" };
      this.known.add(chosen.profile);
      return {
        profile: chosen.profile, source: "default", session_key: body.session_key, session_id: "00000000-0000-0000-0000-000000000001",
        lease_id: `lease-${this.seen.length}`, reason: "first available", cooling: false, all_unavailable: false, retry_at: null,
        candidates: [chosen.profile, ...[...this.known].filter((p) => p !== chosen.profile)].map((profile) => ({ profile, available: true, reason: "", until: null })),
        credential: { kind: "api_key", secret: chosen.secret },
      };
    }
    if (path === "/api/report") return { profile: { id: body.profile }, failover: null, duplicate: false };
    if (path === "/api/sessions/reset") return { reset: 0, dropped: 0, carried: 0 };
    return { session_id: "00000000-0000-0000-0000-000000000002", carried: null, dropped: null, selection: {} };
  }

  paths(): string[] {
    return this.seen.map((s) => `${s.method} ${s.path}`);
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}
