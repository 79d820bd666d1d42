// `bun scripts/client-headers.ts`: what each client sends that the browser refusal looks at
// (docs/browser-refusal.md). A capture server on 127.0.0.1 records the headers of:
// - the command-line runtimes installed here, each running its real client (tests/clients/);
// - headless Chromium (Debian's package) making each attack a hostile page could make.
// Nothing leaves this machine; a runtime that is missing is reported as such.
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const CLIENTS = join(ROOT, "tests", "clients");
const WATCHED = ["origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user", "user-agent", "host", "upgrade"];

let seen: Array<{ method: string; path: string; headers: Headers }> = [];
const capture = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    seen.push({ method: req.method, path: new URL(req.url).pathname, headers: req.headers });
    await req.arrayBuffer();
    return new Response("event: done\ndata: {}\n\n", { headers: { "content-type": "text/event-stream" } });
  },
});
const base = `http://127.0.0.1:${capture.port}/v1`;

function row(name: string, headers?: Headers): string {
  if (!headers) return `| ${name} | ${WATCHED.map(() => "").join(" | ")} (not run) |`;
  const cell = (h: string) => {
    const v = headers.get(h);
    if (v === null) return "–";
    if (h === "user-agent" && v.length > 28) return `\`${v.slice(0, 25)}…\``;
    if (h === "host") return v.startsWith("127.0.0.1") ? "loopback" : `\`${v}\``;
    return `\`${v}\``;
  };
  return `| ${name} | ${WATCHED.map(cell).join(" | ")} |`;
}

async function runOnce(name: string, cmd: string[] | "" | undefined, env: Record<string, string> = {}): Promise<string> {
  if (!cmd) return row(name);
  seen = [];
  const proc = Bun.spawn(cmd, { cwd: CLIENTS, stdin: "ignore", stdout: "ignore", stderr: "ignore", env: { ...process.env, ...env } });
  const timer = setTimeout(() => proc.kill(), 60_000);
  await proc.exited;
  clearTimeout(timer);
  return row(name, seen.find((s) => s.path === "/v1/responses")?.headers);
}

const which = (n: string) => Bun.which(n) ?? undefined;
const node = which("node");
const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : which("python3");
const go = which("go");
const java = which("java");
const curl = which("curl");
const curlArgs = (flags: string[]) => curl && [curl, "-sS", ...flags, `${base}/responses`, "-d", "{}", "-o", "/dev/null"];
let goBinary: string | undefined;
if (go) {
  goBinary = join(mkdtempSync(join(tmpdir(), "rap-go-")), "go_client");
  Bun.spawnSync([go, "build", "-o", goBinary, "go_client.go"], { cwd: CLIENTS, env: { ...process.env, GO111MODULE: "off" } });
}
const codex = join(ROOT, "node_modules", ".bin", "codex");

const header = `| client | ${WATCHED.join(" | ")} |\n|---|${WATCHED.map(() => "---").join("|")}|`;
console.log(`Command-line clients (${new Date().toISOString().slice(0, 10)}):\n\n${header}`);
const bunFetch = async () => {
  seen = [];
  await fetch(`${base}/responses`, { method: "POST", body: "{}" });
  return row(`Bun ${Bun.version} fetch`, seen[0]?.headers);
};
for (const line of [
  await runOnce("Node fetch (undici)", node && [node, "node-clients.mjs", "fetch", "stream", base]),
  await runOnce("openai SDK on Node", node && [node, "node-clients.mjs", "openai", "stream", base]),
  await runOnce("Vercel AI SDK on Node", node && [node, "node-clients.mjs", "ai-sdk", "stream", base]),
  await runOnce("LangChain JS on Node", node && [node, "node-clients.mjs", "langchain", "stream", base]),
  await bunFetch(),
  await runOnce("Python (httpx, else requests)", python && [python, "python_client.py", "stream", base]),
  await runOnce("Go net/http", goBinary && [goBinary, "stream", base]),
  await runOnce("Java HttpClient (default)", java && [java, "JavaClient.java", "stream", base]),
  await runOnce("curl", curlArgs([])),
  await runOnce("curl --http2", curlArgs(["--http2"])),
  await runOnce("Codex CLI (codex exec)", node && existsSync(codex) ? [codex, "exec", "--skip-git-repo-check", "-c", "model_provider=p", "-c", `model_providers.p={ name = "p", base_url = "${base}", wire_api = "responses" }`, "hi"] : undefined, { CODEX_HOME: mkdtempSync(join(tmpdir(), "rap-codex-")) }),
]) console.log(line);

// Chromium: a hostile page on another loopback port makes each attack on the capture server.
const CHROMIUM = "/usr/bin/chromium";
if (existsSync(CHROMIUM)) {
  const { chromium } = await import("playwright-core");
  const target = `http://127.0.0.1:${capture.port}`;
  const attacks: Record<string, string> = {
    "form POST (text/plain)": `const f=document.createElement("form");f.method="POST";f.action="${target}/v1/responses";f.enctype="text/plain";f.target="sink";document.body.append(f);f.submit();`,
    "fetch POST, mode no-cors": `fetch("${target}/v1/responses",{method:"POST",mode:"no-cors",body:"{}"});`,
    "fetch POST, mode cors": `fetch("${target}/v1/responses",{method:"POST",body:"{}"}).catch(()=>{});`,
    "navigator.sendBeacon": `navigator.sendBeacon("${target}/v1/responses","{}");`,
    "<img src=/shutdown>": `new Image().src="${target}/shutdown";`,
    "new WebSocket(…/v1/responses)": `try{new WebSocket("ws://127.0.0.1:${capture.port}/v1/responses")}catch{}`,
  };
  const page = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response('<iframe name="sink"></iframe>', { headers: { "content-type": "text/html" } }) });
  const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "rap-chromium-")), {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const tab = await context.newPage();
  await tab.goto(`http://127.0.0.1:${page.port}/`);
  console.log(`\nChromium ${context.browser()?.version() ?? ""}, page on another loopback port:\n\n${header.replace("client", "attack")}`);
  for (const [name, script] of Object.entries(attacks)) {
    seen = [];
    await tab.evaluate(script);
    const deadline = Date.now() + 2000;
    while (!seen.length && Date.now() < deadline) await Bun.sleep(20);
    console.log(row(name, seen[0]?.headers));
  }
  await context.close();
  page.stop(true);
} else console.log(`\n${CHROMIUM} is missing: no browser rows`);
capture.stop(true);
