// The upstream response head parser (src/upstream/response-head.ts): pure, no sockets. The HTTP/1.1
// client's socket tests (http1.test.ts) and the WebSocket tests run it again through real bytes.
import { describe, expect, test } from "bun:test";
import { MAX_RESPONSE_HEAD, parseResponseHead, type ResponseHead } from "../../src/upstream/response-head";
import { UpstreamError } from "../../src/upstream/upstream-error";

const parse = (text: string, upgrade = false) => parseResponseHead(Buffer.from(text, "latin1"), 0, upgrade);
const head = (text: string, upgrade = false) => {
  const h = parse(text, upgrade);
  if ("from" in h) throw new Error(`incomplete head: ${JSON.stringify(text)}`);
  return h as ResponseHead;
};
/** The UpstreamError code a head fails with. */
const failure = (text: string | Buffer, upgrade = false) => {
  try {
    parseResponseHead(typeof text === "string" ? Buffer.from(text, "latin1") : text, 0, upgrade);
  } catch (err) {
    expect(err).toBeInstanceOf(UpstreamError);
    return `${(err as UpstreamError).code}: ${(err as UpstreamError).message}`;
  }
  throw new Error(`accepted: ${JSON.stringify(String(text).slice(0, 80))}`);
};

describe("what the client gets", () => {
  test("status, reason and headers (names lower-cased, values trimmed, repeats kept); the body starts after the blank line", () => {
    const text = "HTTP/1.1 429 Too Many Requests\r\nRetry-After:  2 \r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok";
    const h = head(text);
    expect([h.status, h.statusText]).toEqual([429, "Too Many Requests"]);
    expect(h.headers.get("retry-after")).toBe("2");
    expect(h.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
    expect(h.end).toBe(text.length - 2);
    expect(head("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").statusText).toBe("");
  });

  test("interim heads (100, 103) are skipped: the final head is the answer, wherever it starts", () => {
    const text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    const h = head(text);
    expect(h.status).toBe(200);
    expect(h.headers.has("link")).toBe(false);
    expect(h.end).toBe(text.length);
  });

  test("an incomplete head says where it starts (after the interim heads already read)", () => {
    expect(parse("HTTP/1.1 200 OK\r\nContent-Le")).toEqual({ from: 0 });
    expect(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")).toEqual({ from: 25 });
    expect(parseResponseHead(Buffer.from("xxHTTP/1.1 200 OK\r\n"), 2)).toEqual({ from: 2 });
  });
});

describe("framing and reuse", () => {
  const cases: [string, ResponseHead["framing"], boolean][] = [
    ["HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 11, true],
    ["HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Length: 11\r\n\r\n", 11, true],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "chunked", true],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "chunked", true],
    // Both: chunked wins, and the connection is never trusted again (RFC 9112 §6.3).
    ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "chunked", false],
    // A Transfer-Encoding that does not end in chunked: the body ends with the connection.
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "close", false],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "close", false],
    ["HTTP/1.1 200 OK\r\n\r\n", "close", false],
    ["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "none", true],
    ["HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", "none", true],
    ["HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", "none", true],
    ["HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n", 3, false],
    ["HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, Close\r\n\r\n", 3, false],
    ["HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: closed\r\n\r\n", 3, true],
    ["HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", 3, false],
  ];
  for (const [text, framing, reusable] of cases) {
    test(`${JSON.stringify(text.replace(/\r\n/g, " | "))} -> ${framing}, ${reusable ? "reusable" : "never reused"}`, () => {
      const h = head(text);
      expect(h.framing).toBe(framing);
      expect(h.reusable).toBe(reusable);
    });
  }

  test("101 is an answer only to a request that asked to upgrade: no body, never reused", () => {
    const text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    expect(failure(text)).toBe("UPSTREAM_BAD_RESPONSE: upstream switched protocols unasked");
    const h = head(text, true);
    expect([h.status, h.framing, h.reusable, h.end]).toEqual([101, "none", false, text.length]);
    expect(h.headers.get("upgrade")).toBe("websocket");
  });
});

describe("refused heads", () => {
  const refused: [string, string][] = [
    ["HTTP/2 200\r\n\r\n", "upstream did not answer with HTTP/1.x"],
    ["HTTP/1.1 20 OK\r\n\r\n", "upstream did not answer with HTTP/1.x"],
    ["HTTP/1.1 099 OK\r\n\r\n", "upstream did not answer with HTTP/1.x"],
    ["HTTP/1.1  200 OK\r\n\r\n", "upstream did not answer with HTTP/1.x"],
    ["http/1.1 200 OK\r\n\r\n", "upstream did not answer with HTTP/1.x"],
    ["HTTP/1.1 600 Nope\r\n\r\n", "upstream answered with an invalid status"],
    ["HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed upstream header"],
    ["HTTP/1.1 200 OK\r\n: no name\r\n\r\n", "malformed upstream header"],
    ["HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n", "malformed upstream header"],
    ["HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", "malformed upstream header"],
    // obs-fold: a line that continues the one before is how a header hides another.
    ["HTTP/1.1 200 OK\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n", "malformed upstream header"],
    ["HTTP/1.1 200 OK\r\nX-A: \x1b[31mred\r\n\r\n", "control bytes in an upstream header value"],
    ["HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", "control bytes in an upstream header value"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n", "malformed upstream Content-Length"],
    ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "malformed upstream Content-Length"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "malformed upstream Content-Length"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "malformed upstream Content-Length"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456\r\n\r\n", "malformed upstream Content-Length"],
  ];
  for (const [text, why] of refused) {
    test(`${JSON.stringify(text.replace(/\r\n/g, " | "))}: ${why}`, () => {
      expect(failure(text)).toBe(`UPSTREAM_BAD_RESPONSE: ${why}`);
      expect(failure(text, true)).toBe(`UPSTREAM_BAD_RESPONSE: ${why}`); // the WebSocket handshake reads it the same way
    });
  }

  test("a tab in a value is allowed; the value is trimmed of it", () => {
    expect(head("HTTP/1.1 200 OK\r\nX-A:\ta\tb\t\r\nContent-Length: 0\r\n\r\n").headers.get("x-a")).toBe("a\tb");
  });

  test("the size limit is exact, and holds whether the head's end has arrived or not", () => {
    const line = "HTTP/1.1 200 OK\r\n";
    const end = "Content-Length: 0\r\n\r\n";
    const filler = (n: number) => `X-F: ${"a".repeat(n - 7)}\r\n`; // n bytes, its CRLF included
    const exact = line + filler(MAX_RESPONSE_HEAD - line.length - end.length) + end;
    expect(exact.length).toBe(MAX_RESPONSE_HEAD);
    expect(head(exact).end).toBe(MAX_RESPONSE_HEAD);
    const over = line + filler(MAX_RESPONSE_HEAD - line.length - end.length + 1) + end;
    expect(failure(over)).toBe("UPSTREAM_HEAD_TOO_LARGE: upstream response head is too large");
    // Not yet complete, and already over: refused now, not when its end comes.
    expect(failure(Buffer.from(over.slice(0, MAX_RESPONSE_HEAD + 1), "latin1"))).toBe("UPSTREAM_HEAD_TOO_LARGE: upstream response head is too large");
    expect(parse(over.slice(0, MAX_RESPONSE_HEAD))).toEqual({ from: 0 });
  });
});
