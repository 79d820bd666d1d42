// The upstream response body's framing (src/upstream/response-body.ts): where the body ends, and
// which bytes may go to the client in the upstream's own chunk framing.
import { describe, expect, test } from "bun:test";
import { type BodyOut, ResponseBody } from "../../src/upstream/response-body";

/** Records what the parser hands on; what a chunked client would receive is `wire`. */
function recorder(passThrough = true) {
  const calls: Array<{ kind: "data" | "framed"; bytes: string; dataBytes?: number }> = [];
  let ends: boolean[] = [];
  const out: BodyOut = {
    bodyData: (b) => void calls.push({ kind: "data", bytes: Buffer.from(b).toString("latin1") }),
    bodyFramed: (raw, dataBytes) => void calls.push({ kind: "framed", bytes: Buffer.from(raw).toString("latin1"), dataBytes }),
    passThrough: () => passThrough,
    bodyEnd: (extra) => void ends.push(extra),
  };
  return {
    out,
    calls,
    ends: () => ends,
    /** The client's chunked body: framed bytes as they are, data framed anew (as the listener does). */
    wire: () => calls.map((c) => (c.kind === "framed" ? c.bytes : `${c.bytes.length.toString(16)}\r\n${c.bytes}\r\n`)).join(""),
    /** The body bytes the parser counted. */
    body: () => calls.map((c) => (c.kind === "data" ? c.bytes : "")).join(""),
    counted: () => calls.reduce((n, c) => n + (c.kind === "data" ? c.bytes.length : c.dataBytes!), 0),
    reset: () => {
      calls.length = 0;
      ends = [];
    },
  };
}

/**
 * A strict decoder of what the client receives: canonical size lines, CRLF only, no last chunk.
 * `cut`: the stream may stop inside a chunk (it failed there; the client sees the connection cut).
 */
function strictDecode(wire: string, cut = false): string {
  let body = "";
  let i = 0;
  while (i < wire.length) {
    const m = /^([0-9a-fA-F]{1,12})\r\n/.exec(wire.slice(i));
    if (!m) throw new Error(`bad size line at ${i}: ${JSON.stringify(wire.slice(i, i + 20))}`);
    const size = parseInt(m[1]!, 16);
    if (size === 0) throw new Error("a last chunk was passed on");
    i += m[0].length;
    if (cut && i + size + 2 > wire.length) return body + wire.slice(i, i + size);
    body += wire.slice(i, i + size);
    i += size;
    if (wire.slice(i, i + 2) !== "\r\n") throw new Error(`no CRLF after a chunk at ${i}`);
    i += 2;
  }
  return body;
}

/** Feeds `input` in pieces cut at `cuts`. */
function feedSplit(body: ResponseBody, input: string, cuts: number[]) {
  const bytes = Buffer.from(input, "latin1");
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (cut > at) body.feed(Buffer.from(bytes.subarray(at, cut)));
    at = cut;
  }
}

const SSE_A = 'event: a\ndata: {"x":1}\n\n';
const SSE_B = 'event: b\ndata: {"y":2}\n\n';
const EVENTS =
  `${SSE_A.length.toString(16)}\r\n${SSE_A}\r\n` + // two server-sent events, canonical framing
  `${SSE_B.length.toString(16).toUpperCase()}\r\n${SSE_B}\r\n` + // upper-case hex is canonical
  "000a\r\n0123456789\r\n"; // so are leading zeros
const EVENTS_BODY = `${SSE_A}${SSE_B}0123456789`;

describe("chunked, passed through", () => {
  test("canonical chunks whole in one read: one framed write, exactly the upstream's bytes, no last chunk", () => {
    const r = recorder();
    new ResponseBody("chunked", r.out).feed(Buffer.from(`${EVENTS}0\r\n\r\n`, "latin1"));
    expect(r.calls).toEqual([{ kind: "framed", bytes: EVENTS, dataBytes: EVENTS_BODY.length }]);
    expect(r.ends()).toEqual([false]);
  });

  test("split at every byte, and in two at every place: the client gets valid framing of the same body", () => {
    const input = `${EVENTS}0\r\n\r\n`;
    for (let cut = 0; cut <= input.length; cut++) {
      const r = recorder();
      feedSplit(new ResponseBody("chunked", r.out), input, [cut]);
      expect(strictDecode(r.wire())).toBe(EVENTS_BODY);
      expect(r.counted()).toBe(EVENTS_BODY.length);
      expect(r.ends()).toEqual([false]);
    }
    const r = recorder();
    feedSplit(new ResponseBody("chunked", r.out), input, [...input].map((_, i) => i));
    expect(strictDecode(r.wire())).toBe(EVENTS_BODY);
    expect(r.counted()).toBe(EVENTS_BODY.length);
    expect(r.ends()).toEqual([false]);
  });

  test("a chunk end split between reads is still sent once its CRLF is whole", () => {
    const r = recorder();
    feedSplit(new ResponseBody("chunked", r.out), "3\r\nabc\r\n0\r\n\r\n", [6, 7]);
    expect(r.calls).toEqual([
      { kind: "framed", bytes: "3\r\nabc", dataBytes: 3 },
      { kind: "framed", bytes: "\r\n", dataBytes: 0 },
    ]);
  });

  test("a chunk end with a bare LF after a passed-through chunk: the client still gets CRLF", () => {
    const r = recorder();
    new ResponseBody("chunked", r.out).feed(Buffer.from("3\r\nabc\n0\r\n\r\n", "latin1"));
    expect(r.wire()).toBe("3\r\nabc\r\n");
    expect(r.ends()).toEqual([false]);
  });

  test("what is not canonical is decoded and framed anew: extensions, whitespace, bare LF; trailers are dropped", () => {
    const cases: Array<[string, string]> = [
      ["3;ext=secret\r\nabc\r\n0\r\n\r\n", "abc"],
      ["3 \r\nabc\r\n0\r\n\r\n", "abc"],
      ["3\nabc\n0\n\n", "abc"],
      ["3\r\nabc\r\n0\r\nX-Trailer: secret\r\n\r\n", "abc"],
      ["3;x\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", "abcdefg"],
    ];
    for (const [input, body] of cases) {
      const r = recorder();
      new ResponseBody("chunked", r.out).feed(Buffer.from(input, "latin1"));
      expect(strictDecode(r.wire())).toBe(body);
      expect(r.wire()).not.toContain("secret");
      expect(r.wire()).not.toContain(";");
      expect(r.ends()).toEqual([false]);
    }
  });

  test("a sink that cannot take framing gets body bytes only", () => {
    const r = recorder(false);
    new ResponseBody("chunked", r.out).feed(Buffer.from(`${EVENTS}0\r\n\r\n`, "latin1"));
    expect(r.calls.every((c) => c.kind === "data")).toBe(true);
    expect(r.body()).toBe(EVENTS_BODY);
  });

  test("a read of whole plain chunks goes on as the read itself; part of a read as a view of it", () => {
    const seen: Uint8Array[] = [];
    const out: BodyOut = { bodyData: () => {}, bodyFramed: (raw) => void seen.push(raw), passThrough: () => true, bodyEnd: () => {} };
    const body = new ResponseBody("chunked", out);
    const whole = Buffer.from("3\r\nabc\r\n2\r\nde\r\n", "latin1");
    body.feed(whole);
    expect(seen).toEqual([whole]);
    expect(seen[0]).toBe(whole); // the same object: no view made per event
    const last = Buffer.from("1\r\nf\r\n0\r\n\r\n", "latin1"); // the last chunk never passes through
    body.feed(last);
    expect(seen[1]).not.toBe(last);
    expect(Buffer.from(seen[1]!).toString("latin1")).toBe("1\r\nf\r\n");
    expect(seen[1]!.buffer).toBe(last.buffer); // a view, not a copy
  });

  test("bytes after the last chunk are reported, so the socket is not reused", () => {
    const r = recorder();
    new ResponseBody("chunked", r.out).feed(Buffer.from("3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", "latin1"));
    expect(r.wire()).toBe("3\r\nabc\r\n");
    expect(r.ends()).toEqual([true]);
  });
});

describe("chunked, malformed: an error, never a quiet end", () => {
  const cases: Array<[string, string]> = [
    ["a size that is not hex", "zz\r\nabc\r\n"],
    ["13 hex digits", "0000000000001\r\na\r\n"],
    ["data longer than its size", "3\r\nabcd\r\n"],
    ["an empty size line", "\r\nabc\r\n"],
    ["a size line over 8 KiB", `3;${"x".repeat(9000)}\r\nabc\r\n`],
  ];
  for (const [name, input] of cases) {
    test(name, () => {
      for (const passThrough of [true, false]) {
        const r = recorder(passThrough);
        expect(() => new ResponseBody("chunked", r.out).feed(Buffer.from(input, "latin1"))).toThrow("malformed chunked upstream body");
        expect(r.ends()).toEqual([]);
        // Whatever went out before the error is valid framing, at most cut inside its last chunk:
        // the client sees its connection cut, never garbage.
        expect(() => strictDecode(r.wire(), true)).not.toThrow();
      }
    });
  }

  test("data longer than its size, after a chunk that passed through: the valid chunk went out, nothing after it", () => {
    const r = recorder();
    expect(() => new ResponseBody("chunked", r.out).feed(Buffer.from("3\r\nabc\r\n2\r\nxyz\r\n", "latin1"))).toThrow();
    // "2\r\nxy" passed the checks that can be made before the chunk's end: valid framing, cut short.
    expect(r.wire().startsWith("3\r\nabc\r\n")).toBe(true);
    expect(r.wire()).not.toContain("z");
  });
});

describe("Content-Length and until close", () => {
  test("a length body split at every byte: exactly its bytes, then the end (with extra bytes in its read noted)", () => {
    const input = "hello worldEXTRA";
    for (let cut = 0; cut <= input.length; cut++) {
      const r = recorder();
      feedSplit(new ResponseBody(11, r.out), input, [cut]);
      expect(r.body()).toBe("hello world");
      expect(r.calls.every((c) => c.kind === "data")).toBe(true);
      // Cut exactly at the body's end, the extra bytes come in a read of their own, after the
      // exchange: http1.ts drops a socket that sends bytes nobody asked for.
      expect(r.ends()).toEqual([cut !== 11]);
    }
  });

  test("until close: every byte is body, and no end until the connection closes", () => {
    const r = recorder();
    const body = new ResponseBody("close", r.out);
    body.feed(Buffer.from("3\r\nabc\r\n0\r\n\r\n", "latin1"));
    expect(body.untilClose).toBe(true);
    expect(r.body()).toBe("3\r\nabc\r\n0\r\n\r\n");
    expect(r.ends()).toEqual([]);
  });
});
