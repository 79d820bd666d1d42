// --websocket: WebSocket connections on /v1/responses relayed to a WebSocket upstream on
// 127.0.0.1, through the compiled binary, with the key in the upstream handshake only.
import { afterEach, describe, expect, test } from "bun:test";
import type { ServerWebSocket } from "bun";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { responseEvents } from "../../scripts/fake-upstream";
import { countInMemory } from "../../scripts/key-copies";
import { IS_ROOT, KEY, ROOT, selfSignedUpstream, baseEnv, dumpFiles, goodRequest, gappedStream, lacksTool, needs, onCleanup, raw, startProxy, stopAll, waitFor } from "../helpers";

afterEach(stopAll);

interface Seen {
  headers: Headers[];
  messages: Array<string | Uint8Array>;
  closes: Array<{ code: number; reason: string; at: number }>;
  pongs: number;
  sockets: ServerWebSocket<unknown>[];
}

/**
 * A WebSocket upstream: records handshakes, messages and closes; `refuse` answers the handshake
 * with a plain response instead; `onMessage` answers messages (default: echo, text as text).
 */
function wsUpstream(opts: { refuse?: () => Response; onMessage?: (ws: ServerWebSocket<unknown>, m: string | Buffer) => void; maxPayloadLength?: number } = {}) {
  const seen: Seen = { headers: [], messages: [], closes: [], pongs: 0, sockets: [] };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, srv) {
      seen.headers.push(req.headers);
      if (opts.refuse) return opts.refuse();
      if (srv.upgrade(req, { data: undefined, headers: { "x-request-id": "req_ws_1", "openai-processing-ms": "5" } })) return;
      return new Response("not a websocket", { status: 400 });
    },
    websocket: {
      maxPayloadLength: opts.maxPayloadLength ?? 64 * 1024 * 1024,
      open: (ws) => void seen.sockets.push(ws),
      message(ws, m) {
        seen.messages.push(typeof m === "string" ? m : new Uint8Array(m));
        if (opts.onMessage) opts.onMessage(ws, m);
        else ws.send(m);
      },
      pong: () => void seen.pongs++,
      close: (_ws, code, reason) => void seen.closes.push({ code, reason, at: performance.now() }),
    },
  });
  onCleanup(() => server.stop(true));
  return { url: `http://127.0.0.1:${server.port}/v1/responses`, port: server.port, seen };
}

interface Client {
  ws: WebSocket;
  messages: Array<string | Uint8Array>;
  closed: Promise<{ code: number; reason: string }>;
  opened: Promise<boolean>;
}

function connect(base: string, headers: Record<string, string> = {}): Client {
  const ws = new WebSocket(`${base.replace("http:", "ws:")}/v1/responses`, { headers } as unknown as string[]);
  ws.binaryType = "arraybuffer";
  const messages: Client["messages"] = [];
  ws.onmessage = (e) => void messages.push(typeof e.data === "string" ? e.data : new Uint8Array(e.data as ArrayBuffer));
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.addEventListener("close", (e) => r({ code: e.code, reason: e.reason })));
  const opened = new Promise<boolean>((r) => {
    ws.addEventListener("open", () => r(true));
    ws.addEventListener("error", () => r(false));
  });
  return { ws, messages, closed, opened };
}

/** A raw handshake: the status line, headers and body the client gets. */
async function rawHandshake(port: number, extra = ""): Promise<string> {
  const sock = net.connect(port, "127.0.0.1");
  let reply = "";
  sock.on("data", (d) => (reply += d.toString("latin1")));
  sock.on("error", () => {});
  await new Promise<void>((r) => sock.on("connect", () => r()));
  sock.write(`GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`);
  await waitFor(() => /\r\n\r\n/.test(reply) && (!/content-length: [1-9]/i.test(reply) || reply.split("\r\n\r\n")[1]!.length > 0), 5000, "a handshake answer");
  await Bun.sleep(50);
  sock.destroy();
  return reply;
}

const wsProxy = (up: { url: string }, args: string[] = []) => startProxy({ args: ["--websocket", "--upstream-url", up.url, ...args] });

/** An echo upstream, a proxy with --websocket, and one client whose relay is open at both ends. */
async function openRelay() {
  const up = wsUpstream();
  const proxy = await wsProxy(up);
  const c = connect(proxy.base);
  expect(await c.opened).toBe(true);
  await waitFor(() => up.seen.sockets.length === 1, 5000, "the upstream's socket");
  return { up, proxy, c };
}

describe("without --websocket (the original's behaviour)", () => {
  test("a WebSocket handshake gets 403 at once and nothing reaches the upstream", async () => {
    const up = wsUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const reply = await rawHandshake(proxy.port);
    expect(reply).toStartWith("HTTP/1.1 403 ");
    expect(up.seen.headers).toHaveLength(0);
    expect((await goodRequest(proxy)).status).not.toBe(403); // and POST still goes (the fake answers 400 to a POST)
  });
});

describe("--websocket", () => {
  test("relays text and binary both ways; the upstream handshake carries the key, the client's headers, and none of its own handshake", async () => {
    const up = wsUpstream();
    const proxy = await wsProxy(up);
    const c = connect(proxy.base, { "openai-beta": "responses_websockets=2026-02-06", authorization: "Bearer client-side-dummy", "x-custom": "kept" });
    expect(await c.opened).toBe(true);
    c.ws.send('{"type":"response.create","input":"héllo"}');
    c.ws.send(Uint8Array.from([0, 1, 2, 255]));
    await waitFor(() => c.messages.length === 2, 5000, "both echoes");
    expect(c.messages[0]).toBe('{"type":"response.create","input":"héllo"}');
    expect(Array.from(c.messages[1] as Uint8Array)).toEqual([0, 1, 2, 255]);
    expect(up.seen.messages[0]).toBe('{"type":"response.create","input":"héllo"}'); // text stays text
    expect(up.seen.messages[1]).toBeInstanceOf(Uint8Array); // binary stays binary
    const h = up.seen.headers[0]!;
    expect(h.get("authorization")).toBe(`Bearer ${KEY}`);
    expect(h.get("openai-beta")).toBe("responses_websockets=2026-02-06");
    expect(h.get("x-custom")).toBe("kept");
    expect(h.get("host")).toBe(`127.0.0.1:${up.port}`);
    expect(h.get("sec-websocket-key")).not.toBe(null);
    expect(h.get("sec-websocket-extensions")).toBeNull(); // the proxy negotiates no compression upstream
    c.ws.close(1000, "done");
    await c.closed;
  });

  test("the upstream's 101 headers reach the client (x-request-id in the log too)", async () => {
    const up = wsUpstream();
    const proxy = await wsProxy(up);
    const reply = await rawHandshake(proxy.port);
    expect(reply).toStartWith("HTTP/1.1 101 ");
    expect(reply.toLowerCase()).toContain("x-request-id: req_ws_1");
    expect(reply.toLowerCase()).toContain("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=");
    await waitFor(() => proxy.stderr().includes("closed_by=client"), 5000, "the connection's log line");
    expect(proxy.stderr()).toContain("request_id=req_ws_1");
  });

  for (const [status, body, headers] of [
    [401, '{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}', { "content-type": "application/json" }],
    [429, '{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}', { "content-type": "application/json", "retry-after": "7" }],
    [403, "forbidden", {}],
  ] as const) {
    test(`the upstream refuses the handshake with ${status}: the client gets ${status} and its body, and the proxy serves on`, async () => {
      const up = wsUpstream({ refuse: () => new Response(body, { status, headers }) });
      const proxy = await wsProxy(up);
      const reply = await rawHandshake(proxy.port);
      expect(reply).toStartWith(`HTTP/1.1 ${status} `);
      expect(reply.endsWith(body)).toBe(true);
      if (status === 429) expect(reply.toLowerCase()).toContain("retry-after: 7");
      const c = connect(proxy.base);
      expect(await c.opened).toBe(false); // a client library sees a failed handshake, not a hang
      expect(proxy.stderr()).toMatch(new RegExp(`GET /v1/responses ${status} `));
    });
  }

  test("a refusal with a chunked body arrives whole", async () => {
    const up = wsUpstream({
      refuse: () => new Response(new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('{"error":')); c.enqueue(new TextEncoder().encode('"nope"}')); c.close(); } }), { status: 503 }),
    });
    const proxy = await wsProxy(up);
    const reply = await rawHandshake(proxy.port);
    expect(reply).toStartWith("HTTP/1.1 503 ");
    expect(reply.endsWith('{"error":"nope"}')).toBe(true);
  });

  test("an unreachable upstream: 502 JSON upstream_unreachable naming the cause", async () => {
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const proxy = await wsProxy({ url: `http://127.0.0.1:${port}/v1/responses` });
    const reply = await rawHandshake(proxy.port);
    expect(reply).toStartWith("HTTP/1.1 502 ");
    expect(reply).toContain('"code":"upstream_unreachable"');
    expect(reply).toContain("ECONNREFUSED");
    expect(proxy.stderr()).toMatch(/GET \/v1\/responses 502 .* reason=upstream_unreachable cause=ECONNREFUSED/);
  });

  test("close codes and reasons cross both ways", async () => {
    const up = wsUpstream({ onMessage: (ws, m) => (m === "close please" ? ws.close(4001, "upstream is done") : ws.send(m)) });
    const proxy = await wsProxy(up);
    const a = connect(proxy.base);
    await a.opened;
    a.ws.close(4000, "client is done");
    expect(await a.closed).toEqual({ code: 4000, reason: "client is done" });
    await waitFor(() => up.seen.closes.length === 1, 5000, "the upstream to see the close");
    expect(up.seen.closes[0]).toMatchObject({ code: 4000, reason: "client is done" });

    const b = connect(proxy.base);
    await b.opened;
    b.ws.send("close please");
    expect(await b.closed).toEqual({ code: 4001, reason: "upstream is done" });
    await waitFor(() => proxy.stderr().includes("closed_by=upstream code=4001"), 5000, "the log line");
  });

  test("large messages (8 MiB text, 8 MiB binary) cross intact both ways", async () => {
    const up = wsUpstream();
    const proxy = await wsProxy(up);
    const c = connect(proxy.base);
    await c.opened;
    const text = "x".repeat(8 * 1024 * 1024 - 3) + "end";
    const binary = new Uint8Array(8 * 1024 * 1024).map((_, i) => i & 0xff);
    c.ws.send(text);
    c.ws.send(binary);
    await waitFor(() => c.messages.length === 2, 20_000, "both echoes");
    expect(c.messages[0]).toBe(text);
    expect(Buffer.from(c.messages[1] as Uint8Array).equals(Buffer.from(binary))).toBe(true);
    c.ws.close();
  }, 30_000);

  test("a message over --max-websocket-message-bytes, either way: closed with 1009 on both sides", async () => {
    const up = wsUpstream({ onMessage: (ws, m) => ws.send(m === "big please" ? "y".repeat(2000) : m) });
    const proxy = await wsProxy(up, ["--max-websocket-message-bytes", "1000"]);
    const a = connect(proxy.base);
    await a.opened;
    a.ws.send("z".repeat(1001));
    expect((await a.closed).code).toBe(1009);
    await waitFor(() => up.seen.closes.length === 1, 5000, "the upstream's close");
    expect(up.seen.closes[0]!.code).toBe(1009);
    expect(up.seen.messages).toHaveLength(0); // the oversized message never went upstream

    const b = connect(proxy.base);
    await b.opened;
    b.ws.send("big please");
    expect((await b.closed).code).toBe(1009);
    await waitFor(() => up.seen.closes.length === 2, 5000, "the upstream connection to end");
    expect(b.messages).toHaveLength(0);
  });

  test("the upstream dies mid-turn: the client is closed with 1011 at once", async () => {
    const up = wsUpstream({ onMessage: (ws) => { ws.send('{"type":"response.created"}'); setTimeout(() => ws.terminate(), 50); } });
    const proxy = await wsProxy(up);
    const c = connect(proxy.base);
    await c.opened;
    c.ws.send('{"type":"response.create"}');
    const closed = await c.closed;
    expect(closed.code).toBe(1011);
    expect(c.messages).toEqual(['{"type":"response.created"}']);
    await waitFor(() => proxy.stderr().includes("upstream_lost"), 5000, "the log line");
    expect((await goodRequest(proxy)).status).toBeDefined(); // still serving
  });

  test("the client leaves without a close frame: the upstream is closed (1001) within milliseconds", async () => {
    const up = wsUpstream();
    const proxy = await wsProxy(up);
    const sock = net.connect(proxy.port, "127.0.0.1");
    sock.on("error", () => {});
    let reply = "";
    sock.on("data", (d) => (reply += d.toString("latin1")));
    await new Promise<void>((r) => sock.on("connect", () => r()));
    sock.write(`GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:${proxy.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    await waitFor(() => reply.startsWith("HTTP/1.1 101") && up.seen.sockets.length === 1, 5000, "the relay to open");
    const t0 = performance.now();
    sock.destroy();
    await waitFor(() => up.seen.closes.length === 1, 5000, "the upstream to be closed");
    expect(up.seen.closes[0]!.code).toBe(1001);
    console.log(`client gone -> upstream closed: ${(up.seen.closes[0]!.at - t0).toFixed(1)} ms`);
    expect(proxy.stderr()).toContain("closed_by=client code=1006");
  });

  test("pings: the upstream's are answered by the proxy, and the client's by the proxy", async () => {
    const { up, c } = await openRelay();
    up.seen.sockets[0]!.ping("are you there");
    await waitFor(() => up.seen.pongs === 1, 5000, "the pong to the upstream's ping");
    let pong = false;
    (c.ws as unknown as { addEventListener(t: string, f: () => void): void }).addEventListener("pong", () => (pong = true));
    (c.ws as unknown as { ping(d: string): void }).ping("and you?");
    await waitFor(() => pong, 5000, "the pong to the client's ping");
    c.ws.close();
  });

  test("a broken upstream (a masked frame): the client gets 1011, and the proxy serves on", async () => {
    // A raw upstream: a correct 101, then a frame a server must never send.
    const raw = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(s, d) {
          // The proxy writes its handshake in parts: answer once the head is complete.
          const head = ((s.data as unknown as { head?: string } | undefined)?.head ?? "") + d.toString("latin1");
          s.data = { head } as never;
          if (!head.includes("\r\n\r\n")) return;
          const key = /sec-websocket-key: (\S+)/i.exec(head)?.[1] ?? "";
          const accept = new Bun.CryptoHasher("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
          s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
          setTimeout(() => s.write(Uint8Array.from([0x81, 0x81, 1, 2, 3, 4, 0x61])), 50);
        },
      },
    });
    onCleanup(() => raw.stop(true));
    const proxy = await wsProxy({ url: `http://127.0.0.1:${raw.port}/v1/responses` });
    const c = connect(proxy.base);
    await c.opened;
    const closed = await c.closed;
    expect(closed.code).toBe(1011);
    expect(closed.reason).toContain("masked frame");
    await waitFor(() => proxy.stderr().includes("upstream_protocol_error"), 5000, "the log line");
  });

  needs(lacksTool("openssl", "openssl"))("a wss upstream (https: upstream URL) with a trusted certificate: relayed over TLS, the key in the handshake", async () => {
    const { cert } = selfSignedUpstream();
    let authorization = null as string | null;
    const up = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      tls: { cert: Bun.file(cert), key: Bun.file(join(dirname(cert), "k.pem")) },
      fetch: (req, srv) => ((authorization = req.headers.get("authorization")), srv.upgrade(req, { data: undefined }) ? undefined : new Response("no", { status: 400 })),
      websocket: { message: (ws, m) => void ws.send(`tls:${m}`) },
    });
    onCleanup(() => up.stop(true));
    const proxy = await startProxy({ args: ["--websocket", "--upstream-url", `https://127.0.0.1:${up.port}/v1/responses`], env: baseEnv({ NODE_EXTRA_CA_CERTS: cert }) });
    const c = connect(proxy.base);
    expect(await c.opened).toBe(true);
    c.ws.send("hi");
    await waitFor(() => c.messages.length === 1, 5000, "the echo over TLS");
    expect(c.messages[0]).toBe("tls:hi");
    expect(authorization).toBe(`Bearer ${KEY}`);
    c.ws.close();
  });

  needs(lacksTool("openssl", "openssl"))("a wss upstream whose certificate is not trusted: 502 naming the TLS error", async () => {
    const tls = selfSignedUpstream();
    const proxy = await wsProxy({ url: tls.url });
    const reply = await rawHandshake(proxy.port);
    expect(reply).toStartWith("HTTP/1.1 502 ");
    expect(reply).toMatch(/SELF_SIGNED/);
    expect(proxy.stderr()).toMatch(/GET \/v1\/responses 502 .* reason=upstream_unreachable cause=\w*SELF_SIGNED\w*/);
  });

  test("a client handshake the proxy cannot complete (version 8, a short key): 400 naming why, and the upstream never hears of it", async () => {
    const up = wsUpstream();
    const proxy = await wsProxy(up);
    const cases: Array<[string, string]> = [
      ["Sec-WebSocket-Version: 8", "Sec-WebSocket-Version is not 13"],
      ["Sec-WebSocket-Key: c2hvcnQ=", "Sec-WebSocket-Key is not 16 bytes in base64"],
    ];
    for (const [bad, why] of cases) {
      const [name] = bad.split(":");
      const head = `GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:${proxy.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        (name === "Sec-WebSocket-Version" ? "" : "Sec-WebSocket-Version: 13\r\n") +
        (name === "Sec-WebSocket-Key" ? "" : "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") + `${bad}\r\n\r\n`;
      const res = await raw(proxy.port, head, 3000, (t) => t.includes("}}"));
      expect(res.status).toBe(400);
      expect(res.text).toContain(why);
    }
    await waitFor(() => (proxy.stderr().match(/reason=websocket_handshake/g) ?? []).length === 2, 5000, "two log lines");
    expect(up.seen.headers).toHaveLength(0);
    expect((await goodRequest(proxy)).status).not.toBe(403);
  });

  test("a bad 101 (wrong Sec-WebSocket-Accept): 502, never an open relay", async () => {
    const raw = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data: (s) => void s.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n") },
    });
    onCleanup(() => raw.stop(true));
    const proxy = await wsProxy({ url: `http://127.0.0.1:${raw.port}/v1/responses` });
    const reply = await rawHandshake(proxy.port);
    expect(reply).toStartWith("HTTP/1.1 502 ");
    expect(reply).toContain("BAD_HANDSHAKE");
  });

  // The handshake's answer is read by the same strict parsers as every upstream response: a refusal
  // whose head or body a client's terminal or parser must not see is a 502, not passed on.
  for (const [what, head] of [
    ["a control byte in a header value", "HTTP/1.1 429 Too Many Requests\r\nX-Note: \x1b]0;owned\x07\r\nContent-Length: 2\r\n\r\nno"],
    ["an obs-folded header", "HTTP/1.1 429 Too Many Requests\r\nX-Note: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nno"],
    ["a malformed Content-Length", "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 1e1\r\n\r\nno"],
    ["a malformed chunked body", "HTTP/1.1 429 Too Many Requests\r\nX-Note: fine\r\nTransfer-Encoding: chunked\r\n\r\n2z\r\nno\r\n0\r\n\r\n"],
  ] as const) {
    test(`a refusal with ${what}: 502 UPSTREAM_BAD_RESPONSE, nothing of it reaches the client, and the proxy serves on`, async () => {
      const raw = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s) => void s.write(Buffer.from(head, "latin1")) } });
      onCleanup(() => raw.stop(true));
      const proxy = await wsProxy({ url: `http://127.0.0.1:${raw.port}/v1/responses` });
      const reply = await rawHandshake(proxy.port);
      expect(reply).toStartWith("HTTP/1.1 502 ");
      expect(reply).toContain("UPSTREAM_BAD_RESPONSE");
      expect(reply).not.toContain("\x1b");
      expect(reply.toLowerCase()).not.toContain("x-note");
      expect((await rawHandshake(proxy.port)).toLowerCase()).toStartWith("http/1.1 502 "); // and the next one is answered too
    });
  }

  test("a browser's WebSocket (Origin) is refused with 403 before anything reaches the upstream", async () => {
    const up = wsUpstream();
    const proxy = await wsProxy(up);
    const reply = await rawHandshake(proxy.port, "Origin: https://evil.example\r\n");
    expect(reply).toStartWith("HTTP/1.1 403 ");
    expect(up.seen.headers).toHaveLength(0);
    expect(proxy.stderr()).toContain("reason=browser:origin");
  });

  test("--max-concurrent counts open WebSockets: one more gets 503", async () => {
    const up = wsUpstream();
    const proxy = await wsProxy(up, ["--max-concurrent", "1"]);
    const c = connect(proxy.base);
    expect(await c.opened).toBe(true);
    expect(await rawHandshake(proxy.port)).toStartWith("HTTP/1.1 503 ");
    c.ws.close();
    await c.closed;
    await waitFor(() => proxy.stderr().includes("closed_by=client"), 5000, "the first to end");
    expect(await rawHandshake(proxy.port)).toStartWith("HTTP/1.1 101 ");
  });

  test("SIGTERM with a WebSocket open: both sides get 1001, exit 0, the stop line counts it", async () => {
    const { up, proxy, c } = await openRelay();
    proxy.proc.kill("SIGTERM");
    expect((await c.closed).code).toBe(1001);
    expect(await proxy.exited).toBe(0);
    await waitFor(() => up.seen.closes.length === 1, 5000, "the upstream's close");
    expect(up.seen.closes[0]!.code).toBe(1001);
    expect(proxy.stderr()).toContain("proxy_shutdown");
    expect(proxy.stderr()).toContain("stopped (SIGTERM): 1 exchange cut");
  });

  test("one log line per connection: duration, messages and bytes each way, who closed it; the key nowhere; --dump-dir records it", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "rap-wsdump-")), "dumps");
    const up = wsUpstream({ onMessage: (ws) => { ws.send('{"type":"response.created"}'); ws.send('{"type":"response.completed"}'); } });
    const proxy = await wsProxy(up, ["--dump-dir", dir]);
    const c = connect(proxy.base, { authorization: "Bearer client-side-dummy" });
    await c.opened;
    c.ws.send('{"type":"response.create","model":"m"}');
    await waitFor(() => c.messages.length === 2, 5000, "two events");
    c.ws.close(1000);
    await c.closed;
    await waitFor(() => dumpFiles(dir).length === 1, 5000, "the dump");
    const line = proxy.stderr().split("\n").find((l) => l.includes(" 101 "))!;
    expect(line).toMatch(/GET \/v1\/responses 101 \d+\.\dms in=38B out=56B messages=1\/2 closed_by=client code=1000 request_id=req_ws_1$/);
    const dump = JSON.parse(readFileSync(join(dir, dumpFiles(dir)[0]!), "utf8"));
    expect(dumpFiles(dir)[0]).toMatch(/^000001-\d+-websocket\.json$/);
    expect(dump.url).toBe("/v1/responses");
    expect(dump.headers.find((h: { name: string }) => h.name === "authorization").value).toBe("[REDACTED]");
    expect(dump.headers.find((h: { name: string }) => h.name === "upgrade").value).toBe("websocket"); // as the client sent it
    expect(dump.response.status).toBe(101);
    expect(dump.messages.map((m: { from: string; data: { type: string } }) => `${m.from}:${m.data.type}`)).toEqual([
      "client:response.create", "upstream:response.created", "upstream:response.completed",
    ]);
    expect(dump.end).toMatchObject({ closed_by: "client", code: 1000, outcome: "complete" });
    expect(proxy.stderr()).not.toContain(KEY);
    expect(readFileSync(join(dir, dumpFiles(dir)[0]!), "utf8")).not.toContain(KEY);
    for (const m of c.messages) expect(String(m)).not.toContain(KEY);
  });

  test("JSON log format: the connection's fields", async () => {
    const up = wsUpstream();
    const proxy = await wsProxy(up, ["--log-format", "json"]);
    const c = connect(proxy.base);
    await c.opened;
    c.ws.send("a");
    await waitFor(() => c.messages.length === 1, 5000, "echo");
    c.ws.close(4000, "x");
    await waitFor(() => proxy.stderr().includes('"closed_by"'), 5000, "the log line");
    const rec = JSON.parse(proxy.stderr().split("\n").find((l) => l.includes('"closed_by"'))!);
    expect(rec).toMatchObject({ event: "request", method: "GET", path: "/v1/responses", status: 101, bytes_in: 1, bytes_out: 1, messages_in: 1, messages_out: 1, closed_by: "client", close_code: 4000 });
  });

  needs(IS_ROOT ? undefined : "needs root: reads the proxy's memory")("the key stays one copy in memory after 300 WebSocket sessions (each handshake writes the one Authorization line)", async () => {
    const up = wsUpstream();
    const proxy = await wsProxy(up, ["--quiet"]);
    await Bun.sleep(100);
    expect(countInMemory(proxy.proc.pid, KEY)).toEqual({ ascii: 1, utf16: 0 });
    for (let round = 0; round < 30; round++) {
      const clients = Array.from({ length: 10 }, () => connect(proxy.base));
      for (const c of clients) {
        expect(await c.opened).toBe(true);
        c.ws.send("hello");
      }
      await waitFor(() => clients.every((c) => c.messages.length === 1), 5000, "echoes");
      for (const c of clients) c.ws.close();
      await Promise.all(clients.map((c) => c.closed));
    }
    const after = countInMemory(proxy.proc.pid, KEY);
    console.log(`key copies: 1 after start, ${after.ascii} after 300 WebSocket sessions`);
    expect(after.ascii).toBeLessThanOrEqual(2);
    expect(after.utf16).toBe(0);
  }, 60_000);

  test("refused at start-up behind an HTTP(S) proxy (it would not reach the upstream)", async () => {
    const p = Bun.spawnSync([join(ROOT, "dist/responses-api-proxy"), "--websocket"], { env: baseEnv({ HTTPS_PROXY: "http://127.0.0.1:9" }), stdin: new Blob([`${KEY}\n`]) });
    expect(p.exitCode).toBe(1);
    expect(p.stderr.toString()).toContain("--websocket cannot reach the upstream through an HTTP(S) proxy");
  });
});

describe("Codex CLI, its built-in provider (WebSocket first)", () => {
  const CODEX = join(ROOT, "node_modules/.bin/codex");
  const WORDS = ["Hello ", "over ", "the ", "proxy."];

  /** A fake Responses API that speaks both transports: the WebSocket Codex tries first, and POST. */
  function bothTransports() {
    const events = (id: string) => responseEvents(WORDS, id).map((e) => e.split("\n").find((l) => l.startsWith("data: "))!.slice(6));
    const up = wsUpstream({
      onMessage(ws, m) {
        const body = JSON.parse(String(m));
        const all = events(`resp_${Math.random().toString(36).slice(2, 8)}`);
        // The warm-up ("generate": false) gets its response created and completed, nothing more.
        for (const e of body.generate === false ? [all[0]!, all.at(-1)!] : all) ws.send(e);
      },
    });
    return up;
  }

  async function codex(args: string[], env: Record<string, string>) {
    const repo = mkdtempSync(join(tmpdir(), "rap-codex-repo-"));
    Bun.spawnSync(["git", "init", "-q", repo]);
    const t0 = performance.now();
    const p = Bun.spawn([CODEX, "exec", ...args, "Say hello"], { cwd: repo, env: baseEnv({ CODEX_HOME: mkdtempSync(join(tmpdir(), "rap-codex-")), OPENAI_API_KEY: "sk-client-has-no-key", ...env }), stdout: "pipe", stderr: "pipe" });
    const timer = setTimeout(() => p.kill(), 40_000);
    const code = await p.exited;
    clearTimeout(timer);
    return { code, ms: performance.now() - t0, out: await new Response(p.stdout).text(), err: await new Response(p.stderr).text() };
  }

  needs(existsSync(CODEX) ? undefined : "no node_modules/.bin/codex (npm ci installs @openai/codex)", lacksTool("git", "git"))(
    "openai_base_url through --websocket: no Reconnecting, the answer, as fast as the custom provider over POST",
    async () => {
      const up = bothTransports();
      const proxy = await wsProxy(up);
      const ws = await codex(["-c", `openai_base_url='${proxy.base}/v1'`], {});
      expect(ws.code).toBe(0);
      expect(ws.out).toContain(WORDS.join(""));
      expect(ws.err).not.toContain("Reconnecting");
      expect(ws.err).not.toContain("Falling back");
      expect(up.seen.headers[0]!.get("authorization")).toBe(`Bearer ${KEY}`);
      expect(up.seen.headers[0]!.get("openai-beta")).toContain("responses_websockets=");

      // The custom provider (POST, SSE) against the same proxy and a POST upstream, for comparison.
      const post = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => gappedStream(responseEvents(WORDS), 0) });
      onCleanup(() => post.stop(true));
      const proxyPost = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${post.port}/v1/responses`] });
      const custom = await codex(["-c", "model_provider=proxy", "-c", `model_providers.proxy={ name = 'proxy', base_url = '${proxyPost.base}/v1', wire_api = 'responses' }`], {});
      expect(custom.code).toBe(0);
      expect(custom.out).toContain(WORDS.join(""));

      // Without --websocket, the built-in provider pays for its retries (the original's behaviour).
      const plain = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${post.port}/v1/responses`] });
      const fallback = await codex(["-c", `openai_base_url='${plain.base}/v1'`], {});
      expect(fallback.out).toContain(WORDS.join(""));
      expect(fallback.err).toContain("Reconnecting");
      console.log(`codex exec, one answer: built-in provider with --websocket ${ws.ms.toFixed(0)} ms; custom provider (POST) ${custom.ms.toFixed(0)} ms; built-in provider without --websocket ${fallback.ms.toFixed(0)} ms`);
      expect(ws.ms).toBeLessThan(fallback.ms);
    },
    60_000,
  );
});
