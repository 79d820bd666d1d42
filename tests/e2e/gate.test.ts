// The gate, over raw TCP where the exact request target matters: 403 with an empty body, nothing
// reaches the upstream, and the next good request is still served.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { goodRequest, httpRequest, raw, type FakeUpstream, type RunningProxy, startProxy, startUpstream, stopAll } from "../helpers";

let up: FakeUpstream;
let proxy: RunningProxy;
beforeAll(async () => {
  up = await startUpstream();
  proxy = await startProxy({ args: ["--upstream-url", up.url, "--http-shutdown"] });
});
afterAll(stopAll);

function expect403(res: { status: number | undefined; text: string }) {
  expect(res.status).toBe(403);
  expect(res.text).toMatch(/content-length: 0\r\n/i);
  expect(res.text.endsWith("\r\n\r\n")).toBe(true); // empty body
}

const refusedTargets = [
  "/v1/responses?", "/v1/responses?stream=true", "/v1/responses?#", "/v1/responses#frag", "/v1/responses/", "/V1/responses",
  "/v1/Responses", "/v1/%72esponses", "/v1%2Fresponses", "/v1/responses%00", "//v1/responses", "/v1/responses/compact",
  "/v1/chat/completions", "/v1/models", "/", "/shutdown?", "/shutdown/",
];

describe("refused requests never reach the upstream", () => {
  for (const target of refusedTargets) {
    test(`POST ${target}`, async () => {
      const before = up.hits();
      expect403(await raw(proxy.port, httpRequest("POST", target, { "Content-Type": "application/json" }, "{}")));
      expect(up.hits()).toBe(before);
    });
  }
  for (const method of ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT_", "PROPFIND"]) {
    test(`${method} /v1/responses`, async () => {
      const before = up.hits();
      const res = await raw(proxy.port, httpRequest(method, "/v1/responses"));
      if (method === "CONNECT_") expect([400, 403, undefined]).toContain(res.status);
      else expect403(res);
      expect(up.hits()).toBe(before);
    });
  }
  test("HEAD /v1/responses", async () => {
    const res = await raw(proxy.port, httpRequest("HEAD", "/v1/responses"));
    expect(res.status).toBe(403);
  });

  test("a WebSocket upgrade attempt gets its 403 at once, not a hang", async () => {
    const before = up.hits();
    const res = await raw(
      proxy.port,
      httpRequest("GET", "/v1/responses", {
        Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      }),
      3000,
      (text) => text.includes("\r\n\r\n"),
    );
    expect403(res);
    expect(res.ms).toBeLessThan(1000);
    expect(up.hits()).toBe(before);
    // And with the WebSocket client a user would run:
    const started = Date.now();
    const outcome = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/v1/responses`);
      ws.onopen = () => resolve("open");
      ws.onerror = () => resolve("error");
      ws.onclose = () => resolve("closed");
    });
    expect(outcome).not.toBe("open");
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test("browser signs are refused, /shutdown included: Origin, Sec-Fetch-Site/Dest/User, a Mozilla/ User-Agent, a foreign Host", async () => {
    const signs: Array<Record<string, string>> = [
      { Origin: "http://evil.example" },
      { "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty" },
      { "Sec-Fetch-Dest": "image" },
      { "Sec-Fetch-User": "?1" },
      { "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.6 Safari/605.1.15" },
      { Host: "rebound.evil.example" },
    ];
    const before = up.hits();
    for (const headers of signs) {
      expect403(await raw(proxy.port, httpRequest("POST", "/v1/responses", { "Content-Type": "application/json", ...headers }, "{}")));
      expect403(await raw(proxy.port, httpRequest("GET", "/shutdown", headers)));
    }
    expect(up.hits()).toBe(before);
  });

  test("Node's fetch sends sec-fetch-mode: cors alone: it is a program, and is served", async () => {
    const before = up.hits();
    const headers = { "Content-Type": "application/json", "sec-fetch-mode": "cors", "User-Agent": "node", "accept-language": "*" };
    const res = await raw(proxy.port, httpRequest("POST", "/v1/responses", headers, "{}"));
    expect(res.status).toBe(200);
    expect(up.hits()).toBe(before + 1);
  });

  test("an h2c upgrade offer on POST /v1/responses is ignored: answered over HTTP/1.1, forwarded without Upgrade or HTTP2-Settings", async () => {
    const before = up.hits();
    const offer = { Connection: "Upgrade, HTTP2-Settings", Upgrade: "h2c", "HTTP2-Settings": "AAMAAABkAAQCAAAAAAIAAAAA", "Content-Type": "application/json" };
    const res = await raw(proxy.port, httpRequest("POST", "/v1/responses", offer, "{}"));
    expect(res.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(res.text).not.toMatch(/\r\nupgrade:/i);
    expect(up.hits()).toBe(before + 1);
    const seen = up.requests.at(-1)!.headers;
    for (const name of ["upgrade", "http2-settings", "connection"]) expect(seen.has(name)).toBe(false);
    // Any other upgrade on POST is still refused.
    expect403(await raw(proxy.port, httpRequest("POST", "/v1/responses", { ...offer, Upgrade: "websocket" }, "{}")));
    expect(up.hits()).toBe(before + 1);
  });

  test("targets are compared as sent: dot segments, absolute form and percent-encoding are refused", async () => {
    const before = up.hits();
    for (const target of ["/v1/x/../responses", "/v1/./responses", `http://127.0.0.1:${proxy.port}/v1/responses`, "/v1/respons%65s", "*"]) {
      expect403(await raw(proxy.port, httpRequest("POST", target, { "Content-Type": "application/json" }, "{}")));
    }
    expect(up.hits()).toBe(before);
  });

  test("the proxy still serves a good request after all of that", async () => {
    expect((await goodRequest(proxy)).status).toBe(200);
  });
});
