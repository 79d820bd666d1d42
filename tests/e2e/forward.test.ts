// Forwarding, streaming both ways, against the compiled binary and real sockets.
import { afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import net from "node:net";
import { gzipSync } from "node:zlib";
import {
  KEY, gappedStream, goodRequest, httpRequest, onCleanup, raw, type RunningProxy, SAMPLE_BODY, sseEvent, startProxy, startUpstream, stopAll, waitFor,
} from "../helpers";

afterEach(stopAll);

/** A raw TCP upstream: sees exact request bytes and writes exact response bytes. */
async function rawUpstream(onConnection: (sock: net.Socket, received: () => string) => void) {
  const sockets: net.Socket[] = [];
  const server = net.createServer((sock) => {
    sockets.push(sock);
    let data = "";
    sock.on("data", (d) => (data += d.toString("latin1")));
    sock.on("error", () => {});
    onConnection(sock, () => data);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  onCleanup(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  return { port, url: `http://127.0.0.1:${port}/v1/responses`, sockets };
}

/** A raw upstream that answers a request, once its head has arrived, with a chunked SSE head and hands the socket on. */
function rawSseUpstream(then: (sock: net.Socket) => void) {
  return rawUpstream((sock, received) => {
    let started = false;
    sock.on("data", () => {
      if (started || !received().includes("\r\n\r\n")) return;
      started = true;
      sock.write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
      then(sock);
    });
  });
}

function vmHWM(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

describe("request", () => {
  test("exact bytes upstream: key in, hop-by-hop out, everything else kept, Content-Length unchanged", async () => {
    let seen = "";
    const up = await rawUpstream((sock, received) => {
      sock.on("data", () => {
        if (received().includes("\r\n\r\n") && received().endsWith(SAMPLE_BODY)) {
          seen = received();
          sock.end("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
        }
      });
    });
    const proxy = await startProxy({ args: ["--upstream-url", `${up.url}?api-version=2025-04-01-preview`] });
    const req =
      "POST /v1/responses HTTP/1.1\r\n" +
      `Host: 127.0.0.1:${proxy.port}\r\n` +
      "Authorization: Bearer sk-client-supplied\r\n" +
      "Connection: close, X-Hop-Named\r\nX-Hop-Named: drop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
      "Proxy-Authorization: Basic Zm9vOmJhcg==\r\nTE: trailers\r\n" +
      "OpenAI-Beta: responses=experimental\r\nx-codex-turn-metadata: {\"turn\":1}\r\nOpenAI-Organization: org-1\r\n" +
      "X-Dup: one\r\nX-Dup: two\r\nContent-Type: application/json\r\n" +
      `Content-Length: ${SAMPLE_BODY.length}\r\n\r\n${SAMPLE_BODY}`;
    const res = await raw(proxy.port, req, 3000);
    expect(res.status).toBe(200);
    const [head, body] = seen.split("\r\n\r\n");
    const lines = head!.split("\r\n");
    expect(lines[0]).toBe("POST /v1/responses?api-version=2025-04-01-preview HTTP/1.1");
    // Header names are case-insensitive; compare them lower-cased, values exactly.
    const h = (name: string) =>
      lines.filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`)).map((l) => `${name}:${l.slice(name.length + 1)}`);
    expect(h("authorization")).toEqual([`authorization: Bearer ${KEY}`]);
    expect(h("host")).toEqual([`host: 127.0.0.1:${up.port}`]);
    expect(h("content-length")).toEqual([`content-length: ${SAMPLE_BODY.length}`]);
    expect(h("transfer-encoding")).toEqual([]);
    for (const gone of ["x-hop-named", "keep-alive", "proxy-connection", "proxy-authorization", "te"]) expect(h(gone)).toEqual([]);
    expect(h("openai-beta")).toEqual(["openai-beta: responses=experimental"]);
    expect(h("x-codex-turn-metadata")).toEqual(['x-codex-turn-metadata: {"turn":1}']);
    expect(h("openai-organization")).toEqual(["openai-organization: org-1"]);
    expect(h("x-dup").join("\n")).toContain("one");
    expect(h("x-dup").join("\n")).toContain("two");
    expect(body).toBe(SAMPLE_BODY);
  });

  test("a chunked request body streams upstream as it arrives", async () => {
    const arrivals: number[] = [];
    const up = await startUpstream(async (req, rec) => {
      const parts: Uint8Array[] = [];
      for await (const chunk of req.body!) {
        arrivals.push(Date.now());
        parts.push(chunk);
      }
      rec.body = Buffer.concat(parts);
      return Response.json({ ok: true });
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const sent: number[] = [];
    const body = new ReadableStream({
      async start(c) {
        for (let i = 0; i < 3; i++) {
          sent.push(Date.now());
          c.enqueue(new TextEncoder().encode(`part${i};`));
          await Bun.sleep(400);
        }
        c.close();
      },
    });
    const res = await fetch(`${proxy.base}/v1/responses`, { method: "POST", body, duplex: "half" } as RequestInit);
    expect(res.status).toBe(200);
    expect(new TextDecoder().decode(up.requests[0]!.body)).toBe("part0;part1;part2;");
    // The first part reached the upstream long before the client finished sending.
    expect(arrivals[0]! - sent[0]!).toBeLessThan(300);
    expect(up.requests[0]!.headers.get("transfer-encoding")).toBe("chunked");
  });

  test("a 1 GiB upload streams through without growing the proxy's memory", async () => {
    const up = await startUpstream(async (req) => {
      const hash = createHash("sha256");
      let n = 0;
      for await (const chunk of req.body!) {
        hash.update(chunk);
        n += chunk.byteLength;
      }
      return Response.json({ n, sha: hash.digest("hex") });
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--max-body-bytes", String(2 ** 31)] });
    const before = vmHWM(proxy.proc.pid);
    const pieces = randomPieces();
    const total = 1024;
    const bytes = Array.from({ length: total }, (_, k) => pieces[(k + 1) % pieces.length]!.byteLength).reduce((a, b) => a + b, 0);
    const expected = createHash("sha256");
    let i = 0;
    const body = new ReadableStream({
      pull(c) {
        if (i++ === total) return c.close();
        const chunk = pieces[i % pieces.length]!;
        expected.update(chunk);
        c.enqueue(chunk);
      },
    });
    const started = performance.now();
    const res = await fetch(`${proxy.base}/v1/responses`, {
      method: "POST", body, duplex: "half", headers: { "content-length": String(bytes) },
    } as RequestInit);
    const seconds = (performance.now() - started) / 1000;
    const answer = (await res.json()) as { n: number; sha: string };
    expect(answer.n).toBe(bytes);
    expect(answer.sha).toBe(expected.digest("hex"));
    const peak = vmHWM(proxy.proc.pid);
    console.log(`1 GiB upload: ${(bytes / 2 ** 20 / seconds).toFixed(0)} MiB/s; proxy peak RSS ${(before / 2 ** 20).toFixed(1)} MiB before, ${(peak / 2 ** 20).toFixed(1)} MiB after`);
    // Buffering the body whole would need more than 1 GiB; streaming stays near the baseline
    // (measured here: ~40 MiB before, ~60 MiB peak, with every chunk freed once written).
    expect(peak).toBeLessThan(200 * 2 ** 20);
  });

  test("an empty body is forwarded as such", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const res = await fetch(`${proxy.base}/v1/responses`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(up.requests[0]!.body.byteLength).toBe(0);
  });
});

/** Five distinct random pieces of odd sizes near 1 MiB, so chunk and read boundaries drift. */
function randomPieces(): Uint8Array[] {
  return [0, 1, 2, 3, 4].map((k) => {
    const piece = new Uint8Array((1 << 20) - 4099 * k);
    for (let at = 0; at < piece.byteLength; at += 65536) crypto.getRandomValues(piece.subarray(at, at + 65536));
    return piece;
  });
}

describe("response", () => {
  test("a client that stops reading: the upstream is paused, the proxy's memory stays flat, every byte arrives later", async () => {
    const total = 256 << 20;
    const piece = new Uint8Array(1 << 20).fill(0x61);
    let pushed = 0;
    const up = await startUpstream(
      () =>
        new Response(
          new ReadableStream({
            pull(c) {
              if (pushed === total) return c.close();
              pushed += piece.byteLength;
              c.enqueue(piece);
            },
          }),
        ),
    );
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const before = vmHWM(proxy.proc.pid);
    const sock = net.connect(proxy.port, "127.0.0.1");
    sock.pause();
    sock.write(`POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}`);
    await Bun.sleep(1500);
    const stalled = vmHWM(proxy.proc.pid);
    // Only socket buffers' worth has left the upstream; nothing piled up in the proxy.
    expect(pushed).toBeLessThan(total / 4);
    expect(stalled - before).toBeLessThan(32 * 2 ** 20);
    let got = 0;
    let tail = "";
    const done = new Promise<void>((resolve) =>
      sock.on("data", (d: Buffer) => {
        got += d.byteLength;
        tail = (tail + d.toString("latin1", Math.max(0, d.byteLength - 5))).slice(-5);
        if (tail === "0\r\n\r\n") resolve(); // the chunked body's last chunk
      }),
    );
    sock.resume();
    await done;
    sock.destroy();
    expect(got).toBeGreaterThan(total);
    expect(pushed).toBe(total);
  });

  // The proxy frees each relayed chunk as soon as it is written (chunk-memory.ts): any chunk
  // freed too early, reused or reordered shows up in the hash.
  for (const framing of ["chunked", "content-length"] as const) {
    test(`a 256 MiB download (${framing}) arrives byte-exact`, async () => {
      const pieces = randomPieces();
      const count = 256;
      const expected = createHash("sha256");
      let length = 0;
      for (let i = 0; i < count; i++) {
        const piece = pieces[i % pieces.length]!;
        expected.update(piece);
        length += piece.byteLength;
      }
      const up = await startUpstream(() => {
        let i = 0;
        const body = new ReadableStream({
          pull(c) {
            if (i === count) return c.close();
            c.enqueue(pieces[i++ % pieces.length]!);
          },
        });
        return new Response(body, { headers: framing === "content-length" ? { "content-length": String(length) } : {} });
      });
      const proxy = await startProxy({ args: ["--upstream-url", up.url] });
      const res = await fetch(`${proxy.base}/v1/responses`, { method: "POST", body: "{}" });
      expect(res.status).toBe(200);
      const got = createHash("sha256");
      for await (const chunk of res.body!) got.update(chunk);
      expect(got.digest("hex")).toBe(expected.digest("hex"));
    });
  }

  test("status and headers mirrored, hop-by-hop dropped", async () => {
    const up = await startUpstream(() =>
      new Response('{"error":{"message":"slow down"}}', {
        status: 429,
        headers: { "retry-after": "7", "x-request-id": "req_abc", "content-type": "application/json", "x-ratelimit-remaining-tokens": "0" },
      }),
    );
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const res = await goodRequest(proxy);
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("7");
    expect(res.headers.get("x-request-id")).toBe("req_abc");
    expect(res.headers.get("x-ratelimit-remaining-tokens")).toBe("0");
    expect(await res.text()).toBe('{"error":{"message":"slow down"}}');
  });

  test("the upstream's reason phrase: passed on as plain text, replaced when it holds a control byte", async () => {
    for (const [sent, seen] of [["Too Many Requests Today", "Too Many Requests Today"], ["O\x01K\x00", "Too Many Requests"]]) {
      const up = await rawUpstream((sock, received) =>
        sock.on("data", () => received().includes("\r\n\r\n") && sock.write(`HTTP/1.1 429 ${sent}\r\nContent-Length: 2\r\n\r\n{}`)),
      );
      const proxy = await startProxy({ args: ["--upstream-url", up.url] });
      const res = await raw(proxy.port, httpRequest("POST", "/v1/responses", {}, "{}"), 3000, (t) => t.endsWith("{}"));
      expect(res.text.split("\r\n")[0]).toBe(`HTTP/1.1 429 ${seen}`);
    }
  });

  test("server-sent events reach the client one by one, as the upstream writes them", async () => {
    // Handshake instead of timing: the upstream writes event N+1 only after the client has
    // received event N. A proxy that batched the stream would deadlock here.
    const got: Array<() => void> = [];
    const waitClient = (n: number) => new Promise<void>((r) => (got[n] = r));
    const written: number[] = [];
    const count = 20;
    const up = await startUpstream(() => {
      const body = new ReadableStream({
        async start(c) {
          for (let n = 0; n < count; n++) {
            const received = waitClient(n);
            written[n] = performance.now();
            c.enqueue(new TextEncoder().encode(sseEvent("response.output_text.delta", { delta: `t${n}` })));
            await received;
          }
          c.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const res = await goodRequest(proxy);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const delays: number[] = [];
    let buffer = "";
    let n = 0;
    for await (const chunk of res.body!) {
      buffer += new TextDecoder().decode(chunk);
      while (buffer.includes("\n\n")) {
        const event = buffer.slice(0, buffer.indexOf("\n\n"));
        buffer = buffer.slice(buffer.indexOf("\n\n") + 2);
        expect(event).toContain(`"t${n}"`);
        delays.push(performance.now() - written[n]!);
        got[n]!();
        n++;
      }
    }
    expect(n).toBe(count);
    delays.sort((a, b) => a - b);
    console.log(`SSE per-event delay upstream write → client read: p50 ${delays[count >> 1]!.toFixed(2)} ms, max ${delays.at(-1)!.toFixed(2)} ms`);
  });

  test("the client's chunk framing: canonical chunks as the upstream framed them, anything else framed anew; trailers dropped", async () => {
    const a = sseEvent("response.output_text.delta", { delta: "a" });
    const b = sseEvent("response.output_text.delta", { delta: "b" });
    const c = sseEvent("response.completed", {});
    const hex = (s: string) => s.length.toString(16);
    const pieces = [
      `0${hex(a).toUpperCase()}\r\n${a}\r\n`, // canonical (a leading zero, upper case): passes through as it is
      `00${hex(b).toUpperCase()};ext=secret-ext\r\n${b}\r\n`, // an extension: decoded, framed anew
      `${hex(c)}\r\n${c.slice(0, 10)}`, // canonical, its data split over two reads …
      `${c.slice(10)}\n`, // … and its end a bare LF: the client still gets CRLF
      "0\r\nX-Trailer: secret-trailer\r\n\r\n",
    ];
    const up = await rawSseUpstream(async (sock) => {
      for (const piece of pieces) {
        sock.write(piece);
        await Bun.sleep(30); // each its own read
      }
      sock.end(); // one answer per connection: the next request gets a connection of its own
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const res = await raw(proxy.port, httpRequest("POST", "/v1/responses", { "Content-Type": "application/json" }, SAMPLE_BODY), 5000, (t) => t.endsWith("\r\n0\r\n\r\n"));
    const body = res.text.slice(res.text.indexOf("\r\n\r\n") + 4);
    expect(body).toBe(`0${hex(a).toUpperCase()}\r\n${a}\r\n${hex(b)}\r\n${b}\r\n${hex(c)}\r\n${c.slice(0, 10)}${c.slice(10)}\r\n0\r\n\r\n`);
    expect(body).not.toContain("secret");
    // The log counts body bytes, not framing.
    await waitFor(() => / 200 .* out=\d+B/.test(proxy.stderr()), 5000, "the request's log line");
    expect(proxy.stderr()).toContain(`out=${a.length + b.length + c.length}B`);
    // HTTP/1.0: no framing at all, the body until the connection closes.
    const old = await raw(proxy.port, httpRequest("POST", "/v1/responses", { "Content-Type": "application/json" }, SAMPLE_BODY).replace("HTTP/1.1", "HTTP/1.0"), 5000);
    expect(old.text.slice(old.text.indexOf("\r\n\r\n") + 4)).toBe(`${a}${b}${c}`);
  });

  test("compressed bodies pass through byte for byte with Content-Encoding", async () => {
    const plain = sseEvent("response.completed", { text: "x".repeat(5000) });
    const gz = gzipSync(plain);
    const up = await startUpstream(() => new Response(gz, { headers: { "content-encoding": "gzip", "content-type": "text/event-stream" } }));
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const res = await raw(proxy.port, httpRequest("POST", "/v1/responses", { "Accept-Encoding": "gzip" }, SAMPLE_BODY), 3000);
    expect(res.status).toBe(200);
    expect(res.text.toLowerCase()).toContain("content-encoding: gzip");
    const body = res.data.subarray(res.data.indexOf("\r\n\r\n") + 4);
    // Undo only the transfer framing, then compare the bytes.
    const dechunked = /transfer-encoding: chunked/i.test(res.text) ? unchunk(body) : body;
    expect(Buffer.compare(dechunked, gz)).toBe(0);
    expect(up.requests[0]!.headers.get("accept-encoding")).toBe("gzip");
  });

  test("redirects are returned, never followed: the key goes nowhere else", async () => {
    const elsewhere = await startUpstream();
    const up = await startUpstream(() => new Response(null, { status: 307, headers: { location: elsewhere.url } }));
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const res = await fetch(`${proxy.base}/v1/responses`, { method: "POST", body: "{}", redirect: "manual" });
    expect(res.status).toBe(307);
    expect(res.headers.get("location")).toBe(elsewhere.url);
    await Bun.sleep(100);
    expect(elsewhere.hits()).toBe(0);
  });
});

/** Decodes a complete chunked body. */
function unchunk(data: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf("\r\n", at);
    const size = parseInt(data.subarray(at, eol).toString(), 16);
    if (!size) return Buffer.concat(out);
    out.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

describe("upstream transport", () => {
  test("HTTP_PROXY is honoured: the request goes to the proxy in absolute form; NO_PROXY bypasses it", async () => {
    const up = await startUpstream();
    const httpProxy = await startUpstream(); // plays the proxy: it answers every request itself
    const env = { PATH: process.env.PATH!, HTTP_PROXY: `http://127.0.0.1:${httpProxy.server.port}` };
    const proxied = await startProxy({ args: ["--upstream-url", up.url], env });
    expect((await goodRequest(proxied)).status).toBe(200);
    expect(httpProxy.requests).toHaveLength(1);
    expect(httpProxy.requests[0]!.url).toBe(up.url); // absolute form: meant for the upstream
    expect(httpProxy.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
    expect(up.requests).toHaveLength(0);

    const bypassed = await startProxy({ args: ["--upstream-url", up.url], env: { ...env, NO_PROXY: "127.0.0.1" } });
    expect((await goodRequest(bypassed)).status).toBe(200);
    expect(up.requests).toHaveLength(1);
    expect(httpProxy.requests).toHaveLength(1);
  });

  test("keep-alive: many sequential requests share one upstream connection", async () => {
    const up = await rawUpstream((sock) => {
      let buf = "";
      sock.on("data", (d) => {
        buf += d.toString("latin1");
        for (let end; (end = buf.indexOf("\r\n\r\n")) >= 0; ) {
          const length = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
          if (buf.length < end + 4 + length) return;
          buf = buf.slice(end + 4 + length);
          sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
        }
      });
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    for (let i = 0; i < 20; i++) {
      const res = await goodRequest(proxy);
      expect([res.status, await res.text()]).toEqual([200, "{}"]);
    }
    expect(up.sockets).toHaveLength(1);
  });
});

describe("faults", () => {
  test("upstream unreachable: 502 JSON error, then the next request is served", async () => {
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const port = (dead.address() as net.AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const proxy = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${port}/v1/responses`] });
    const res = await goodRequest(proxy);
    expect(res.status).toBe(502);
    expect(res.headers.get("content-type")).toBe("application/json");
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(body.error).toEqual({ message: expect.stringContaining("ECONNREFUSED"), type: "proxy_error", param: null, code: "upstream_unreachable" });
    expect(JSON.stringify(body)).not.toContain(KEY);
    expect((await goodRequest(proxy)).status).toBe(502); // still alive, still answering
    expect(proxy.stderr()).not.toContain(KEY);
  });

  test("upstream closing mid-stream: the client's stream ends with an error at once", async () => {
    const up = await rawSseUpstream((sock) => {
      sock.write("6\r\nfirst\n\r\n");
      setTimeout(() => sock.destroy(), 200);
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const res = await goodRequest(proxy);
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("first\n");
    const started = Date.now();
    await expect(reader.read()).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(1000);
    // The proxy carries on: the next exchange gets its response head again.
    expect((await goodRequest(proxy)).status).toBe(200);
  });

  test("a client hanging up aborts the upstream request within 100 ms", async () => {
    let upstreamClosedAt = 0;
    const up = await rawSseUpstream((sock) => {
      const timer = setInterval(() => sock.write("6\r\ntoken\n\r\n"), 20);
      sock.on("close", () => {
        clearInterval(timer);
        upstreamClosedAt = performance.now();
      });
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const client = net.connect(proxy.port, "127.0.0.1");
    client.on("error", () => {});
    client.write(httpRequest("POST", "/v1/responses", {}, SAMPLE_BODY));
    let got = "";
    await new Promise<void>((r) => client.on("data", (d) => { got += d; if (got.includes("token")) r(); }));
    const hungUpAt = performance.now();
    client.destroy();
    await waitFor(() => upstreamClosedAt > 0, 2000, "upstream socket close");
    const ms = upstreamClosedAt - hungUpAt;
    console.log(`client hang-up → upstream socket closed in ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(100);
    await waitFor(() => /client_closed/.test(proxy.stderr()), 2000, "log line");
  });
});

test("a client hanging up before the response starts aborts the upstream request within 100 ms", async () => {
  let closedAt = 0;
  const up = await rawUpstream((sock) => sock.on("close", () => (closedAt = performance.now())));
  const proxy = await startProxy({ args: ["--upstream-url", up.url] });
  const client = net.connect(proxy.port, "127.0.0.1");
  client.on("error", () => {});
  client.write(httpRequest("POST", "/v1/responses", {}, SAMPLE_BODY));
  await waitFor(() => up.sockets.length === 1, 2000, "upstream connection");
  await Bun.sleep(100); // the upstream is "thinking": no response head yet
  const hungUpAt = performance.now();
  client.destroy();
  await waitFor(() => closedAt > 0, 2000, "upstream socket close");
  console.log(`hang-up before the response head → upstream socket closed in ${(closedAt - hungUpAt).toFixed(1)} ms`);
  expect(closedAt - hungUpAt).toBeLessThan(100);
});

describe("no time limit on a quiet healthy stream (default settings)", () => {
  test("15 s of silence before the first byte, and 15 s between two events", async () => {
    const up = await startUpstream(async (req) => {
      const gapBeforeHeaders = req.headers.get("x-test-gap") === "first-byte";
      if (gapBeforeHeaders) await Bun.sleep(15_000);
      const body = new ReadableStream({
        async start(c) {
          c.enqueue(new TextEncoder().encode(sseEvent("response.created", {})));
          if (!gapBeforeHeaders) await Bun.sleep(15_000);
          c.enqueue(new TextEncoder().encode(sseEvent("response.completed", {})));
          c.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const run = async (gap: string) => {
      const started = Date.now();
      const res = await fetch(`${proxy.base}/v1/responses`, { method: "POST", headers: { "x-test-gap": gap }, body: SAMPLE_BODY });
      const text = await res.text();
      return { status: res.status, text, ms: Date.now() - started };
    };
    const [a, b] = await Promise.all([run("first-byte"), run("between-events")]);
    for (const r of [a, b]) {
      expect(r.status).toBe(200);
      expect(r.text).toContain("response.created");
      expect(r.text).toContain("response.completed");
      expect(r.ms).toBeGreaterThanOrEqual(15_000);
    }
  }, 40_000);
});

describe("the listener: pipelining, skipped bodies, HTTP/1.0", () => {
  // Requests written back to back on one connection are answered in order, each after the one
  // before has ended; none is dropped, none is left running upstream unanswered.
  const pipelined = async (proxy: RunningProxy, bytes: string[], gapMs: number, until: (reply: string) => boolean) => {
    const sock = net.connect(proxy.port, "127.0.0.1");
    sock.on("error", () => {});
    let reply = "";
    sock.on("data", (d) => (reply += d.toString("latin1")));
    const closed = new Promise<void>((r) => sock.on("close", () => r()));
    await new Promise<void>((r) => sock.on("connect", () => r()));
    for (const part of bytes) {
      sock.write(part);
      if (gapMs) await Bun.sleep(gapMs);
    }
    await Promise.race([closed, waitFor(() => until(reply), 8000, "every answer")]);
    sock.destroy();
    return reply;
  };
  const post = (body: string, extra = "") => `POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

  for (const gapMs of [0, 100]) {
    const when = gapMs ? "the second 100 ms into the first's stream" : "in one write";
    test(`two streamed requests back to back (${when}): both answered, in order, one upstream request each`, async () => {
      const seen: string[] = [];
      const up = await startUpstream(async (req) => {
        const body = await req.text();
        seen.push(body);
        return gappedStream([`data: ${body}\n\n`, `data: end ${body}\n\n`], 300);
      });
      const proxy = await startProxy({ args: ["--upstream-url", up.url] });
      const parts = [post('"first"'), post('"second"', "Connection: close\r\n")];
      const reply = await pipelined(proxy, gapMs ? parts : [parts.join("")], gapMs, (r) => r.includes('data: end "second"'));
      const first = reply.indexOf('data: end "first"');
      const second = reply.indexOf('data: "second"');
      expect(first).toBeGreaterThan(0);
      expect(second).toBeGreaterThan(first); // the second answer starts after the first has ended
      expect(reply.match(/^HTTP\/1\.1 200 /gm)).toHaveLength(2);
      expect(seen).toEqual(['"first"', '"second"']);
      expect((await goodRequest(proxy)).status).toBe(200);
    });
  }

  test("a refused request between two good ones: its body is skipped, all three answered in order", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const refused = 'POST /v1/other HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 31\r\n\r\nPOST /v1/responses HTTP/1.1\r\n\r\n';
    const reply = await pipelined(proxy, [post(SAMPLE_BODY) + refused + post(SAMPLE_BODY, "Connection: close\r\n")], 0, () => false);
    expect([...reply.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1])).toEqual(["200", "403", "200"]);
    expect(up.hits()).toBe(2); // the refused body, which looks like a request, never became one
  });

  test("a chunked request, then another: the second starts where the first's body ended", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const chunked = `POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n${SAMPLE_BODY.length.toString(16)}\r\n${SAMPLE_BODY}\r\n0\r\n\r\n`;
    const reply = await pipelined(proxy, [chunked + post(SAMPLE_BODY, "Connection: close\r\n")], 0, () => false);
    expect([...reply.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1])).toEqual(["200", "200"]);
    expect(up.requests.map((r) => new TextDecoder().decode(r.body))).toEqual([SAMPLE_BODY, SAMPLE_BODY]);
  });

  test("a refusal behind Expect: 100-continue sends no 100, and closes (the body may never come)", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const head = "POST /v1/other HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n";
    const res = await raw(proxy.port, head, 3000);
    expect(res.status).toBe(403);
    expect(res.text).not.toContain("100 Continue");
    expect(res.text.toLowerCase()).toContain("connection: close");
    expect(res.closed).toBe(true);
    expect(up.hits()).toBe(0);
  });

  test("a refused body over 1 MiB is not read to its end: the connection closes after the 403", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const body = "x".repeat(3 * 1024 * 1024);
    const res = await raw(proxy.port, `POST /v1/other HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 5000);
    expect(res.status).toBe(403);
    expect(res.closed).toBe(true);
    expect((await goodRequest(proxy)).status).toBe(200);
  });

  test("HTTP/1.0 with keep-alive: two requests on one connection, each with its length", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const one = `POST /v1/responses HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nContent-Length: ${SAMPLE_BODY.length}\r\n\r\n${SAMPLE_BODY}`;
    const two = `POST /v1/responses HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: ${SAMPLE_BODY.length}\r\n\r\n${SAMPLE_BODY}`;
    const reply = await pipelined(proxy, [one + two], 0, () => false);
    const heads = reply.split(/\r\n\r\n/).filter((p) => p.includes("HTTP/1.1 200"));
    expect(heads).toHaveLength(2);
    expect(heads[0]!.toLowerCase()).toContain("connection: keep-alive");
    expect(heads[1]!.toLowerCase()).toContain("connection: close");
    for (const h of heads) expect(h.toLowerCase()).toMatch(/content-length: \d+/);
    expect(up.hits()).toBe(2);
  });

  test("a client that leaves with requests still queued: the one in flight is aborted upstream, the queued ones never sent", async () => {
    const seen: Array<{ body: string; aborted: boolean }> = [];
    const up = await startUpstream(async (req) => {
      const entry = { body: await req.text(), aborted: false };
      seen.push(entry);
      req.signal.addEventListener("abort", () => (entry.aborted = true));
      return gappedStream(["data: 1\n\n", "data: 2\n\n"], 2000);
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const sock = net.connect(proxy.port, "127.0.0.1");
    sock.on("error", () => {});
    await new Promise<void>((r) => sock.on("connect", () => r()));
    sock.write(post('"a"') + post('"b"') + post('"c"'));
    await waitFor(() => seen.length === 1, 5000, "the first request upstream");
    sock.destroy();
    await waitFor(() => seen[0]!.aborted, 2000, "the first request to be aborted upstream");
    await Bun.sleep(300);
    expect(seen.map((e) => e.body)).toEqual(['"a"']);
    expect((await goodRequest(proxy)).status).toBe(200);
  });
});
