// Release artifacts and deployment recipes, checked as a user would use them.
import type { Server } from "bun";
import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NPM_DIR, NPM_PLATFORMS, platformPackage, tarballName } from "../../scripts/npm-packages";
import { artifactName, RELEASE_DIR, TARGETS } from "../../scripts/release";
// @ts-expect-error: plain JavaScript, run by the runner's Node as it is checked in
import { target } from "../../action/main.mjs";
import { BIN, IS_ROOT, KEY, ROOT, SAMPLE_BODY, inNamespace, processesMatching, readmeRecipe, MUSL_MISSING, baseEnv, goodRequest, lacksTool, muslEnvironment, needs, onCleanup, startProxy, startUpstream, stopAll, waitFor } from "../helpers";

afterEach(stopAll);

const version: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
const release = join(ROOT, RELEASE_DIR);
const artifact = (target: string) => join(release, artifactName(target));

// Every test here uses what `npm run release` writes.
beforeAll(async () => {
  const proc = Bun.spawn(["npm", "run", "--silent", "release"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`npm run release failed: ${await new Response(proc.stderr).text()}`);
}, 600_000);

describe("npm run release", () => {

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

describe("npm install, offline, from the tarballs npm run release wrote", () => {
  const tarball = (name: string) => join(ROOT, NPM_DIR, tarballName(name));
  const target = `${process.platform}-${process.arch}`; // linux-x64 here: glibc, so not -musl
  const npm = async (args: string[], cwd: string) => {
    const p = Bun.spawn(["npm", ...args, "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=error"], { cwd, stdout: "pipe", stderr: "pipe", env: baseEnv({ HOME: cwd }) });
    const code = await p.exited;
    return { code, out: await new Response(p.stdout).text(), err: await new Response(p.stderr).text() };
  };

  /** The installed command serves a request started the way the README says: env -i, key piped in. */
  async function servesEndToEnd(bin: string) {
    expect(lstatSync(bin).isSymbolicLink()).toBe(true); // npm's link to the launcher
    expect(Bun.spawnSync(["env", "-i", "PATH=/usr/bin:/bin", bin, "--version"]).stdout.toString()).toBe(`${version}\n`);
    const up = await startUpstream();
    const proxy = await startProxy({ cmd: ["env", "-i", "PATH=/usr/bin:/bin", bin, "--http-shutdown", "--upstream-url", up.url], env: {} });
    // No Node process between the key and the binary: the launcher exec'd the proxy in its place.
    expect(readlinkSync(`/proc/${proxy.proc.pid}/exe`)).toEndWith(`/${platformPackage(target)}/bin/responses-api-proxy`);
    expect((await goodRequest(proxy)).status).toBe(200);
    expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
    expect((await fetch(`${proxy.base}/shutdown`)).status).toBe(200);
    expect(await proxy.exited).toBe(0);
  }

  test("the README's npm install -g, from a registry on 127.0.0.1: npm picks this platform's package alone, and the command runs the binary", async () => {
    // A registry that knows only the tarballs: what npm asks for, and what it downloads, is recorded.
    const files = readdirSync(join(ROOT, NPM_DIR)).filter((f) => f.endsWith(".tgz"));
    const downloaded: string[] = [];
    const registry: Server<undefined> = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      async fetch(req): Promise<Response> {
        const path = decodeURIComponent(new URL(req.url).pathname).slice(1);
        if (path.startsWith("tarballs/")) {
          const file = path.slice("tarballs/".length);
          if (!files.includes(file)) return new Response("not found", { status: 404 });
          downloaded.push(file);
          return new Response(Bun.file(join(ROOT, NPM_DIR, file)));
        }
        const file = files.find((f) => f === `${path}-${version}.tgz`);
        if (!file) return Response.json({ error: "not found" }, { status: 404 });
        const bytes = readFileSync(join(ROOT, NPM_DIR, file));
        const manifest = JSON.parse(Bun.spawnSync(["tar", "-xOzf", join(ROOT, NPM_DIR, file), "package/package.json"]).stdout.toString());
        const dist: Record<string, string> = {
          tarball: `http://127.0.0.1:${registry.port}/tarballs/${file}`,
          shasum: createHash("sha1").update(bytes).digest("hex"),
          integrity: `sha512-${createHash("sha512").update(bytes).digest("base64")}`,
        };
        return Response.json({ name: path, "dist-tags": { latest: version }, versions: { [version]: { ...manifest, dist } } });
      },
    });
    onCleanup(() => registry.stop(true));
    const home = mkdtempSync(join(tmpdir(), "rap-npm-"));
    const prefix = join(home, "prefix");
    // The README's command exactly as written; where npm installs from and to is npm's own configuration.
    const p = Bun.spawn(["bash", "-e", "-c", readmeRecipe("npm-install")], {
      cwd: home, stdout: "pipe", stderr: "pipe",
      env: baseEnv({
        HOME: home, npm_config_prefix: prefix, npm_config_cache: join(home, "cache"), npm_config_registry: `http://127.0.0.1:${registry.port}/`,
        npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false", npm_config_loglevel: "error",
      }),
    });
    const r = { code: await p.exited, err: await new Response(p.stderr).text() };
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    // Only this platform's binary was fetched: npm read os, cpu and libc from the registry.
    expect(downloaded.sort()).toEqual([tarballName("responses-api-proxy"), tarballName(platformPackage(target))].sort());
    expect(readdirSync(join(prefix, "lib/node_modules/responses-api-proxy/node_modules"))).toEqual([platformPackage(target)]);
    await servesEndToEnd(join(prefix, "bin/responses-api-proxy"));
  }, 120_000);

  needs(IS_ROOT ? lacksTool("unshare", "util-linux") : "needs root: the recipe installs as root (into a folder bound over /usr/local/bin)")(
    "the README's release install: the checksum is checked, and the binary installed root-owned, 0755",
    async () => {
      const downloads = mkdtempSync(join(tmpdir(), "rap-downloads-"));
      for (const f of ["SHA256SUMS", artifactName("linux-x64"), artifactName("darwin-arm64")]) copyFileSync(join(release, f), join(downloads, f));
      const bin = mkdtempSync(join(tmpdir(), "rap-usrlocalbin-"));
      const recipe = readmeRecipe("release-install");
      const run = () => inNamespace({ [bin]: "/usr/local/bin" }, recipe, baseEnv(), { cwd: downloads });
      const r = await run();
      expect(r.err).toBe("");
      expect(r.out.trim().split("\n").sort()).toEqual([`${artifactName("darwin-arm64")}: OK`, `${artifactName("linux-x64")}: OK`]);
      const installed = statSync(join(bin, "responses-api-proxy"));
      expect([installed.uid, installed.gid, installed.mode & 0o7777]).toEqual([0, 0, 0o755]);
      expect(Bun.spawnSync([join(bin, "responses-api-proxy"), "--version"]).stdout.toString()).toBe(`${version}\n`);
      // A corrupted download: sha256sum fails, and bash -e stops before install.
      rmSync(join(bin, "responses-api-proxy"));
      writeFileSync(join(downloads, artifactName("linux-x64")), "tampered");
      expect((await run()).code).not.toBe(0);
      expect(existsSync(join(bin, "responses-api-proxy"))).toBe(false);
    },
    60_000,
  );

  test("npm install -g --offline of the two tarballs: the command runs the binary", async () => {
    const home = mkdtempSync(join(tmpdir(), "rap-npm-"));
    const prefix = join(home, "prefix");
    const r = await npm(["install", "-g", "--offline", "--prefix", prefix, "--cache", join(home, "cache"),
      tarball("responses-api-proxy"), tarball(platformPackage(target))], home);
    expect(r.code).toBe(0);
    await servesEndToEnd(join(prefix, "bin/responses-api-proxy"));
  }, 120_000);

  test("without the platform package (--omit=optional), the command says what is missing and exits 1", async () => {
    const home = mkdtempSync(join(tmpdir(), "rap-npm-"));
    const prefix = join(home, "prefix");
    expect((await npm(["install", "-g", "--offline", "--omit=optional", "--prefix", prefix, "--cache", join(home, "cache"), tarball("responses-api-proxy")], home)).code).toBe(0);
    const run = Bun.spawnSync([join(prefix, "bin/responses-api-proxy"), "--version"], { env: { PATH: "/usr/bin:/bin" } });
    expect(run.exitCode).toBe(1);
    expect(run.stderr.toString()).toBe(`responses-api-proxy: the package ${platformPackage(target)} is not installed; install again without --omit=optional (or --no-optional), or use a release binary\n`);
  }, 60_000);

  test("the tarballs: one per platform with os, cpu and libc set and the binary executable; the main one has only the launcher", () => {
    for (const [t, platform] of Object.entries(NPM_PLATFORMS)) {
      const file = tarball(platformPackage(t));
      const listing = Bun.spawnSync(["tar", "-tvzf", file]).stdout.toString();
      expect(listing).toMatch(/^-rwxr-xr-x .* package\/bin\/responses-api-proxy$/m);
      const manifest = JSON.parse(Bun.spawnSync(["tar", "-xOzf", file, "package/package.json"]).stdout.toString());
      expect([manifest.os, manifest.cpu, manifest.libc]).toEqual([[platform.os], [platform.cpu], platform.libc ? [platform.libc] : undefined]);
      expect(manifest.scripts).toBeUndefined(); // nothing runs at install time
    }
    const main = JSON.parse(Bun.spawnSync(["tar", "-xOzf", tarball("responses-api-proxy"), "package/package.json"]).stdout.toString());
    expect(Object.keys(main.optionalDependencies).sort()).toEqual(Object.keys(NPM_PLATFORMS).map(platformPackage).sort());
    expect(main.scripts).toBeUndefined();
    expect(main.license).toBe("Apache-2.0");
    const files = Bun.spawnSync(["tar", "-tzf", tarball("responses-api-proxy")]).stdout.toString().trim().split("\n").sort();
    expect(files).toEqual(["package/LICENSE", "package/README.md", "package/bin/responses-api-proxy", "package/package.json"]);
  }, 120_000);
});

describe("the GitHub Action (action.yml), its steps run as the runner runs them", () => {
  const action = readFileSync(join(ROOT, "action.yml"), "utf8");

  /** A simulated runner: its files, the inputs as INPUT_* variables, and node running a step. */
  function runner(inputs: Record<string, string>, extra: Record<string, string> = {}) {
    const temp = mkdtempSync(join(tmpdir(), "rap-runner-"));
    const files = { GITHUB_ENV: join(temp, "env"), GITHUB_OUTPUT: join(temp, "output"), GITHUB_STATE: join(temp, "state") };
    for (const f of Object.values(files)) writeFileSync(f, "");
    const defaults = Object.fromEntries([...action.matchAll(/^  ([a-z-]+):\n(?:    .*\n)*?    default: "?([^"\n]*)"?$/gm)].map((m) => [m[1]!, m[2]!]));
    const env: Record<string, string> = { PATH: process.env.PATH!, RUNNER_TEMP: temp, ...files, GITHUB_ACTION_REPOSITORY: "owner/responses-api-proxy", ...extra };
    for (const [name, value] of Object.entries({ ...defaults, ...inputs })) env[`INPUT_${name.toUpperCase()}`] = value;
    const read = (name: keyof typeof files) =>
      Object.fromEntries(readFileSync(files[name], "utf8").trim().split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    const step = async (script: "main" | "post", stepEnv: Record<string, string> = {}) => {
      const p = Bun.spawn(["node", join(ROOT, `action/${script}.mjs`)], { env: { ...env, ...stepEnv }, stdout: "pipe", stderr: "pipe" });
      const code = await p.exited;
      return { code, out: (await new Response(p.stdout).text()) + (await new Response(p.stderr).text()) };
    };
    /** The post step, with the state the main step saved, as the runner passes it (STATE_*). */
    const post = () => step("post", Object.fromEntries(Object.entries(read("GITHUB_STATE")).map(([k, v]) => [`STATE_${k}`, v])));
    return { temp, read, main: () => step("main"), post };
  }

  /** The release folder served on 127.0.0.1, as GitHub serves a release's assets. */
  function releaseServer(tamper?: string) {
    const server = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      fetch(req) {
        const m = /^\/download\/v([^/]+)\/([^/]+)$/.exec(new URL(req.url).pathname);
        const file = m && m[1] === version ? join(release, m[2]!) : undefined;
        if (!file || !existsSync(file)) return new Response("Not Found", { status: 404 });
        if (tamper && m![2] === tamper) return new Response(Buffer.concat([readFileSync(file), Buffer.from("x")]));
        return new Response(Bun.file(file));
      },
    });
    onCleanup(() => server.stop(true));
    return `http://127.0.0.1:${server.port}/download/v{version}`;
  }

  /** Exited: no such process, or one nobody has reaped yet (a zombie; the sandbox's init may be slow). */
  const gone = (pid: number) => !existsSync(`/proc/${pid}`) || /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));

  test("the release it fetches for a runner: musl only where the C library is musl only", () => {
    const only = (...paths: string[]) => (p: string) => paths.includes(p);
    expect(target("linux", "x64", only("/lib64/ld-linux-x86-64.so.2"))).toBe("linux-x64");
    expect(target("linux", "x64", only("/lib64/ld-linux-x86-64.so.2", "/lib/ld-musl-x86_64.so.1"))).toBe("linux-x64"); // Debian with musl installed
    expect(target("linux", "x64", only("/lib/ld-musl-x86_64.so.1"))).toBe("linux-x64-musl"); // Alpine
    expect(target("linux", "arm64", only("/lib/ld-musl-aarch64.so.1"))).toBe("linux-arm64-musl");
    expect(target("darwin", "arm64", only())).toBe("darwin-arm64");
    expect(target("win32", "x64", only())).toBeUndefined();
  });

  test("the default version is this release's", () => {
    expect(action).toContain(`default: "${version}"`);
  });

  test("starts the checked binary with a cleared environment, exports OPENAI_BASE_URL, and the post step stops it and prints its log", async () => {
    const up = await startUpstream();
    const r = runner({ "api-key": KEY, "upstream-url": up.url, "release-url": releaseServer() }, { SOME_RUNNER_VARIABLE: "x" });
    const main = await r.main();
    expect(main.code).toBe(0);
    const base = r.read("GITHUB_ENV").OPENAI_BASE_URL!;
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(r.read("GITHUB_OUTPUT")["base-url"]).toBe(base);
    const pid = Number(r.read("GITHUB_STATE").pid);
    // The proxy runs with PATH alone, whatever the runner's environment held.
    expect(readFileSync(`/proc/${pid}/environ`, "latin1")).toBe("PATH=/usr/bin:/bin\0");
    // A later step: no key, only the base URL.
    const res = await fetch(`${base}/responses`, { method: "POST", headers: { "content-type": "application/json" }, body: SAMPLE_BODY });
    expect(res.status).toBe(200);
    expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
    const post = await r.post();
    expect(post.code).toBe(0);
    expect(post.out).toContain("::group::responses-api-proxy log (stopped)");
    expect(post.out).toContain(" listening on 127.0.0.1:");
    expect(post.out).toMatch(/POST \/v1\/responses 200/);
    expect(post.out).toContain("stopped (SIGTERM)");
    expect(gone(pid)).toBe(true);
    for (const text of [main.out, post.out, ...["env", "output", "state"].map((f) => readFileSync(join(r.temp, f), "utf8"))]) {
      expect(text).not.toContain(KEY);
    }
  }, 60_000);

  test("an empty secret (a fork's pull request): the step fails at once with the proxy's own error line, and exports nothing", async () => {
    const r = runner({ "api-key": "", "release-url": releaseServer() });
    const t0 = performance.now();
    const main = await r.main();
    expect(main.code).toBe(1);
    expect(performance.now() - t0).toBeLessThan(10_000); // not a wait for a proxy that died at once
    expect(main.out).toContain("::error title=responses-api-proxy::responses-api-proxy: standard input held no API key (it was empty)");
    expect(main.out).toContain("::notice title=responses-api-proxy::the api-key input is empty");
    expect(r.read("GITHUB_ENV")).toEqual({});
    const post = await r.post();
    expect(post.code).toBe(0);
    expect(post.out).toContain("was not started");
  }, 60_000);

  test("a binary that does not match SHA256SUMS is not run", async () => {
    const r = runner({ "api-key": KEY, "release-url": releaseServer(artifactName(target())) });
    const main = await r.main();
    expect(main.code).toBe(1);
    expect(main.out).toMatch(new RegExp(`::error title=responses-api-proxy::${artifactName(target())}: SHA-256 [0-9a-f]{64} does not match SHA256SUMS`));
    expect(r.read("GITHUB_STATE")).toEqual({});
    expect(processesMatching(`${r.temp}/`)).toEqual([]);
  }, 60_000);

  test("a release that is not there: the step fails naming the URL", async () => {
    const r = runner({ "api-key": KEY, version: "9.9.9", "release-url": releaseServer() });
    const main = await r.main();
    expect(main.code).toBe(1);
    expect(main.out).toMatch(/::error title=responses-api-proxy::could not download http:\/\/127\.0\.0\.1:\d+\/download\/v9\.9\.9\/SHA256SUMS: HTTP 404/);
  }, 60_000);

  test("github-oidc without id-token permission: the step says what the job lacks", async () => {
    const r = runner({ "github-oidc": "true", "release-url": releaseServer() });
    const main = await r.main();
    expect(main.code).toBe(1);
    expect(main.out).toContain('::error title=responses-api-proxy::github-oidc needs "permissions: id-token: write" on the job');
  }, 60_000);

  test("github-oidc: the runner's request token goes in on stdin, the access token goes upstream", async () => {
    const gh = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) =>
      req.headers.get("authorization") === "bearer request-token-1" ? Response.json({ value: "gh-id-token" }) : new Response("no", { status: 401 }) });
    const oa = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ access_token: "at-1", token_type: "Bearer", expires_in: 3600 }) });
    onCleanup(() => (gh.stop(true), oa.stop(true)));
    const up = await startUpstream();
    const r = runner(
      { "github-oidc": "true", "oidc-audience": "aud", "identity-provider-id": "idp", "service-account-id": "sa", "oidc-token-url": `http://127.0.0.1:${oa.port}/oauth/token`,
        "upstream-url": up.url, "release-url": releaseServer() },
      { ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${gh.port}/_apis/token?api-version=2.0`, ACTIONS_ID_TOKEN_REQUEST_TOKEN: "request-token-1" },
    );
    const main = await r.main();
    expect(main.code).toBe(0);
    const res = await fetch(`${r.read("GITHUB_ENV").OPENAI_BASE_URL}/responses`, { method: "POST", body: SAMPLE_BODY });
    expect(res.status).toBe(200);
    expect(up.requests[0]!.headers.get("authorization")).toBe("Bearer at-1");
    expect((await r.post()).code).toBe(0);
  }, 60_000);
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
  needs(lacksTool("curl", "curl"))("runs exactly as written: starts the proxy, a client gets an answer, /shutdown stops it", async () => {
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
    await waitFor(() => processesMatching(`${work}/responses-api-proxy`).length === 0, 3000, "proxy exit");
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
