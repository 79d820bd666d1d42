// The listener's request parsing, byte by byte: every framing rule that decides where a request
// ends (request-head.ts, chunked.ts). A rule loosened here is a smuggling hole.
import { describe, expect, test } from "bun:test";
import { chunkFrame, ChunkedDecoder, ChunkError, LAST_CHUNK } from "../../src/http/chunked";
import { HeadError, parseRequestHead } from "../../src/http/request-head";

const parse = (text: string, max = 64 * 1024) => parseRequestHead(Buffer.from(text, "latin1"), max);
const status = (text: string, max?: number): number | string => {
  try {
    parse(text, max);
    return "parsed";
  } catch (err) {
    return (err as HeadError).status;
  }
};
const H = "Host: 127.0.0.1\r\n";

describe("request heads", () => {
  test("a POST with a length: target as sent, framing, keep-alive, where the body starts", () => {
    const text = `POST /v1/responses HTTP/1.1\r\n${H}Content-Length: 2\r\nX-A:  spaced value \t\r\n\r\n{}`;
    const { head, end } = parse(text)!;
    expect(head).toMatchObject({ method: "POST", target: "/v1/responses", minor: 1, framing: { kind: "length", length: 2 }, keepAlive: true, expectContinue: false });
    expect(head.headers.get("x-a")).toBe("spaced value");
    expect(text.slice(end)).toBe("{}");
  });

  test("incomplete heads wait; the target is never resolved or decoded", () => {
    expect(parse("POST /v1/responses HTTP/1.1\r\nHost: x")).toBeUndefined();
    expect(parse(`POST /v1/x/../responses?a=%2F HTTP/1.1\r\n${H}\r\n`)!.head.target).toBe("/v1/x/../responses?a=%2F");
    expect(parse(`POST http://127.0.0.1/v1/responses HTTP/1.1\r\n${H}\r\n`)!.head.target).toBe("http://127.0.0.1/v1/responses");
  });

  test("empty lines before the request line are skipped (RFC 9112 §2.2)", () => {
    expect(parse(`\r\n\r\nGET /shutdown HTTP/1.1\r\n${H}\r\n`)!.head.target).toBe("/shutdown");
  });

  test("keep-alive: HTTP/1.1 unless close; HTTP/1.0 only with keep-alive", () => {
    expect(parse(`GET / HTTP/1.1\r\n${H}Connection: Close\r\n\r\n`)!.head.keepAlive).toBe(false);
    expect(parse("GET / HTTP/1.0\r\n\r\n")!.head.keepAlive).toBe(false);
    expect(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")!.head.keepAlive).toBe(true);
  });

  test("Expect: 100-continue and chunked framing are recognised", () => {
    const { head } = parse(`POST / HTTP/1.1\r\n${H}Expect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n`)!;
    expect(head.expectContinue).toBe(true);
    expect(head.framing).toEqual({ kind: "chunked" });
  });

  test("repeated equal Content-Lengths are one; a zero length is no body", () => {
    expect(parse(`POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\nContent-Length: 5\r\n\r\n`)!.head.framing).toEqual({ kind: "length", length: 5 });
    expect(parse(`POST / HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`)!.head.framing).toEqual({ kind: "none" });
  });

  const refused: Array<[string, string, number | string]> = [
    ["Transfer-Encoding beside Content-Length", `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n`, 400],
    ["two different Content-Lengths", `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\n`, 400],
    ["a signed Content-Length", `POST / HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\n`, 400],
    ["a hex Content-Length", `POST / HTTP/1.1\r\n${H}Content-Length: 0x3\r\n\r\n`, 400],
    ["an absurd Content-Length", `POST / HTTP/1.1\r\n${H}Content-Length: 1234567890123456\r\n\r\n`, 400],
    ["chunked in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["a coding other than chunked", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n`, 501],
    ["chunked twice", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n`, 501],
    ["whitespace before the colon", `POST / HTTP/1.1\r\n${H}Content-Length : 3\r\n\r\n`, 400],
    ["obs-fold", `POST / HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`, 400],
    ["a bare LF inside the head", `POST / HTTP/1.1\r\n${H}X-A: a\nContent-Length: 3\r\n\r\n`, 400],
    ["a bare CR inside a value", `POST / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`, 400],
    ["a NUL in a value", `POST / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`, 400],
    ["a header without a name", `POST / HTTP/1.1\r\n${H}: x\r\n\r\n`, 400],
    ["HTTP/1.1 without Host", "POST / HTTP/1.1\r\n\r\n", 400],
    ["two Hosts", `POST / HTTP/1.1\r\n${H}${H}\r\n`, 400],
    ["HTTP/2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505],
    ["HTTP/1.2", `GET / HTTP/1.2\r\n${H}\r\n`, 505],
    ["two spaces in the request line", `GET  / HTTP/1.1\r\n${H}\r\n`, 400],
    ["a lowercase version", `GET / http/1.1\r\n${H}\r\n`, 400],
    ["a control byte in the target", `GET /a\x01b HTTP/1.1\r\n${H}\r\n`, 400],
  ];
  for (const [what, text, code] of refused) test(`refused: ${what} (${code})`, () => expect(status(text)).toBe(code));

  test("a refused head names its request line for the log, also after leading empty lines", () => {
    for (const text of [`POST /v1/responses HTTP/1.1\r\n\r\n`, `\r\n\r\nPOST /v1/responses HTTP/1.1\r\n\r\n`]) {
      try {
        parse(text);
        throw new Error("parsed");
      } catch (err) {
        expect((err as HeadError).line).toMatchObject({ method: "POST", target: "/v1/responses" });
      }
    }
  });

  test("a TLS handshake (or any binary) is refused at its first byte, without waiting for a blank line", () => {
    expect(status("\x16\x03\x01\x02\x00\x01\x00")).toBe(400);
  });

  test("a head over the limit is 431, whether or not its end has arrived", () => {
    expect(status(`GET / HTTP/1.1\r\n${H}X-Big: ${"a".repeat(2000)}`, 1024)).toBe(431);
    expect(status(`GET / HTTP/1.1\r\n${H}X-Big: ${"a".repeat(2000)}\r\n\r\n`, 1024)).toBe(431);
    expect(status(`GET / HTTP/1.1\r\n${H}X-Big: ${"a".repeat(900)}\r\n\r\n`, 1024)).toBe("parsed");
  });
});

describe("chunked bodies", () => {
  const decode = (parts: string[]) => {
    const d = new ChunkedDecoder();
    let body = "";
    let end: number | undefined;
    for (const part of parts) {
      const out = d.push(Buffer.from(part, "latin1"));
      body += out.data.map((c) => Buffer.from(c).toString("latin1")).join("");
      end = out.end;
    }
    return { body, end, done: d.done };
  };
  const fails = (text: string) => expect(() => decode([text])).toThrow(ChunkError);

  test("chunks, an extension, a trailer: the body, and where the next request starts", () => {
    const text = "5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\nPOST";
    expect(decode([text])).toEqual({ body: "hello world", end: text.length - 4, done: true });
  });

  test("split at every byte, the same body", () => {
    const text = "3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
    expect(decode([...text]).body).toBe("abc0123456789");
    expect(decode([...text]).done).toBe(true);
  });

  test("not done until the trailer section's blank line", () => {
    expect(decode(["3\r\nabc\r\n0\r\n"]).done).toBe(false);
    expect(decode(["3\r\nabc\r\n0\r\nX-A: 1\r\n"]).done).toBe(false);
  });

  test("malformed: a size that is not hex, a sign, spaces, data longer than its size, LF alone, a bad trailer", () => {
    fails("g\r\n");
    fails("+3\r\nabc\r\n0\r\n\r\n");
    fails(" 3\r\nabc\r\n0\r\n\r\n");
    fails("3 \r\nabc\r\n0\r\n\r\n");
    fails("3\r\nabcd\r\n0\r\n\r\n");
    fails("3\nabc\r\n0\r\n\r\n");
    fails("0\r\nno colon\r\n\r\n");
    fails(`${"1".repeat(13)}\r\n`);
  });

  test("a chunk-size line or trailer section without end is bounded", () => {
    fails(`3;${"x".repeat(5000)}`);
    fails(`0\r\n${"X-A: b\r\n".repeat(3000)}`);
  });
});

describe("chunk framing (what the proxy sends chunked)", () => {
  test("one chunk: lowercase hex size, CRLF, the data, CRLF; a copy of the data", () => {
    const data = Buffer.alloc(300, 0x61);
    const framed = chunkFrame(data);
    expect(framed.toString("latin1")).toBe(`12c\r\n${"a".repeat(300)}\r\n`);
    data.fill(0);
    expect(framed[5]).toBe(0x61);
    expect(chunkFrame(new Uint8Array(0))).toEqual(LAST_CHUNK); // why its callers skip empty data
  });

  test("frames and the last chunk decode back to the data, and end exactly there", () => {
    const d = new ChunkedDecoder();
    const wire = Buffer.concat([chunkFrame(Buffer.from("hello ")), chunkFrame(Buffer.from("world")), LAST_CHUNK, Buffer.from("NEXT")]);
    const { data, end } = d.push(wire);
    expect(Buffer.concat(data).toString()).toBe("hello world");
    expect(wire.subarray(end).toString()).toBe("NEXT");
  });
});
