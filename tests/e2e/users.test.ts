// Local users on a shared host, tested with two real users: root and nobody (via setpriv). The
// proxy names who sent each request, may restrict who uses the key, never lets one user's upstream
// socket carry another's request, and keeps server-info and dumps out of other users' reach.
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, statSync, symlinkSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN, IS_ROOT, KEY, SAMPLE_BODY, dumpFiles, onCleanup, runProxy, spawnProxy, startProxy, startUpstream, stopAll, waitFor } from "../helpers";

afterEach(stopAll);

const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
const why = !IS_ROOT ? "needs root to act as a second user" : !Bun.which("setpriv") ? "setpriv (util-linux) is not installed" : !Bun.which("curl") ? "curl is not installed" : undefined;
if (why) console.log(`skip: two-user tests: ${why}`);
const twoUsers = test.skipIf(why !== undefined);

/** One POST with curl, as root or as nobody: status line and body. */
async function curlAs(user: "root" | "nobody", base: string, body = SAMPLE_BODY): Promise<{ status: number; body: string }> {
  const cmd = [...(user === "nobody" ? NOBODY : []), "curl", "-sS", "-w", "\n%{http_code}", `${base}/v1/responses`, "-H", "content-type: application/json", "-d", body];
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const nl = out.lastIndexOf("\n");
  return { status: Number(out.slice(nl + 1)), body: out.slice(0, nl) };
}

describe("who sent it", () => {
  twoUsers("each log line and each dump names the local user: root(0), nobody(65534)", async () => {
    const up = await startUpstream();
    const dir = join(mkdtempSync(join(tmpdir(), "rap-who-")), "dumps");
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--dump-dir", dir] });
    expect((await curlAs("root", proxy.base)).status).toBe(200);
    expect((await curlAs("nobody", proxy.base)).status).toBe(200);
    await waitFor(() => (proxy.stderr().match(/ POST \/v1\/responses 200 /g) ?? []).length === 2, 5000, "two lines");
    expect(proxy.stderr()).toMatch(/Z user=root\(0\) POST \/v1\/responses 200 /);
    expect(proxy.stderr()).toMatch(/Z user=nobody\(65534\) POST \/v1\/responses 200 /);
    await waitFor(() => dumpFiles(dir).length === 4, 5000, "four dump files");
    const users = dumpFiles(dir).filter((f) => f.endsWith("request.json")).map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")).user);
    expect(users).toEqual(["root(0)", "nobody(65534)"]);
  });
});

describe("--allow-user / --allow-group", () => {
  twoUsers("only the users allowed may spend the key or shut the proxy down; the others get a 403 naming the rule", async () => {
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--allow-user", "root", "--http-shutdown"] });
    expect((await curlAs("root", proxy.base)).status).toBe(200);
    const refused = await curlAs("nobody", proxy.base);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toEqual({
      error: {
        message: "local user nobody(65534) may not use this proxy (--allow-user / --allow-group)",
        type: "proxy_error", param: null, code: "user_not_allowed",
      },
    });
    expect(up.hits()).toBe(1);
    const shutdown = Bun.spawnSync([...NOBODY, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", `${proxy.base}/shutdown`]);
    expect(shutdown.stdout.toString()).toBe("403");
    await waitFor(() => proxy.stderr().includes("GET /shutdown 403"), 5000, "the refusal line");
    expect(proxy.stderr()).toMatch(/user=nobody\(65534\) POST \/v1\/responses 403 [\d.]+ms in=0B out=0B reason=user\n/);
    expect(proxy.stderr()).toMatch(/user=nobody\(65534\) GET \/shutdown 403 [\d.]+ms in=0B out=0B reason=user\n/);
  });

  twoUsers("with --websocket, a WebSocket handshake from a user not allowed gets the 403 too, and never reaches the upstream", async () => {
    let upgrades = 0;
    const up = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      fetch: (req, srv) => (upgrades++, srv.upgrade(req, { data: undefined }) ? undefined : new Response("no", { status: 400 })),
      websocket: { message: (ws, m) => void ws.send(m) },
    });
    onCleanup(() => up.stop(true));
    const proxy = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${up.port}/v1/responses`, "--allow-user", "root", "--websocket"] });
    // Async: the upstream runs in this process and must answer meanwhile.
    const handshake = async (user: string[]) => {
      const p = Bun.spawn([...user, "curl", "-s", "-i", "--max-time", "1",
      "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      `${proxy.base}/v1/responses`], { stdout: "pipe" });
      return (await new Response(p.stdout).text()).split("\r\n")[0];
    };
    expect(await handshake(NOBODY)).toBe("HTTP/1.1 403 Forbidden");
    expect(upgrades).toBe(0);
    // Root may: the relay opens (curl, not built for WebSockets, waits for a final answer until
    // --max-time; the upstream's count and the log show the handshake went through).
    await handshake([]);
    expect(upgrades).toBe(1);
    await waitFor(() => proxy.stderr().includes("user=root(0) GET /v1/responses 101 "), 5000, "root's relay to be logged");
    expect(proxy.stderr()).toMatch(/user=nobody\(65534\) GET \/v1\/responses 403 [\d.]+ms in=0B out=0B reason=user\n/);
  });

  twoUsers("a group lets its members in: --allow-group nogroup (nobody's primary group), by name or number", async () => {
    const up = await startUpstream();
    for (const group of ["nogroup", "65534"]) {
      const proxy = await startProxy({ args: ["--upstream-url", up.url, "--allow-group", group] });
      expect((await curlAs("nobody", proxy.base)).status).toBe(200);
      expect((await curlAs("root", proxy.base)).status).toBe(403);
    }
  });

  test("an unknown user or group name is refused at start-up, before the key is read", async () => {
    const r = await runProxy({ args: ["--allow-user", "no-such-user-here"] });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("responses-api-proxy: --allow-user no-such-user-here: no such user on this host\n");
    const g = await runProxy({ args: ["--allow-group", "no-such-group-here"] });
    expect(g.stderr).toBe("responses-api-proxy: --allow-group no-such-group-here: no such group on this host\n");
  });
});

describe("upstream connections are never shared between local users", () => {
  twoUsers("stray bytes after root's exchange never reach nobody: nobody's request goes on a connection of its own", async () => {
    // A broken (or hostile) upstream: on a connection it has answered once, it answers the next
    // request with bytes of the first exchange — what a shared pooled socket would hand over.
    let connections = 0;
    const server = net.createServer((sock) => {
      connections++;
      let answered = 0;
      let buf = "";
      sock.on("error", () => {});
      sock.on("data", (d) => {
        buf += d.toString("latin1");
        while (buf.includes(SAMPLE_BODY)) {
          buf = buf.slice(buf.indexOf(SAMPLE_BODY) + SAMPLE_BODY.length);
          const body = answered++ === 0 ? '{"owner":"this connection"}' : '{"leak":"ROOT-SECRET-ANSWER"}';
          sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    onCleanup(() => new Promise((r) => server.close(r)));
    const port = (server.address() as net.AddressInfo).port;
    const proxy = await startProxy({ args: ["--upstream-url", `http://127.0.0.1:${port}/v1/responses`] });
    expect((await curlAs("root", proxy.base)).body).toBe('{"owner":"this connection"}');
    const other = await curlAs("nobody", proxy.base);
    expect(other.body).toBe('{"owner":"this connection"}');
    expect(other.body).not.toContain("ROOT-SECRET");
    expect(connections).toBe(2);
    // The same user's next request does reuse its own connection (pooling still works).
    expect((await curlAs("root", proxy.base)).body).toContain("ROOT-SECRET-ANSWER");
    expect(connections).toBe(2);
  });
});

describe("server info", () => {
  twoUsers("folders it creates are 0755 whatever the umask, so other users can read the file", async () => {
    const root = mkdtempSync(join(tmpdir(), "rap-umask-"));
    chmodSync(root, 0o755);
    const info = join(root, "run", "proxy", "server-info.json");
    const up = await startUpstream();
    const p = spawnProxy({ cmd: ["sh", "-c", `umask 077; exec "$0" "$@"`, BIN, "--upstream-url", up.url, "--server-info", info] });
    onCleanup(() => p.kill());
    await waitFor(() => existsSync(info), 10_000, "server-info");
    for (const d of [join(root, "run"), join(root, "run", "proxy")]) expect(statSync(d).mode & 0o777).toBe(0o755);
    const read = Bun.spawnSync([...NOBODY, "cat", info]);
    expect(read.exitCode).toBe(0);
    expect(JSON.parse(read.stdout.toString()).pid).toBe(p.proc.pid);
  });
});

describe("--dump-dir", () => {
  twoUsers("a folder owned by another user, or writable by group or others, is refused at start-up", async () => {
    const base = mkdtempSync(join(tmpdir(), "rap-dumpown-"));
    const theirs = join(base, "theirs");
    mkdirSync(theirs, { mode: 0o700 });
    Bun.spawnSync(["chown", "65534:65534", theirs]);
    const r = await runProxy({ args: ["--dump-dir", theirs] });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`responses-api-proxy: cannot use --dump-dir: ${theirs} is owned by uid 65534, not by the proxy's user (uid 0)\n`);
    const open = join(base, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    const o = await runProxy({ args: ["--dump-dir", open] });
    expect(o.stderr).toContain(`${open} is writable by its group or by others`);
    // Inside a folder another user controls: they could swap ours for a link at any time.
    const shared = join(base, "shared");
    mkdirSync(shared);
    Bun.spawnSync(["chown", "65534:65534", shared]);
    const mine = join(shared, "mine");
    mkdirSync(mine, { mode: 0o700 });
    const s = await runProxy({ args: ["--dump-dir", mine] });
    expect(s.code).toBe(1);
    expect(s.stderr).toContain(`${mine} is reached through ${shared}, which another user can change`);
  });

  test("the folder swapped for a symlink after start-up: every dump still lands in the folder given", async () => {
    const base = mkdtempSync(join(tmpdir(), "rap-dumpswap-"));
    const dir = join(base, "dumps");
    const elsewhere = join(base, "elsewhere");
    mkdirSync(elsewhere, { mode: 0o700 });
    const up = await startUpstream();
    const proxy = await startProxy({ args: ["--upstream-url", up.url, "--dump-dir", dir] });
    const moved = join(base, "moved");
    renameSync(dir, moved); // the path now leads elsewhere…
    symlinkSync(elsewhere, dir);
    const res = await fetch(`${proxy.base}/v1/responses`, { method: "POST", body: SAMPLE_BODY });
    expect(res.status).toBe(200);
    await waitFor(() => dumpFiles(moved).length === 2, 5000, "dumps in the original folder");
    expect(dumpFiles(elsewhere)).toEqual([]); // …and nothing followed it
    expect(readFileSync(join(moved, dumpFiles(moved)[0]!), "utf8")).not.toContain(KEY);
  });
});
