// Command line, key intake, listener, server info, shutdown and signals — against the binary.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MESSAGES } from "../../src/security/api-key";
import {
  BIN, KEY, ROOT, baseEnv, gappedStream, goodRequest, lacksTool, needs, raw, httpRequest, runProxy, spawnProxy, startProxy, startUpstream, stopAll, waitFor,
} from "../helpers";

afterEach(stopAll);

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

describe("command line", () => {
  test("--help and -h print usage on stdout and exit 0 without reading a key", async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await runProxy({ args: [flag], input: "" });
      expect(r.code).toBe(0);
      for (const f of ["--port", "--server-info", "--http-shutdown", "--upstream-url", "--dump-dir", "--quiet",
        "--max-body-bytes", "--max-concurrent", "--max-header-bytes", "--client-timeout", "--upstream-timeout"]) {
        expect(r.stdout).toContain(f);
      }
    }
  });
  test("--version and -V print the package version and nothing else", async () => {
    for (const flag of ["--version", "-V"]) {
      const r = await runProxy({ args: [flag], input: "" });
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${pkg.version}\n`);
    }
  });
  const usage: string[][] = [
    ["--bogus"], ["--port"], ["--port", "70000"], ["--port", "abc"], ["--upstream-url", "not a url"],
    ["--upstream-url", "file:///etc/passwd"], ["extra"], ["--client-timeout", "0"],
  ];
  for (const args of usage) {
    test(`usage error exits 2 before reading the key: ${args.join(" ")}`, async () => {
      // The key would be valid: exiting 2 proves the arguments were checked first.
      const r = await runProxy({ args, input: `${KEY}\n` });
      expect(r.code).toBe(2);
      const lines = r.stderr.trimEnd().split("\n");
      expect(lines).toHaveLength(2);
      expect(lines[1]).toContain("--help");
      expect(r.stderr).not.toContain(KEY);
      expect(r.stdout).toBe("");
    });
  }
});

describe("key intake", () => {
  const cases: Array<[string, string | Uint8Array, string]> = [
    ["empty input", "", MESSAGES.empty],
    ["an empty line", "\n", MESSAGES.empty],
    ["a blank first line, the key after it", `\n${KEY}\n`, MESSAGES.blankFirstLine],
    ["OPENAI_API_KEY=<key> (a .env line)", `OPENAI_API_KEY=${KEY}\n`, MESSAGES.assignment],
    ["Bearer <key>", `Bearer ${KEY}\n`, MESSAGES.bearer],
    ["a space in the key", `${KEY} x\n`, MESSAGES.invalid],
    ["a header injection", `${KEY}\rX-Evil: 1\n`, MESSAGES.invalid],
    ["a NUL byte", `${KEY}\0\n`, MESSAGES.invalid],
    ["UTF-8", `${KEY}é\n`, MESSAGES.invalid],
    ["1017 characters", `${"k".repeat(1017)}\n`, MESSAGES.tooLarge],
    ["a megabyte", "k".repeat(1 << 20), MESSAGES.tooLarge],
  ];
  for (const [name, input, message] of cases) {
    test(`refuses ${name} with one line and exit 1`, async () => {
      const r = await runProxy({ input });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`responses-api-proxy: ${message}\n`);
      expect(r.stderr).not.toContain(KEY);
    });
  }

  test("1016 characters are accepted and the key reaches the upstream", async () => {
    const longKey = "k".repeat(1016);
    const up = await startUpstream();
    const proxy = await startProxy({ input: `${longKey}\n`, args: ["--upstream-url", up.url] });
    expect((await goodRequest(proxy)).status).toBe(200);
    expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${longKey}`);
  });

  test("a CRLF line ending is trimmed", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ input: `${KEY}\r\n`, args: ["--upstream-url", up.url] });
    expect((await goodRequest(proxy)).status).toBe(200);
    expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
  });

  test("a long-lived pipe: starts after the first line without stdin being closed", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ input: `${KEY}\nsecond line is ignored\n`, keepStdinOpen: true, args: ["--upstream-url", up.url] });
    expect((await goodRequest(proxy)).status).toBe(200);
    expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
  });

  needs(lacksTool("script", "util-linux"))("a terminal on stdin is refused with a hint to pipe the key", async () => {
    // `script` gives the proxy a real pseudo-terminal as stdin.
    const proc = Bun.spawn(["script", "-qec", `${BIN}`, "/dev/null"], { stdin: "pipe", stdout: "pipe", stderr: "pipe", env: baseEnv() });
    const timer = setTimeout(() => proc.kill(), 10_000);
    const code = await proc.exited;
    clearTimeout(timer);
    const out = await new Response(proc.stdout).text();
    expect(code).toBe(1);
    expect(out).toContain("refusing to read the API key from a terminal");
    expect(out).toContain("pipe");
  });

  test("OPENAI_API_KEY in the environment: warned about and removed", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url], env: baseEnv({ OPENAI_API_KEY: "sk-from-env" }) });
    expect(proxy.stderr()).toContain("env -u OPENAI_API_KEY");
    expect(proxy.stderr()).not.toContain("sk-from-env");
    expect((await goodRequest(proxy)).status).toBe(200);
    // The piped key wins; the environment's is never used.
    expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
  });
});

describe("listener", () => {
  test("binds 127.0.0.1 on an ephemeral port and logs it", async () => {
    const proxy = await startProxy();
    expect(proxy.port).toBeGreaterThan(0);
    expect(proxy.stderr()).toContain(`listening on 127.0.0.1:${proxy.port} upstream=https://api.openai.com credential=key`);
  });

  test("binds the port given", async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const proxy = await startProxy({ args: ["--port", String(port)] });
    expect(proxy.port).toBe(port);
  });

  test("listens on no address but 127.0.0.1", async () => {
    const proxy = await startProxy();
    const listening = readFileSync("/proc/net/tcp", "utf8") + readFileSync("/proc/net/tcp6", "utf8");
    const hex = proxy.port.toString(16).toUpperCase().padStart(4, "0");
    const rows = listening.split("\n").filter((l) => l.includes(`:${hex} `) && / 0A /.test(l));
    expect(rows.length).toBe(1);
    expect(rows[0]).toContain(`0100007F:${hex}`);
  });

  test("a port in use: one clear line, exit 1", async () => {
    const first = await startProxy();
    const r = await runProxy({ args: ["--port", String(first.port)] });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^responses-api-proxy: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\)\n$/);
  });
});

describe("server info", () => {
  test("written after the bind: one JSON line with port and pid, parents created", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-"));
    const file = join(dir, "nested", "deeper", "info.json");
    const proxy = await startProxy({ args: ["--server-info", file] });
    const text = readFileSync(file, "utf8");
    expect(text).toBe(`{"port":${proxy.port},"pid":${proxy.proc.pid}}\n`);
    expect(statSync(file).mode & 0o004).toBe(0o004); // other users can read it
    expect(readdirSync(join(dir, "nested", "deeper"))).toEqual(["info.json"]); // no temporary left behind
  });

  test("cannot be written: one clear line, exit 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-"));
    const blocker = join(dir, "file");
    await Bun.write(blocker, "x");
    const r = await runProxy({ args: ["--server-info", join(blocker, "info.json")] });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot write server info to .*info\.json \((ENOTDIR|EEXIST)\)\n$/);
  });
});

describe("shutdown", () => {
  test("GET /shutdown with --http-shutdown: 200, empty body, exit 0 within a second", async () => {
    const proxy = await startProxy({ args: ["--http-shutdown"] });
    const started = Date.now();
    const res = await fetch(`${proxy.base}/shutdown`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
    expect(await proxy.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test("without --http-shutdown /shutdown is 403 and the proxy lives on", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url] });
    const res = await fetch(`${proxy.base}/shutdown`);
    expect(res.status).toBe(403);
    expect((await goodRequest(proxy)).status).toBe(200);
  });

  test("a SIGTERM sent the moment server-info appears is an orderly exit (0), every time", async () => {
    const up = await startUpstream();
    const dir = mkdtempSync(join(tmpdir(), "rap-sigterm-"));
    for (let i = 0; i < 10; i++) {
      const info = join(dir, `info-${i}.json`);
      const p = spawnProxy({ args: ["--upstream-url", up.url, "--server-info", info], keepStdinOpen: true });
      await waitFor(() => existsSync(info), 10_000, "server-info");
      p.proc.kill("SIGTERM");
      expect(await p.exited).toBe(0);
    }
  });

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${signal}: stops accepting, lets an in-flight stream finish, exits 0`, async () => {
      const up = await startUpstream(() => gappedStream(["data: one\n\n", "data: two\n\n"], 800));
      const proxy = await startProxy({ args: ["--upstream-url", up.url] });
      const res = await goodRequest(proxy);
      const reader = res.body!.getReader();
      await reader.read(); // the stream is in flight
      proxy.proc.kill(signal);
      await Bun.sleep(200);
      // New connections are refused while the old stream drains.
      const late = await raw(proxy.port, httpRequest("POST", "/v1/responses", {}, "{}"), 500);
      expect(late.status).toBeUndefined();
      let rest = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        rest += new TextDecoder().decode(value);
      }
      expect(rest).toContain("data: two");
      expect(await proxy.exited).toBe(0);
    });
  }
});

test("request log: one line per request without header values, bodies, queries or the key; --quiet keeps only failures", async () => {
  const up = await startUpstream();
  const proxy = await startProxy({ args: ["--upstream-url", up.url] });
  await goodRequest(proxy);
  await fetch(`${proxy.base}/v1/responses?secret-query=1`, { method: "POST", headers: { "x-secret-header": "hv" }, body: "{}" });
  await waitFor(() => proxy.stderr().split("\n").length >= 4, 5000, "log lines");
  const lines = proxy.stderr().trimEnd().split("\n").slice(1);
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatch(/ POST \/v1\/responses 200 [\d.]+ms in=\d+B out=\d+B$/);
  expect(lines[1]).toMatch(/ POST \/v1\/responses\?… 403 [\d.]+ms in=0B out=0B reason=query$/);
  for (const secret of ["secret-query", "hv", KEY, "hello"]) expect(proxy.stderr()).not.toContain(secret);

  const quiet = await startProxy({ args: ["--upstream-url", up.url, "--quiet"] });
  await goodRequest(quiet);
  await Bun.sleep(100);
  expect(quiet.stderr().trimEnd().split("\n")).toHaveLength(1); // only "listening": a success is not logged
});
