// Counts the copies of the key in a running proxy's readable memory (as root): scans every
// readable mapping of /proc/<pid>/mem for the key's ASCII and UTF-16LE bytes.
//
//   sudo bun scripts/key-copies.ts [--bin "<command prefix>"] [--checkpoints 1000,10000,100000] [--streams 1000]
//
// Starts the proxy (or, with --bin "codex responses-api-proxy", the original) with a fresh random
// key against a local fake upstream and counts right after start, after each checkpoint of small
// POSTs sent over 16 keep-alive connections, and after that many streamed exchanges more.
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

export interface CopyCount {
  ascii: number;
  utf16: number;
}

/** Occurrences of `needle` in the readable mappings of process `pid`. */
export function countInMemory(pid: number, key: string): CopyCount {
  const ascii = Buffer.from(key, "latin1");
  const utf16 = Buffer.from(key, "utf16le");
  const maps = readFileSync(`/proc/${pid}/maps`, "utf8").trim().split("\n");
  const fd = openSync(`/proc/${pid}/mem`, "r");
  const count: CopyCount = { ascii: 0, utf16: 0 };
  const window = 1 << 22;
  const buf = Buffer.alloc(window + utf16.length);
  try {
    for (const line of maps) {
      const [range, perms, , , , path = ""] = line.split(/\s+/);
      if (!perms!.startsWith("r") || path === "[vvar]" || path === "[vsyscall]") continue;
      const [start, end] = range!.split("-").map((h) => BigInt(`0x${h}`));
      // Overlapping windows: a copy that straddles two reads is still counted once.
      for (let at = start!; at < end!; at += BigInt(window)) {
        const len = Number(end! - at < BigInt(window + utf16.length) ? end! - at : BigInt(window + utf16.length));
        let n = 0;
        try {
          n = readSync(fd, buf, 0, len, at as unknown as number);
        } catch {
          break; // an unreadable mapping (guard pages): skip the rest of it
        }
        const view = buf.subarray(0, n);
        for (const [needle, key] of [[ascii, "ascii"], [utf16, "utf16"]] as const) {
          for (let i = view.indexOf(needle); i >= 0 && i < window; i = view.indexOf(needle, i + 1)) count[key]++;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return count;
}

/** The pid listening on 127.0.0.1:port (the original's server info names no pid). */
function listeningPid(port: number): number | undefined {
  const m = /pid=(\d+)/.exec(Bun.spawnSync(["ss", "-Hltnp", `sport = :${port}`]).stdout.toString());
  return m ? Number(m[1]) : undefined;
}

/** Sends `count` requests over `connections` loops, each awaiting its answer before the next. */
async function load(port: number, count: number, connections: number, body: string): Promise<void> {
  let left = count;
  const loop = async () => {
    while (left-- > 0) {
      const res = await fetch(`http://127.0.0.1:${port}/v1/responses`, { method: "POST", headers: { "content-type": "application/json" }, body });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: connections }, loop));
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      bin: { type: "string", default: "dist/responses-api-proxy" },
      checkpoints: { type: "string", default: "1000,10000,100000" },
      streams: { type: "string", default: "1000" },
    },
  });
  if (process.getuid?.() !== 0) {
    console.error("run as root: the proxy's memory is readable by root only (PR_SET_DUMPABLE 0)");
    process.exit(2);
  }
  const key = `sk-copies-${randomBytes(20).toString("hex")}`;
  const upstream = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = await req.text();
      if (!body.includes('"stream":true')) return Response.json({ id: "resp", output: [] });
      const events = ["response.created", "response.output_text.delta", "response.output_text.delta", "response.completed"];
      return new Response(events.map((type) => `event: ${type}\ndata: {"type":"${type}"}\n\n`).join(""), {
        headers: { "content-type": "text/event-stream" },
      });
    },
  });
  const info = join(mkdtempSync(join(tmpdir(), "rap-copies-")), "info.json");
  const cmd = [...values.bin!.split(/\s+/).filter(Boolean), "--server-info", info, "--upstream-url", `http://127.0.0.1:${upstream.port}/v1/responses`];
  const proxy = Bun.spawn(cmd, { stdin: new Blob([`${key}\n`]), stdout: "ignore", stderr: "ignore", env: { PATH: process.env.PATH ?? "" } });
  for (let i = 0; i < 200 && !existsSync(info); i++) await Bun.sleep(50);
  const port = (JSON.parse(readFileSync(info, "utf8")) as { port: number }).port;
  const pid = listeningPid(port) ?? proxy.pid;
  await Bun.sleep(200);
  const row = (what: string, c: CopyCount) => console.log(`| ${what} | ${c.ascii} | ${c.utf16} |`);
  console.log(`${values.bin}: key copies in memory (pid ${pid})\n\n| after | ASCII | UTF-16 |\n|---|---|---|`);
  row("start", countInMemory(pid, key));
  let sent = 0;
  for (const checkpoint of values.checkpoints!.split(",").map(Number)) {
    await load(port, checkpoint - sent, 16, JSON.stringify({ model: "m", input: "x" }));
    sent = checkpoint;
    await Bun.sleep(200);
    row(`${checkpoint} small POSTs (16 connections)`, countInMemory(pid, key));
  }
  const streams = Number(values.streams);
  if (streams > 0) {
    await load(port, streams, 16, JSON.stringify({ model: "m", input: "x", stream: true }));
    await Bun.sleep(200);
    row(`and ${streams} streamed exchanges`, countInMemory(pid, key));
  }
  proxy.kill();
  process.kill(pid, "SIGTERM");
  upstream.stop(true);
}
