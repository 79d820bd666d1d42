// The GitHub Action's main step (action.yml): download the release binary for this runner, check
// it against SHA256SUMS, start it with a cleared environment and the credential on stdin, wait for
// its server-info, export OPENAI_BASE_URL. Plain Node, no dependencies: it runs as it is checked in.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** An input as the runner passes it (INPUT_<NAME>, upper case, hyphens kept). */
const input = (name) => (process.env[`INPUT_${name.toUpperCase()}`] ?? "").trim();
/** A workflow command's data, escaped as the runner expects. */
const escape = (s) => s.replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
const fail = (message) => {
  console.log(`::error title=responses-api-proxy::${escape(message)}`);
  process.exit(1);
};
const append = (file, name, value) => appendFileSync(process.env[file], `${name}=${value}\n`);

/** The release target for this runner; musl where the C library is musl only (Alpine). */
export function target(platform = process.platform, arch = process.arch, exists = existsSync) {
  const os = { linux: "linux", darwin: "darwin" }[platform];
  const cpu = { x64: "x64", arm64: "arm64" }[arch];
  if (!os || !cpu) return undefined;
  const [glibc, musl] = cpu === "x64"
    ? ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-musl-x86_64.so.1"]
    : ["/lib/ld-linux-aarch64.so.1", "/lib/ld-musl-aarch64.so.1"];
  return `${os}-${cpu}${os === "linux" && !exists(glibc) && exists(musl) ? "-musl" : ""}`;
}

async function download(url) {
  let res;
  try {
    res = await fetch(url);
  } catch (e) {
    fail(`could not download ${url}: ${e.cause?.code ?? e.message}`);
  }
  if (!res.ok) fail(`could not download ${url}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

async function main() {
  for (const name of ["RUNNER_TEMP", "GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE"]) {
    if (!process.env[name]) fail(`${name} is not set: this runs as a GitHub Actions step`);
  }
  const version = input("version");
  const platform = target();
  if (!platform) fail(`no release binary for ${process.platform}-${process.arch}; this action runs on Linux and macOS runners`);
  const oidc = input("github-oidc") === "true";

  // The credential and the flags that go with it.
  const args = ["--server-info", "", "--upstream-url", input("upstream-url")];
  let credential;
  if (oidc) {
    const { ACTIONS_ID_TOKEN_REQUEST_URL: url, ACTIONS_ID_TOKEN_REQUEST_TOKEN: token } = process.env;
    if (!url || !token) fail('github-oidc needs "permissions: id-token: write" on the job (the runner gave no ACTIONS_ID_TOKEN_REQUEST_URL)');
    args.push("--github-oidc", "--github-oidc-request-url", url);
    for (const name of ["oidc-audience", "identity-provider-id", "service-account-id"]) args.push(`--${name}`, input(name));
    if (input("oidc-token-url")) args.push("--oidc-token-url", input("oidc-token-url"));
    credential = token;
  } else {
    // An empty key (a fork's pull request gets no secrets) goes to the proxy as it is: the step
    // then fails with the proxy's own line, the one an operator would see anywhere else.
    credential = process.env["INPUT_API-KEY"] ?? "";
    if (credential === "") console.log("::notice title=responses-api-proxy::the api-key input is empty; workflows run from a fork's pull request get no secrets");
  }

  // The binary, checked against the release's SHA256SUMS before it runs.
  const name = `responses-api-proxy-${version}-${platform}`;
  const base = (input("release-url") ||
    `${process.env.GITHUB_SERVER_URL ?? "https://github.com"}/${process.env.GITHUB_ACTION_REPOSITORY}/releases/download/v{version}`
  ).replaceAll("{version}", version);
  const sums = (await download(`${base}/SHA256SUMS`)).toString("utf8");
  const expected = sums.split("\n").map((l) => l.trim().split(/\s+\*?/)).find(([, file]) => file === name)?.[0];
  if (!expected) fail(`${base}/SHA256SUMS has no line for ${name}`);
  const binary = await download(`${base}/${name}`);
  const actual = createHash("sha256").update(binary).digest("hex");
  if (actual !== expected) fail(`${name}: SHA-256 ${actual} does not match SHA256SUMS (${expected}); not running it`);
  const dir = mkdtempSync(join(process.env.RUNNER_TEMP, "responses-api-proxy-"));
  const bin = join(dir, "responses-api-proxy");
  writeFileSync(bin, binary, { mode: 0o755 });

  // Started as the README says: a cleared environment, the credential on stdin, its log in a file
  // the post step prints.
  const info = join(dir, "server-info.json");
  args[1] = info;
  const log = join(dir, "proxy.log");
  const out = openSync(log, "a");
  const proxy = spawn(bin, args, { env: { PATH: "/usr/bin:/bin" }, stdio: ["pipe", out, out], detached: true });
  let exited;
  proxy.on("exit", (code, signal) => (exited = signal ?? `exit ${code}`));
  proxy.on("error", (e) => (exited = e.message));
  proxy.stdin.on("error", () => {}); // a proxy that refused at once closed its stdin: its log says why
  proxy.stdin.end(`${credential}\n`);
  proxy.unref();

  const deadline = Date.now() + 30_000;
  while (!existsSync(info) || readFileSync(info, "utf8") === "") {
    if (exited !== undefined || Date.now() > deadline) {
      const lines = readFileSync(log, "utf8").trim().split("\n").filter(Boolean);
      if (exited === undefined) process.kill(proxy.pid, "SIGTERM");
      console.log(lines.join("\n"));
      fail(lines.at(-1) ?? `the proxy did not start (${exited ?? "no server-info after 30 s"})`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const { port } = JSON.parse(readFileSync(info, "utf8"));
  const baseUrl = `http://127.0.0.1:${port}/v1`;
  append("GITHUB_ENV", "OPENAI_BASE_URL", baseUrl);
  append("GITHUB_OUTPUT", "base-url", baseUrl);
  append("GITHUB_OUTPUT", "port", port);
  append("GITHUB_STATE", "pid", proxy.pid);
  append("GITHUB_STATE", "log", log);
  console.log(readFileSync(log, "utf8").trim());
  console.log(`OPENAI_BASE_URL=${baseUrl} for the steps that follow; the proxy stops when the job ends`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
