// The clients people actually run, each under its own runtime (Node, Python, Go, Java, curl, the
// Codex CLI), through the compiled binary, against a fake Responses upstream on 127.0.0.1. Each is
// run twice, straight at the upstream and through the proxy, and must give the same result.
// Checked for every streaming client: each text event reaches the client before the upstream has
// written the next one (one by one, never batched), and a client that aborts mid-stream has its
// upstream request cancelled. The measured delays are printed as a matrix (docs/clients.md).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { responseEvents, responseObject } from "../../scripts/fake-upstream";
import { KEY, ROOT, startProxy, stopAll, waitFor, type RunningProxy } from "../helpers";

const CLIENTS = join(ROOT, "tests", "clients");
const GAP_MS = 150; // between two text events: batching would show as a delay of at least this
const WORDS = Array.from({ length: 5 }, (_, i) => `w${i}_ `);
const LONG_WORDS = Array.from({ length: 40 }, (_, i) => `w${i}_ `); // the stream a client aborts

// ---- the fake upstream: streams WORDS with GAP_MS between text events, records what it wrote when

interface UpstreamRun {
  body: Record<string, unknown>;
  headers: Headers;
  /** performance.now() when each text event was handed to the socket. */
  writes: number[];
  completed: boolean;
  cancelledAt?: number;
}

let upstream: ReturnType<typeof Bun.serve>;
let runs: UpstreamRun[] = [];
let words = WORDS;
let answer429 = 0;

function startUpstream() {
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      if (new URL(req.url).pathname !== "/v1/responses") return new Response("not found", { status: 404 });
      const run: UpstreamRun = { body: (await req.json()) as Record<string, unknown>, headers: req.headers, writes: [], completed: false };
      runs.push(run);
      if (answer429 > 0) {
        answer429--;
        const error = { error: { message: "Rate limit reached", type: "requests", param: null, code: "rate_limit_exceeded" } };
        return Response.json(error, { status: 429, headers: { "retry-after-ms": "20" } });
      }
      const text = words.join("");
      if (run.body.stream !== true) {
        run.completed = true;
        return Response.json(responseObject(text));
      }
      const events = responseEvents(words);
      const cancel = () => {
        run.cancelledAt ??= performance.now();
      };
      req.signal.addEventListener("abort", cancel);
      const body = new ReadableStream<Uint8Array>({
        async start(c) {
          try {
            for (const event of events) {
              const isText = event.startsWith("event: response.output_text.delta");
              if (isText && run.writes.length > 0) await Bun.sleep(GAP_MS);
              if (run.cancelledAt !== undefined) return;
              c.enqueue(new TextEncoder().encode(event));
              if (isText) run.writes.push(performance.now());
            }
            run.completed = true;
            c.close();
          } catch {
            cancel(); // enqueue on a cancelled stream
          }
        },
        cancel,
      });
      return new Response(body, { headers: { "content-type": "text/event-stream", "x-request-id": "req_fake" } });
    },
  });
}

// ---- running one client program, timing each text event as it appears on its stdout

interface ClientRun {
  code: number;
  stdout: string;
  stderr: string;
  /** performance.now() when the marker of text event i (`w<i>_`) first appeared on stdout. */
  arrivals: number[];
  /** performance.now() when the test killed it (a user's Ctrl-C), if it did. */
  killedAt?: number;
}

async function runClient(cmd: string[], opts: { env?: Record<string, string>; killWhen?: (arrivals: number[]) => boolean } = {}): Promise<ClientRun> {
  const proc = Bun.spawn(cmd, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    cwd: CLIENTS,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", ...opts.env },
  });
  const result: ClientRun = { code: -1, stdout: "", stderr: "", arrivals: [] };
  const timer = setTimeout(() => proc.kill("SIGKILL"), 90_000);
  const kill = () => {
    if (result.killedAt === undefined && opts.killWhen?.(result.arrivals)) {
      result.killedAt = performance.now();
      proc.kill("SIGINT"); // Ctrl-C (the codex launcher passes it on to its native binary)
    }
  };
  const poll = opts.killWhen && setInterval(kill, 2);
  const stderr = new Response(proc.stderr).text();
  const decoder = new TextDecoder();
  for await (const chunk of proc.stdout) {
    const now = performance.now();
    result.stdout += decoder.decode(chunk, { stream: true });
    while (result.stdout.includes(`w${result.arrivals.length}_`)) result.arrivals.push(now);
    kill();
  }
  result.code = await proc.exited;
  clearTimeout(timer);
  clearInterval(poll);
  result.stderr = await stderr;
  return result;
}

// ---- what the runtimes on this machine can run

const which = (name: string) => Bun.which(name) ?? undefined;
const ok = (cmd: string[]) => {
  try {
    return Bun.spawnSync(cmd, { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
  } catch {
    return false;
  }
};
const NODE = which("node");
const PYTHON = ["/usr/bin/python3", which("python3")].find(
  (py) => py && (ok([py, "-c", "import httpx"]) || ok([py, "-c", "import requests"])),
);
const GO = which("go");
const JAVA = which("java");
const CURL = which("curl");
const CURL_HTTP2 = CURL !== undefined && /\bHTTP2\b/.test(Bun.spawnSync([CURL, "-V"]).stdout.toString());
const CODEX = join(ROOT, "node_modules", ".bin", "codex");

interface Client {
  name: string;
  /** Why it cannot run here, or undefined. */
  missing?: string;
  /** The command for one run against `base` (…/v1). */
  cmd(mode: "stream" | "abort", base: string): string[] | Promise<string[]>;
  /** Aborts by being killed after the first text event, as a user's Ctrl-C (curl, codex). */
  killToAbort?: boolean;
  /** Prints its events only once the answer is complete (checked for the answer, not timed). */
  whole?: boolean;
  env?(): Record<string, string>;
  abort?: false;
  /** What of the request must be the same direct and through the proxy (default: all of it). */
  request?(body: Record<string, unknown>): unknown;
}

let goBinary: string | undefined;
async function buildGo(): Promise<string> {
  if (goBinary) return goBinary;
  const out = join(mkdtempSync(join(tmpdir(), "rap-go-")), "go_client");
  const build = Bun.spawn([GO!, "build", "-o", out, "go_client.go"], { cwd: CLIENTS, stdout: "pipe", stderr: "pipe", env: { ...process.env, GO111MODULE: "off" } });
  if ((await build.exited) !== 0) throw new Error(`go build failed: ${await new Response(build.stderr).text()}`);
  return (goBinary = out);
}

const curlStream = (flags: string[]) => (_mode: string, base: string) => [
  CURL!, "-sS", "--fail-with-body", ...flags, `${base}/responses`,
  "-H", "content-type: application/json", "-H", "authorization: Bearer sk-client-own-key",
  "-d", '{"model":"fake-model","input":"Say hello","stream":true}',
];

const node = (client: string) => (mode: string, base: string) => [NODE!, "node-clients.mjs", client, mode, base];
const noNode = NODE ? undefined : "node is not installed";

const clients: Client[] = [
  { name: "openai SDK (Node)", missing: noNode, cmd: node("openai") },
  { name: "Vercel AI SDK (Node)", missing: noNode, cmd: node("ai-sdk") },
  { name: "LangChain JS (Node)", missing: noNode, cmd: node("langchain") },
  { name: "Node fetch, streamed body", missing: noNode, cmd: node("fetch") },
  {
    name: "Python httpx/requests",
    missing: PYTHON ? undefined : "no python3 with httpx or requests (Debian: python3-httpx)",
    cmd: (mode, base) => [PYTHON!, "python_client.py", mode, base],
  },
  { name: "Go net/http", missing: GO ? undefined : "go is not installed (Debian: golang-go)", cmd: async (mode, base) => [await buildGo(), mode, base] },
  {
    name: "Java HttpClient (default HTTP_2)",
    missing: JAVA ? undefined : "java is not installed (Debian: openjdk-17-jdk-headless)",
    cmd: (mode, base) => [JAVA!, "JavaClient.java", mode, base],
  },
  { name: "curl -N", missing: CURL ? undefined : "curl is not installed", cmd: curlStream(["-N"]), killToAbort: true },
  { name: "curl --http2 -N", missing: CURL_HTTP2 ? undefined : "curl without HTTP/2 support", cmd: curlStream(["--http2", "-N"]), killToAbort: true },
  { name: "curl --http1.0 -N", missing: CURL ? undefined : "curl is not installed", cmd: curlStream(["--http1.0", "-N"]), killToAbort: true },
  { name: "curl (plain)", missing: CURL ? undefined : "curl is not installed", cmd: curlStream([]), whole: true, abort: false },
  {
    name: "Codex CLI (codex exec)",
    missing: !NODE ? "node is not installed" : existsSync(CODEX) ? undefined : "no node_modules/.bin/codex (npm ci installs @openai/codex)",
    cmd: (_mode, base) => [
      CODEX, "exec", "--skip-git-repo-check", "-m", "fake-model", "-c", "model_provider=proxy",
      "-c", `model_providers.proxy={ name = "proxy", base_url = "${base}", wire_api = "responses" }`, "Say hello",
    ],
    env: () => ({ CODEX_HOME: mkdtempSync(join(tmpdir(), "rap-codex-")) }),
    // Its request carries ids, timestamps and its home folder: compare what the user asked.
    request: (body) => ({
      model: body.model,
      stream: body.stream,
      asked: (body.input as Array<{ role?: string; content?: unknown }>).filter((m) => m.role === "user").at(-1)?.content,
    }),
    whole: true,
    killToAbort: true,
  },
];

// ---- the matrix

interface Row {
  client: string;
  mode: string;
  direct: string;
  proxy: string;
}
const matrix: Row[] = [];
const ms = (n: number) => `${n.toFixed(1)} ms`;
const p50max = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return `p50 ${ms(s[Math.floor(s.length / 2)]!)}, max ${ms(s.at(-1)!)}`;
};

let proxy: RunningProxy;
const direct = () => `http://127.0.0.1:${upstream.port}/v1`;
const proxied = () => `${proxy.base}/v1`;

beforeAll(async () => {
  upstream = startUpstream();
  proxy = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${upstream.port}/v1/responses`] });
});
afterAll(async () => {
  upstream.stop(true);
  await stopAll();
  if (matrix.length) {
    console.log("\n| client | mode | direct | through the proxy |\n|---|---|---|---|");
    for (const r of matrix) console.log(`| ${r.client} | ${r.mode} | ${r.direct} | ${r.proxy} |`);
  }
});

/** One streamed run: the answer, and each event's delay after the upstream wrote it. */
async function streamRun(client: Client, base: string): Promise<{ run: ClientRun; up: UpstreamRun; delays: number[] }> {
  words = WORDS;
  runs = [];
  const run = await runClient(await client.cmd("stream", base), { env: client.env?.() });
  if (run.code !== 0) throw new Error(`${client.name} exited ${run.code}: ${run.stdout}\n${run.stderr.slice(-2000)}`);
  expect(runs).toHaveLength(1);
  const up = runs[0]!;
  expect(up.completed).toBe(true);
  expect(run.arrivals).toHaveLength(WORDS.length); // every text event reached the client
  const delays = run.arrivals.map((t, i) => t - up.writes[i]!);
  return { run, up, delays };
}

/** The client's output with what legitimately differs per run (Codex's session ids) removed. */
const normalise = (s: string) => s.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "<id>");

describe("real clients under their own runtimes, direct and through the proxy", () => {
  for (const client of clients) {
    if (client.missing) console.log(`skip: ${client.name}: ${client.missing}`);

    test.skipIf(!!client.missing)(`${client.name}: streams, same answer as direct${client.whole ? "" : ", events one by one"}`, async () => {
      const straight = await streamRun(client, direct());
      const through = await streamRun(client, proxied());
      // Same answer as going direct, and the upstream got the same request but for the key.
      expect(normalise(through.run.stdout)).toBe(normalise(straight.run.stdout));
      const asked = client.request ?? ((body) => body);
      expect(asked(through.up.body)).toEqual(asked(straight.up.body));
      expect(through.up.headers.get("authorization")).toBe(`Bearer ${KEY}`);
      for (const h of ["upgrade", "http2-settings", "connection"]) expect(through.up.headers.has(h)).toBe(false);
      for (const w of WORDS) expect(through.run.stdout).toContain(w.trim());
      if (!client.whole) {
        // One by one: text event i reached the client before the upstream wrote event i + 1.
        for (let i = 0; i + 1 < WORDS.length; i++) expect(through.run.arrivals[i]!).toBeLessThan(through.up.writes[i + 1]!);
        matrix.push({ client: client.name, mode: "stream: delay per event", direct: p50max(straight.delays), proxy: p50max(through.delays) });
      } else {
        matrix.push({ client: client.name, mode: "stream: whole answer", direct: "same answer", proxy: "same answer" });
      }
    }, 180_000);

    if (client.abort === false) continue;
    test.skipIf(!!client.missing)(`${client.name}: an abort mid-stream cancels the upstream request`, async () => {
      const abortAfter = async (base: string) => {
        words = LONG_WORDS;
        runs = [];
        // A client that prints only whole answers (codex) is killed once the upstream has written
        // a text event; one that prints events, once the first reached its stdout.
        const killWhen = !client.killToAbort ? undefined
          : client.whole ? () => (runs[0]?.writes.length ?? 0) > 0 : (arrivals: number[]) => arrivals.length > 0;
        const run = await runClient(await client.cmd("abort", base), { env: client.env?.(), killWhen });
        await waitFor(() => runs[0]?.cancelledAt !== undefined, 10_000, `${client.name}'s abort to reach the upstream`);
        const up = runs[0]!;
        expect(up.completed).toBe(false);
        expect(up.writes.length).toBeLessThan(LONG_WORDS.length);
        const abortedAt = run.killedAt ?? run.arrivals[0];
        expect(abortedAt).toBeDefined();
        return up.cancelledAt! - abortedAt!;
      };
      const straight = await abortAfter(direct());
      const through = await abortAfter(proxied());
      const from = client.killToAbort ? "killed" : "first event";
      matrix.push({ client: client.name, mode: `abort: ${from} → upstream cancelled`, direct: ms(straight), proxy: ms(through) });
    }, 180_000);
  }
});

describe("openai SDK under Node: non-streamed and retried calls", () => {
  test.skipIf(!NODE)("responses.create without stream: the same response object as direct", async () => {
    words = WORDS;
    const run = async (base: string) => {
      const r = await runClient([NODE!, "node-clients.mjs", "openai", "nonstream", base]);
      expect(r.code).toBe(0);
      return r.stdout;
    };
    const [a, b] = [await run(direct()), await run(proxied())];
    expect(b).toBe(a);
    expect(b).toContain(`"text":${JSON.stringify(WORDS.join(""))}`);
  }, 60_000);

  test.skipIf(!NODE)("a 429 reaches the SDK as it is, and its own retry goes through (two upstream requests, not more)", async () => {
    words = WORDS;
    for (const base of [direct(), proxied()]) {
      runs = [];
      answer429 = 1;
      const r = await runClient([NODE!, "node-clients.mjs", "openai", "retry", base]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`"status":"completed"`);
      expect(runs).toHaveLength(2);
    }
  }, 60_000);
});

describe("curl: Expect: 100-continue with a 2 MB body", () => {
  test.skipIf(!CURL)("the body arrives whole, the answer is the same as direct", async () => {
    words = WORDS;
    const big = JSON.stringify({ model: "fake-model", input: "x".repeat(2 * 1024 * 1024) });
    const file = join(mkdtempSync(join(tmpdir(), "rap-curl-")), "body.json");
    await Bun.write(file, big);
    const run = async (base: string) => {
      runs = [];
      const r = await runClient([CURL!, "-sS", "--fail-with-body", "-H", "Expect: 100-continue", "-H", "content-type: application/json", "--data-binary", `@${file}`, "-w", "\nHTTP %{http_code}", `${base}/responses`]);
      expect(r.code).toBe(0);
      expect(runs).toHaveLength(1);
      expect(JSON.stringify(runs[0]!.body)).toBe(big);
      return r.stdout;
    };
    const [a, b] = [await run(direct()), await run(proxied())];
    expect(b).toBe(a);
    expect(b).toEndWith("HTTP 200");
  }, 60_000);
});
