// Release artifacts and deployment recipes, checked as a user would use them.
import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { artifactName, RELEASE_DIR, TARGETS } from "../../scripts/release";
import { BIN, KEY, ROOT, MUSL_MISSING, baseEnv, goodRequest, lacksTool, muslEnvironment, needs, startProxy, startUpstream, stopAll, waitFor } from "../helpers";

afterEach(stopAll);

const version: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
const release = join(ROOT, RELEASE_DIR);
const artifact = (target: string) => join(release, artifactName(target));

describe("npm run release", () => {
  beforeAll(async () => {
    const proc = Bun.spawn(["npm", "run", "--silent", "release"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const code = await proc.exited;
    if (code !== 0) throw new Error(`npm run release failed: ${await new Response(proc.stderr).text()}`);
  }, 600_000);

  test("one binary per target, named with the version, and SHA256SUMS that sha256sum -c accepts", () => {
    for (const t of TARGETS) expect(existsSync(artifact(t))).toBe(true);
    expect(artifactName("linux-x64")).toBe(`responses-api-proxy-${version}-linux-x64`);
    expect(artifactName("windows-x64")).toBe(`responses-api-proxy-${version}-windows-x64.exe`);
    const sums = readFileSync(join(release, "SHA256SUMS"), "utf8").trim().split("\n");
    expect(sums).toHaveLength(TARGETS.length);
    const check = Bun.spawnSync(["sha256sum", "-c", "SHA256SUMS"], { cwd: release });
    expect(check.exitCode).toBe(0);
    expect(check.stdout.toString().match(/: OK$/gm)).toHaveLength(TARGETS.length);
  });

  needs(lacksTool("file", "file"))("every artifact's file type matches its target", () => {
    const expected: Record<string, RegExp> = {
      "linux-x64": /ELF 64-bit LSB executable, x86-64.*interpreter \/lib64\/ld-linux-x86-64\.so\.2/,
      "linux-x64-musl": /ELF 64-bit LSB executable, x86-64.*interpreter \/lib\/ld-musl-x86_64\.so\.1/,
      "linux-arm64": /ELF 64-bit LSB executable, ARM aarch64.*interpreter \/lib\/ld-linux-aarch64\.so\.1/,
      "linux-arm64-musl": /ELF 64-bit LSB executable, ARM aarch64.*interpreter \/lib\/ld-musl-aarch64\.so\.1/,
      "darwin-x64": /Mach-O 64-bit x86_64 executable/,
      "darwin-arm64": /Mach-O 64-bit arm64 executable/,
      "windows-x64": /PE32\+ executable \(console\) x86-64, for MS Windows/,
    };
    for (const t of TARGETS) {
      const out = Bun.spawnSync(["file", "-b", artifact(t)]).stdout.toString();
      expect(out).toMatch(expected[t]!);
    }
  });

  async function serveOneAndShutDown(bin: string, env: Record<string, string>) {
    const up = await startUpstream();
    const proxy = await startProxy({ cmd: [bin, "--http-shutdown", "--upstream-url", up.url], env });
    expect((await goodRequest(proxy)).status).toBe(200);
    expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
    expect((await fetch(`${proxy.base}/shutdown`)).status).toBe(200);
    expect(await proxy.exited).toBe(0);
  }

  test("the linux-x64 artifact starts, prints its version, serves one request and shuts down", async () => {
    const bin = artifact("linux-x64");
    expect(Bun.spawnSync([bin, "--version"]).stdout.toString()).toBe(`${version}\n`);
    await serveOneAndShutDown(bin, baseEnv());
  });

  needs(MUSL_MISSING)("the linux-x64-musl artifact runs, hardens, and refuses the loader variables Debian needs to run it", async () => {
    // On Debian it runs only with LD_LIBRARY_PATH and LD_PRELOAD (helpers.ts), which the proxy
    // refuses at launch; on Alpine, where it is native, it needs neither.
    const musl = { env: muslEnvironment(mkdtempSync(join(tmpdir(), "rap-relmusl-"))) };
    const bin = artifact("linux-x64-musl");
    expect(Bun.spawnSync([bin, "--version"], { env: musl.env }).stdout.toString()).toBe(`${version}\n`);
    const run = Bun.spawnSync([bin], { env: musl.env, stdin: new Blob([`${KEY}\n`]) });
    expect(run.exitCode).toBe(1); // hardening passed (else 5 or 7), then start-up refused
    expect(run.stderr.toString()).toContain("refusing to start: LD_LIBRARY_PATH, LD_PRELOAD was set at launch");
  });
});

describe("systemd unit", () => {
  const unit = readFileSync(join(ROOT, "deploy/responses-api-proxy.service"), "utf8");
  const directive = (name: string) => new RegExp(`^${name}=(.*)$`, "m").exec(unit)?.[1];

  needs(lacksTool("systemd-analyze", "systemd"))("passes systemd-analyze verify", () => {
    // verify checks that ExecStart's binary exists: point it at the built one.
    const dir = mkdtempSync(join(tmpdir(), "rap-unit-"));
    const path = join(dir, "responses-api-proxy.service");
    writeFileSync(path, unit.replaceAll("/usr/local/bin/responses-api-proxy", BIN));
    const r = Bun.spawnSync(["systemd-analyze", "verify", path]);
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
  });

  test("runs the binary as root with the key on stdin from a root-only file, restarts on failure", () => {
    expect(directive("User")).toBe("root");
    expect(directive("StandardInput")).toMatch(/^file:\/etc\/responses-api-proxy\/openai-api-key$/);
    expect(directive("Restart")).toBe("on-failure");
    expect(directive("RuntimeDirectoryMode")).toBe("0755");
    expect(directive("ExecStart")).toContain("--server-info /run/responses-api-proxy/server-info.json");
    expect(unit).not.toMatch(/^Environment=.*KEY/m);
  });

  test("its ExecStart, fed its StandardInput file, starts and writes a server-info file others can read", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rap-unitrun-"));
    const keyFile = join(dir, "openai-api-key");
    writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
    const runDir = join(dir, "run");
    const cmd = directive("ExecStart")!
      .replace("/usr/local/bin/responses-api-proxy", BIN)
      .replace("/run/responses-api-proxy", runDir)
      .split(" ");
    const proc = Bun.spawn(cmd, { stdin: Bun.file(keyFile), stderr: "pipe", env: baseEnv() });
    const info = join(runDir, "server-info.json");
    try {
      await waitFor(() => existsSync(info), 10_000, "server-info");
      const { port, pid } = JSON.parse(readFileSync(info, "utf8"));
      expect(pid).toBe(proc.pid);
      expect(statSync(info).mode & 0o777).toBe(0o644);
      // It answers: the gate refuses a GET without reaching any upstream.
      expect((await fetch(`http://127.0.0.1:${port}/v1/responses`)).status).toBe(403);
    } finally {
      proc.kill();
    }
  });
});

describe("README CI sidecar snippet", () => {
  test("runs exactly as written: starts the proxy, a client gets an answer, /shutdown stops it", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const block = /<!-- ci-sidecar:begin -->\n```shell\n([\s\S]*?)```\n<!-- ci-sidecar:end -->/.exec(readme);
    expect(block).not.toBeNull();
    const snippet = block![1]!;
    const work = mkdtempSync(join(tmpdir(), "rap-sidecar-"));
    copyFileSync(BIN, join(work, "responses-api-proxy"));
    chmodSync(join(work, "responses-api-proxy"), 0o755);
    const up = await startUpstream(() => Response.json({ id: "resp_sidecar", output_text: "hello from the fake upstream" }));
    const proc = Bun.spawn(["bash", "-e", "-c", snippet], {
      cwd: work,
      env: baseEnv({ OPENAI_API_KEY: KEY, OPENAI_RESPONSES_URL: up.url }),
      stdout: "pipe",
      stderr: "pipe",
    });
    const code = await proc.exited;
    const out = await new Response(proc.stdout).text();
    const err = await new Response(proc.stderr).text();
    expect(code).toBe(0);
    expect(out).toContain("hello from the fake upstream");
    expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
    expect(out + err).not.toContain(KEY);
    // /shutdown stopped it: no proxy process is left.
    await waitFor(() => Bun.spawnSync(["pgrep", "-f", `${work}/responses-api-proxy`]).exitCode !== 0, 3000, "proxy exit");
  });

  test("an empty secret (a fork's pull request): the snippet fails at once with the proxy's own error line", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const snippet = /<!-- ci-sidecar:begin -->\n```shell\n([\s\S]*?)```\n<!-- ci-sidecar:end -->/.exec(readme)![1]!;
    const work = mkdtempSync(join(tmpdir(), "rap-sidecar-"));
    copyFileSync(BIN, join(work, "responses-api-proxy"));
    chmodSync(join(work, "responses-api-proxy"), 0o755);
    const started = Date.now();
    const proc = Bun.spawn(["bash", "-e", "-c", snippet], { cwd: work, env: baseEnv({ OPENAI_API_KEY: "" }), stdout: "pipe", stderr: "pipe" });
    const code = await proc.exited;
    const err = await new Response(proc.stderr).text();
    expect(code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(3000); // not the 10 s the wait loop allows
    expect(err).toContain("responses-api-proxy: standard input held no API key");
    expect(err).toContain("responses-api-proxy did not start");
  });
});
