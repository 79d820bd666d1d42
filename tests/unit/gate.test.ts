import { describe, expect, test } from "bun:test";
import { classify, isLocalHost, requestTarget } from "../../src/gate";

const h = (init: Record<string, string> = {}) => new Headers({ host: "127.0.0.1:8080", ...init });

describe("classify", () => {
  test("forwards exactly POST /v1/responses", () => {
    expect(classify("POST", "/v1/responses", h(), 8080, false)).toBe("forward");
  });
  for (const target of ["/v1/responses?", "/v1/responses?x=1", "/v1/responses#f", "/v1/responses/", "/V1/responses",
    "/v1/Responses", "/v1/%72esponses", "/v1/responses%2F", "//v1/responses", "/v1/responses;x", "/", "/v1", "/v1/chat/completions"]) {
    test(`refuses target ${target}`, () => expect(classify("POST", target, h(), 8080, true)).toBe("forbidden"));
  }
  for (const method of ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "post"]) {
    test(`refuses ${method} /v1/responses`, () => expect(classify(method, "/v1/responses", h(), 8080, true)).toBe("forbidden"));
  }
  test("shutdown only with the flag, only GET, exact target", () => {
    expect(classify("GET", "/shutdown", h(), 8080, true)).toBe("shutdown");
    expect(classify("GET", "/shutdown", h(), 8080, false)).toBe("forbidden");
    expect(classify("POST", "/shutdown", h(), 8080, true)).toBe("forbidden");
    expect(classify("GET", "/shutdown?", h(), 8080, true)).toBe("forbidden");
    expect(classify("GET", "/shutdown/", h(), 8080, true)).toBe("forbidden");
  });
  test("refuses WebSocket upgrades", () => {
    expect(classify("GET", "/v1/responses", h({ upgrade: "websocket", connection: "Upgrade" }), 8080, true)).toBe("forbidden");
    expect(classify("POST", "/v1/responses", h({ upgrade: "websocket" }), 8080, true)).toBe("forbidden");
  });
  test("refuses browser requests, shutdown included", () => {
    const browserish: Array<Record<string, string>> = [{ origin: "http://evil.example" }, { origin: "null" }, { "sec-fetch-site": "cross-site" },
      { "sec-fetch-mode": "no-cors" }, { host: "evil.example" }, { host: "evil.example:8080" }, { host: "127.0.0.1:9999" }];
    for (const extra of browserish) {
      expect(classify("POST", "/v1/responses", h(extra), 8080, true)).toBe("forbidden");
      expect(classify("GET", "/shutdown", h(extra), 8080, true)).toBe("forbidden");
    }
    const noHost = new Headers();
    expect(classify("POST", "/v1/responses", noHost, 8080, true)).toBe("forbidden");
  });
});

test("isLocalHost", () => {
  for (const ok of ["127.0.0.1", "127.0.0.1:8080", "localhost", "LOCALHOST:8080", "[::1]", "[::1]:8080"]) expect(isLocalHost(ok, 8080)).toBe(true);
  for (const bad of ["127.0.0.1:80", "localhost.evil.com", "127.0.0.2", "0.0.0.0", "", "127.0.0.1:8080/x"]) expect(isLocalHost(bad, 8080)).toBe(false);
});

test("requestTarget keeps what the client sent after the authority", () => {
  expect(requestTarget("http://127.0.0.1:8/v1/responses")).toBe("/v1/responses");
  expect(requestTarget("http://127.0.0.1:8/v1/responses?")).toBe("/v1/responses?");
  expect(requestTarget("http://127.0.0.1:8/v1/responses#x")).toBe("/v1/responses#x");
  expect(requestTarget("http://localhost/")).toBe("/");
  expect(requestTarget("http://localhost")).toBe("/");
});
