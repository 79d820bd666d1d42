import { expect, test } from "bun:test";
import { unsafeEnvironment } from "../../src/security/environment";
import { loaderVariables } from "../../src/security/hardening";
import { libcCandidates } from "../../src/security/libc";

test("refuses variables that expose or divert the key, without printing their values", () => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ BUN_CONFIG_VERBOSE_FETCH: "curl" }, "BUN_CONFIG_VERBOSE_FETCH"],
    [{ BUN_CONFIG_VERBOSE_FETCH: "true" }, "BUN_CONFIG_VERBOSE_FETCH"],
    [{ NODE_TLS_REJECT_UNAUTHORIZED: "0" }, "NODE_TLS_REJECT_UNAUTHORIZED"],
    [{ SSLKEYLOGFILE: "/tmp/SECRETPATH" }, "SSLKEYLOGFILE"],
    [{ BUN_OPTIONS: "--preload SECRETPATH" }, "BUN_OPTIONS"],
    [{ BUN_INSPECT: "1" }, "BUN_INSPECT"],
    [{ BUN_INSPECT_CONNECT_TO: "x" }, "BUN_INSPECT_CONNECT_TO"],
    [{ BUN_JSC_anything: "1" }, "BUN_JSC_anything"],
    [{ JSC_useJIT: "0" }, "JSC_useJIT"],
  ];
  for (const [env, name] of cases) {
    const message = unsafeEnvironment({ PATH: "/bin", ...env });
    expect(message).toStartWith(`refusing to start: ${name} is set, and `);
    expect(message).not.toContain("SECRETPATH");
  }
});

test("allows harmless values and unrelated variables", () => {
  expect(unsafeEnvironment({})).toBeUndefined();
  expect(unsafeEnvironment({ PATH: "/bin", HOME: "/root", HTTPS_PROXY: "http://proxy:3128", NODE_EXTRA_CA_CERTS: "/ca.pem" })).toBeUndefined();
  for (const v of ["", "0", "false", "FALSE"]) expect(unsafeEnvironment({ BUN_CONFIG_VERBOSE_FETCH: v })).toBeUndefined();
  expect(unsafeEnvironment({ NODE_TLS_REJECT_UNAUTHORIZED: "1" })).toBeUndefined();
  expect(unsafeEnvironment({ BUN_CONFIG_MAX_HTTP_REQUESTS: "1024" })).toBeUndefined();
});

test("loader variables per platform", () => {
  const env = { LD_PRELOAD: "x", LD_LIBRARY_PATH: "y", DYLD_INSERT_LIBRARIES: "z", MallocStackLogging: "1", MallocLogFile: "f", PATH: "/bin", OLD_X: "1" };
  expect(loaderVariables(env, "linux").sort()).toEqual(["LD_LIBRARY_PATH", "LD_PRELOAD"]);
  expect(loaderVariables(env, "freebsd").sort()).toEqual(["LD_LIBRARY_PATH", "LD_PRELOAD"]);
  expect(loaderVariables(env, "darwin").sort()).toEqual(["DYLD_INSERT_LIBRARIES", "MallocLogFile", "MallocStackLogging"]);
  expect(loaderVariables(env, "win32")).toEqual([]);
});

test("the C library is looked up by its real file name per platform", () => {
  expect(libcCandidates("linux", "x64")[0]).toBe("libc.so.6");
  expect(libcCandidates("linux", "x64")).toContain("libc.musl-x86_64.so.1");
  expect(libcCandidates("linux", "arm64")).toContain("libc.musl-aarch64.so.1");
  expect(libcCandidates("darwin", "arm64")).toEqual(["/usr/lib/libSystem.B.dylib"]);
  expect(libcCandidates("freebsd", "x64")).toEqual(["libc.so.7"]);
  expect(libcCandidates("win32", "x64")).toEqual([]);
});
