import { expect, test } from "bun:test";
import { Logger, printableRequestId, printableTarget } from "../../src/log";

test("log target: path only, query hidden, control bytes escaped, bounded", () => {
  expect(printableTarget("/v1/responses")).toBe("/v1/responses");
  expect(printableTarget("/v1/responses?api-key=SECRET")).toBe("/v1/responses?…");
  expect(printableTarget("/x#frag")).toBe("/x#…");
  expect(printableTarget("/a\x1b[31mb")).toBe("/a\\x1b[31mb");
  expect(printableTarget(`/${"a".repeat(500)}`).length).toBeLessThan(130);
});

function lines(format: "text" | "json", quiet = false) {
  const out: string[] = [];
  return { log: new Logger(format, quiet, (l) => out.push(l)), out };
}

test("request line, text: status, time, bytes, then outcome, reason, cause and request id when there are", () => {
  const { log, out } = lines("text");
  log.request({ method: "POST", target: "/v1/responses", status: 200, ms: 12.345, bytesIn: 300, bytesOut: 1024 });
  log.request({ method: "POST", target: "/v1/responses", status: 200, ms: 1, bytesIn: 0, bytesOut: 5, outcome: "client_closed", requestId: "req_1" });
  log.request({ method: "GET", target: "/x?secret", status: 403, ms: 0.1, bytesIn: 0, bytesOut: 0, reason: "path" });
  log.request({ method: "POST", target: "/v1/responses", status: 502, ms: 3, bytesIn: 2, bytesOut: 0, outcome: "proxy_error", reason: "upstream_unreachable", cause: "ECONNREFUSED" });
  expect(out[0]).toMatch(/^\S+Z POST \/v1\/responses 200 12\.3ms in=300B out=1024B$/);
  expect(out[1]).toEndWith(" out=5B client_closed request_id=req_1");
  expect(out[2]).toEndWith(" GET /x?… 403 0.1ms in=0B out=0B reason=path");
  expect(out[3]).toEndWith(" 502 3.0ms in=2B out=0B proxy_error reason=upstream_unreachable cause=ECONNREFUSED");
});

test("request line, json: the same fields under stable names", () => {
  const { log, out } = lines("json");
  log.request({ method: "POST", target: "/v1/responses?k=v", status: 502, ms: 3.04, bytesIn: 2, bytesOut: 0, outcome: "proxy_error", reason: "upstream_unreachable", cause: "ECONNREFUSED", requestId: "req_9" });
  const line = JSON.parse(out[0]!);
  expect(line).toEqual({
    time: expect.stringMatching(/Z$/), event: "request", method: "POST", path: "/v1/responses?…", status: 502, ms: 3,
    bytes_in: 2, bytes_out: 0, outcome: "proxy_error", reason: "upstream_unreachable", cause: "ECONNREFUSED", request_id: "req_9",
  });
  log.start({ version: "1.2.3", listen: "127.0.0.1:1", upstream: "https://api.openai.com", credential: "key", hardening: ["nodump"] });
  log.stop({ cause: "SIGTERM", cut: 2 });
  log.warning("w");
  log.info("i");
  log.error("e", 1);
  expect(out.slice(1).map((l) => JSON.parse(l).event)).toEqual(["start", "stop", "warning", "info", "error"]);
  expect(JSON.parse(out[5]!)).toMatchObject({ message: "e", exit_code: 1 });
});

test("--quiet drops successful requests only", () => {
  const { log, out } = lines("text", true);
  log.request({ method: "POST", target: "/v1/responses", status: 200, ms: 1, bytesIn: 0, bytesOut: 0 });
  log.request({ method: "POST", target: "/v1/responses", status: 200, ms: 1, bytesIn: 0, bytesOut: 0, outcome: "upstream_error" });
  log.request({ method: "POST", target: "/v1/responses", status: 403, ms: 1, bytesIn: 0, bytesOut: 0, reason: "browser:origin" });
  log.request({ method: "POST", target: "/v1/responses", status: 429, ms: 1, bytesIn: 0, bytesOut: 0 });
  expect(out).toHaveLength(3);
});

test("start and stop lines, text", () => {
  const { log, out } = lines("text");
  log.start({ version: "1.2.3", listen: "127.0.0.1:8080", upstream: "https://api.openai.com", credential: "github-oidc", hardening: ["nodump", "nocore"] });
  log.stop({ cause: "/shutdown", cut: 1 });
  expect(out).toEqual([
    "responses-api-proxy 1.2.3 listening on 127.0.0.1:8080 upstream=https://api.openai.com credential=github-oidc hardening=nodump,nocore",
    "responses-api-proxy stopped (/shutdown): 1 exchange cut",
  ]);
});

test("an upstream request id is logged only when it is a plain token", () => {
  expect(printableRequestId("req_0123abc")).toBe("req_0123abc");
  expect(printableRequestId(null)).toBeUndefined();
  expect(printableRequestId("a b")).toBeUndefined();
  expect(printableRequestId("x".repeat(129))).toBeUndefined();
  expect(printableRequestId("\x1b[31m")).toBeUndefined();
});

