import { describe, expect, test } from "bun:test";
import { concurrencyForOpenFiles, DEFAULT_UPSTREAM, DEFAULTS, isInsecureUpstream, parseArgs, RESERVED_FILES, UsageError } from "../../src/cli";

const run = (argv: string[]) => {
  const c = parseArgs(argv);
  if (c.kind !== "run") throw new Error(c.kind);
  return c.config;
};

describe("parseArgs", () => {
  test("defaults", () => {
    const c = run([]);
    expect(c.port).toBe(0);
    expect(c.upstream.href).toBe(DEFAULT_UPSTREAM);
    expect(c.httpShutdown).toBe(false);
    expect(c.serverInfo).toBeUndefined();
    expect(c.maxBodyBytes).toBe(DEFAULTS.maxBodyBytes);
    expect(c.logFormat).toBe("text");
  });
  test("--log-format text or json, nothing else", () => {
    expect(run(["--log-format", "json"]).logFormat).toBe("json");
    expect(run(["--log-format=text"]).logFormat).toBe("text");
    expect(() => run(["--log-format", "xml"])).toThrow(new UsageError('--log-format must be text or json, got "xml"'));
    expect(() => run(["--log-format"])).toThrow(UsageError);
  });
  test("every flag", () => {
    const c = run([
      "--port", "8080", "--server-info", "/tmp/x.json", "--http-shutdown", "--upstream-url",
      "https://example.azure.com/openai/v1/responses?api-version=2025-04-01-preview", "--dump-dir", "/tmp/d", "--quiet",
      "--max-body-bytes=10", "--max-concurrent", "3", "--max-header-bytes", "2048", "--client-timeout", "9", "--upstream-timeout", "5",
    ]);
    expect(c).toMatchObject({ port: 8080, serverInfo: "/tmp/x.json", httpShutdown: true, dumpDir: "/tmp/d", quiet: true,
      maxBodyBytes: 10, maxConcurrent: 3, maxHeaderBytes: 2048, clientTimeout: 9, upstreamTimeout: 5 });
    expect(c.upstream.search).toBe("?api-version=2025-04-01-preview");
  });
  test("help and version", () => {
    expect(parseArgs(["-h"]).kind).toBe("help");
    expect(parseArgs(["--help"]).kind).toBe("help");
    expect(parseArgs(["-V"]).kind).toBe("version");
    expect(parseArgs(["--version"]).kind).toBe("version");
  });
  const bad: Array<[string[], RegExp]> = [
    [["--bogus"], /unknown option --bogus/],
    [["-x"], /unknown option -x/],
    [["--no-such"], /unknown option/],
    [["positional"], /unexpected argument/],
    [["--port"], /--port needs a value/],
    [["--port", "--http-shutdown"], /--port needs a value/],
    [["--port", "65536"], /between 0 and 65535/],
    [["--port", "-1"], /unknown option -1/],
    [["--port", "80x"], /whole number/],
    [["--port", "1", "--port", "2"], /more than once/],
    [["--upstream-url", "api.openai.com/v1/responses"], /absolute http\(s\) URL/],
    [["--upstream-url", "ftp://example.com/"], /absolute http\(s\) URL/],
    [["--upstream-url", "https://user:pw@example.com/"], /user name or password/],
    [["--upstream-url", "https://example.com/#x"], /fragment/],
    [["--client-timeout", "0"], /between 1 and 255/],
    [["--client-timeout", "256"], /between 1 and 255/],
    [["--max-concurrent", "0"], /between 1/],
  ];
  for (const [argv, message] of bad) {
    test(`usage error: ${argv.join(" ")}`, () => {
      expect(() => parseArgs(argv)).toThrow(UsageError);
      expect(() => parseArgs(argv)).toThrow(message);
    });
  }
});

test("isInsecureUpstream", () => {
  expect(isInsecureUpstream(new URL("http://10.0.0.1/v1/responses"))).toBe(true);
  expect(isInsecureUpstream(new URL("http://example.com/"))).toBe(true);
  expect(isInsecureUpstream(new URL("https://example.com/"))).toBe(false);
  expect(isInsecureUpstream(new URL("http://127.0.0.1:9/"))).toBe(false);
  expect(isInsecureUpstream(new URL("http://localhost/"))).toBe(false);
  expect(isInsecureUpstream(new URL("http://[::1]:8/"))).toBe(false);
});

describe("concurrencyForOpenFiles", () => {
  test("two descriptors per exchange, after the reserved ones", () => {
    expect(concurrencyForOpenFiles(20_000)).toBe(9968);
    expect(concurrencyForOpenFiles(1024)).toBe(480);
    expect(concurrencyForOpenFiles(RESERVED_FILES + 2)).toBe(1);
    expect(concurrencyForOpenFiles(10)).toBe(1); // never 0: the proxy still serves one at a time
  });
});
