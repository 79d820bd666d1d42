// `npm run bench [-- --peer "<command prefix>"] [--quick] [--only 3,6] [--streams 300,700]`
//
// Measures, in one run and on loopback only: direct (the client talks to the fake upstream
// itself: the limit), this proxy, and optionally a second proxy given as a command prefix that
// takes the same flags and reads the key on stdin (for the original Rust proxy:
// --peer "codex responses-api-proxy", from the @openai/codex npm package; for the floor that no
// Bun proxy beats on this machine: --peer "bun scripts/floor-proxy.ts"). Targets take turns
// within each figure, so drift hits them alike; the table gives each figure and its ratios.
// Load is bounded in count and time. Needs wrk (Debian package wrk) for figures 1, 2 and 7, and
// openssl for figures 7 and 9 (an https upstream). Figure 6 (start-up) also runs the floor,
// compiled like the product. Figure 8 (WebSocket sessions) runs direct and
// this proxy only; figure 9 (streams at scale) direct, this proxy and the floor, and the peer when
// there is one (to compare two builds of this proxy: --peer "<old binary> --quiet --max-concurrent 65535").
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { build } from "./build";
import { monotonicNs } from "./clock";

const { values: opts } = parseArgs({
  options: {
    peer: { type: "string" },
    quick: { type: "boolean", default: false },
    only: { type: "string" }, // e.g. "3,6": run only these figures
    bin: { type: "string", default: "dist/responses-api-proxy" },
    streams: { type: "string" }, // e.g. "300,700": figure 9 at these N only (two builds side by side)
  },
});
const QUICK = opts.quick!;
const ONLY = opts.only ? new Set(opts.only.split(",").map((f) => f.trim())) : undefined;
const runs = (figure: string) => !ONLY || ONLY.has(figure);
/** No figure's client waits forever on a target that stops answering. */
const CLIENT_DEADLINE_MS = 120_000;
const KEY = `sk-bench-${randomBytes(16).toString("hex")}`;
const WORK = mkdtempSync(join(tmpdir(), "rap-bench-"));

// ---------------------------------------------------------------- processes and /proc

const CLK_TCK = 100; // Linux USER_HZ
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
}
/** This process's hard limit on open files (what a target inherits, and may raise its soft limit to). */
function hardNofile(): number {
  const m = /Max open files\s+\d+\s+(\d+|unlimited)/.exec(readFileSync("/proc/self/limits", "utf8"));
  return m && m[1] !== "unlimited" ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}
/** Peak RSS; NaN for a target that is no longer running (it died under the load: shown as –). */
function peakRssMiB(pid: number): number {
  if (!existsSync(`/proc/${pid}/status`)) return Number.NaN;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) / 1024;
}

interface Target {
  name: "direct" | "proxy" | "peer" | "floor";
  base: string;
  pid?: number;
  /** What the target printed on stderr so far. */
  stderr(): string;
  stop(): Promise<void>;
}

/** The fake upstream, plain http; with `tls`, https with that certificate (figure 7). */
async function startUpstream(tls?: { cert: string; key: string }) {
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "bench-upstream.ts")], {
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: "4096", ...(tls && { BENCH_TLS_CERT: tls.cert, BENCH_TLS_KEY: tls.key }) },
  });
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  const port = Number(new TextDecoder().decode(value).trim());
  const base = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
  return { pid: proc.pid, url: `${base}/v1/responses`, base, stop: () => proc.kill() };
}

type Kind = Target["name"];
/** The floor runs from source, except in figure 6, which compiles it as the product is compiled. */
let floorCommand = [process.execPath, join(import.meta.dir, "floor-proxy.ts")];
let infoSeq = 0;

async function startTarget(
  kind: Kind,
  upstream: { url: string; base: string },
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<Target> {
  if (kind === "direct") return { name: kind, base: upstream.base, stderr: () => "", stop: async () => {} };
  const info = join(WORK, `info-${++infoSeq}.json`);
  const prefix = kind === "proxy" ? [opts.bin!] : kind === "floor" ? floorCommand : opts.peer!.split(/\s+/).filter(Boolean);
  const args = ["--server-info", info, "--http-shutdown", "--upstream-url", upstream.url, ...(kind === "proxy" ? ["--quiet", ...extra] : [])];
  // Its own process group: a peer started through a wrapper script (npm's `codex` is a Node
  // script that starts the native binary) is stopped whole.
  const proc = Bun.spawn(["setsid", ...prefix, ...args], {
    stdin: new Blob([`${KEY}\n`]),
    stdout: "ignore",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", ...env },
  });
  // Read as it comes (a full pipe would stall the target), keeping the last 16 KB.
  let stderr = "";
  (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderr = (stderr + decoder.decode(chunk, { stream: true })).slice(-16_384);
  })();
  const deadline = Date.now() + 15_000;
  while (!(existsSync(info) && readFileSync(info, "utf8").endsWith("\n"))) {
    if (Date.now() > deadline || proc.exitCode !== null) {
      await proc.exited;
      throw new Error(`${kind} did not start: ${stderr}`);
    }
    await Bun.sleep(0.25); // fine-grained: figure 6 times this loop
  }
  // The pid that listens (the native binary, not a wrapper): the one whose CPU and memory count.
  const { port, pid } = JSON.parse(readFileSync(info, "utf8")) as { port: number; pid?: number };
  return {
    name: kind,
    base: `http://127.0.0.1:${port}`,
    pid: pid ?? listeningPid(port) ?? proc.pid,
    stderr: () => stderr,
    async stop() {
      try {
        process.kill(-proc.pid, "SIGKILL"); // the whole group (setsid made proc.pid its leader)
      } catch {
        proc.kill("SIGKILL");
      }
      await proc.exited;
    },
  };
}

/** The pid listening on 127.0.0.1:port (for a peer whose server-info has no pid). */
function listeningPid(port: number): number | undefined {
  const out = Bun.spawnSync(["ss", "-Hltnp", `sport = :${port}`]).stdout.toString();
  const m = /pid=(\d+)/.exec(out);
  return m ? Number(m[1]) : undefined;
}

// ---------------------------------------------------------------- statistics

const median = (xs: number[]) => percentile(xs, 50);
function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

// ---------------------------------------------------------------- figures 1 and 2: wrk

const SMALL_BODY = JSON.stringify({ model: "bench-model", input: `${"Summarise the benchmark. ".repeat(10)}`, stream: false, store: false });
const wrkScript = join(WORK, "post.lua");
writeFileSync(
  wrkScript,
  `wrk.method = "POST"\nwrk.body = ${JSON.stringify(SMALL_BODY)}\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["x-bench"] = "small"\n`,
);
/** The same request from a client that opens a new connection for each one (curl, many scripts). */
const wrkCloseScript = join(WORK, "post-close.lua");
writeFileSync(wrkCloseScript, `${readFileSync(wrkScript, "utf8")}wrk.headers["Connection"] = "close"\n`);

interface WrkResult {
  rps: number;
  p50us: number;
  p99us: number;
  requests: number;
  errors: number;
  cpuUsPerRequest?: number;
  upstreamCpuPct: number;
}

/** wrk runs of each target, one per round. */
type WrkRounds = Partial<Record<Kind, WrkResult[]>>;

/** One figure per target: its median over the rounds. */
function medianOver(rounds: WrkRounds, f: (w: WrkResult) => number | undefined): Partial<Record<Kind, number>> {
  return Object.fromEntries(Object.entries(rounds).map(([k, ws]) => [k, median(ws!.map((w) => f(w) ?? Number.NaN))]));
}

/** Non-2xx answers over all rounds of all targets. */
function non2xx(...all: WrkRounds[]): number {
  return all.flatMap((rounds) => Object.values(rounds).flat()).reduce((n, w) => n + (w?.errors ?? 0), 0);
}

function toUs(value: string, unit: string): number {
  return Number(value) * (unit === "us" ? 1 : unit === "ms" ? 1000 : 1_000_000);
}

async function wrk(target: Target, upstreamPid: number, connections: number, seconds: number, script = wrkScript): Promise<WrkResult> {
  const cpu0 = target.pid ? cpuSeconds(target.pid) : 0;
  const up0 = cpuSeconds(upstreamPid);
  const proc = Bun.spawn(
    ["wrk", "-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "-s", script, `${target.base}/v1/responses`],
    { stdout: "pipe", stderr: "pipe" },
  );
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const cpu = target.pid ? cpuSeconds(target.pid) - cpu0 : 0;
  const upCpu = cpuSeconds(upstreamPid) - up0;
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? Number.NaN);
  const lat = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, "m").exec(out);
    return m ? toUs(m[1]!, m[2]!) : Number.NaN;
  };
  const requests = num(/(\d+) requests in/);
  const errors = num(/Non-2xx or 3xx responses: (\d+)/) || 0;
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50us: lat("50"),
    p99us: lat("99"),
    requests,
    errors,
    cpuUsPerRequest: target.pid ? (cpu * 1e6) / requests : undefined,
    upstreamCpuPct: (upCpu / seconds) * 100,
  };
}

// ---------------------------------------------------------------- figure 3: SSE delay

/**
 * Delays (µs) of the events of `streams` concurrent streams: each stream's first event apart
 * (it also carries the request's set-up: the time to first token) from the later ones; `failed`
 * counts broken streams.
 */
async function sseDelays(
  target: Target,
  streams: number,
  events: number,
  gapMs: number,
): Promise<{ first: number[]; later: number[]; failed: number }> {
  const first: number[] = [];
  const later: number[] = [];
  let failed = 0;
  const decoder = new TextDecoder();
  await Promise.all(
    Array.from({ length: streams }, async () => {
     try {
      const res = await fetch(`${target.base}/v1/responses`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-bench": "sse", "x-events": String(events), "x-gap-ms": String(gapMs) },
        body: SMALL_BODY,
        signal: AbortSignal.timeout(CLIENT_DEADLINE_MS),
      });
      let buffer = "";
      let seen = 0;
      for await (const chunk of res.body!) {
        const now = monotonicNs();
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const m = /"t":(\d+)/.exec(buffer.slice(0, end));
          if (m) (seen++ === 0 ? first : later).push(Number(now - BigInt(m[1]!)) / 1000);
          buffer = buffer.slice(end + 2);
        }
      }
     } catch {
      failed++;
     }
    }),
  );
  return { first, later, failed };
}

// ---------------------------------------------------------------- figure 4: 1 GiB each way

const GiB = 1 << 30;

async function upload(target: Target, bytes: number): Promise<number> {
  const chunk = new Uint8Array(1 << 20).fill(0x62);
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent >= bytes) return c.close();
      sent += chunk.byteLength;
      c.enqueue(chunk);
    },
  });
  const t0 = performance.now();
  const res = await fetch(`${target.base}/v1/responses`, {
    method: "POST",
    headers: { "x-bench": "upload", "content-length": String(bytes) },
    body,
    duplex: "half",
  } as RequestInit);
  const { bytes: got } = (await res.json()) as { bytes: number };
  if (got !== bytes) throw new Error(`${target.name}: upload delivered ${got} of ${bytes} bytes`);
  return bytes / 2 ** 20 / ((performance.now() - t0) / 1000);
}

async function download(target: Target, bytes: number): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${target.base}/v1/responses`, { method: "POST", headers: { "x-bench": "download", "x-bytes": String(bytes) }, body: "{}" });
  let got = 0;
  for await (const c of res.body!) got += c.byteLength;
  if (got !== bytes) throw new Error(`${target.name}: download delivered ${got} of ${bytes} bytes`);
  return bytes / 2 ** 20 / ((performance.now() - t0) / 1000);
}

// ---------------------------------------------------------------- figure 8: WebSocket sessions

/**
 * `sessions` concurrent WebSockets (Codex's transport), each asking once for `events` messages
 * `gapMs` apart: the delay (µs) of every message from the upstream's send to the client, and the
 * sessions that failed or missed messages.
 */
async function wsDelays(target: Target, sessions: number, events: number, gapMs: number): Promise<{ delays: number[]; failed: number }> {
  const delays: number[] = [];
  let failed = 0;
  await Promise.all(
    Array.from({ length: sessions }, () =>
      new Promise<void>((resolve) => {
        const ws = new WebSocket(`${target.base.replace("http:", "ws:")}/v1/responses`);
        let seen = 0;
        const done = (ok: boolean) => {
          if (!ok) failed++;
          ws.close();
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => done(false), CLIENT_DEADLINE_MS);
        ws.onopen = () => ws.send(JSON.stringify({ events, gap: gapMs }));
        ws.onmessage = (e) => {
          const now = monotonicNs();
          const m = /"t":(\d+)/.exec(String(e.data));
          if (m) {
            delays.push(Number(now - BigInt(m[1]!)) / 1000);
            seen++;
          } else done(seen === events);
        };
        ws.onerror = () => done(false);
      }),
    ),
  );
  return { delays, failed };
}

// ---------------------------------------------------------------- figure 9: streams at scale

/**
 * `n` streams at once, each `events` events `gapMs` apart (50 a second: a model's token rate), on
 * raw HTTP/1.1 connections so that the client's own cost stays small; their starts are spread over
 * one second, as agents' are. Every event's delay (µs) from the upstream's write to its arrival,
 * and the streams that fell behind (an event over 100 ms late, or not all events by the deadline).
 */
async function streamsAtScale(target: Target, n: number, events: number, gapMs: number, spreadMs = 1000): Promise<{ delays: Float64Array; count: number; behind: number; late: number; lateFirst: number; incomplete: number }> {
  const url = new URL(target.base);
  const tls = url.protocol === "https:";
  const port = Number(url.port) || (tls ? 443 : 80);
  const delays = new Float64Array(n * events);
  let count = 0;
  let behind = 0;
  let lateStreams = 0;
  let lateFirstOnly = 0;
  let incomplete = 0;
  const request = `POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nx-bench: sse\r\nx-events: ${events}\r\nx-gap-ms: ${gapMs}\r\nContent-Length: 2\r\n\r\n{}`;
  const deadline = events * gapMs + 30_000;
  await Promise.all(
    Array.from({ length: n }, async () => {
      await Bun.sleep(Math.random() * spreadMs);
      await new Promise<void>((resolve) => {
        let seen = 0;
        let late = false;
        let lateFirst = false;
        let tail = "";
        let finished = false;
        const finish = (socket?: { end(): void }) => {
          if (finished) return; // the end, its close, an error: counted once
          finished = true;
          clearTimeout(timer);
          if (seen < events || late || lateFirst) behind++;
          if (seen < events) incomplete++;
          else if (late) lateStreams++;
          else if (lateFirst) lateFirstOnly++;
          socket?.end();
          resolve();
        };
        const timer = setTimeout(() => finish(), deadline);
        Bun.connect({
          hostname: "127.0.0.1",
          port,
          tls: tls ? { rejectUnauthorized: false } : undefined,
          socket: {
            open(socket) {
              if (!tls) socket.write(request);
            },
            handshake(socket) {
              socket.write(request);
            },
            data(socket, chunk) {
              const now = monotonicNs();
              const text = tail + chunk.toString("latin1");
              const cut = text.lastIndexOf("\n\n");
              tail = cut < 0 ? text : text.slice(cut + 2);
              if (cut < 0) return;
              for (const m of text.slice(0, cut).matchAll(/"t":(\d+)/g)) {
                const us = Number(now - BigInt(m[1]!)) / 1000;
                if (us > 100_000) {
                  if (seen === 0) lateFirst = true;
                  else late = true;
                }
                if (count < delays.length) delays[count++] = us;
                seen++;
              }
              if (seen === events) finish(socket);
            },
            close: () => finish(),
            error: () => finish(),
            connectError: () => finish(),
          },
        }).catch(() => finish());
      });
    }),
  );
  return { delays, count, behind, late: lateStreams, lateFirst: lateFirstOnly, incomplete };
}

// ---------------------------------------------------------------- figure 7: https upstream

/** A self-signed ECDSA P-256 certificate for 127.0.0.1, or undefined without openssl. */
function certificate(): { cert: string; key: string } | undefined {
  const cert = join(WORK, "upstream-cert.pem");
  const key = join(WORK, "upstream-key.pem");
  const args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert];
  args.push("-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1");
  try {
    return Bun.spawnSync(["openssl", ...args], { stdout: "ignore", stderr: "ignore" }).exitCode === 0 ? { cert, key } : undefined;
  } catch {
    return undefined; // no openssl on PATH
  }
}

// ---------------------------------------------------------------- figure 6: start-up

/**
 * Spawn to a complete server-info file, and spawn to the end of a first answer through the target
 * (the file read, one small POST /v1/responses): what a client that starts the proxy and asks
 * right away waits for. Targets take turns; medians over `runs`.
 */
async function startupMs(kinds: Kind[], upstream: { url: string; base: string }, runs: number) {
  const info: Partial<Record<Kind, number[]>> = {};
  const first: Partial<Record<Kind, number[]>> = {};
  for (let i = 0; i < runs; i++) {
    for (const k of kinds) {
      const t0 = performance.now();
      const t = await startTarget(k, upstream);
      (info[k] ??= []).push(performance.now() - t0);
      const res = await fetch(`${t.base}/v1/responses`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-bench": "small" },
        body: SMALL_BODY,
        signal: AbortSignal.timeout(CLIENT_DEADLINE_MS),
      });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`figure 6: ${k} answered ${res.status}: ${t.stderr()}`);
      (first[k] ??= []).push(performance.now() - t0);
      await t.stop();
    }
  }
  const medians = (m: Partial<Record<Kind, number[]>>) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, median(v!)])) as Partial<Record<Kind, number>>;
  return { info: medians(info), first: medians(first) };
}

// ---------------------------------------------------------------- the run

const kinds: Kind[] = opts.peer ? ["direct", "proxy", "peer"] : ["direct", "proxy"];
const proxies = kinds.filter((k) => k !== "direct");
type Row = { figure: string; unit: string; values: Partial<Record<Kind, number>>; target?: string; ok?: (v: number, direct?: number) => boolean; ratio?: boolean };
const rows: Row[] = [];
/** Figure 9, one entry per N. */
const scale: Array<{ n: number; result: Partial<Record<Kind, { p50: number; p99: number; cpuUs?: number; behind: number; upstreamPct: number }>> }> = [];
const say = (s: string) => process.stderr.write(`${s}\n`);

const upstream = await startUpstream();
try {
  const rounds = QUICK ? 1 : 3;
  const seconds = QUICK ? 2 : 4;

  // 1 and 2: targets take turns, round after round; medians over rounds.
  for (const [figure, connections] of [["1", 16], ["2", 1]] as const) {
    if (!runs(figure)) continue;
    say(`figure ${figure}: small POSTs, ${connections} keep-alive connection(s), ${rounds} x ${seconds} s per target`);
    const targets = await Promise.all(kinds.map((k) => startTarget(k, upstream)));
    const results: WrkRounds = {};
    for (let r = 0; r < rounds; r++) {
      for (const t of targets) (results[t.name] ??= []).push(await wrk(t, upstream.pid, connections, seconds));
    }
    for (const t of targets) await t.stop();
    const pick = (f: (w: WrkResult) => number | undefined) => medianOver(results, f);
    const errors = non2xx(results);
    if (errors) say(`  warning: ${errors} non-2xx responses`);
    if (figure === "1") {
      rows.push({ figure: "1 small POST, 16 conns: throughput", unit: "req/s", values: pick((w) => w.rps), target: "≥ 0.45 × direct", ok: (v, d) => v >= 0.45 * d!, ratio: true });
      rows.push({ figure: "1 … latency p50", unit: "µs", values: pick((w) => w.p50us), ratio: true });
      rows.push({ figure: "1 … latency p99", unit: "µs", values: pick((w) => w.p99us), ratio: true });
      rows.push({ figure: "1 … proxy CPU per request", unit: "µs", values: pick((w) => w.cpuUsPerRequest), target: "≤ 30 µs", ok: (v) => v <= 30 });
      rows.push({ figure: "1 … upstream CPU (not the bottleneck if < 100)", unit: "% of a core", values: pick((w) => w.upstreamCpuPct) });
    } else {
      const p50 = pick((w) => w.p50us);
      rows.push({ figure: "2 concurrency 1: latency p50", unit: "µs", values: p50, ratio: true });
      rows.push({ figure: "2 … latency p99", unit: "µs", values: pick((w) => w.p99us), ratio: true });
      const added = Object.fromEntries(proxies.map((k) => [k, (p50[k] ?? Number.NaN) - (p50.direct ?? Number.NaN)]));
      rows.push({ figure: "2 … added p50 against direct", unit: "µs", values: added, target: "≤ 60 µs", ok: (v) => v <= 60 });
    }
  }

  // 3: SSE delay, upstream write → client read.
  if (runs("3")) {
    say("figure 3: server-sent events, delay from upstream write to client read");
    const targets = await Promise.all(kinds.map((k) => startTarget(k, upstream)));
    const one: Partial<Record<Kind, number[]>> = {};
    const fifty: Partial<Record<Kind, number[]>> = {};
    const fiftyFirst: Partial<Record<Kind, number[]>> = {};
    const fiftyLater: Partial<Record<Kind, number[]>> = {};
    const failed: Partial<Record<Kind, number>> = {};
    for (let r = 0; r < rounds; r++) {
      for (const [into, streams, events, gap] of [[one, 1, QUICK ? 100 : 200, 5], [fifty, 50, QUICK ? 50 : 100, 10]] as const) {
        for (const t of targets) {
          const got = await sseDelays(t, streams, events, gap);
          (into[t.name] ??= []).push(...got.first, ...got.later);
          if (streams > 1) {
            (fiftyFirst[t.name] ??= []).push(...got.first);
            (fiftyLater[t.name] ??= []).push(...got.later);
          }
          failed[t.name] = (failed[t.name] ?? 0) + got.failed;
        }
      }
    }
    for (const t of targets) await t.stop();
    const at = (d: Partial<Record<Kind, number[]>>, p: number) => Object.fromEntries(Object.entries(d).map(([k, v]) => [k, percentile(v!, p)]));
    rows.push({ figure: "3 SSE delay, 1 stream: p50", unit: "µs", values: at(one, 50) });
    rows.push({ figure: "3 … 1 stream: p99", unit: "µs", values: at(one, 99) });
    rows.push({ figure: "3 SSE delay, 50 streams: p50", unit: "µs", values: at(fifty, 50) });
    rows.push({ figure: "3 … 50 streams: p99", unit: "µs", values: at(fifty, 99), target: "≤ 1000 µs", ok: (v) => v <= 1000 });
    // The 1% that decides p99 is about one event per stream: show the first events on their own.
    rows.push({ figure: "3 … 50 streams, first event (time to first token): p50", unit: "µs", values: at(fiftyFirst, 50) });
    rows.push({ figure: "3 … 50 streams, first event: p99", unit: "µs", values: at(fiftyFirst, 99) });
    rows.push({ figure: "3 … 50 streams, later events: p99", unit: "µs", values: at(fiftyLater, 99) });
    rows.push({ figure: `3 … streams that failed or passed ${CLIENT_DEADLINE_MS / 1000} s`, unit: "streams", values: failed, target: "0", ok: (v) => v === 0 });
  }

  // 4: 1 GiB each way, a fresh process per transfer so its peak RSS is that transfer's.
  const bytes = QUICK ? GiB / 4 : GiB;
  if (runs("4")) say(`figure 4: ${bytes / 2 ** 20} MiB upload and download`);
  for (const [dir, run] of runs("4") ? ([["upload", upload], ["download", download]] as const) : []) {
    const speed: Partial<Record<Kind, number>> = {};
    const rss: Partial<Record<Kind, number>> = {};
    for (const k of kinds) {
      const t = await startTarget(k, upstream, ["--max-body-bytes", String(2 * GiB)]);
      speed[k] = await run(t, bytes);
      if (t.pid) rss[k] = peakRssMiB(t.pid);
      await t.stop();
    }
    rows.push({ figure: `4 ${dir} ${bytes / 2 ** 20} MiB`, unit: "MiB/s", values: speed, target: "≥ 0.5 × direct", ok: (v, d) => v >= 0.5 * d!, ratio: true });
    rows.push({ figure: `4 … ${dir}: peak RSS`, unit: "MiB", values: rss, target: "≤ 64 MiB", ok: (v) => v <= 64 });
  }

  // 5: many concurrent long streams, one event a second. A proxy holds two sockets per stream and
  // raises its soft limit on open files to the hard one: the hard limit bounds how many streams
  // one proxy can carry, so the figure runs 10,000 or as many as this machine's limit allows.
  const streams = QUICK ? 1000 : Math.min(10_000, Math.floor((hardNofile() - 100) / 2));
  // Starts spread over 5 s (10,000 agents do not start in the same second), each stream 15 events
  // long: all of them are open at once for the last 10 s.
  const events = QUICK ? 5 : 15;
  const spreadMs = QUICK ? 1000 : 5000;
  if (runs("5")) {
    say(`figure 5: ${streams} concurrent streams started over ${spreadMs / 1000} s, one event a second for ${events} s`);
    const complete: Partial<Record<Kind, number>> = {};
    const rss: Partial<Record<Kind, number>> = {};
    for (const k of kinds) {
      const t = await startTarget(k, upstream, ["--max-concurrent", String(streams * 2)]);
      const r = await streamsAtScale(t, streams, events, 1000, spreadMs);
      complete[k] = streams - r.behind;
      say(`figure 5: ${k}: ${r.incomplete} streams incomplete, ${r.late} with a late event after the first, ${r.lateFirst} with only the first late; delay p50 ${percentile(Array.from(r.delays.subarray(0, r.count)), 50).toFixed(0)} µs, p99 ${percentile(Array.from(r.delays.subarray(0, r.count)), 99).toFixed(0)} µs, max ${Math.max(...r.delays.subarray(0, r.count)).toFixed(0)} µs`);
      if (t.pid) rss[k] = peakRssMiB(t.pid);
      if (t.pid && Number.isNaN(rss[k]!)) say(`figure 5: ${k} exited under the load: ${t.stderr().trim().split("\n").slice(-3).join(" / ")}`);
      await t.stop();
    }
    rows.push({ figure: `5 ${streams} long streams: all events on time (≤ 100 ms)`, unit: "streams", values: complete, target: `${streams}`, ok: (v) => v === streams });
    rows.push({ figure: "5 … peak RSS", unit: "MiB", values: rss, target: "≤ 200 MiB", ok: (v) => v <= 200 });
  }

  // 6: start-up.
  if (runs("6")) {
    say("figure 6: start-up, spawn to a complete server-info file, and to a first answer");
    const runs = QUICK ? 5 : 20;
    // A start-up from source would time the transpiler: the floor is compiled with the product's flags.
    const fromSource = floorCommand;
    floorCommand = [join(WORK, "floor-proxy")];
    await build(floorCommand[0]!, undefined, join(import.meta.dir, "floor-proxy.ts"));
    const ms = await startupMs([...proxies, "floor"], upstream, runs);
    floorCommand = fromSource;
    // Issue 20's target: no slower than the original (run it as the peer); without a peer, issue 6's 10 ms.
    const peerMs = ms.info.peer;
    const target = peerMs === undefined ? { target: "≤ 10 ms", ok: (v: number) => v <= 10 } : { target: "≤ the peer (the original)", ok: (v: number) => v <= peerMs };
    rows.push({ figure: `6 start-up: spawn to server-info (median of ${runs})`, unit: "ms", values: ms.info, ...target });
    rows.push({ figure: "6 … spawn to a first answer through it", unit: "ms", values: ms.first });
  }

  // 8: WebSocket sessions (--websocket), direct and this proxy (the original relays none).
  if (runs("8")) {
    const sessions = QUICK ? 20 : 50;
    const events = QUICK ? 50 : 200;
    say(`figure 8: ${sessions} WebSocket sessions, ${events} messages each, 10 ms apart`);
    const p50: Partial<Record<Kind, number>> = {};
    const p99: Partial<Record<Kind, number>> = {};
    const failed: Partial<Record<Kind, number>> = {};
    const cpu: Partial<Record<Kind, number>> = {};
    for (const k of ["direct", "proxy"] as const) {
      const t = await startTarget(k, upstream, ["--websocket", "--max-concurrent", String(sessions * 2)]);
      const before = t.pid ? cpuSeconds(t.pid) : 0;
      const r = await wsDelays(t, sessions, events, 10);
      if (t.pid) cpu[k] = ((cpuSeconds(t.pid) - before) * 1e6) / (sessions * events);
      p50[k] = percentile(r.delays, 50);
      p99[k] = percentile(r.delays, 99);
      failed[k] = r.failed;
      await t.stop();
    }
    rows.push({ figure: `8 WebSocket, ${sessions} sessions: delay per message p50`, unit: "µs", values: p50 });
    rows.push({ figure: "8 … delay per message p99", unit: "µs", values: p99 });
    rows.push({ figure: "8 … proxy CPU per relayed message", unit: "µs", values: cpu });
    rows.push({ figure: "8 … sessions that failed or missed a message", unit: "sessions", values: failed, target: "0", ok: (v) => v === 0 });
  }

  // 9: streams at scale over an https upstream: N streams of 50 events a second, N stepped up
  // until the proxy saturates; direct, this proxy and the floor in turn at each N.
  const tls9 = runs("9") ? certificate() : undefined;
  if (runs("9") && !tls9) say("figure 9 skipped: openssl is not available");
  if (tls9) {
    // Finer steps where proxies saturate on this machine (500-1,000): the headline ratio of two
    // saturation points is only as fine as the steps (700 against 1,000 reads 0.7x).
    const steps = opts.streams
      ? opts.streams.split(",").map((n) => Number(n.trim()))
      : QUICK
        ? [100, 300]
        : [100, 300, 500, 600, 700, 850, 1000, 1500, 2000];
    if (steps.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--streams: whole numbers of streams, e.g. 300,700 (got ${opts.streams})`);
    const events = QUICK ? 100 : 500; // 2 s or 10 s at 50 events a second
    const tlsUpstream = await startUpstream(tls9);
    try {
      for (const n of steps) {
        say(`figure 9: ${n} streams over an https upstream, ${events} events each, 20 ms apart`);
        const result: Partial<Record<Kind, { p50: number; p99: number; cpuUs?: number; behind: number; upstreamPct: number }>> = {};
        for (const k of ["direct", "proxy", "floor", ...(opts.peer ? ["peer"] : [])] as Kind[]) {
          const t = await startTarget(k, tlsUpstream, ["--max-concurrent", "65535"], { NODE_EXTRA_CA_CERTS: tls9.cert });
          const before = t.pid ? cpuSeconds(t.pid) : 0;
          const upBefore = cpuSeconds(tlsUpstream.pid);
          const t0 = performance.now();
          const r = await streamsAtScale(t, n, events, 20);
          const seconds = (performance.now() - t0) / 1000;
          const d = r.delays.subarray(0, r.count);
          result[k] = {
            p50: percentile(Array.from(d), 50),
            p99: percentile(Array.from(d), 99),
            cpuUs: t.pid ? ((cpuSeconds(t.pid) - before) * 1e6) / Math.max(r.count, 1) : undefined,
            behind: r.behind,
            upstreamPct: ((cpuSeconds(tlsUpstream.pid) - upBefore) / seconds) * 100,
          };
          await t.stop();
        }
        scale.push({ n, result });
        const added = (k: "proxy" | "floor") => result[k]!.p99 - result.direct!.p99;
        if (added("proxy") > 10_000 && added("floor") > 10_000) break; // both saturated: no higher N
      }
    } finally {
      tlsUpstream.stop();
    }
  }

  // 7: an https upstream, as in real use. A client that keeps its connection pays the proxy's TLS
  // encryption; one that opens a connection per request (curl, many scripts) pays a TLS handshake
  // per request direct, and only a loopback connect through the proxy, whose pool keeps the TLS
  // connections. Direct, this proxy and the peer (a peer that cannot reach an upstream whose
  // certificate only NODE_EXTRA_CA_CERTS makes trusted, such as the original, is left out).
  const tls = runs("7") ? certificate() : undefined;
  if (runs("7") && !tls) say("figure 7 skipped: openssl is not available");
  if (tls) {
    say(`figure 7: https upstream, 16 connections kept alive and 16 reconnecting per request, ${rounds} x ${seconds} s per target`);
    const tlsUpstream = await startUpstream(tls);
    try {
      const trusting = { NODE_EXTRA_CA_CERTS: tls.cert };
      const targets = [await startTarget("direct", tlsUpstream), await startTarget("proxy", tlsUpstream, [], trusting)];
      if (opts.peer) targets.push(await startTarget("peer", tlsUpstream, [], trusting));
      const kept: WrkRounds = {};
      const fresh: WrkRounds = {};
      for (let r = 0; r < rounds; r++) {
        for (const t of targets) {
          (kept[t.name] ??= []).push(await wrk(t, tlsUpstream.pid, 16, seconds));
          (fresh[t.name] ??= []).push(await wrk(t, tlsUpstream.pid, 16, seconds, wrkCloseScript));
        }
      }
      for (const t of targets) await t.stop();
      // A proxy that cannot reach its upstream answers 502 fast: such a run measures nothing.
      const failed = (name: Kind) => non2xx({ [name]: kept[name] }, { [name]: fresh[name] });
      if (failed("peer")) {
        say(`figure 7: the peer left out: ${failed("peer")} non-2xx responses (it does not trust the upstream's certificate)`);
        delete kept.peer;
        delete fresh.peer;
      }
      const errors = non2xx(kept, fresh);
      if (errors) throw new Error(`figure 7: ${errors} non-2xx responses (does the proxy trust the upstream's certificate?)`);
      rows.push({ figure: "7 https upstream, 16 kept-alive conns: throughput", unit: "req/s", values: medianOver(kept, (w) => w.rps), ratio: true });
      rows.push({ figure: "7 … proxy CPU per request", unit: "µs", values: medianOver(kept, (w) => w.cpuUsPerRequest) });
      rows.push({ figure: "7 … a new connection per request: throughput", unit: "req/s", values: medianOver(fresh, (w) => w.rps), ratio: true });
      rows.push({ figure: "7 … a new connection per request: latency p50", unit: "µs", values: medianOver(fresh, (w) => w.p50us), ratio: true });
      rows.push({ figure: "7 … a new connection per request: upstream CPU", unit: "% of a core", values: medianOver(fresh, (w) => w.upstreamCpuPct) });
    } finally {
      tlsUpstream.stop();
    }
  }
} finally {
  upstream.stop();
  rmSync(WORK, { recursive: true, force: true });
}

// ---------------------------------------------------------------- the table

const fmt = (v: number | undefined) =>
  v === undefined || Number.isNaN(v) ? "–" : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
// The floor has a column only when a figure of the table ran it (figure 6; figure 9 has its own table).
const withFloor = rows.some((r) => r.values.floor !== undefined);
const columns: Kind[] = withFloor ? [...kinds, "floor"] : kinds;
const header = ["figure", "unit", ...columns, ...proxies.map((k) => `${k}/direct`), ...(opts.peer ? ["proxy/peer"] : []), ...(withFloor ? ["proxy/floor"] : []), "target (proxy)", "met"];
const lines = [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`];
for (const r of rows) {
  const d = r.values.direct;
  const cells = [r.figure, r.unit, ...columns.map((k) => fmt(r.values[k]))];
  for (const k of proxies) cells.push(r.ratio && d ? `${fmt((r.values[k] ?? Number.NaN) / d)}×` : "");
  if (opts.peer) cells.push(r.values.peer ? `${fmt((r.values.proxy ?? Number.NaN) / r.values.peer)}×` : "");
  if (withFloor) cells.push(r.values.floor ? `${fmt((r.values.proxy ?? Number.NaN) / r.values.floor)}×` : "");
  const p = r.values.proxy;
  cells.push(r.target ?? "", r.ok && p !== undefined ? (r.ok(p, d) ? "yes" : "**no**") : "");
  lines.push(`| ${cells.join(" | ")} |`);
}
console.log(`\nresponses-api-proxy benchmark — ${new Date().toISOString()} — ${navigator.hardwareConcurrency} cores${QUICK ? " (quick)" : ""}\n`);
console.log(lines.join("\n"));
if (scale.length) {
  const us = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(1));
  console.log("\nFigure 9: N streams at once over an https upstream, 50 events a second each (added = the target's p99 minus direct's at the same N)\n");
  console.log("| N | events/s | direct p50 / p99 µs | proxy p50 / p99 µs | floor p50 / p99 µs | added p99: proxy / floor µs | CPU per event: proxy / floor µs | behind: direct / proxy / floor | upstream CPU % |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const { n, result: r } of scale) {
    const [d, p, f] = [r.direct!, r.proxy!, r.floor!];
    console.log(`| ${n} | ${n * 50} | ${us(d.p50)} / ${us(d.p99)} | ${us(p.p50)} / ${us(p.p99)} | ${us(f.p50)} / ${us(f.p99)} | ${us(p.p99 - d.p99)} / ${us(f.p99 - d.p99)} | ${us(p.cpuUs)} / ${us(f.cpuUs)} | ${d.behind} / ${p.behind} / ${f.behind} | ${us(p.upstreamPct)} |`);
  }
  if (opts.peer) {
    console.log(`\nThe peer (${opts.peer}) in the same run:\n`);
    console.log("| N | peer p50 / p99 µs | added p99 µs | CPU per event: peer µs (proxy / peer) | behind |");
    console.log("|---|---|---|---|---|");
    for (const { n, result: r } of scale) {
      const [d, p, q] = [r.direct!, r.proxy!, r.peer!];
      console.log(`| ${n} | ${us(q.p50)} / ${us(q.p99)} | ${us(q.p99 - d.p99)} | ${us(q.cpuUs)} (${((p.cpuUs ?? Number.NaN) / (q.cpuUs ?? Number.NaN)).toFixed(2)}×) | ${q.behind} |`);
    }
  }
  const saturation = (k: "proxy" | "floor" | "peer") => scale.find(({ result: r }) => r[k]!.p99 - r.direct!.p99 > 10_000)?.n;
  const at = (k: "proxy" | "floor" | "peer") => `${k} at N = ${saturation(k) ?? `> ${scale.at(-1)!.n}`}`;
  console.log(`\nsaturation (p99 added > 10 ms): ${at("proxy")}, ${at("floor")}${opts.peer ? `, ${at("peer")}` : ""}`);
}
