// Counts the copies of the key in a running proxy's readable memory (as root): scans every
// readable mapping of /proc/<pid>/mem for the key's ASCII and UTF-16LE bytes.
//
//   bun scripts/key-copies.ts [--requests 1000] [--bin dist/responses-api-proxy]
//
// Starts the proxy with a fresh random key against a local fake upstream, counts right after
// start, sends the requests, and counts again.
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
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

if (import.meta.main) {
  const { values } = parseArgs({
    options: { requests: { type: "string", default: "1000" }, bin: { type: "string", default: "dist/responses-api-proxy" } },
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
      await req.arrayBuffer();
      return Response.json({ id: "resp", output: [] });
    },
  });
  const proxy = Bun.spawn([values.bin!, "--quiet", "--upstream-url", `http://127.0.0.1:${upstream.port}/v1/responses`], {
    stdin: new Blob([`${key}\n`]),
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "" },
  });
  let log = "";
  for await (const chunk of proxy.stderr) {
    log += new TextDecoder().decode(chunk);
    if (/listening on 127\.0\.0\.1:\d+/.test(log)) break;
  }
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(log)![1]);
  await Bun.sleep(200);
  const atStart = countInMemory(proxy.pid, key);
  const total = Number(values.requests);
  const body = JSON.stringify({ model: "m", input: "x" });
  for (let i = 0; i < total; i += 10) {
    await Promise.all(
      Array.from({ length: Math.min(10, total - i) }, () =>
        fetch(`http://127.0.0.1:${port}/v1/responses`, { method: "POST", body }).then((r) => r.arrayBuffer()),
      ),
    );
  }
  await Bun.sleep(200);
  const after = countInMemory(proxy.pid, key);
  console.log(`key copies right after start:   ascii ${atStart.ascii}, utf16 ${atStart.utf16}`);
  console.log(`key copies after ${total} requests: ascii ${after.ascii}, utf16 ${after.utf16}`);
  proxy.kill();
  upstream.stop(true);
}
