// The README's recipes, each run exactly as written (the environment around it is arranged: a
// folder bound over /usr/local/bin or /run in a private mount namespace, a fake upstream). The
// CI snippet, npm install and release install recipes are run in release.test.ts.
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { responseEvents } from "../../scripts/fake-upstream";
import {
  BIN, IS_ROOT, KEY, ROOT, baseEnv, gappedStream, inNamespace, lacksTool, needs, onCleanup, readmeRecipe, startProxy, startUpstream, stopAll, waitFor,
} from "../helpers";

afterEach(stopAll);

const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
const asRootInNamespace = !IS_ROOT ? "needs root: the recipe runs as root, in a private mount namespace" : lacksTool("unshare", "util-linux");
const ANSWER = ["Hello ", "from ", "the ", "fake ", "upstream."];

describe("README recipes, run exactly as written", () => {
  needs(asRootInNamespace)("run: the proxy starts in a cleared environment and writes server-info in a root-owned folder", async () => {
    const bin = mkdtempSync(join(tmpdir(), "rap-usrlocalbin-"));
    copyFileSync(BIN, join(bin, "responses-api-proxy"));
    chmodSync(join(bin, "responses-api-proxy"), 0o755);
    const run = mkdtempSync(join(tmpdir(), "rap-run-"));
    const info = join(run, "responses-api-proxy/server-info.json");
    // The recipe ends with the proxy in the background; the wait is the test's, not the recipe's.
    const script = `${readmeRecipe("run")}for _ in $(seq 100); do [ -s /run/responses-api-proxy/server-info.json ] && break; sleep 0.1; done\n`;
    const r = await inNamespace({ [bin]: "/usr/local/bin", [run]: "/run" }, script, baseEnv({ OPENAI_API_KEY: KEY, HOME: "/root" }));
    expect(r.code).toBe(0);
    const { pid } = JSON.parse(readFileSync(info, "utf8"));
    onCleanup(() => { try { process.kill(pid, "SIGKILL"); } catch {} });
    const folder = statSync(join(run, "responses-api-proxy"));
    expect([folder.uid, folder.mode & 0o777]).toEqual([0, 0o755]);
    // Only PATH reached the proxy: OPENAI_API_KEY, HOME and the rest stayed behind.
    expect(readFileSync(`/proc/${pid}/environ`, "latin1")).toBe("PATH=/usr/local/bin:/usr/bin:/bin\0");
    expect(readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0")[0]).toBe("responses-api-proxy");
    process.kill(pid, "SIGTERM");
    await waitFor(() => !existsSync(info), 5000, "server-info removed on exit");
  }, 60_000);

  needs(asRootInNamespace, lacksTool("jq", "jq"), lacksTool("curl", "curl"), lacksTool("setpriv", "util-linux"))(
    "use: as user nobody, the port from server-info, an answer, and /shutdown stops the proxy",
    async () => {
      const up = await startUpstream(() => Response.json({ id: "resp_1", output_text: "hello from the fake upstream" }));
      const run = mkdtempSync(join(tmpdir(), "rap-run-"));
      chmodSync(run, 0o755);
      mkdirSync(join(run, "responses-api-proxy"), { mode: 0o755 });
      const proxy = await startProxy({ args: ["--http-shutdown", "--upstream-url", up.url, "--server-info", join(run, "responses-api-proxy/server-info.json")] });
      const r = await inNamespace({ [run]: "/run" }, readmeRecipe("use"), baseEnv(), { user: NOBODY });
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(r.out).toContain("hello from the fake upstream");
      expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
      expect(await proxy.exited).toBe(0);
      expect(proxy.stderr()).toMatch(/ user=nobody\(65534\) POST \/v1\/responses 200 /);
    },
    60_000,
  );

  needs(existsSync(join(ROOT, "node_modules/.bin/codex")) ? undefined : "no node_modules/.bin/codex (npm ci installs @openai/codex)", lacksTool("git", "git"))(
    "codex: the Codex CLI with a custom provider streams the answer through the proxy",
    async () => {
      const up = await startUpstream(() => gappedStream(responseEvents(ANSWER), 20));
      const proxy = await startProxy({ args: ["--upstream-url", up.url] });
      const repo = mkdtempSync(join(tmpdir(), "rap-codex-repo-"));
      Bun.spawnSync(["git", "init", "-q", repo]);
      const p = Bun.spawn(["bash", "-e", "-c", readmeRecipe("codex")], {
        cwd: repo,
        env: baseEnv({ PORT: String(proxy.port), PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`, CODEX_HOME: mkdtempSync(join(tmpdir(), "rap-codex-")) }),
        stdout: "pipe", stderr: "pipe",
      });
      const code = await p.exited;
      const out = await new Response(p.stdout).text();
      expect(code).toBe(0);
      expect(out).toContain(ANSWER.join(""));
      expect(up.requests).toHaveLength(1);
      expect(up.requests[0]!.headers.get("authorization")).toBe(`Bearer ${KEY}`);
    },
    60_000,
  );

  test("demo: npm run demo streams the answer and exits 0 (npm ci before it is what .ci/run does)", async () => {
    expect(readmeRecipe("demo")).toBe("npm ci && npm run demo\n");
    const p = Bun.spawn(["npm", "run", "demo"], { cwd: ROOT, env: baseEnv({ HOME: process.env.HOME ?? "/root" }), stdout: "pipe", stderr: "pipe" });
    const code = await p.exited;
    const out = await new Response(p.stdout).text();
    expect(code).toBe(0);
    expect(out).toContain("The proxy streamed this answer event by event, and the SDK never saw the key.");
  }, 60_000);
});

describe("README and docs", () => {
  const pages = ["README.md", ...["browser-refusal", "clients", "logging", "operations", "performance", "reference", "security"].map((d) => `docs/${d}.md`)];

  test("the README is short enough for a newcomer (under 16 KB) and every page refers only to files in the repository", () => {
    expect(readFileSync(join(ROOT, "README.md")).length).toBeLessThan(16 * 1024);
    for (const page of pages) {
      const text = readFileSync(join(ROOT, page), "utf8");
      expect(text).not.toContain("../shared");
      for (const [, target] of text.matchAll(/\]\(([^)#]+)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue; // a web address
        expect(`${page} -> ${target} ${existsSync(join(ROOT, page, "..", target!))}`).toBe(`${page} -> ${target} true`);
      }
    }
  });
});
