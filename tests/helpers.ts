// Test harness: the compiled binary, a recording fake upstream, and raw TCP clients.
import type { Server, Subprocess } from "bun";
import { test } from "bun:test";
import { randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..");
export const BIN = join(ROOT, "dist", "responses-api-proxy");
if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` (npm test builds it first)`);

/** A fresh, recognisable key per test run: every test can search its output for it. */
export const KEY = `sk-test-${randomBytes(24).toString("hex")}_K`;

export const IS_ROOT = process.getuid?.() === 0;

/** The proxy's environment: nothing inherited but PATH, so tests are reproducible. */
export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", ...extra };
}

export interface RunningProxy {
  proc: Subprocess<"pipe", "pipe", "pipe">;
  port: number;
  base: string;
  stderr(): string;
  stdout(): string;
  /** Resolves with the exit code. */
  exited: Promise<number>;
  kill(signal?: NodeJS.Signals): Promise<number>;
}

function collect(stream: ReadableStream<Uint8Array>): { text: () => string; done: Promise<void> } {
  let text = "";
  const decoder = new TextDecoder();
  const done = (async () => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  })();
  return { text: () => text, done };
}

export async function waitFor(cond: () => boolean, ms = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

export interface SpawnOptions {
  args?: string[];
  /** What is written to stdin; default KEY + "\n". */
  input?: string | Uint8Array;
  /** Keep stdin open after writing (a long-lived pipe). */
  keepStdinOpen?: boolean;
  env?: Record<string, string>;
  cwd?: string;
  cmd?: string[];
}

export function spawnProxy(opts: SpawnOptions = {}): Omit<RunningProxy, "port" | "base"> {
  const proc = Bun.spawn(opts.cmd ?? [BIN, ...(opts.args ?? [])], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: opts.env ?? baseEnv(),
    cwd: opts.cwd ?? ROOT,
  });
  // The proxy may exit before reading all of it (that is the point of some tests): ignore EPIPE.
  const ignore = () => {};
  try {
    proc.stdin.write(opts.input ?? `${KEY}\n`);
    Promise.resolve(proc.stdin.flush()).catch(ignore);
    if (!opts.keepStdinOpen) Promise.resolve(proc.stdin.end()).catch(ignore);
  } catch {
    // EPIPE: the proxy already exited
  }
  const err = collect(proc.stderr);
  const out = collect(proc.stdout);
  const exited = proc.exited.then(async (code) => {
    await Promise.all([err.done, out.done]);
    return code;
  });
  return {
    proc,
    stderr: err.text,
    stdout: out.text,
    exited,
    async kill(signal = "SIGKILL") {
      proc.kill(signal);
      return exited;
    },
  };
}

const cleanup: Array<() => unknown> = [];
/** Registers something to stop after the current test file (see `stopAll`). */
export function onCleanup(fn: () => unknown): void {
  cleanup.push(fn);
}
export async function stopAll(): Promise<void> {
  while (cleanup.length) await cleanup.pop()!();
}

/** Starts the proxy and waits for its "listening" line. */
export async function startProxy(opts: SpawnOptions = {}): Promise<RunningProxy> {
  const p = spawnProxy(opts);
  let code: number | undefined;
  p.exited.then((c) => (code = c));
  // The start-up line, as text or as JSON (--log-format json).
  const listening = /listening on 127\.0\.0\.1:(\d+)|"listen":"127\.0\.0\.1:(\d+)"/;
  await waitFor(() => listening.test(p.stderr()) || code !== undefined, 10_000, "listening line");
  const m = listening.exec(p.stderr());
  if (!m) throw new Error(`proxy did not start (exit ${code}): ${p.stderr()}`);
  const port = Number(m[1] ?? m[2]);
  const running = { ...p, port, base: `http://127.0.0.1:${port}` };
  onCleanup(() => running.kill());
  return running;
}

/** Runs the binary to completion (for usage and key errors). */
export async function runProxy(opts: SpawnOptions = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnProxy(opts);
  const timer = setTimeout(() => p.proc.kill("SIGKILL"), 10_000);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

export interface Recorded {
  method: string;
  url: string;
  headers: Headers;
  body: Uint8Array;
}

export interface FakeUpstream {
  server: Server<undefined>;
  url: string;
  requests: Recorded[];
  /** Connections accepted, for "nothing reached the upstream" checks on refused requests. */
  hits(): number;
}

export type UpstreamHandler = (req: Request, recorded: Recorded) => Response | Promise<Response>;

/** A fake Responses upstream on 127.0.0.1 that records every request it gets. */
export async function startUpstream(handler?: UpstreamHandler, path = "/v1/responses"): Promise<FakeUpstream> {
  const requests: Recorded[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    development: false,
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    async fetch(req) {
      // Record the head first: a streaming handler may read the body itself.
      const rec: Recorded = { method: req.method, url: req.url, headers: req.headers, body: new Uint8Array() };
      requests.push(rec);
      if (handler) return handler(req, rec);
      rec.body = new Uint8Array(await req.arrayBuffer());
      return Response.json({ id: "resp_1", object: "response", echo: rec.body.byteLength });
    },
  });
  onCleanup(() => server.stop(true));
  return { server, url: `http://127.0.0.1:${server.port}${path}`, requests, hits: () => requests.length };
}

export interface RawResult {
  data: Buffer;
  text: string;
  status: number | undefined;
  closed: boolean;
  ms: number;
}

/** Sends raw bytes and reads until the peer closes, `stopWhen` holds, or `waitMs` passes. */
export function raw(
  port: number,
  bytes: string | Uint8Array,
  waitMs = 2000,
  stopWhen?: (text: string) => boolean,
): Promise<RawResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const chunks: Buffer[] = [];
    let closed = false;
    const sock = net.connect(port, "127.0.0.1", () => sock.write(bytes));
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      const data = Buffer.concat(chunks);
      const text = data.toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ data, text, status: m ? Number(m[1]) : undefined, closed, ms: Date.now() - started });
      sock.destroy();
    };
    sock.on("data", (d) => {
      chunks.push(d as Buffer);
      if (stopWhen?.(Buffer.concat(chunks).toString("latin1"))) done();
    });
    sock.on("error", () => {});
    sock.on("close", () => {
      closed = true;
      done();
    });
    const timer = setTimeout(done, waitMs);
  });
}

/** One complete HTTP/1.1 request with Connection: close, as raw text. */
export function httpRequest(method: string, target: string, headers: Record<string, string> = {}, body = ""): string {
  const h = { Host: "127.0.0.1", Connection: "close", ...headers };
  if (body && !Object.keys(h).some((k) => k.toLowerCase() === "content-length" || k.toLowerCase() === "transfer-encoding")) {
    (h as Record<string, string>)["Content-Length"] = String(Buffer.byteLength(body));
  }
  return `${method} ${target} HTTP/1.1\r\n${Object.entries(h)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\r\n")}\r\n\r\n${body}`;
}

export const SAMPLE_BODY = JSON.stringify({ model: "gpt-test", input: "hello", stream: false });

/** A good request through the proxy: the check that it still serves after bad input. */
export async function goodRequest(proxy: RunningProxy): Promise<Response> {
  return fetch(`${proxy.base}/v1/responses`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: SAMPLE_BODY,
  });
}

export { sseEvent } from "../scripts/fake-upstream";

/** Why a musl build cannot run on this machine, or undefined when it can (see muslEnvironment). */
export const MUSL_MISSING =
  process.arch !== "x64" ? "the musl check runs on x64 only"
  : !existsSync("/lib/ld-musl-x86_64.so.1") ? "no musl loader (Debian package musl)"
  : !Bun.which("gcc") ? "gcc is needed to build the test-only glibc-compat shim (Debian package gcc)"
  : undefined;

/**
 * `test` for a test that needs something this machine may lack: with a reason in `missing`, the
 * test is registered as skipped (counted as skipped, never as passed) and the reason is printed.
 */
export function needs(...missing: Array<string | undefined>) {
  const why = missing.find((m) => m !== undefined);
  return (name: string, fn: () => unknown, timeout?: number) => {
    if (why) console.log(`skip: ${name}: ${why}`);
    test.skipIf(why !== undefined)(name, fn as () => Promise<void>, timeout);
  };
}

/** Why `tool` cannot be used here (naming the Debian package that has it), or undefined. */
export const lacksTool = (tool: string, pkg: string) => (Bun.which(tool) ? undefined : `${tool} is not installed (Debian package ${pkg})`);

/**
 * What a Bun musl build needs to run on this Debian host: Debian's musl loader, Debian's
 * libstdc++/libgcc_s, and a test-only shim for the glibc-only symbols they use (see
 * tests/musl/glibc-compat.c). Returns the environment to run it with, or why it cannot run here.
 */
export function muslEnvironment(dir: string): Record<string, string> {
  const libs = join(dir, "musl-lib");
  mkdirSync(libs, { recursive: true });
  for (const lib of ["/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libgcc_s.so.1"]) {
    copyFileSync(lib, join(libs, lib.split("/").pop()!));
  }
  const gcc = (out: string, src: string) =>
    Bun.spawnSync(["gcc", "-shared", "-fPIC", "-nostdlib", "-o", join(libs, out), "-x", "c", src]).exitCode;
  if (gcc("libglibc-compat.so", join(ROOT, "tests/musl/glibc-compat.c")) !== 0 || gcc("ld-linux-x86-64.so.2", "/dev/null") !== 0) {
    throw new Error("gcc could not build the glibc-compat shim");
  }
  return baseEnv({ LD_LIBRARY_PATH: libs, LD_PRELOAD: join(libs, "libglibc-compat.so") });
}

/** The finished dump files in `dir`, sorted (a dot-file is a write still in progress). */
export function dumpFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith(".")).sort() : [];
}

/** An SSE response that sends `chunks` with `gapMs` of silence between them. */
export function gappedStream(chunks: string[], gapMs: number): Response {
  const body = new ReadableStream({
    async start(c) {
      for (const [i, chunk] of chunks.entries()) {
        if (i > 0) await Bun.sleep(gapMs);
        c.enqueue(new TextEncoder().encode(chunk));
      }
      c.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

/**
 * An https upstream on 127.0.0.1 with a fresh self-signed certificate (openssl): its URL and the
 * certificate's file (for NODE_EXTRA_CA_CERTS), or why it cannot run here.
 */
export function selfSignedUpstream(): { url: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), "rap-tls-"));
  const gen = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "k.pem"),
    "-out", join(dir, "c.pem"), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]);
  if (gen.exitCode !== 0) throw new Error(`openssl could not make a certificate: ${gen.stderr}`);
  const tls = Bun.serve({
    hostname: "127.0.0.1", port: 0, tls: { key: Bun.file(join(dir, "k.pem")), cert: Bun.file(join(dir, "c.pem")) },
    fetch: () => new Response("{}"),
  });
  onCleanup(() => tls.stop(true));
  return { url: `https://127.0.0.1:${tls.port}/v1/responses`, cert: join(dir, "c.pem") };
}

/** The README's shell block marked `<!-- recipe:NAME -->`, exactly as written. */
export function readmeRecipe(name: string): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const m = new RegExp(`<!-- recipe:${name} -->\\n\`\`\`shell\\n([\\s\\S]*?)\`\`\`\\n`).exec(readme);
  if (!m) throw new Error(`the README has no recipe:${name} block`);
  return m[1]!;
}

/** Live processes whose command line contains `text` (read from /proc: procps may not be installed). */
export function processesMatching(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (/^\d+ \(.*\) Z/.test(stat)) continue; // exited, not yet reaped
      if (readFileSync(`/proc/${entry}/cmdline`, "latin1").includes(text)) pids.push(Number(entry));
    } catch {} // gone meanwhile
  }
  return pids;
}

/**
 * Runs `script` with `bash -e` (as `user`, a command prefix such as setpriv's) in a private mount
 * namespace after the given bind mounts (`{ from: to }`), in `cwd` or a fresh folder: a README
 * recipe exactly as written, with /usr/local/bin or /run arranged around it. Needs root and unshare.
 */
export async function inNamespace(
  binds: Record<string, string>,
  script: string,
  env: Record<string, string>,
  opts: { user?: string[]; cwd?: string } = {},
): Promise<{ code: number; out: string; err: string }> {
  const dir = mkdtempSync(join(tmpdir(), "rap-recipe-"));
  chmodSync(dir, 0o755);
  const file = join(dir, "recipe.sh");
  writeFileSync(file, script, { mode: 0o755 });
  const mounts = Object.entries(binds).map(([from, to]) => `mount --bind '${from}' '${to}'`).join(" && ");
  // Output to files: a process the recipe leaves in the background keeps them open.
  const [out, err] = [join(dir, "out"), join(dir, "err")];
  const p = Bun.spawn(["unshare", "-m", "--propagation", "private", "sh", "-c", `${mounts} && exec "$@"`, "sh", ...(opts.user ?? []), "bash", "-e", file], {
    env, cwd: opts.cwd ?? dir, stdout: Bun.file(out), stderr: Bun.file(err),
  });
  const timer = setTimeout(() => p.kill(), 50_000);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, out: readFileSync(out, "utf8"), err: readFileSync(err, "utf8") };
}
