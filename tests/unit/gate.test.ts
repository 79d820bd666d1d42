import { describe, expect, test } from "bun:test";
import { browserSign, classify, isH2cOffer, isLocalHost } from "../../src/gate";

const h = (init: Record<string, string> = {}) => new Headers({ host: "127.0.0.1:8080", ...init });

describe("classify", () => {
  test("forwards exactly POST /v1/responses", () => {
    expect(classify("POST", "/v1/responses", h(), 8080, false)).toBe("forward");
  });
  for (const target of ["/v1/responses?", "/v1/responses?x=1", "/v1/responses#f", "/v1/responses/", "/V1/responses",
    "/v1/Responses", "/v1/%72esponses", "/v1/responses%2F", "//v1/responses", "/v1/responses;x", "/", "/v1", "/v1/chat/completions"]) {
    test(`refuses target ${target}`, () => expect(classify("POST", target, h(), 8080, true)).toBe(/^\/(v1\/responses|shutdown)[?#]/.test(target) ? "query" : "path"));
  }
  for (const method of ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "post"]) {
    test(`refuses ${method} /v1/responses`, () => expect(classify(method, "/v1/responses", h(), 8080, true)).toBe("method"));
  }
  test("shutdown only with the flag, only GET, exact target", () => {
    expect(classify("GET", "/shutdown", h(), 8080, true)).toBe("shutdown");
    expect(classify("GET", "/shutdown", h(), 8080, false)).toBe("shutdown-disabled");
    expect(classify("POST", "/shutdown", h(), 8080, true)).toBe("method");
    expect(classify("GET", "/shutdown?", h(), 8080, true)).toBe("query");
    expect(classify("GET", "/shutdown/", h(), 8080, true)).toBe("path");
  });
  test("refuses WebSocket upgrades", () => {
    expect(classify("GET", "/v1/responses", h({ upgrade: "websocket", connection: "Upgrade" }), 8080, true)).toBe("upgrade");
    expect(classify("POST", "/v1/responses", h({ upgrade: "websocket" }), 8080, true)).toBe("upgrade");
    expect(classify("POST", "/v1/responses", h({ upgrade: "h2c, websocket" }), 8080, true)).toBe("upgrade");
    expect(classify("POST", "/v1/responses", h({ upgrade: "" }), 8080, true)).toBe("upgrade");
  });
  test("with --websocket: a GET WebSocket handshake on /v1/responses is relayed; nothing else changes", () => {
    const ws = { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" };
    expect(classify("GET", "/v1/responses", h(ws), 8080, false, true)).toBe("websocket");
    expect(classify("GET", "/v1/responses", h({ ...ws, upgrade: "WebSocket" }), 8080, false, true)).toBe("websocket");
    expect(classify("GET", "/v1/responses", h(ws), 8080, false, false)).toBe("upgrade"); // without the flag
    expect(classify("POST", "/v1/responses", h(ws), 8080, false, true)).toBe("upgrade"); // a WebSocket opens with GET
    expect(classify("GET", "/v1/responses?x=1", h(ws), 8080, false, true)).toBe("query");
    expect(classify("GET", "/v1/other", h(ws), 8080, false, true)).toBe("path");
    expect(classify("GET", "/v1/responses", h({ ...ws, upgrade: "h2c" }), 8080, false, true)).toBe("method");
    // A page's WebSocket always carries Origin: refused first, with or without the flag.
    expect(classify("GET", "/v1/responses", h({ ...ws, origin: "http://127.0.0.1:8080" }), 8080, false, true)).toBe("browser:origin");
    expect(classify("GET", "/v1/responses", h({ ...ws, host: "evil.example" }), 8080, false, true)).toBe("host");
  });

  test("ignores an h2c upgrade offer on an allowed request (curl --http2, Java's HttpClient)", () => {
    const offer = { connection: "Upgrade, HTTP2-Settings", upgrade: "h2c", "http2-settings": "AAMAAABkAAQCAAAAAAIAAAAA" };
    expect(classify("POST", "/v1/responses", h(offer), 8080, false)).toBe("forward");
    expect(classify("POST", "/v1/responses", h({ upgrade: "H2C" }), 8080, false)).toBe("forward");
    expect(classify("GET", "/v1/responses", h(offer), 8080, true)).toBe("method"); // still only POST
    expect(classify("GET", "/shutdown", h(offer), 8080, true)).toBe("shutdown");
    expect(isH2cOffer("h2c")).toBe(true);
    expect(isH2cOffer("websocket")).toBe(false);
    expect(isH2cOffer("h2c, h2")).toBe(false);
  });
  test("refuses browser requests, shutdown included", () => {
    const browserish: Array<[Record<string, string>, string]> = [
      [{ origin: "http://evil.example" }, "origin"],
      [{ origin: "null" }, "origin"],
      [{ "sec-fetch-site": "cross-site" }, "sec-fetch-site"],
      [{ "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors" }, "sec-fetch-site"],
      [{ "sec-fetch-dest": "image" }, "sec-fetch-dest"],
      [{ "sec-fetch-user": "?1" }, "sec-fetch-user"],
      // Safari before 16.4 has no Fetch Metadata: its <img src=/shutdown> is known by its User-Agent.
      [{ "user-agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.6 Safari/605.1.15", accept: "image/webp,image/png,image/svg+xml,image/*;q=0.8" }, "user-agent"],
      [{ host: "evil.example" }, "host"],
      [{ host: "evil.example:8080" }, "host"],
      [{ host: "127.0.0.1:9999" }, "host"],
    ];
    for (const [extra, sign] of browserish) {
      expect(browserSign(h(extra), 8080)).toBe(sign as never);
      const reason = sign === "host" ? "host" : `browser:${sign}`;
      expect(classify("POST", "/v1/responses", h(extra), 8080, true)).toBe(reason as never);
      expect(classify("GET", "/shutdown", h(extra), 8080, true)).toBe(reason as never);
    }
    const noHost = new Headers();
    expect(browserSign(noHost, 8080)).toBe("host");
    expect(classify("POST", "/v1/responses", noHost, 8080, true)).toBe("host");
  });
  test("serves what command-line runtimes send, Node's lone sec-fetch-mode included", () => {
    const programs: Array<Record<string, string>> = [
      { "sec-fetch-mode": "cors", "user-agent": "node", accept: "*/*", "accept-language": "*" }, // Node's fetch (undici)
      { "user-agent": "OpenAI/JS 6.49.0", "sec-fetch-mode": "cors", "x-stainless-runtime": "node" }, // openai SDK on Node
      { "user-agent": "Bun/1.4.5" },
      { "user-agent": "Deno/2.1.4" },
      { "user-agent": "python-httpx/0.26.0" },
      { "user-agent": "python-requests/2.28.1" },
      { "user-agent": "Go-http-client/1.1" },
      { "user-agent": "Java-http-client/17.0.15" },
      { "user-agent": "curl/7.88.1" },
      {},
    ];
    for (const extra of programs) {
      expect(browserSign(h(extra), 8080)).toBeUndefined();
      expect(classify("POST", "/v1/responses", h(extra), 8080, true)).toBe("forward");
      expect(classify("GET", "/shutdown", h(extra), 8080, true)).toBe("shutdown");
    }
  });
});

test("isLocalHost", () => {
  for (const ok of ["127.0.0.1", "127.0.0.1:8080", "localhost", "LOCALHOST:8080", "[::1]", "[::1]:8080"]) expect(isLocalHost(ok, 8080)).toBe(true);
  for (const bad of ["127.0.0.1:80", "localhost.evil.com", "127.0.0.2", "0.0.0.0", "", "127.0.0.1:8080/x"]) expect(isLocalHost(bad, 8080)).toBe(false);
});
