// Process hardening and secret custody, proven from outside the process.
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { countInMemory } from "../../scripts/key-copies";
import { build } from "../../scripts/build";
import {
  BIN, IS_ROOT, KEY, MUSL_MISSING, SAMPLE_BODY, baseEnv, gappedStream, goodRequest, lacksTool, muslEnvironment, needs, runProxy, selfSignedUpstream, startProxy, startUpstream, stopAll,
} from "../helpers";

afterEach(stopAll);

const status = (pid: number) => readFileSync(`/proc/${pid}/status`, "utf8");
const limits = (pid: number) => readFileSync(`/proc/${pid}/limits`, "utf8");
const notRoot = (why: string) => (IS_ROOT ? undefined : `needs root: ${why}`);

/** A copy of the binary in a folder every user can traverse (the checkout may not be). */
function publicCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), "rap-bin-"));
  chmodSync(dir, 0o755);
  const bin = join(dir, "responses-api-proxy");
  copyFileSync(BIN, bin);
  chmodSync(bin, 0o755);
  return bin;
}

const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

describe("hardening, as any user", () => {
  test("core dumps are off: RLIMIT_CORE is 0 soft and hard", async () => {
    const proxy = await startProxy();
    expect(limits(proxy.proc.pid)).toMatch(/Max core file size\s+0\s+0\s+bytes/);
  });

  test("the soft open-file limit is raised to the hard limit", async () => {
    const proxy = await startProxy();
    const m = /Max open files\s+(\d+)\s+(\d+)/.exec(limits(proxy.proc.pid))!;
    expect(m[1]).toBe(m[2]!);
  });
});

describe("hardening, as root", () => {
  needs(notRoot("mlockall needs CAP_IPC_LOCK"))("mlockall: VmLck is above 0 and no warning is printed", async () => {
    const proxy = await startProxy();
    const vmlck = Number(/VmLck:\s+(\d+) kB/.exec(status(proxy.proc.pid))![1]);
    expect(vmlck).toBeGreaterThan(0);
    expect(proxy.stderr()).not.toContain("mlockall");
  });

  needs(notRoot("to switch to user nobody"), lacksTool("setpriv", "util-linux"))("as user nobody: still serves, warns about mlockall once, and other nobody processes cannot read its environ", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ cmd: [...asNobody, publicCopy(), "--upstream-url", up.url], env: baseEnv({ MARKER: "x" }) });
    expect(status(proxy.proc.pid)).toMatch(/Uid:\s+65534/);
    expect(proxy.stderr().match(/memory locking is off \(mlockall: /g)).toHaveLength(1);
    expect((await goodRequest(proxy)).status).toBe(200);
    expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);

    const readAsNobody = async (pid: number) => {
      const p = Bun.spawn([...asNobody, "cat", `/proc/${pid}/environ`], { stdout: "pipe", stderr: "pipe" });
      return { code: await p.exited, err: await new Response(p.stderr).text() };
    };
    // Control: an ordinary (unhardened) nobody process's environ IS readable by another one.
    const control = Bun.spawn([...asNobody, "sleep", "5"], { env: baseEnv({ MARKER: "x" }) });
    await Bun.sleep(100);
    expect((await readAsNobody(control.pid)).code).toBe(0);
    control.kill();
    // The proxy's is not (PR_SET_DUMPABLE 0 makes /proc/<pid>/environ, mem, … root-only).
    const r = await readAsNobody(proxy.proc.pid);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("Permission denied");
  });

  needs(notRoot("to read a hardened process's environ"))("OPENAI_API_KEY inherited in the environment is wiped from /proc/<pid>/environ", async () => {
    const envKey = "sk-envkey-0123456789abcdef";
    const proxy = await startProxy({ env: baseEnv({ OPENAI_API_KEY: envKey }) });
    const environ = readFileSync(`/proc/${proxy.proc.pid}/environ`, "latin1");
    expect(environ).toContain("OPENAI_API_KEY="); // the variable was there...
    expect(environ).not.toContain(envKey); // ...its value is gone from the process
    expect(proxy.stderr()).toContain("env -u OPENAI_API_KEY");
  });

  needs(notRoot("to read a hardened process's memory"))("one copy of the key in memory after start, and still at most two after 3,000 requests and 300 streams (never UTF-16)", async () => {
    const up = await startUpstream(async (req) => {
      const body = await req.text();
      if (!body.includes('"stream":true')) return Response.json({ id: "resp_1" });
      return gappedStream(["event: a\ndata: {}\n\n", "event: b\ndata: {}\n\n"], 1);
    });
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--quiet"] });
    await Bun.sleep(100);
    expect(countInMemory(proxy.proc.pid, KEY)).toEqual({ ascii: 1, utf16: 0 });
    // 16 keep-alive connections, as in scripts/key-copies.ts; the bound is fixed: a copy per
    // request (as before issue 19: 692 after 1,000) fails it at once.
    const send = async (count: number, body: string) => {
      let left = count;
      const loop = async () => {
        while (left-- > 0) await (await fetch(`${proxy.base}/v1/responses`, { method: "POST", body })).arrayBuffer();
      };
      await Promise.all(Array.from({ length: 16 }, loop));
    };
    await send(3000, SAMPLE_BODY);
    await send(300, JSON.stringify({ model: "m", input: "x", stream: true }));
    const after = countInMemory(proxy.proc.pid, KEY);
    console.log(`key copies: 1 after start, ${after.ascii} after 3,000 requests and 300 streams`);
    expect(after.ascii).toBeLessThanOrEqual(2);
    expect(after.utf16).toBe(0);
  }, 60_000);
});

/** Why the libc watch below cannot run here, or undefined (gdb, and libc's symbols from libc6-dbg). */
function libcWatchMissing(): string | undefined {
  if (process.arch !== "x64" || process.platform !== "linux") return "the libc watch is written for x86-64 Linux";
  const noGdb = lacksTool("gdb", "gdb");
  if (noGdb) return noGdb;
  const libc = "/lib/x86_64-linux-gnu/libc.so.6";
  if (!existsSync(libc)) return `needs glibc at ${libc}`;
  const probe = Bun.spawnSync(["gdb", "-batch", "-ex", "info functions -n ^__memmove_", libc]);
  if (!probe.stdout.toString().includes("__memmove_")) return "needs libc's symbols (Debian package libc6-dbg)";
  const traced = Bun.spawnSync(["gdb", "-batch", "-ex", "run", "--args", "/bin/true"]);
  if (!traced.stdout.toString().includes("exited normally")) return "gdb cannot run a program here (ptrace not permitted?)";
  return undefined;
}

describe("the key never passes through libc's vector routines", () => {
  // The cause of an intermittent second copy of the key on the main thread's stack: memmove and
  // memchr leave their bytes in vector registers, which lazy binding and signal frames then save
  // to the stack. Deterministic where the copy itself is not: the old start-up (`slice`, `set`)
  // made two such calls every time. See src/security/secret-bytes.ts.
  needs(libcWatchMissing(), lacksTool("openssl", "openssl"))("start-up and requests to an https upstream: no memmove/memcpy/memchr call sees the key, and the watch does see other bytes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-libc-"));
    const info = join(dir, "server-info.json");
    const up = selfSignedUpstream();
    writeFileSync(join(dir, "key"), `${KEY}\n`);
    // Needles: the key; then controls that do go through memcpy (the server-info path, from the
    // command line, and the announcement line), so that a watch that saw nothing fails.
    writeFileSync(join(dir, "watch"), [join(dir, "key"), `env:NODE_EXTRA_CA_CERTS=${up.cert}`, KEY, info, "listening on"].join("\n"));
    const gdb = Bun.spawn(
      ["gdb", "-batch", "-x", join(import.meta.dir, "../../scripts/key-through-libc.py"), "--args", BIN, "--port", "0", "--server-info", info, "--upstream-url", up.url],
      { env: { ...baseEnv(), KEY_WATCH: join(dir, "watch") }, stdout: "pipe", stderr: "pipe" },
    );
    try {
      const deadline = Date.now() + 30_000;
      while (!existsSync(info) && Date.now() < deadline && gdb.exitCode === null) await Bun.sleep(50);
      expect(existsSync(info)).toBe(true);
      const { port, pid } = JSON.parse(readFileSync(info, "utf8")) as { port: number; pid: number };
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`http://127.0.0.1:${port}/v1/responses`, { method: "POST", body: SAMPLE_BODY });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }
      process.kill(pid, "SIGTERM");
      expect(await gdb.exited).toBe(0);
    } finally {
      gdb.kill(9);
    }
    const out = await new Response(gdb.stdout).text();
    const through = out.split("\n").filter((l) => l.startsWith("THROUGH "));
    expect(Number(/ARMED (\d+)/.exec(out)?.[1])).toBeGreaterThan(0);
    expect(Number(/WATCHED (\d+)/.exec(out)?.[1])).toBeGreaterThan(100);
    expect(through.some((l) => l.includes("needle=1 "))).toBe(true);
    expect(through.some((l) => l.includes("needle=2 "))).toBe(true);
    expect(through.filter((l) => l.includes("needle=0 "))).toEqual([]);
  }, 60_000);
});

describe("nothing around the process can reach the key", () => {
  test("a planted bunfig.toml preload and .env in the working folder are ignored", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-cwd-"));
    const marker = join(dir, "preload-ran");
    writeFileSync(join(dir, "x.js"), `require("node:fs").writeFileSync(${JSON.stringify(marker)}, "ran");`);
    writeFileSync(join(dir, "bunfig.toml"), 'preload = ["./x.js"]\n');
    writeFileSync(join(dir, ".env"), "BUN_CONFIG_VERBOSE_FETCH=curl\nNODE_TLS_REJECT_UNAUTHORIZED=0\n");
    const up = await startUpstream();
    const proxy = await startProxy({ cwd: dir, args: ["--upstream-url", up.url] });
    expect((await goodRequest(proxy)).status).toBe(200);
    await Bun.sleep(100);
    expect(existsSync(marker)).toBe(false);
    expect(proxy.stderr()).not.toContain(KEY);
    expect(proxy.stderr()).not.toContain("curl");
  });

  const refused: Array<[string, string]> = [
    ["BUN_CONFIG_VERBOSE_FETCH", "curl"],
    ["BUN_CONFIG_VERBOSE_FETCH", "1"],
    ["NODE_TLS_REJECT_UNAUTHORIZED", "0"],
    ["SSLKEYLOGFILE", "/tmp/keys.log"],
    ["BUN_OPTIONS", "--smol"],
    ["BUN_INSPECT", "127.0.0.1:9229"],
    ["BUN_INSPECT_CONNECT_TO", "127.0.0.1:9229"],
    ["BUN_JSC_showPrivateScriptsInStackTraces", "1"],
  ];
  for (const [name, value] of refused) {
    test(`${name}=${value} in the real environment: refused before the key is read, key never printed`, async () => {
      const r = await runProxy({ env: baseEnv({ [name]: value }) });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`refusing to start: ${name} is set`);
      expect(r.stderr).not.toContain(value === "0" || value === "1" ? KEY : value);
      expect(r.stderr).not.toContain(KEY);
    });
  }

  test("BUN_OPTIONS with a --preload: the preload runs (before any proxy code can), the proxy refuses to read the key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-pre-"));
    writeFileSync(join(dir, "x.js"), 'console.error("PRELOAD RAN");');
    const r = await runProxy({ env: baseEnv({ BUN_OPTIONS: `--preload=${join(dir, "x.js")}` }) });
    expect(r.stderr).toContain("PRELOAD RAN");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("refusing to start: BUN_OPTIONS is set");
  });

  test("BUN_JSC_useJIT=0 (bun:ffi needs the JIT): hardening fails closed with exit 5", async () => {
    const r = await runProxy({ env: baseEnv({ BUN_JSC_useJIT: "0" }) });
    expect(r.code).toBe(5);
    expect(r.stderr).toBe("responses-api-proxy: hardening failed: cannot load the C library (TypeError: bun:ffi requires the JIT)\n");
  });

  test("harmless values of the same variables are allowed", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({
      args: ["--upstream-url", up.url],
      env: baseEnv({ NODE_TLS_REJECT_UNAUTHORIZED: "1", BUN_CONFIG_VERBOSE_FETCH: "0" }),
    });
    expect((await goodRequest(proxy)).status).toBe(200);
    expect(proxy.stderr()).not.toContain(KEY);
  });

  test("no error path prints the key: bad flags, bad keys, upstream down", async () => {
    const outputs: string[] = [];
    for (const args of [["--bogus"], ["--port", "x"], ["--upstream-url", "nope"]]) {
      const r = await runProxy({ args });
      outputs.push(r.stdout, r.stderr);
    }
    for (const input of [`${KEY} \n`, `${KEY}${"x".repeat(2000)}`, `${KEY}\0\n`]) {
      const r = await runProxy({ input });
      outputs.push(r.stdout, r.stderr);
    }
    const proxy = await startProxy({ args: ["--upstream-url", "http://127.0.0.1:1/v1/responses"] });
    const res = await goodRequest(proxy);
    outputs.push(await res.text(), proxy.stderr(), JSON.stringify([...res.headers]));
    const help = await runProxy({ args: ["--help"] });
    outputs.push(help.stdout);
    for (const out of outputs) expect(out).not.toContain(KEY);
  });
});

describe("musl build", () => {
  // On this Debian host the musl build runs only with LD_LIBRARY_PATH and LD_PRELOAD (Debian's
  // libstdc++ and a glibc-compat shim, see helpers.ts) — exactly what the proxy refuses at launch.
  // So this checks that the musl binary runs our code through hardening to that refusal; on
  // Alpine, where it is native, it needs neither variable.
  needs(MUSL_MISSING)("--target=bun-linux-x64-musl runs, hardens, and refuses the loader variables it was started with", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-musl-"));
    const musl = { env: muslEnvironment(dir) };
    const bin = join(dir, "responses-api-proxy-musl");
    await build(bin, "bun-linux-x64-musl");
    const version = Bun.spawnSync([bin, "--version"], { env: musl.env });
    expect(version.exitCode).toBe(0);
    const r = await runProxy({ cmd: [bin], env: musl.env });
    expect(r.code).toBe(1); // not 5 or 7: hardening succeeded on musl, then start-up refused
    expect(r.stderr).toMatch(/^responses-api-proxy: refusing to start: LD_\w+, LD_\w+ was set at launch/);
  }, 120_000);
});

describe("launch environment", () => {
  for (const name of ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"]) {
    test(`${name} set at launch: refused with one line before the key is read, exit 1`, async () => {
      const r = await runProxy({ env: baseEnv({ [name]: name === "LD_LIBRARY_PATH" ? "/nonexistent" : "" }) });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `responses-api-proxy: refusing to start: ${name} was set at launch, so the dynamic loader ran code of the caller's choosing ` +
          "inside this process before it could refuse; start it with a cleared environment (env -i PATH=/usr/bin:/bin …, see the README)\n",
      );
    });
  }

  needs(lacksTool("gcc", "gcc"))("a preloaded library runs before any check: the proxy refuses, yet it could read what was already piped in (hence env -i in every recipe)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-preload-"));
    // The attack of issue 15: a library the loader runs before main() copies whatever is on stdin.
    const src = join(dir, "steal.c");
    const stolen = join(dir, "stolen");
    await Bun.write(src, `#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void steal(void) {
  int out = open("${stolen}", O_WRONLY | O_CREAT | O_TRUNC, 0600);
  char buf[4096]; ssize_t n;
  if (out < 0) return;
  n = read(0, buf, sizeof buf); /* the key, if it is already there */
  if (n > 0) write(out, buf, (size_t)n);
  close(out);
  lseek(0, 0, SEEK_SET);
}
`);
    const lib = join(dir, "libsteal.so");
    expect(Bun.spawnSync(["gcc", "-shared", "-fPIC", "-o", lib, src]).exitCode).toBe(0);
    const r = await runProxy({ env: baseEnv({ LD_PRELOAD: lib }) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("refusing to start: LD_PRELOAD was set at launch");
    // What the refusal cannot undo, and why the README's recipes clear the environment: the
    // library ran first and could read what was already piped in. Shown here, not hidden.
    expect(readFileSync(stolen, "utf8")).toContain(KEY);
  });
});
