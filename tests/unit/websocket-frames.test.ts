import { describe, expect, test } from "bun:test";
import { acceptFor, closePayload, encodeFrame, FrameError, FrameParser, isSendableCloseCode, OPCODE } from "../../src/websocket/frames";
import { clientHandshakeProblem } from "../../src/websocket/downstream";

/** A frame as a server sends it: unmasked. */
function serverFrame(opcode: number, payload: Uint8Array | string, fin = true, extra: { rsv?: number; mask?: boolean; length?: number } = {}): Uint8Array {
  const data = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const n = extra.length ?? data.byteLength;
  const head: number[] = [(fin ? 0x80 : 0) | (extra.rsv ?? 0) | opcode];
  const m = extra.mask ? 0x80 : 0;
  if (n < 126) head.push(m | n);
  else if (n < 65536) head.push(m | 126, n >> 8, n & 0xff);
  else {
    head.push(m | 127);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n));
    head.push(...b);
  }
  if (extra.mask) head.push(0, 0, 0, 0);
  return Buffer.concat([Uint8Array.from(head), data]);
}

/** Unmasks a frame we encoded: opcode, FIN and payload. */
function decodeClientFrame(frame: Uint8Array) {
  expect(frame[1]! & 0x80).toBe(0x80); // always masked
  let n = frame[1]! & 0x7f;
  let at = 2;
  if (n === 126) ((n = (frame[2]! << 8) | frame[3]!), (at = 4));
  else if (n === 127) ((n = Number(new DataView(frame.buffer, frame.byteOffset).getBigUint64(2))), (at = 10));
  const mask = frame.subarray(at, at + 4);
  const payload = frame.subarray(at + 4).map((b, i) => b ^ mask[i & 3]!);
  expect(payload.byteLength).toBe(n);
  return { fin: (frame[0]! & 0x80) !== 0, opcode: frame[0]! & 0x0f, payload };
}

describe("encodeFrame (client to server)", () => {
  for (const size of [0, 125, 126, 65535, 65536, 200_000]) {
    test(`${size} bytes: length encoded in the right form, masked, and unmasks to the payload`, () => {
      const payload = new Uint8Array(size).map((_, i) => (i * 7) & 0xff);
      const frame = encodeFrame(OPCODE.binary, payload);
      expect(frame.byteLength).toBe(payload.byteLength + 2 + (size < 126 ? 0 : size < 65536 ? 2 : 8) + 4);
      const d = decodeClientFrame(frame);
      expect([d.fin, d.opcode]).toEqual([true, OPCODE.binary]);
      expect(Buffer.from(d.payload).equals(Buffer.from(payload))).toBe(true);
    });
  }

  test("a fresh mask per frame", () => {
    const a = encodeFrame(OPCODE.text, new Uint8Array(4));
    const b = encodeFrame(OPCODE.text, new Uint8Array(4));
    expect(Buffer.from(a.subarray(2, 6)).equals(Buffer.from(b.subarray(2, 6)))).toBe(false);
  });
});

describe("FrameParser (server to client)", () => {
  test("messages split across chunks at every byte, and several in one chunk", () => {
    const bytes = Buffer.concat([serverFrame(OPCODE.text, "héllo"), serverFrame(OPCODE.binary, new Uint8Array(300).fill(1)), serverFrame(OPCODE.ping, "p")]);
    for (let cut = 1; cut < bytes.byteLength; cut += 7) {
      const p = new FrameParser(1 << 20);
      const got = [...p.push(bytes.subarray(0, cut)), ...p.push(bytes.subarray(cut))];
      expect(got.map((m) => m.kind)).toEqual(["text", "binary", "ping"]);
      expect(got[0]).toEqual({ kind: "text", data: "héllo" });
    }
  });

  test("a fragmented message is joined, with a control frame delivered between its fragments", () => {
    const p = new FrameParser(1 << 20);
    const got = p.push(Buffer.concat([serverFrame(OPCODE.text, "a", false), serverFrame(OPCODE.ping, ""), serverFrame(OPCODE.continuation, "b", false), serverFrame(OPCODE.continuation, "c")]));
    expect(got).toEqual([{ kind: "ping", data: new Uint8Array(0) }, { kind: "text", data: "abc" }]);
  });

  test("a UTF-8 character split between fragments is joined before it is decoded", () => {
    const euro = new TextEncoder().encode("€");
    const p = new FrameParser(100);
    expect(p.push(Buffer.concat([serverFrame(OPCODE.text, euro.subarray(0, 1), false), serverFrame(OPCODE.continuation, euro.subarray(1))]))).toEqual([{ kind: "text", data: "€" }]);
  });

  test("close frames: with and without a code, and the reason", () => {
    expect(new FrameParser(100).push(serverFrame(OPCODE.close, closePayload(4001, "done")))).toEqual([{ kind: "close", code: 4001, reason: "done" }]);
    expect(new FrameParser(100).push(serverFrame(OPCODE.close, ""))).toEqual([{ kind: "close", code: undefined, reason: "" }]);
  });

  const failures: Array<[string, Uint8Array, number, number?]> = [
    ["a masked frame", serverFrame(OPCODE.text, "x", true, { mask: true }), 1002],
    ["a reserved bit (no extension negotiated)", serverFrame(OPCODE.text, "x", true, { rsv: 0x40 }), 1002],
    ["an unknown data opcode", serverFrame(0x3, "x"), 1002],
    ["an unknown control opcode", serverFrame(0xb, "x"), 1002],
    ["a fragmented control frame", serverFrame(OPCODE.ping, "x", false), 1002],
    ["a control frame over 125 bytes", serverFrame(OPCODE.ping, new Uint8Array(126)), 1002],
    ["a continuation with nothing to continue", serverFrame(OPCODE.continuation, "x"), 1002],
    ["a new message inside a fragmented one", Buffer.concat([serverFrame(OPCODE.text, "a", false), serverFrame(OPCODE.text, "b")]), 1002],
    ["invalid UTF-8 in a text message", serverFrame(OPCODE.text, Uint8Array.from([0xff, 0xfe])), 1007],
    ["a close code that may not be sent (1006)", serverFrame(OPCODE.close, Uint8Array.from([0x03, 0xee])), 1002],
    ["a 1-byte close payload", serverFrame(OPCODE.close, Uint8Array.from([3])), 1002],
    ["a message over the limit", serverFrame(OPCODE.binary, new Uint8Array(101)), 1009, 100],
    ["fragments together over the limit", Buffer.concat([serverFrame(OPCODE.binary, new Uint8Array(60), false), serverFrame(OPCODE.continuation, new Uint8Array(60))]), 1009, 100],
  ];
  for (const [what, bytes, code, limit] of failures) {
    test(`${what}: fails the connection with ${code}`, () => {
      let err: unknown;
      try {
        new FrameParser(limit ?? 1 << 20).push(bytes);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FrameError);
      expect((err as FrameError).code).toBe(code as 1002);
    });
  }

  test("an announced length over the limit fails before its payload arrives (nothing is buffered for it)", () => {
    const head = serverFrame(OPCODE.binary, new Uint8Array(0), true, { length: 2 ** 40 }).subarray(0, 10);
    expect(() => new FrameParser(1 << 20).push(head)).toThrow(FrameError);
    const mid = serverFrame(OPCODE.binary, new Uint8Array(0), true, { length: 70_000 }).subarray(0, 10);
    expect(() => new FrameParser(65_536).push(mid)).toThrow("message too big");
  });
});

describe("the client's side (frames to and from a client)", () => {
  test("to a client: not masked, every length form", () => {
    for (const n of [0, 125, 126, 65535, 65536]) {
      const payload = new Uint8Array(n).fill(7);
      const frame = encodeFrame(OPCODE.binary, payload, null);
      expect(frame[1]! & 0x80).toBe(0);
      const parsed = new FrameParser(1 << 20).push(frame);
      expect(parsed).toEqual([{ kind: "binary", data: payload }]);
    }
  });

  test("from a client: masked frames are unmasked, split at every byte", () => {
    const frame = encodeFrame(OPCODE.text, new TextEncoder().encode("héllo, upstream"));
    const parser = new FrameParser(1 << 20, true);
    const out = [...frame].flatMap((b) => parser.push(new Uint8Array([b])));
    expect(out).toEqual([{ kind: "text", data: "héllo, upstream" }]);
  });

  test("from a client: an unmasked frame fails with 1002 (RFC 6455 §5.1)", () => {
    const parser = new FrameParser(1 << 20, true);
    expect(() => parser.push(encodeFrame(OPCODE.text, new TextEncoder().encode("x"), null))).toThrow(new FrameError(1002, "unmasked frame from the client"));
  });

  test("from a client: over the limit fails with 1009 before the payload arrives", () => {
    const frame = encodeFrame(OPCODE.binary, new Uint8Array(2000));
    expect(() => new FrameParser(1000, true).push(frame.subarray(0, 8))).toThrow(new FrameError(1009, "message too big"));
  });

  test("a client's opening handshake: what makes it one the proxy can complete", () => {
    const ok = { connection: "keep-alive, Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" };
    expect(clientHandshakeProblem(new Headers(ok))).toBeUndefined();
    expect(clientHandshakeProblem(new Headers({ ...ok, connection: "keep-alive" }))).toBe("no Connection: upgrade");
    expect(clientHandshakeProblem(new Headers({ ...ok, "sec-websocket-version": "8" }))).toBe("Sec-WebSocket-Version is not 13");
    expect(clientHandshakeProblem(new Headers({ ...ok, "sec-websocket-key": "short" }))).toBe("Sec-WebSocket-Key is not 16 bytes in base64");
  });
});

describe("handshake and close helpers", () => {
  test("Sec-WebSocket-Accept: RFC 6455's own example", () => {
    expect(acceptFor("dGhlIHNhbXBsZSBub25jZQ==")).toBe("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  });

  test("closePayload: no code for 1005, reason cut at 123 bytes and never inside a character", () => {
    expect(closePayload(1005, "x").byteLength).toBe(0);
    expect(closePayload(undefined).byteLength).toBe(0);
    expect(Array.from(closePayload(1000, "ok"))).toEqual([0x03, 0xe8, 0x6f, 0x6b]);
    const long = closePayload(4000, "é".repeat(100)); // 200 bytes of 2-byte characters
    expect(long.byteLength).toBe(2 + 122);
    expect(new TextDecoder("utf-8", { fatal: true }).decode(long.subarray(2))).toBe("é".repeat(61));
  });

  test("sendable close codes", () => {
    for (const c of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999]) expect(isSendableCloseCode(c)).toBe(true);
    for (const c of [999, 1004, 1005, 1006, 1015, 2999, 5000]) expect(isSendableCloseCode(c)).toBe(false);
  });
});
