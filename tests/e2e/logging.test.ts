// What an operator reads: every refusal and failure names its reason (and the cause behind an
// upstream failure), the upstream's x-request-id is logged and dumped, start-up and shutdown
// lines say what is running and what stopping cut, --log-format json, --quiet, key intake notices.
import { afterEach, describe, expect, test } from "bun:test";
import { closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, readSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../../src/cli";
import {
  BIN, KEY, dumpFiles, gappedStream, goodRequest, httpRequest, IS_ROOT, lacksTool, needs, onCleanup, raw, selfSignedUpstream, spawnProxy, startProxy, startUpstream, stopAll, waitFor,
  type RunningProxy,
} from "../helpers";

afterEach(stopAll);

/** The log lines after the start-up line. */
const requestLines = (proxy: RunningProxy) => proxy.stderr().trimEnd().split("\n").filter((l) => / (GET|POST|PUT|\?) \//.test(l));

async function lastLine(proxy: RunningProxy, count: number): Promise<string> {
  await waitFor(() => requestLines(proxy).length >= count, 5000, `${count} request lines`);
  return requestLines(proxy)[count - 1]!;
}

describe("every refusal names its rule", () => {
  const cases: Array<[string, string, string]> = [
    ["another path", httpRequest("POST", "/v1/chat/completions", {}, "{}"), "path"],
    ["a query string", httpRequest("POST", "/v1/responses?x=1", {}, "{}"), "query"],
    ["another method", httpRequest("GET", "/v1/responses"), "method"],
    ["a WebSocket upgrade", httpRequest("GET", "/v1/responses", { Connection: "Upgrade", Upgrade: "websocket" }), "upgrade"],
    ["/shutdown without --http-shutdown", httpRequest("GET", "/shutdown"), "shutdown-disabled"],
    ["an Origin header", httpRequest("POST", "/v1/responses", { Origin: "http://evil.example" }, "{}"), "browser:origin"],
    ["Fetch Metadata", httpRequest("POST", "/v1/responses", { "Sec-Fetch-Site": "cross-site" }, "{}"), "browser:sec-fetch-site"],
    ["a browser User-Agent", httpRequest("GET", "/shutdown", { "User-Agent": "Mozilla/5.0 (secret-ua)" }), "browser:user-agent"],
    ["a foreign Host", httpRequest("POST", "/v1/responses", { Host: "rebound.evil.example" }, "{}"), "host"],
  ];
  test("path, query, method, upgrade, shutdown-disabled, browser:<header>, host — never a header value", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--quiet"] }); // refusals are logged under --quiet too
    for (const [i, [name, request, reason]] of cases.entries()) {
      expect((await raw(proxy.port, request)).status, name).toBe(403);
      expect(await lastLine(proxy, i + 1), name).toMatch(new RegExp(` 403 [\\d.]+ms in=0B out=0B reason=${reason}$`));
    }
    for (const value of ["evil.example", "secret-ua", "cross-site", "x=1"]) expect(proxy.stderr()).not.toContain(value);
    expect(up.hits()).toBe(0);
  });
});

describe("every failure names its reason and cause", () => {
  test("unreachable upstream: ECONNREFUSED, and ENOTFOUND for a name that does not resolve", async () => {
    const refused = await startProxy({ args: ["--upstream-url", "http://127.0.0.1:1/v1/responses", "--quiet"] });
    expect((await goodRequest(refused)).status).toBe(502);
    expect(await lastLine(refused, 1)).toMatch(/ 502 [\d.]+ms in=\d+B out=0B proxy_error reason=upstream_unreachable cause=ECONNREFUSED$/);
    const unknown = await startProxy({ args: ["--upstream-url", "https://nonexistent.invalid/v1/responses"] });
    expect((await goodRequest(unknown)).status).toBe(502);
    expect(await lastLine(unknown, 1)).toEndWith(" reason=upstream_unreachable cause=ENOTFOUND");
  });

  needs(lacksTool("openssl", "openssl"))("a TLS failure names the TLS error", async () => {
    const tls = selfSignedUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", tls.url] });
    expect((await goodRequest(proxy)).status).toBe(502);
    expect(await lastLine(proxy, 1)).toMatch(/ reason=upstream_unreachable cause=\w*SELF_SIGNED\w*$/);
  });

  test("no response head in time: upstream_timeout; a malformed answer: its protocol error", async () => {
    const silent = await startUpstream(async () => {
      await Bun.sleep(3000);
      return new Response("{}");
    });
    const slow = await startProxy({ args: ["--upstream-url", silent.url, "--upstream-timeout", "1"] });
    expect((await goodRequest(slow)).status).toBe(504);
    expect(await lastLine(slow, 1)).toMatch(/ 504 [\d.]+ms in=\d+B out=0B proxy_error reason=upstream_timeout$/);

    const server = net.createServer((s) => {
      s.on("error", () => {});
      s.once("data", () => s.end("SSH-2.0-OpenSSH_9.2\r\n\r\n"));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    onCleanup(() => new Promise((r) => server.close(r)));
    const garbled = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1/responses`] });
    expect((await goodRequest(garbled)).status).toBe(502);
    expect(await lastLine(garbled, 1)).toEndWith(" reason=upstream_unreachable cause=UPSTREAM_BAD_RESPONSE");
  });

  test("an upstream that fails mid-stream: upstream_error with its cause", async () => {
    const server = net.createServer((s) => {
      s.on("error", () => {});
      s.once("data", () => {
        s.write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 1000\r\n\r\ndata: one\n\n");
        setTimeout(() => s.destroy(), 100);
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    onCleanup(() => new Promise((r) => server.close(r)));
    const proxy = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1/responses`, "--quiet"] });
    const res = await goodRequest(proxy);
    await res.text().catch(() => "");
    expect(await lastLine(proxy, 1)).toMatch(/ 200 [\d.]+ms in=\d+B out=11B upstream_error cause=UPSTREAM_CLOSED$/);
  });

  test("the proxy's own limits: request_too_large, too_many_requests, request_header_too_large", async () => {
    const up = await startUpstream(() => gappedStream(["data: a\n\n", "data: b\n\n"], 500));
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--max-body-bytes", "10", "--max-concurrent", "1", "--max-header-bytes", "1024"] });
    const big = await fetch(`${proxy.base}/v1/responses`, { method: "POST", body: "x".repeat(100) });
    expect(big.status).toBe(413);
    expect(await lastLine(proxy, 1)).toEndWith(" proxy_error reason=request_too_large");
    const streaming = fetch(`${proxy.base}/v1/responses`, { method: "POST", body: "{}" });
    await waitFor(() => up.hits() >= 1, 5000, "the stream to start");
    expect((await fetch(`${proxy.base}/v1/responses`, { method: "POST", body: "{}" })).status).toBe(503);
    await (await streaming).text();
    expect(proxy.stderr()).toMatch(/ 503 [\d.]+ms in=0B out=0B reason=too_many_requests\n/);
    expect((await raw(proxy.port, httpRequest("POST", "/v1/responses", { "X-Big": "x".repeat(2000) }, "{}"))).status).toBe(431);
    await waitFor(() => proxy.stderr().includes(" 431 "), 5000, "the 431 line");
    expect(proxy.stderr()).toMatch(/ 431 [\d.]+ms in=0B out=0B reason=request_header_too_large\n/);
  });

  test("a request the listener cannot read: a 400 and a line saying why, then the next request is served", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const bad = "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}";
    const res = await raw(proxy.port, bad);
    expect(res.status).toBe(400);
    expect(res.closed).toBe(true);
    expect(res.text).toContain('"code":"bad_request"');
    expect(await lastLine(proxy, 1)).toMatch(/ POST \/v1\/responses 400 0\.0ms in=0B out=0B reason=bad_request cause=both_Transfer_Encoding_and_Content_Length$/);
    expect((await raw(proxy.port, "GET /\r\n")).status).toBe(400); // HTTP/0.9: no request line to name
    await waitFor(() => proxy.stderr().includes(" ? - 400 "), 5000, "the line of a request without a request line");
    expect(proxy.stderr()).toMatch(/ \? - 400 0\.0ms in=0B out=0B reason=bad_request cause=malformed_request_line\n/);
    expect(up.hits()).toBe(0);
    expect((await goodRequest(proxy)).status).toBe(200);
  });
});

test("the upstream's x-request-id is in the request's log line and its dump", async () => {
  const up = await startUpstream(() => Response.json({ id: "resp_1" }, { headers: { "x-request-id": "req_7f3a9c" } }));
  const dir = join(mkdtempSync(join(tmpdir(), "rap-reqid-")), "dumps");
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--dump-dir", dir] });
  expect((await goodRequest(proxy)).status).toBe(200);
  expect(await lastLine(proxy, 1)).toMatch(/ POST \/v1\/responses 200 [\d.]+ms in=\d+B out=\d+B request_id=req_7f3a9c$/);
  await waitFor(() => dumpFiles(dir).length === 2, 5000, "two dump files");
  const response = JSON.parse(readFileSync(join(dir, dumpFiles(dir)[1]!), "utf8"));
  expect(response.request_id).toBe("req_7f3a9c");
});

describe("start-up and shutdown lines", () => {
  test("start: version, address, upstream origin, credential mode, hardening; stop: cause and exchanges cut", async () => {
    const up = await startUpstream(() => gappedStream(["data: a\n\n", "data: b\n\n"], 2000));
    const proxy = await startProxy({ args: ["--upstream-url", `${up.url}?api-version=1`, "--http-shutdown"] });
    const first = proxy.stderr().split("\n").find((l) => l.includes("listening on"))!;
    const hardening = IS_ROOT ? "nodump,nocore,mlock" : "nodump,nocore";
    expect(first).toBe(
      `responses-api-proxy ${VERSION} listening on 127.0.0.1:${proxy.port} upstream=${new URL(up.url).origin} credential=key hardening=${hardening}`,
    );
    const res = await goodRequest(proxy); // one stream in flight, cut by the shutdown
    const reader = res.body!.getReader();
    await reader.read();
    expect((await fetch(`${proxy.base}/shutdown`)).status).toBe(200);
    expect(await proxy.exited).toBe(0);
    expect(proxy.stderr()).toContain("responses-api-proxy stopped (/shutdown): 1 exchange cut\n");
  });

  test("SIGTERM with nothing in flight: stopped (SIGTERM): 0 exchanges cut, and no server-info file is left behind", async () => {
    const up = await startUpstream();
    const info = join(mkdtempSync(join(tmpdir(), "rap-stop-")), "info.json");
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--server-info", info] });
    expect(existsSync(info)).toBe(true);
    proxy.proc.kill("SIGTERM");
    expect(await proxy.exited).toBe(0);
    expect(proxy.stderr()).toEndWith("responses-api-proxy stopped (SIGTERM): 0 exchanges cut\n");
    expect(existsSync(info)).toBe(false); // it would name a port any local user could take next
  });
});

test("--log-format json: one JSON object per line with stable names, for every kind of line", async () => {
  const up = await startUpstream(() => Response.json({ id: "resp_1" }, { headers: { "x-request-id": "req_json" } }));
  const proxy = await startProxy({
    args: ["--upstream-url", up.url, "--log-format", "json", "--http-shutdown"],
    env: { PATH: process.env.PATH!, OPENAI_API_KEY: "inherited" }, // gives a warning line
  });
  await goodRequest(proxy);
  await raw(proxy.port, httpRequest("POST", "/v1/responses", { Origin: "http://evil.example" }, "{}"));
  await fetch(`${proxy.base}/shutdown`);
  expect(await proxy.exited).toBe(0);
  const lines = proxy.stderr().trimEnd().split("\n").map((l) => JSON.parse(l));
  const byEvent = (e: string) => lines.filter((l) => l.event === e);
  expect(byEvent("warning")[0]).toMatchObject({ message: expect.stringContaining("OPENAI_API_KEY") });
  expect(byEvent("start")[0]).toMatchObject({
    version: VERSION, listen: `127.0.0.1:${proxy.port}`, upstream: new URL(up.url).origin, credential: "key", hardening: expect.arrayContaining(["nodump", "nocore"]),
  });
  const requests = byEvent("request");
  expect(requests[0]).toMatchObject({ method: "POST", path: "/v1/responses", status: 200, bytes_out: expect.any(Number), request_id: "req_json" });
  expect(requests[1]).toMatchObject({ method: "POST", path: "/v1/responses", status: 403, reason: "browser:origin" });
  expect(requests[2]).toMatchObject({ method: "GET", path: "/shutdown", status: 200 });
  expect(byEvent("stop")[0]).toMatchObject({ cause: "/shutdown", cut: 0 });
  for (const l of lines) expect(l.time).toMatch(/Z$/);
  expect(proxy.stderr()).not.toContain(KEY);
});

test("key intake: after about two seconds of silence on stdin one line says the proxy is waiting, and it keeps waiting", async () => {
  const up = await startUpstream();
  const p = spawnProxy({ args: ["--upstream-url", up.url], input: "", keepStdinOpen: true });
  onCleanup(() => p.kill());
  await Bun.sleep(1000);
  expect(p.stderr()).toBe(""); // not before
  await waitFor(() => p.stderr().includes("waiting for the API key on standard input"), 5000, "the waiting line");
  expect(p.stderr()).toContain("printenv OPENAI_API_KEY | env -u OPENAI_API_KEY responses-api-proxy");
  p.proc.stdin.write(`${KEY}\n`);
  await p.proc.stdin.flush();
  await waitFor(() => /listening on 127\.0\.0\.1:\d+/.test(p.stderr()), 5000, "listening");
  expect(p.stderr().match(/waiting for the API key/g)).toHaveLength(1);
  // A key already waiting on stdin: no such line.
  const quick = await startProxy({ args: ["--upstream-url", up.url] });
  expect(quick.stderr()).not.toContain("waiting");
});

describe("a log nobody reads never stops the proxy", () => {
  // stderr is the proxy's own file sink (log.ts): these hold it to what process.stderr did.
  const LINES = 1500; // about 150 KiB of log, more than a pipe holds (64 KiB)

  /** Starts the binary through bash with stderr redirected by `redirect`; returns its port. */
  async function startWithStderr(redirect: string, dir: string) {
    const info = join(dir, "info.json");
    const up = await startUpstream();
    const p = spawnProxy({
      cmd: ["bash", "-c", `exec "$0" "$@" ${redirect}`, BIN, "--upstream-url", up.url, "--server-info", info],
    });
    onCleanup(() => p.kill());
    await waitFor(() => existsSync(info) && readFileSync(info, "utf8").endsWith("\n"), 10_000, "server info");
    const port = (JSON.parse(readFileSync(info, "utf8")) as { port: number }).port;
    return { ...p, port, base: `http://127.0.0.1:${port}` };
  }

  /** LINES refused requests (each logged, even with --quiet), then one forwarded: all answered. */
  async function allAnswered(proxy: RunningProxy) {
    for (let i = 0; i < LINES; i++) expect((await fetch(`${proxy.base}/v1/responses`)).status).toBe(403);
    expect((await goodRequest(proxy)).status).toBe(200);
  }

  test("stderr closed: every request is still answered", async () => {
    await allAnswered(await startWithStderr("2>&-", mkdtempSync(join(tmpdir(), "rap-log-"))));
  });

  test("stderr a pipe whose reader has gone: every request is still answered", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-log-"));
    const fifo = join(dir, "fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const proxy = await startWithStderr(`2>${fifo}`, dir);
    closeSync(reader); // from here every write to stderr fails with EPIPE
    await allAnswered(proxy);
  });

  test("stderr a pipe nobody reads for now: requests are answered, and the lines arrive whole and in order later", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-log-"));
    const fifo = join(dir, "fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    onCleanup(() => closeSync(reader));
    await allAnswered(await startWithStderr(`2>${fifo}`, dir)); // the pipe filled up long before this ends
    let log = "";
    const buf = Buffer.alloc(1 << 16);
    const count = () => log.split("\n").length - 1;
    await waitFor(() => {
      try {
        for (let n; (n = readSync(reader, buf)) > 0; ) log += buf.toString("latin1", 0, n);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      }
      return count() >= LINES + 2;
    }, 10_000, "every log line");
    const lines = log.trimEnd().split("\n");
    expect(lines[0]).toContain("listening on 127.0.0.1:");
    expect(lines.slice(1, LINES + 1).every((l) => / GET \/v1\/responses 403 .* reason=method$/.test(l))).toBe(true);
    expect(lines[LINES + 1]).toMatch(/ POST \/v1\/responses 200 /);
    const times = lines.map((l) => l.slice(0, 24)).slice(1);
    expect(times).toEqual([...times].sort());
  });
});
