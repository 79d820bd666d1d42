// Bounded load on loopback: every byte intact (checksums both ways), zero errors.
import { afterEach, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { BIN, gappedStream, httpRequest, lacksTool, needs, raw, startProxy, startUpstream, stopAll } from "../helpers";

afterEach(stopAll);

const sha = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");

/** Decodes a complete chunked body (Connection: close responses from the proxy). */
function unchunk(data: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf("\r\n", at);
    if (eol < 0) throw new Error("truncated chunked body");
    const size = parseInt(data.subarray(at, eol).toString(), 16);
    if (size === 0) return Buffer.concat(out);
    out.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** The events a stream with this id carries: deterministic, so the client can check them. */
function streamEvents(id: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `event: delta\ndata: {"id":"${id}","n":${i},"pad":"${sha(`${id}:${i}`)}"}\n\n`);
}

test("2,000 requests at concurrency 64: zero errors, request and response bodies intact", async () => {
  const up = await startUpstream(async (req) => {
    const body = new Uint8Array(await req.arrayBuffer());
    const reply = randomBytes(1024 + (body.byteLength % 3000));
    return new Response(reply, { headers: { "x-request-sha": sha(body), "x-reply-sha": sha(reply) } });
  });
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--quiet"] });
  const total = 2000;
  const concurrency = 64;
  let next = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        next++;
        const body = JSON.stringify({ model: "m", input: randomBytes(100 + Math.floor(Math.random() * 2000)).toString("base64") });
        try {
          const res = await fetch(`${proxy.base}/v1/responses`, { method: "POST", headers: { "content-type": "application/json" }, body });
          const reply = new Uint8Array(await res.arrayBuffer());
          if (res.status !== 200 || res.headers.get("x-request-sha") !== sha(body) || res.headers.get("x-reply-sha") !== sha(reply)) errors++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  console.log(`2,000 requests at concurrency 64: ${(total / seconds).toFixed(0)} req/s, ${errors} errors`);
  expect(errors).toBe(0);
  expect(up.requests).toHaveLength(total);
});

test("500 concurrent streams: every event of every stream arrives intact", async () => {
  const events = 20;
  const up = await startUpstream((req) => {
    const id = req.headers.get("x-stream-id")!;
    const body = new ReadableStream({
      async start(c) {
        for (const e of streamEvents(id, events)) {
          c.enqueue(new TextEncoder().encode(e));
          await Bun.sleep(50);
        }
        c.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--quiet", "--max-concurrent", "1000"] });
  const streams = 500;
  const started = performance.now();
  // Raw sockets: the test runner's own fetch would queue past 256 at once.
  const results = await Promise.all(
    Array.from({ length: streams }, async (_, i) => {
      const id = `s${i}`;
      const res = await raw(proxy.port, httpRequest("POST", "/v1/responses", { "X-Stream-Id": id }, "{}"), 30_000);
      if (res.status !== 200 || !res.closed) return false;
      const body = unchunk(res.data.subarray(res.data.indexOf("\r\n\r\n") + 4));
      return sha(body) === sha(streamEvents(id, events).join(""));
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const intact = results.filter(Boolean).length;
  console.log(`500 concurrent streams of ${events} events: ${intact} intact in ${seconds.toFixed(1)} s`);
  expect(intact).toBe(streams);
  // All ran at once (~1 s of events each), not in waves of 256.
  expect(seconds).toBeLessThan(events * 0.05 * 2 + 3);
}, 60_000);

needs(lacksTool("prlimit", "util-linux"))(
  "an open-file limit too small for --max-concurrent: a warning at start, then 503 beyond what it carries, never a hang",
  async () => {
    // 200 descriptors carry (200 - 64) / 2 = 68 exchanges; the default --max-concurrent is 256.
    const up = await startUpstream(() => gappedStream(["data: a\n\n", "data: b\n\n"], 1500));
    const proxy = await startProxy({ cmd: ["prlimit", "--nofile=200:200", "--", BIN, "--upstream-url", up.url] });
    expect(proxy.stderr()).toContain(
      "warning: --max-concurrent 256 needs 576 open files and the limit is 200: at most 68 exchanges at once, more get 503; " +
        "raise the hard limit (systemd: LimitNOFILE=, shell: ulimit -Hn) to allow more",
    );
    const post = () => fetch(`${proxy.base}/v1/responses`, { method: "POST", body: "{}", signal: AbortSignal.timeout(10_000) });
    const held = await Promise.all(Array.from({ length: 68 }, post));
    expect(held.every((r) => r.status === 200)).toBe(true);
    const extra = await post();
    expect(extra.status).toBe(503);
    expect(((await extra.json()) as { error: { code: string } }).error.code).toBe("too_many_requests");
    await Promise.all(held.map((r) => r.text()));
    const after = await post();
    expect(after.status).toBe(200);
    await after.text();
  },
  30_000,
);
