// Hostile clients and failing upstreams: limits, stalls, faults, malformed requests.
// After every bad input the proxy must still serve the next good request.
import { afterEach, describe, expect, test } from "bun:test";
import { lstatSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  KEY, gappedStream, goodRequest, httpRequest, lacksTool, needs, onCleanup, raw, SAMPLE_BODY, selfSignedUpstream, startProxy, startUpstream, stopAll, waitFor, type RunningProxy,
} from "../helpers";

afterEach(stopAll);

async function jsonError(res: Response): Promise<{ message: string; type: string; param: null; code: string }> {
  expect(res.headers.get("content-type")).toBe("application/json");
  const body = (await res.json()) as { error: { message: string; type: string; param: null; code: string } };
  expect(body.error.type).toBe("proxy_error");
  expect(body.error.param).toBeNull();
  expect(JSON.stringify(body)).not.toContain(KEY);
  return body.error;
}

async function stillServes(proxy: RunningProxy) {
  expect((await goodRequest(proxy)).status).toBe(200);
}

describe("limits", () => {
  test("--max-body-bytes: a declared oversize body gets 413 before it is sent, and never reaches the upstream", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--max-body-bytes", "1000"] });
    // Only the head is sent: the 413 must come without waiting for the body.
    const res = await raw(proxy.port, httpRequest("POST", "/v1/responses", { "Content-Length": "5000" }), 2000, (t) => t.includes("}}"));
    expect(res.status).toBe(413);
    expect(res.text).toContain('"code":"request_too_large"');
    expect(res.ms).toBeLessThan(1000);
    expect(up.hits()).toBe(0);
    await stillServes(proxy);
  });

  test("--max-body-bytes: a chunked body is cut off once it passes the limit (413), the upstream request aborted", async () => {
    let upstreamGot = 0;
    let upstreamFailed = false;
    const up = await startUpstream(async (req) => {
      try {
        for await (const c of req.body!) upstreamGot += c.byteLength;
      } catch {
        upstreamFailed = true;
      }
      return new Response("{}");
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--max-body-bytes", "100000"] });
    let sent = 0;
    const body = new ReadableStream({
      async pull(c) {
        if (sent >= 1_000_000) return c.close();
        sent += 10_000;
        c.enqueue(new Uint8Array(10_000));
        await Bun.sleep(1);
      },
    });
    const res = await fetch(`${proxy.base}/v1/responses`, { method: "POST", body, duplex: "half" } as RequestInit);
    expect(res.status).toBe(413);
    expect((await jsonError(res)).code).toBe("request_too_large");
    expect(upstreamGot).toBeLessThanOrEqual(100_000);
    await waitFor(() => upstreamFailed || upstreamGot > 0, 2000, "upstream saw the abort");
    await stillServes(proxy);
  });

  test("--max-concurrent: one exchange too many gets 503 with Retry-After; capacity comes back", async () => {
    const release: Array<() => void> = [];
    const up = await startUpstream(async (req) => {
      if (req.headers.get("x-hold")) await new Promise<void>((r) => release.push(r));
      return Response.json({ ok: true });
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--max-concurrent", "2"] });
    const held = [1, 2].map(() => fetch(`${proxy.base}/v1/responses`, { method: "POST", headers: { "x-hold": "1" }, body: "{}" }));
    await waitFor(() => release.length === 2, 5000, "two held exchanges");
    const res = await goodRequest(proxy);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect((await jsonError(res)).code).toBe("too_many_requests");
    for (const r of release) r();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    await stillServes(proxy);
  });

  test("--max-header-bytes: a larger head gets 431; a 100 KB header with the default limit too", async () => {
    const up = await startUpstream();
    const small = await startProxy({ args: ["--upstream-url", up.url, "--max-header-bytes", "2048"] });
    const res = await fetch(`${small.base}/v1/responses`, { method: "POST", headers: { "x-big": "a".repeat(4000) }, body: "{}" });
    expect(res.status).toBe(431);
    expect((await jsonError(res)).code).toBe("request_header_too_large");
    await stillServes(small);

    const dflt = await startProxy({ args: ["--upstream-url", up.url] });
    const big = await raw(dflt.port, httpRequest("POST", "/v1/responses", { "X-Big": "b".repeat(100_000) }, "{}"));
    expect(big.status).toBe(431);
    const huge = await raw(dflt.port, httpRequest("POST", "/v1/responses", { "X-Huge": "c".repeat(2_000_000) }, "{}"));
    expect(huge.status === 431 || huge.status === undefined).toBe(true); // past the 1 MiB ceiling: Bun's own 431 or a close
    expect(up.hits()).toBe(1);
    await stillServes(dflt);
  });

  test("--client-timeout: a client that stalls mid-body gets 408 (small body: the upstream is never reached)", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--client-timeout", "2"] });
    const res = await raw(proxy.port, httpRequest("POST", "/v1/responses", { "Content-Length": "100" }).concat("only ten.."), 6000, (t) =>
      t.includes("}}"),
    );
    expect(res.status).toBe(408);
    expect(res.text).toContain('"code":"request_timeout"');
    await waitFor(() => proxy.stderr().includes(" 408 "), 2000, "the 408 line");
    expect(proxy.stderr()).toMatch(/ 408 [\d.]+ms in=\d+B out=0B proxy_error reason=request_timeout\n/);
    expect(res.ms).toBeGreaterThanOrEqual(1900);
    expect(res.ms).toBeLessThan(4000);
    expect(up.hits()).toBe(0);
    await stillServes(proxy);
  });

  test("--client-timeout: a client that stalls mid-way through a large streamed body gets 408, the upstream request aborted", async () => {
    let aborted = false;
    const up = await startUpstream(async (req) => {
      try {
        await req.arrayBuffer();
      } catch {
        aborted = true;
      }
      return new Response("{}");
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--client-timeout", "2"] });
    const head = httpRequest("POST", "/v1/responses", { "Content-Length": String(1_000_000) });
    const res = await raw(proxy.port, head.concat("x".repeat(200_000)), 6000, (t) => t.includes("}}"));
    expect(res.status).toBe(408);
    expect(res.text).toContain('"code":"request_timeout"');
    await waitFor(() => proxy.stderr().includes(" 408 "), 2000, "the 408 line");
    expect(proxy.stderr()).toMatch(/ 408 [\d.]+ms in=\d+B out=0B proxy_error reason=request_timeout\n/);
    expect(res.ms).toBeGreaterThanOrEqual(1900);
    expect(res.ms).toBeLessThan(4000);
    await waitFor(() => aborted, 2000, "upstream abort");
    await stillServes(proxy);
  });

  test("a head must be whole within 10 s of its first byte: a stalled one and a byte-by-byte one are both cut", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--client-timeout", "30"] });
    const stalled = raw(proxy.port, "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow", 20_000);
    // One byte every 400 ms: never silent for long, never done.
    const started = Date.now();
    const drip = net.connect(proxy.port, "127.0.0.1");
    drip.on("error", () => {});
    const dripClosed = new Promise<number>((r) => drip.on("close", () => r(Date.now() - started)));
    const timer = setInterval(() => drip.writable && drip.write("x"), 400);
    drip.write("POST /v1/responses HTTP/1.1\r\nX-Drip: ");
    const [res, dripMs] = await Promise.all([stalled, dripClosed]);
    clearInterval(timer);
    // Bun checks socket timeouts on a 4 s tick: 10 s means 8-12 s.
    expect(res.closed).toBe(true);
    expect(res.ms).toBeGreaterThan(7_500);
    expect(res.ms).toBeLessThan(13_000);
    expect(dripMs).toBeGreaterThan(7_500);
    expect(dripMs).toBeLessThan(13_000);
    await stillServes(proxy);
  }, 25_000);

  test("--client-timeout: an idle keep-alive connection is closed after it", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--client-timeout", "2"] });
    const keepAlive = httpRequest("POST", "/v1/responses", { Connection: "keep-alive" }, SAMPLE_BODY);
    const res = await raw(proxy.port, keepAlive, 15_000);
    expect(res.status).toBe(200);
    expect(res.closed).toBe(true);
    expect(res.ms).toBeGreaterThanOrEqual(1900);
    expect(res.ms).toBeLessThan(8000);
  }, 20_000);

  test("--client-timeout does not cut a quiet upstream stream (5 s gap with a 2 s client timeout)", async () => {
    const up = await startUpstream(() => gappedStream(["data: 1\n\n", "data: 2\n\n"], 5000));
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--client-timeout", "2"] });
    const text = await (await goodRequest(proxy)).text();
    expect(text).toBe("data: 1\n\ndata: 2\n\n");
  }, 20_000);

  test("--upstream-timeout: no response head in time gives 504; a started slow stream is not cut", async () => {
    const up = await startUpstream(async (req) => {
      if (req.headers.get("x-mode") === "silent") await Bun.sleep(3000);
      return gappedStream(["data: a\n\n", "data: b\n\n"], 2500);
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--upstream-timeout", "1"] });
    const silent = await fetch(`${proxy.base}/v1/responses`, { method: "POST", headers: { "x-mode": "silent" }, body: "{}" });
    expect(silent.status).toBe(504);
    expect((await jsonError(silent)).code).toBe("upstream_timeout");
    const slow = await goodRequest(proxy);
    expect(await slow.text()).toBe("data: a\n\ndata: b\n\n");
  });

  /** Sends `n` requests at once over raw sockets (the test runner's own fetch is capped at 256). */
  async function burst(proxy: RunningProxy, n: number) {
    const results = await Promise.all(
      Array.from({ length: n }, () => raw(proxy.port, httpRequest("POST", "/v1/responses", {}, "{}"), 10_000)),
    );
    return results.map((r) => r.status);
  }
  async function holdingUpstream() {
    const state = { inflight: 0, peak: 0 };
    const up = await startUpstream(async () => {
      state.peak = Math.max(state.peak, ++state.inflight);
      await Bun.sleep(1500);
      state.inflight--;
      return new Response("{}");
    });
    return { up, state };
  }

  test("--max-concurrent 400: all 400 exchanges reach the upstream at once (the proxy's own client has no cap)", async () => {
    const { up, state } = await holdingUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--quiet", "--max-concurrent", "400"] });
    expect(new Set(await burst(proxy, 400))).toEqual(new Set([200]));
    expect(state.peak).toBe(400);
  });

  // With HTTP_PROXY set, the upstream goes through Bun's fetch (capped at 256 unless raised at
  // start-up). The holding server plays the HTTP proxy: fetch sends it every request in absolute
  // form, and the upstream URL itself is never contacted.
  const viaProxy = (proxyUrl: string) => ({ PATH: process.env.PATH!, HTTP_PROXY: proxyUrl.replace(/\/v1\/responses$/, "") });

  test("through an HTTP proxy, --max-concurrent 400 raises fetch's cap: all 400 at once", async () => {
    const { up, state } = await holdingUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", "http://127.0.0.9:9/v1/responses", "--quiet", "--max-concurrent", "400"], env: viaProxy(up.url) });
    expect(new Set(await burst(proxy, 400))).toEqual(new Set([200]));
    expect(state.peak).toBe(400);
  });

  test("through an HTTP proxy, an admin's own BUN_CONFIG_MAX_HTTP_REQUESTS is respected", async () => {
    const { up, state } = await holdingUpstream();
    const proxy = await startProxy({
      args: ["--upstream-url", "http://127.0.0.9:9/v1/responses", "--quiet", "--max-concurrent", "400"],
      env: { ...viaProxy(up.url), BUN_CONFIG_MAX_HTTP_REQUESTS: "300" },
    });
    expect(new Set(await burst(proxy, 400))).toEqual(new Set([200]));
    expect(state.peak).toBe(300);
  });

  test("default --max-concurrent (256): the 257th concurrent exchange gets 503 at once, not a silent wait", async () => {
    const { up, state } = await holdingUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--quiet"] });
    const statuses = await burst(proxy, 300);
    expect(statuses.filter((s) => s === 200)).toHaveLength(256);
    expect(statuses.filter((s) => s === 503)).toHaveLength(44);
    expect(state.peak).toBe(256);
  });
});

describe("upstream faults", () => {
  needs(lacksTool("openssl", "openssl"))("TLS failure (self-signed certificate): 502 naming the cause", async () => {
    const tls = selfSignedUpstream();
    const { url } = tls;
    const proxy = await startProxy({ args: ["--upstream-url", url] });
    const res = await goodRequest(proxy);
    expect(res.status).toBe(502);
    const err = await jsonError(res);
    expect(err.code).toBe("upstream_unreachable");
    expect(err.message).toContain("SELF_SIGNED");
    // With the CA given the way corporate users do, the same upstream works.
    const trusted = await startProxy({ args: ["--upstream-url", url], env: { PATH: process.env.PATH!, NODE_EXTRA_CA_CERTS: tls.cert } });
    expect((await goodRequest(trusted)).status).toBe(200);
  });

  for (const [name, behave] of [
    ["accepts and closes at once", (s: net.Socket) => s.destroy()],
    ["answers garbage instead of HTTP", (s: net.Socket) => s.end("SSH-2.0-OpenSSH_9.2\r\n\r\n")],
  ] as const) {
    test(`an upstream that ${name}: 502`, async () => {
      const server = net.createServer((s) => {
        s.on("error", () => {});
        s.once("data", () => behave(s));
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      onCleanup(() => new Promise((r) => server.close(r)));
      const proxy = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1/responses`] });
      const res = await goodRequest(proxy);
      expect(res.status).toBe(502);
      expect((await jsonError(res)).code).toBe("upstream_unreachable");
    });
  }
});

describe("malformed requests: a 4xx or a close, and the next good request is served", () => {
  const cases: Array<[string, string]> = [
    ["a garbage request line", "GARBAGE\r\n\r\n"],
    ["a request line without a version", "POST /v1/responses\r\n\r\n"],
    ["a 100 KB target", `POST /${"a".repeat(100_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
    ["a 100 KB header", httpRequest("POST", "/v1/responses", { "X-Big": "x".repeat(100_000) }, "{}")],
    ["a NUL byte in the target", "POST /v1/responses\0 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"],
    ["a NUL byte in a header", "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\0c\r\nContent-Length: 2\r\n\r\n{}"],
    ["Content-Length with Transfer-Encoding", "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"],
    ["two different Content-Lengths", "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"],
    ["a bad chunk size", "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"],
    ["a header without a colon", "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColonHere\r\nContent-Length: 2\r\n\r\n{}"],
    ["HTTP/0.9", "GET /\r\n"],
  ];
  for (const [name, bytes] of cases) {
    test(name, async () => {
      const up = await startUpstream();
      const proxy = await startProxy({ args: ["--upstream-url", up.url] });
      const res = await raw(proxy.port, bytes, 3000);
      const ok = res.closed || (res.status !== undefined && res.status >= 400 && res.status < 500);
      expect(ok).toBe(true);
      if (res.status !== undefined) expect(res.status).toBeGreaterThanOrEqual(400);
      expect(up.requests.filter((r) => r.body.byteLength > 0 || r.method !== "POST")).toHaveLength(0);
      await stillServes(proxy);
    });
  }

  test("a body shorter than its Content-Length (client half-closes): no complete request reaches the upstream", async () => {
    let upstreamBodies: number[] = [];
    let upstreamErrors = 0;
    const up = await startUpstream(async (req) => {
      try {
        upstreamBodies.push((await req.arrayBuffer()).byteLength);
      } catch {
        upstreamErrors++;
      }
      return new Response("{}");
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const sock = net.connect(proxy.port, "127.0.0.1");
    sock.on("error", () => {});
    let reply = "";
    sock.on("data", (d) => (reply += d));
    const closed = new Promise<void>((r) => sock.on("close", () => r()));
    sock.write("POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nonly ten..");
    await Bun.sleep(200);
    sock.end(); // half-close: no more body will come
    await Promise.race([closed, Bun.sleep(5000)]);
    expect(reply === "" || /^HTTP\/1\.1 4\d\d/.test(reply)).toBe(true);
    expect(upstreamBodies.filter((n) => n === 100)).toHaveLength(0);
    void upstreamErrors;
    await stillServes(proxy);
  });
});

test("a chunked body with a trailer: forwarded without it; a malformed trailer: 400, and the upstream never gets the body's end", async () => {
  // A raw upstream: what counts is which bytes reached it. It answers once a request's last
  // chunk has arrived.
  let received = "";
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(sock, d) {
        received += d.toString("latin1");
        if (received.includes("0\r\n\r\n")) sock.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
      },
    },
  });
  onCleanup(() => listener.stop(true));
  const proxy = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${listener.port}/v1/responses`] });
  const head = "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  const ok = await raw(proxy.port, `${head}2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n`, 3000, (t) => t.endsWith("{}"));
  expect(ok.status).toBe(200);
  expect(received).toContain("2\r\n{}\r\n0\r\n\r\n");
  expect(received.toLowerCase()).not.toContain("x-trailer");
  received = "";
  const bad = await raw(proxy.port, `${head}2\r\n{}\r\n0\r\nno colon here\r\n\r\n`, 3000);
  expect(bad.status).toBe(400);
  expect(bad.text).toContain('"code":"client_body_error"');
  await Bun.sleep(200);
  expect(received).not.toContain("0\r\n\r\n");
  listener.stop(true);
  const good = await startUpstream();
  await stillServes(await startProxy({ args: ["--upstream-url", good.url] }));
});

test("--server-info: a symlink planted at the path is replaced, the file it points to is untouched", async () => {
  const dir = mkdtempSync(join(tmpdir(), "rap-link-"));
  const victim = join(dir, "victim.txt");
  writeFileSync(victim, "do not touch");
  const info = join(dir, "server-info.json");
  symlinkSync(victim, info);
  const proxy = await startProxy({ args: ["--server-info", info] });
  expect(readFileSync(victim, "utf8")).toBe("do not touch");
  expect(lstatSync(info).isSymbolicLink()).toBe(false);
  expect(JSON.parse(readFileSync(info, "utf8"))).toEqual({ port: proxy.port, pid: proxy.proc.pid });
});
