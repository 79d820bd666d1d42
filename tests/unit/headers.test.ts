import { expect, test } from "bun:test";
import { downstreamHeaders, HOP_BY_HOP, rewriteUpstreamHeaders } from "../../src/headers";

test("upstream headers: the client's Authorization, hop-by-hop and Connection-named go, the rest stays", () => {
  const client = new Headers([
    ["authorization", "Bearer client-own-key"], ["host", "127.0.0.1:1"], ["connection", "keep-alive, X-Drop-Me"],
    ["x-drop-me", "1"], ["keep-alive", "timeout=5"], ["proxy-connection", "keep-alive"], ["proxy-authorization", "Basic x"],
    ["te", "trailers"], ["trailer", "x"], ["transfer-encoding", "chunked"], ["upgrade", "h2c"], ["http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"], ["expect", "100-continue"],
    ["openai-beta", "responses=v1"], ["x-codex-turn", "7"], ["content-type", "application/json"], ["content-length", "42"],
    ["accept", "text/event-stream"], ["x-multi", "a"], ["x-multi", "b"],
  ]);
  const out = rewriteUpstreamHeaders(client);
  expect(out).toBe(client); // rewritten in place
  expect(out.has("authorization")).toBe(false); // the transport writes the key's own line
  for (const gone of [...HOP_BY_HOP, "host", "x-drop-me", "expect"]) expect(out.has(gone)).toBe(false);
  expect(out.get("openai-beta")).toBe("responses=v1");
  expect(out.get("x-codex-turn")).toBe("7");
  expect(out.get("content-length")).toBe("42");
  expect(out.get("x-multi")).toBe("a, b");
});

test("downstream headers keep everything but hop-by-hop", () => {
  const up = new Headers([["content-type", "text/event-stream"], ["content-encoding", "gzip"], ["connection", "close, x-hop"],
    ["x-hop", "1"], ["transfer-encoding", "chunked"], ["x-request-id", "req_1"], ["openai-processing-ms", "12"]]);
  up.append("set-cookie", "a=1");
  up.append("set-cookie", "b=2");
  const out = downstreamHeaders(up);
  expect(out.get("content-encoding")).toBe("gzip");
  expect(out.get("x-request-id")).toBe("req_1");
  expect(out.getSetCookie()).toEqual(["a=1", "b=2"]);
  for (const gone of ["connection", "x-hop", "transfer-encoding"]) expect(out.has(gone)).toBe(false);
});
