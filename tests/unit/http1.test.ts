// The upstream HTTP/1.1 client against raw TCP upstreams on loopback, where exact bytes matter:
// framing, keep-alive reuse, malformed answers, early closes, backpressure.
import { afterEach, expect, test } from "bun:test";
import * as net from "node:net";
import { type BodyReader, http1Client, requestRest, requestStart, type UpstreamBody, type UpstreamResponse } from "../../src/upstream/http1";
import { MAX_RESPONSE_HEAD } from "../../src/upstream/response-head";
import { proxyConfigured } from "../../src/upstream/proxy-env";
import { AuthorizationLine } from "../../src/security/authorization";

interface RawUpstream {
  url: URL;
  /** Every request head received, per connection index. */
  heads: { conn: number; head: string; body: Buffer }[];
  connections: number;
}

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/**
 * A raw upstream: `answer` gets each complete request (head + body, framed by Content-Length or
 * chunked) and writes whatever bytes it likes.
 */
async function rawUpstream(answer: (sock: net.Socket, n: number) => void): Promise<RawUpstream> {
  const state: RawUpstream = { url: new URL("http://127.0.0.1/"), heads: [], connections: 0 };
  let n = 0;
  const server = net.createServer((sock) => {
    const conn = state.connections++;
    sock.on("error", () => {});
    let buf = Buffer.alloc(0);
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString("latin1");
        const cl = /\r\ncontent-length: (\d+)/i.exec(head);
        let body: Buffer;
        let used: number;
        if (cl) {
          if (buf.length < end + 4 + Number(cl[1])) return;
          body = buf.subarray(end + 4, end + 4 + Number(cl[1]));
          used = end + 4 + Number(cl[1]);
        } else if (/\r\ntransfer-encoding: chunked/i.test(head)) {
          const last = buf.indexOf("0\r\n\r\n", end + 4);
          if (last < 0) return;
          body = buf.subarray(end + 4, last + 5);
          used = last + 5;
        } else {
          body = Buffer.alloc(0);
          used = end + 4;
        }
        buf = buf.subarray(used);
        state.heads.push({ conn, head, body: Buffer.from(body) });
        answer(sock, n++);
      }
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  state.url = new URL(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1/responses?x=1`);
  return state;
}

const JSON_BODY = new TextEncoder().encode('{"model":"m"}');
const AUTH = AuthorizationLine.from(new TextEncoder().encode("Bearer K"));
const post = (
  send: ReturnType<typeof http1Client>,
  body: Uint8Array | BodyReader | undefined = JSON_BODY,
  signal = new AbortController().signal,
  owner: string | null = "uid:0", // null: no owner
) =>
  send({ headers: new Headers({ "content-type": "application/json", ...(body instanceof Uint8Array ? { "content-length": String(body.byteLength) } : {}) }), authorization: AUTH, body, signal, owner: owner ?? undefined });

/** Everything the body's sink receives; rejects when the body ends with an error. */
function collect(body: UpstreamBody, write: (chunk: Uint8Array) => Promise<unknown> | undefined = () => undefined): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  return new Promise((resolve, reject) =>
    body.pipe({
      write(chunk) {
        chunks.push(new Uint8Array(chunk)); // a copy: the chunk is freed once write returns
        return write(chunk);
      },
      end: (err) => (err === undefined ? resolve(Buffer.concat(chunks)) : reject(err)),
    }),
  );
}

async function text(res: UpstreamResponse): Promise<string> {
  if (res.whole) return new TextDecoder().decode(res.whole);
  return res.body ? (await collect(res.body)).toString() : "";
}

test("request head: the start (target with query, Host from the URL), then the headers as given, framing added only when missing, the blank line and the body", () => {
  expect(requestStart(new URL("https://api.example:8443/v1/responses?x=1"))).toBe("POST /v1/responses?x=1 HTTP/1.1\r\nhost: api.example:8443\r\n");
  expect(requestStart(new URL("https://api.example/v1/responses"))).toBe("POST /v1/responses HTTP/1.1\r\nhost: api.example\r\n");
  const rest = requestRest(new Headers({ "content-length": "3" }), new Uint8Array([0x61, 0x62, 0x63]));
  expect(rest.toString("latin1")).toBe("content-length: 3\r\n\r\nabc");
  expect(requestRest(new Headers(), undefined).toString()).toBe("content-length: 0\r\n\r\n");
  expect(requestRest(new Headers(), new Uint8Array(0)).toString()).toBe("content-length: 0\r\n\r\n");
  expect(requestRest(new Headers(), new ReadableStream().getReader()).toString()).toBe("transfer-encoding: chunked\r\n\r\n");
  // A header value the client sent as latin1 bytes goes out as the same bytes, and the body after it stays where it belongs.
  const latin1 = requestRest(new Headers({ "x-l": "caf\u00e9" }), new Uint8Array([0xff]));
  expect([...latin1]).toEqual([...Buffer.from("x-l: caf\u00e9\r\ncontent-length: 1\r\n\r\n", "latin1"), 0xff]);
});

test("the key's buffer: the head start, then the line; the line is a view of it, never a copy; wipe zeroes both", () => {
  const line = AuthorizationLine.from(new TextEncoder().encode("Bearer K"), "POST / HTTP/1.1\r\nhost: h\r\n");
  expect(new TextDecoder().decode(line.head)).toBe("POST / HTTP/1.1\r\nhost: h\r\nauthorization: Bearer K\r\n");
  expect(new TextDecoder().decode(line.line)).toBe("authorization: Bearer K\r\n");
  expect(line.line.buffer).toBe(line.head.buffer);
  expect(line.line.byteOffset).toBe(line.head.byteOffset + line.headStart.length);
  expect(line.value()).toBe("Bearer K");
  expect(AuthorizationLine.from(new TextEncoder().encode("Bearer K")).line).toEqual(line.line);
  expect(() => AuthorizationLine.from(new TextEncoder().encode("Bearer K"), "POST /\u00e9 HTTP/1.1\r\n")).toThrow(TypeError);
  line.wipe();
  expect(line.head.every((b) => b === 0)).toBe(true);
});

test("proxy variables switch to fetch; NO_PROXY alone does not", () => {
  expect(proxyConfigured({ HTTPS_PROXY: "http://p:3128" })).toBe(true);
  expect(proxyConfigured({ http_proxy: "http://p:3128" })).toBe(true);
  expect(proxyConfigured({ NO_PROXY: "*", HTTPS_PROXY: "" })).toBe(false);
  expect(proxyConfigured({})).toBe(false);
});

/** Runs `work` and counts the writes to TCP sockets meanwhile (a spy on Bun's socket class). */
async function countingWrites<T>(url: URL, work: () => Promise<T>): Promise<{ result: T; writes: number }> {
  const probe = await Bun.connect({ hostname: url.hostname, port: Number(url.port), socket: { data() {} } });
  const proto = Object.getPrototypeOf(probe);
  probe.end();
  const write = proto.write;
  let writes = 0;
  proto.write = function (this: unknown, ...args: unknown[]) {
    writes++;
    return write.apply(this, args);
  };
  try {
    return { result: await work(), writes };
  } finally {
    proto.write = write;
  }
}

test("the wire: the key's buffer (request line, host, Authorization line) in one write, the rest of the head and the body in one more — and the key is never copied", async () => {
  const up = await rawUpstream((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  const send = http1Client(up.url);
  const auth = AuthorizationLine.from(new TextEncoder().encode("Bearer K"), requestStart(up.url));
  const before = auth.head.slice();
  const first = () => send({ headers: new Headers({ "content-type": "application/json", "content-length": "13" }), authorization: auth, body: JSON_BODY, signal: new AbortController().signal, owner: "uid:0" });
  // The connection is opened by the first request; the second goes out on the pooled socket alone.
  await text(await first());
  const { writes } = await countingWrites(up.url, async () => text(await first()));
  expect(writes).toBe(2);
  for (const h of up.heads) {
    expect(h.head).toBe(`POST /v1/responses?x=1 HTTP/1.1\r\nhost: ${up.url.host}\r\nauthorization: Bearer K\r\ncontent-length: 13\r\ncontent-type: application/json`);
    expect(h.body.toString()).toBe('{"model":"m"}');
  }
  expect(auth.head).toEqual(before); // written as it is
});

test("the wire: a key line made for another head start still sends this upstream's request line and host, in three writes", async () => {
  const up = await rawUpstream((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  const send = http1Client(up.url);
  const other = AuthorizationLine.from(new TextEncoder().encode("Bearer K"), "POST /elsewhere HTTP/1.1\r\nhost: other.example\r\n");
  const go = (authorization: AuthorizationLine) =>
    send({ headers: new Headers({ "content-length": "13" }), authorization, body: JSON_BODY, signal: new AbortController().signal, owner: "uid:0" });
  await text(await go(AUTH));
  const plain = await countingWrites(up.url, async () => text(await go(AUTH)));
  const elsewhere = await countingWrites(up.url, async () => text(await go(other)));
  expect([plain.writes, elsewhere.writes]).toEqual([3, 3]);
  expect(up.heads.length).toBe(3);
  for (const h of up.heads) expect(h.head).toBe(`POST /v1/responses?x=1 HTTP/1.1\r\nhost: ${up.url.host}\r\nauthorization: Bearer K\r\ncontent-length: 13`);
  expect(up.heads[2]!.body.toString()).toBe('{"model":"m"}');
});

test("content-length answer: whole bytes, and the socket is reused for the next request", async () => {
  const up = await rawUpstream((s) => s.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nX-Request-Id: r1\r\n\r\n{\"ok\":true}"));
  const send = http1Client(up.url);
  for (let i = 0; i < 3; i++) {
    const res = await post(send);
    expect(res.status).toBe(200);
    expect(res.statusText).toBe("OK");
    expect(res.headers.get("x-request-id")).toBe("r1");
    expect(await text(res)).toBe('{"ok":true}');
  }
  expect(up.connections).toBe(1);
  expect(up.heads[0]!.head).toStartWith("POST /v1/responses?x=1 HTTP/1.1\r\nhost: 127.0.0.1:");
  expect(up.heads[0]!.body.toString()).toBe('{"model":"m"}');
});

test("chunked answer split at every byte still decodes; trailers dropped; socket reused", async () => {
  const wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
  const up = await rawUpstream(async (s) => {
    for (const ch of wire) {
      s.write(ch);
      await Bun.sleep(0);
    }
  });
  const send = http1Client(up.url);
  expect(await text(await post(send))).toBe("hello, world");
  expect(await text(await post(send))).toBe("hello, world");
  expect(up.connections).toBe(1);
});

test("interim 100 Continue is skipped; 204 has no body; HTTP/1.0 and Connection: close are not reused", async () => {
  const answers = [
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nv0",
    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\ncc",
    "HTTP/1.1 200 OK\r\n\r\nuntil close",
  ];
  const up = await rawUpstream((s, n) => {
    s.write(answers[n]!);
    if (n >= 2) s.end();
  });
  const send = http1Client(up.url);
  const created = await post(send);
  expect([created.status, await text(created)]).toEqual([201, "ok"]);
  const empty = await post(send);
  expect([empty.status, empty.body, empty.whole]).toEqual([204, null, undefined]);
  expect(await text(await post(send))).toBe("v0");
  expect(await text(await post(send))).toBe("cc");
  expect(await text(await post(send))).toBe("until close");
  expect(up.heads.map((h) => h.conn)).toEqual([0, 0, 0, 1, 2]);
});

for (const [name, wire] of [
  ["garbage instead of HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n"],
  ["obs-fold header", "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n"],
  ["space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"],
  ["conflicting Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"],
  ["a negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"],
  ["status 700", "HTTP/1.1 700 Odd\r\nContent-Length: 0\r\n\r\n"],
  ["101 unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"],
  ["an escape sequence in a header value", "HTTP/1.1 200 OK\r\nX-A: \x1b]0;owned\x07\r\nContent-Length: 0\r\n\r\n"],
  ["a NUL byte in a header value", "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n"],
  ["a bare LF in a header value", "HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\nContent-Length: 0\r\n\r\n"],
  ["DEL in a header value", "HTTP/1.1 200 OK\r\nX-A: a\x7f\r\nContent-Length: 0\r\n\r\n"],
  ["a head one byte over the limit, whole in one read", `HTTP/1.1 200 OK\r\nX-A: ${"a".repeat(MAX_RESPONSE_HEAD - 44)}\r\nContent-Length: 0\r\n\r\n`],
] as const) {
  test(`malformed answer (${name}): rejected before a response exists`, async () => {
    const up = await rawUpstream((s) => s.write(wire));
    await expect(post(http1Client(up.url))).rejects.toMatchObject({ code: expect.stringMatching(/^UPSTREAM_/) });
  });
}

test("a header value with a tab is kept; a head of exactly the limit is accepted", async () => {
  const exact = `HTTP/1.1 200 OK\r\nX-A: ${"a".repeat(MAX_RESPONSE_HEAD - 45)}\r\nContent-Length: 0\r\n\r\n`;
  expect(exact.length).toBe(MAX_RESPONSE_HEAD);
  const up = await rawUpstream((s, n) => s.write(n === 0 ? "HTTP/1.1 200 OK\r\nX-T: a\tb\r\nContent-Length: 0\r\n\r\n" : exact));
  const send = http1Client(up.url);
  expect((await post(send)).headers.get("x-t")).toBe("a\tb");
  expect((await post(send)).status).toBe(200);
});

test("a bad chunk size mid-body errors the body stream, not silently ends it", async () => {
  const up = await rawUpstream((s) => s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n"));
  const res = await post(http1Client(up.url));
  expect(res.status).toBe(200);
  await expect(text(res)).rejects.toBeDefined();
});

test("upstream closing mid-body (short Content-Length) errors the body stream", async () => {
  const up = await rawUpstream((s) => {
    s.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    setTimeout(() => s.destroy(), 20);
  });
  const res = await post(http1Client(up.url));
  await expect(text(res)).rejects.toMatchObject({ message: expect.stringContaining("mid-response") });
});

test("a pooled socket the upstream closed as it was reused: the request is sent again on a new one", async () => {
  // The first connection answers once, then closes on the next request without a byte.
  const up = await rawUpstream((s, n) => {
    if (n === 1) return s.destroy();
    s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  });
  const send = http1Client(up.url);
  expect(await text(await post(send))).toBe("ok");
  expect(await text(await post(send))).toBe("ok");
  expect(up.heads.map((h) => h.conn)).toEqual([0, 0, 1]); // the second request arrived twice
});

test("a stale pooled socket is retried once, on a new connection: never on the next pooled one, never twice", async () => {
  // Five pooled sockets, then the upstream closes every connection as soon as it reads a request.
  let closing = false;
  const up = await rawUpstream((s) => {
    if (closing) return s.destroy();
    setTimeout(() => s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), 20);
  });
  const send = http1Client(up.url);
  const warm = await Promise.all(Array.from({ length: 5 }, () => post(send)));
  for (const r of warm) await text(r);
  expect(up.connections).toBe(5);
  closing = true;
  const before = up.heads.length;
  await expect(post(send)).rejects.toMatchObject({ code: "UPSTREAM_CLOSED" });
  expect(up.heads.length - before).toBe(2); // the request reached the upstream twice at most
  expect(up.connections).toBe(6); // and the second time on a new connection
});

test("connections are pooled per owner: one owner's socket never carries another's request", async () => {
  const up = await rawUpstream((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  const send = http1Client(up.url);
  await text(await post(send, JSON_BODY, undefined, "uid:0"));
  await text(await post(send, JSON_BODY, undefined, "uid:65534"));
  await text(await post(send, JSON_BODY, undefined, "uid:0"));
  await text(await post(send, JSON_BODY, undefined, "uid:65534"));
  expect(up.heads.map((h) => h.conn)).toEqual([0, 1, 0, 1]);
  // An owner nobody could name gets a connection of its own each time, kept by no pool.
  await text(await post(send, JSON_BODY, undefined, null));
  await text(await post(send, JSON_BODY, undefined, null));
  expect(up.heads.slice(4).map((h) => h.conn)).toEqual([2, 3]);
});

test("a fresh socket closed before any answer is not retried: the error surfaces", async () => {
  const up = await rawUpstream((s) => s.destroy());
  await expect(post(http1Client(up.url))).rejects.toMatchObject({ code: "UPSTREAM_CLOSED" });
  expect(up.heads).toHaveLength(1);
});

test("connection refused carries ECONNREFUSED", async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  await expect(post(http1Client(new URL(`http://127.0.0.1:${port}/`)))).rejects.toMatchObject({ code: "ECONNREFUSED" });
});

test("a streamed body without length goes chunked and arrives byte-exact", async () => {
  const up = await rawUpstream((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  const parts = ["alpha-", "", "beta-", "gamma"];
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      const p = parts.shift();
      if (p === undefined) return c.close();
      await Bun.sleep(5);
      c.enqueue(new TextEncoder().encode(p));
    },
  });
  const res = await post(http1Client(up.url), body.getReader());
  expect(res.status).toBe(200);
  expect(up.heads[0]!.head.toLowerCase()).toContain("transfer-encoding: chunked");
  expect(up.heads[0]!.body.toString()).toBe("6\r\nalpha-\r\n5\r\nbeta-\r\n5\r\ngamma\r\n0\r\n\r\n");
});

test("abort before the head: rejected at once and the socket is closed", async () => {
  let closed = false;
  const up = await rawUpstream((s) => s.on("close", () => (closed = true))); // never answers
  const ac = new AbortController();
  const pending = post(http1Client(up.url), JSON_BODY, ac.signal);
  await Bun.sleep(50);
  ac.abort();
  await expect(pending).rejects.toBeDefined();
  for (let i = 0; i < 100 && !closed; i++) await Bun.sleep(10);
  expect(closed).toBe(true);
});

test("a slow reader: the upstream socket is paused, memory stays bounded, every byte arrives", async () => {
  const total = 64 * 1024 * 1024;
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  let written = 0;
  const up = await rawUpstream((s) => {
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${total}\r\n\r\n`);
    const pump = () => {
      while (written < total) {
        written += chunk.length;
        if (!s.write(chunk)) return void s.once("drain", pump);
      }
    };
    pump();
  });
  const res = await post(http1Client(up.url));
  let got = 0;
  let writtenWhileStalled = -1;
  // Take 1 MiB, then stall for 300 ms: the upstream cannot have pushed all 64 MiB into us.
  const all = await collect(res.body!, (chunk) => {
    got += chunk.byteLength;
    if (got < 1024 * 1024 || writtenWhileStalled >= 0) return undefined;
    return Bun.sleep(300).then(() => void (writtenWhileStalled = written));
  });
  expect(writtenWhileStalled).toBeGreaterThan(0);
  expect(writtenWhileStalled).toBeLessThan(total / 2);
  expect(all.byteLength).toBe(total);
});

test("body bytes that arrive before the sink is attached wait for it, in order, then the rest flows", async () => {
  const up = await rawUpstream((s) => {
    s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n");
    setTimeout(() => s.write("3\r\ntwo\r\n"), 20);
    setTimeout(() => s.write("5\r\nthree\r\n0\r\n\r\n"), 150);
  });
  const res = await post(http1Client(up.url));
  await Bun.sleep(80); // "one" and "two" have arrived and wait
  expect((await collect(res.body!)).toString()).toBe("onetwothree");
});

test("a body that ends (or fails) before the sink is attached still reports its end", async () => {
  const up = await rawUpstream((s, n) => {
    if (n === 0) s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    else {
      s.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ncut");
      setTimeout(() => s.destroy(), 10);
    }
  });
  const send = http1Client(up.url);
  const whole = await post(send);
  const cut = await post(send);
  await Bun.sleep(60);
  expect((await collect(whole.body!)).toString()).toBe("ok");
  await expect(collect(cut.body!)).rejects.toMatchObject({ message: expect.stringContaining("mid-response") });
});

test("cancel: the sink hears nothing more and the upstream sees its socket closed", async () => {
  let closed = false;
  const up = await rawUpstream((s) => {
    s.on("close", () => (closed = true));
    s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
    setTimeout(() => s.writable && s.write("6\r\nsecond\r\n"), 100);
  });
  const res = await post(http1Client(up.url));
  const heard: string[] = [];
  res.body!.pipe({
    write(chunk) {
      heard.push(Buffer.from(chunk).toString());
      res.body!.cancel();
      return undefined;
    },
    end: (err) => heard.push(`end ${err}`),
  });
  await Bun.sleep(200);
  expect(heard).toEqual(["first"]);
  expect(closed).toBe(true);
});
