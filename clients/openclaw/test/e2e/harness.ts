// Real processes for the end-to-end test: PostgreSQL database, authbroker (the Django service),
// a fake Anthropic upstream on loopback, and a real openclaw gateway with this plugin loaded.
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { promisify } from "node:util";
import { cpSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const pluginRoot = path.resolve(here, "../../..");
export const repoRoot = path.resolve(pluginRoot, "../..");
export const python = process.env.PYTHON ?? path.join(repoRoot, ".venv/bin/python");
export const openclawEntry = process.env.OPENCLAW_ENTRY ?? path.join(pluginRoot, "node_modules/openclaw/openclaw.mjs");

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, proc?: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc && proc.child.exitCode !== null) throw new Error(`${what}: process exited\n${proc.output()}`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what}: not ready within ${timeoutMs} ms\n${proc?.output() ?? ""}`);
}

/** A child process in its own group, with its output in a log file. */
export class Proc {
  readonly child: ChildProcess;
  constructor(readonly name: string, readonly logFile: string, command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv }) {
    const out = openSync(logFile, "a");
    this.child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", out, out], detached: true });
  }
  output(all = false): string {
    try {
      const text = readFileSync(this.logFile, "utf8");
      return all ? text : text.slice(-6000);
    } catch {
      return "";
    }
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.pid === undefined) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    try {
      process.kill(-this.child.pid, "SIGTERM");
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-this.child.pid!, "SIGKILL");
      } catch {
        /* already gone */
      }
    }, 10_000);
    await exited;
    clearTimeout(timer);
  }
}

export async function json(method: string, url: string, body?: unknown, token?: string): Promise<{ status: number; body: any }> {
  const response = await fetch(url, {
    method,
    headers: {
      Accept: "application/json",
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

/** authbroker on a fresh PostgreSQL database, with a clock the test moves (test/authbroker_clock.py). */
export class Authbroker {
  readonly dir = mkdtempSync(path.join(tmpdir(), "authbroker-oc-e2e-"));
  readonly clockFile = path.join(this.dir, "clock");
  readonly dbName = `ab_openclaw_e2e_${process.pid}`;
  readonly adminUrl: string;
  readonly databaseUrl: string;
  url = "";
  proc?: Proc;

  constructor() {
    const base = new URL(process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
    base.pathname = "/postgres";
    this.adminUrl = base.toString();
    base.pathname = `/${this.dbName}`;
    this.databaseUrl = base.toString();
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, DATABASE_URL: this.databaseUrl, CLOCK_FILE: this.clockFile, DEBUG: "false" };
  }

  manage(...args: string[]): string {
    return execFileSync(python, ["manage.py", ...args], { cwd: repoRoot, env: this.env(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  }

  token(name: string, ...scopes: string[]): string {
    const out = this.manage("create_api_token", name, ...scopes.flatMap((s) => ["--scope", s])).trim().split("\n");
    return out[out.length - 1]!.trim();
  }

  async start(): Promise<void> {
    execFileSync("psql", [this.adminUrl, "-q", "-c", `DROP DATABASE IF EXISTS ${this.dbName}`, "-c", `CREATE DATABASE ${this.dbName}`], { stdio: "pipe" });
    this.manage("migrate", "--noinput");
    writeFileSync(this.clockFile, "0");
    const port = await freePort();
    this.url = `http://127.0.0.1:${port}`;
    this.proc = new Proc("authbroker", path.join(this.dir, "authbroker.log"), python, [path.join(pluginRoot, "test/authbroker_clock.py"), String(port)], { cwd: repoRoot, env: this.env() });
    await waitFor("authbroker", async () => (await fetch(`${this.url}/healthz`)).ok, 60_000, this.proc);
  }

  /** Moves authbroker's application clock forward (only the service's; nobody sleeps). */
  advance(seconds: number): void {
    const now = Number(readFileSync(this.clockFile, "utf8") || 0);
    writeFileSync(this.clockFile, String(now + seconds));
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
    try {
      execFileSync("psql", [this.adminUrl, "-q", "-c", `DROP DATABASE IF EXISTS ${this.dbName}`], { stdio: "pipe" });
    } catch {
      /* best effort */
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A fake Anthropic Messages API: answers per key, records which key each request carried. */
export class FakeAnthropic {
  readonly seen: string[] = [];
  /** key -> status to answer instead of a reply (429, 529, 401...). */
  readonly failing = new Map<string, { status: number; retryAfter?: string }>();
  private server?: http.Server;
  url = "";

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      let raw = "";
      req.on("data", (chunk) => (raw += chunk));
      req.on("end", () => this.answer(req, res, raw));
    });
    const port = await freePort();
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${port}`;
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse, raw: string): void {
    const key = String(req.headers["x-api-key"] ?? "");
    this.seen.push(key);
    const failure = this.failing.get(key);
    if (!key.startsWith("sk-test-")) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ type: "error", error: { type: "authentication_error", message: "invalid x-api-key" } }));
      return;
    }
    if (failure) {
      res.writeHead(failure.status, { "content-type": "application/json", ...(failure.retryAfter ? { "retry-after": failure.retryAfter } : {}) });
      const type = failure.status === 429 ? "rate_limit_error" : failure.status === 529 ? "overloaded_error" : "api_error";
      res.end(JSON.stringify({ type: "error", error: { type, message: `fake upstream: ${type}` } }));
      return;
    }
    let model = "claude-test";
    try {
      model = JSON.parse(raw).model ?? model;
    } catch {
      /* keep the default */
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    const send = (type: string, data: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    send("message_start", { message: { id: `msg_${this.seen.length}`, type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } } });
    send("content_block_start", { index: 0, content_block: { type: "text", text: "" } });
    send("content_block_delta", { index: 0, delta: { type: "text_delta", text: `answered with ${key}` } });
    send("content_block_stop", { index: 0 });
    send("message_delta", { delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 4 } });
    send("message_stop", {});
    res.end();
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}

/** A real openclaw gateway (the pinned package) with this plugin loaded from its build. */
export class OpenclawGateway {
  readonly dir = mkdtempSync(path.join(tmpdir(), "openclaw-e2e-"));
  readonly token = "e2e-gateway-token";
  port = 0;
  proc?: Proc;

  /**
   * `brokered`: the plugin's own provider `anthropic-brokered`, its key chosen per call by authbroker (stock openclaw).
   * `delegated`: openclaw's own `anthropic` provider and auth profiles, authbroker naming the profile per turn
   * through before_model_resolve (only a patched openclaw honours it: upstream/*.patch).
   */
  constructor(
    private readonly upstreamUrl: string,
    private readonly broker: { url: string; token: string },
    private readonly mode: "brokered" | "delegated" = "brokered",
  ) {}

  env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: this.dir,
      OPENCLAW_STATE_DIR: path.join(this.dir, "state"),
      OPENCLAW_CONFIG_PATH: path.join(this.dir, "openclaw.json"),
      OPENCLAW_GATEWAY_TOKEN: this.token,
      NO_COLOR: "1",
    };
    delete env.ANTHROPIC_API_KEY;
    return env;
  }

  /** The plugin as its package ships it (package.json `files`), outside this checkout's node_modules. */
  stagePlugin(): string {
    const staged = path.join(this.dir, "authbroker-plugin");
    mkdirSync(staged);
    for (const entry of ["package.json", "openclaw.plugin.json", "dist/src"]) {
      cpSync(path.join(pluginRoot, entry), path.join(staged, entry), { recursive: true });
    }
    return staged;
  }

  writeConfig(): void {
    const model = { id: "claude-test", name: "Claude (fake upstream)", reasoning: false, input: ["text"], cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 }, contextWindow: 200000, maxTokens: 1024 };
    const config = {
      gateway: { mode: "local", port: this.port, bind: "loopback", auth: { mode: "token", token: this.token } },
      models: {
        mode: "merge",
        providers: this.mode === "brokered"
          // openclaw's own key for this provider: the fake upstream refuses it, so a reply proves authbroker's key was sent.
          ? { "anthropic-brokered": { baseUrl: this.upstreamUrl, apiKey: "openclaw-configured-key", api: "anthropic-messages", models: [model] } }
          : { anthropic: { baseUrl: this.upstreamUrl, api: "anthropic-messages", models: [model] } },
      },
      agents: { defaults: { model: { primary: this.mode === "brokered" ? "anthropic-brokered/claude-test" : "anthropic/claude-test" } } },
      plugins: {
        load: { paths: [this.stagePlugin()] },
        entries: {
          authbroker: {
            enabled: true,
            hooks: { allowConversationAccess: true },
            config: {
              baseUrl: this.broker.url, token: this.broker.token, timeoutMs: 5000,
              ...this.mode === "delegated" ? { delegateProviders: ["anthropic"] } : {},
            },
          },
        },
      },
    };
    writeFileSync(path.join(this.dir, "openclaw.json"), JSON.stringify(config, null, 2));
  }

  /** Writes the config (once: openclaw's CLI adds its auth profiles to it afterwards). */
  async configure(): Promise<void> {
    if (this.port) return;
    this.port = await freePort();
    this.writeConfig();
  }

  /** An auth profile in openclaw's own store, as `openclaw models auth paste-api-key` saves it. */
  async addOpenclawProfile(profileId: string, key: string): Promise<void> {
    await this.configure();
    const child = execFile(process.execPath, [openclawEntry, "models", "auth", "paste-api-key", "--provider", profileId.split(":")[0]!, "--profile-id", profileId], { cwd: this.dir, env: this.env(), timeout: 120_000 });
    child.stdin!.end(`${key}\n`);
    const code = await new Promise((resolve) => child.on("exit", resolve));
    if (code !== 0) throw new Error(`openclaw models auth paste-api-key ${profileId}: exit ${code}`);
  }

  async start(): Promise<void> {
    await this.configure();
    this.proc = new Proc("openclaw-gateway", path.join(this.dir, "gateway.log"), process.execPath, [openclawEntry, "gateway", "run", "--port", String(this.port), "--auth", "token", "--token", this.token], { cwd: this.dir, env: this.env() });
    await waitFor("openclaw gateway", async () => /\[gateway\] ready$/m.test(this.proc!.output(true)), 180_000, this.proc);
  }

  /** Runs the openclaw CLI against the gateway; returns its parsed --json output. */
  async cli(args: string[], timeoutMs = 120_000): Promise<any> {
    // Asynchronous: the fake upstream answers from this same process while the CLI runs.
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [openclawEntry, ...args, "--json"], { cwd: this.dir, env: this.env(), encoding: "utf8", timeout: timeoutMs, maxBuffer: 16 << 20 });
      return JSON.parse(stdout);
    } catch (error) {
      throw new Error(`openclaw ${args[0]} failed: ${(error as Error).message}\n--- gateway log ---\n${this.proc?.output() ?? ""}`);
    }
  }

  /** One agent turn in a session, through the gateway. */
  async turn(sessionKey: string, message: string): Promise<{ text: string; raw: any }> {
    const raw = await this.cli(["agent", "--session-key", sessionKey, "--message", message, "--timeout", "90"]);
    const payloads = raw.payloads ?? raw.result?.payloads ?? [];
    return { text: payloads.map((p: { text?: string }) => p.text ?? "").join("\n"), raw };
  }

  /** `/new` for a session, as a chat command or the Control UI would do it: the gateway's sessions.reset. */
  reset(sessionKey: string, reason: "new" | "reset"): Promise<any> {
    return this.cli(["gateway", "call", "sessions.reset", "--token", this.token, "--port", String(this.port), "--params", JSON.stringify({ key: sessionKey, reason })]);
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
    if (!process.env.KEEP_E2E) rmSync(this.dir, { recursive: true, force: true });
  }
}
