// --dump-dir against the compiled binary.
import { afterAll, afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, mkdirSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KEY, dumpFiles, goodRequest, httpRequest, runProxy, SAMPLE_BODY, sseEvent, startProxy, startUpstream, stopAll, waitFor } from "../helpers";

afterEach(stopAll);

const dirs: string[] = [];
function freshDir(): string {
  const parent = mkdtempSync(join(tmpdir(), "rap-dump-"));
  dirs.push(parent);
  return join(parent, "dumps");
}
const files = dumpFiles;
const read = (dir: string, name: string) => JSON.parse(readFileSync(join(dir, name), "utf8"));

afterAll(() => {
  // No dump file of any test contains the key, in any form.
  for (const parent of dirs) {
    const dir = join(parent, "dumps");
    for (const f of files(dir)) expect(readFileSync(join(dir, f), "latin1")).not.toContain(KEY);
  }
});

test("one request and one response file per exchange, in the documented shape, secrets redacted", async () => {
  const dir = freshDir();
  const up = await startUpstream(() =>
    Response.json({ id: "resp_1", output_text: "hi" }, { headers: { "set-cookie": "session=abc", "x-request-id": "req_9" } }),
  );
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--dump-dir", dir] });
  const res = await fetch(`${proxy.base}/v1/responses`, {
    method: "POST",
    headers: {
      "content-type": "application/json", authorization: "Bearer sk-client-side", "proxy-authorization": "Basic abc",
      cookie: "c=1", "x-api-key": "xk", "api-key": "ak", "openai-beta": "responses=v1",
    },
    body: SAMPLE_BODY,
  });
  expect(await res.json()).toEqual({ id: "resp_1", output_text: "hi" });
  await waitFor(() => files(dir).length === 2, 5000, "two dump files");
  const [reqFile, resFile] = files(dir);
  expect(reqFile).toMatch(/^000001-\d{13}-request\.json$/);
  expect(resFile).toBe(reqFile!.replace("request", "response"));

  const request = read(dir, reqFile!);
  expect(request.method).toBe("POST");
  expect(request.url).toBe("/v1/responses"); // the request target, as the reference dumps it
  expect(request.body).toEqual(JSON.parse(SAMPLE_BODY));
  const h = Object.fromEntries(request.headers.map((e: { name: string; value: string }) => [e.name, e.value]));
  for (const secret of ["authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"]) expect(h[secret]).toBe("[REDACTED]");
  expect(h["openai-beta"]).toBe("responses=v1");

  const response = read(dir, resFile!);
  expect(response).toMatchObject({ status: 200, body: { id: "resp_1", output_text: "hi" }, outcome: "complete", complete: true });
  const rh = Object.fromEntries(response.headers.map((e: { name: string; value: string }) => [e.name, e.value]));
  expect(rh["set-cookie"]).toBe("[REDACTED]");
  expect(rh["x-request-id"]).toBe("req_9");

  expect(statSync(dir).mode & 0o777).toBe(0o700);
  for (const f of files(dir)) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
});

test("an SSE response is dumped whole, only after the client has seen every event", async () => {
  const dir = freshDir();
  let releaseLast!: () => void;
  const last = new Promise<void>((r) => (releaseLast = r));
  const events = ["response.created", "response.output_text.delta", "response.output_text.delta"].map((t, i) => sseEvent(t, { n: i }));
  const up = await startUpstream(() => {
    const body = new ReadableStream({
      async start(c) {
        for (const e of events) c.enqueue(new TextEncoder().encode(e));
        await last;
        c.enqueue(new TextEncoder().encode(sseEvent("response.completed", { n: 3 })));
        c.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--dump-dir", dir] });
  const res = await goodRequest(proxy);
  const reader = res.body!.getReader();
  let seen = "";
  while (!seen.includes('"n":2')) seen += new TextDecoder().decode((await reader.read()).value);
  // The client has every event so far, and no response dump exists yet: nothing waited on it.
  expect(files(dir).filter((f) => f.endsWith("response.json"))).toEqual([]);
  releaseLast();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    seen += new TextDecoder().decode(value);
  }
  await waitFor(() => files(dir).length === 2, 5000, "response dump");
  const response = read(dir, files(dir).find((f) => f.endsWith("response.json"))!);
  expect(response.body).toBe(seen); // the whole stream, as text
  expect(response.complete).toBe(true);
});

test("a stream cut short by the client is dumped and marked", async () => {
  const dir = freshDir();
  const up = await startUpstream(() => {
    let n = 0;
    const body = new ReadableStream({
      async pull(c) {
        await Bun.sleep(20);
        c.enqueue(new TextEncoder().encode(`data: ${n++}\n\n`));
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--dump-dir", dir] });
  const sock = net.connect(proxy.port, "127.0.0.1");
  sock.on("error", () => {});
  sock.write(httpRequest("POST", "/v1/responses", { "Content-Type": "application/json" }, SAMPLE_BODY));
  let got = "";
  await new Promise<void>((r) => sock.on("data", (d) => ((got += d), got.includes("data: 3") && r())));
  sock.destroy();
  await waitFor(() => files(dir).length === 2, 5000, "dumps");
  const response = read(dir, files(dir).find((f) => f.endsWith("response.json"))!);
  expect(response.outcome).toBe("client_closed");
  expect(response.complete).toBe(false);
  expect(response.body).toContain("data: 3");
  expect(read(dir, files(dir).find((f) => f.endsWith("request.json"))!).body).toEqual(JSON.parse(SAMPLE_BODY));
});

test("bodies that are not JSON are dumped as text", async () => {
  const dir = freshDir();
  const up = await startUpstream(async (req) => new Response(`you said: ${await req.text()}`, { headers: { "content-type": "text/plain" } }));
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--dump-dir", dir] });
  const res = await fetch(`${proxy.base}/v1/responses`, { method: "POST", headers: { "content-type": "text/plain" }, body: "not { json" });
  expect(await res.text()).toBe("you said: not { json");
  await waitFor(() => files(dir).length === 2, 5000, "dumps");
  expect(read(dir, files(dir)[0]!).body).toBe("not { json");
  expect(read(dir, files(dir)[1]!).body).toBe("you said: not { json");
});

test("a proxy error is dumped with its JSON; a request body never read is marked incomplete", async () => {
  const dir = freshDir();
  const proxy = await startProxy({ args: ["--upstream-url", "http://127.0.0.1:1/v1/responses", "--dump-dir", dir, "--max-body-bytes", "1000"] });
  const res = await goodRequest(proxy);
  expect(res.status).toBe(502);
  await waitFor(() => files(dir).length === 2, 5000, "dumps");
  expect(read(dir, files(dir)[0]!).body).toEqual(JSON.parse(SAMPLE_BODY)); // read before the upstream failed
  const response = read(dir, files(dir)[1]!);
  expect(response).toMatchObject({ status: 502, outcome: "proxy_error", complete: false });
  expect(response.body.error.code).toBe("upstream_unreachable");

  // Refused up front for its declared size: the body was never read.
  const big = await fetch(`${proxy.base}/v1/responses`, { method: "POST", body: "x".repeat(2000) });
  expect(big.status).toBe(413);
  await waitFor(() => files(dir).length === 4, 5000, "dumps of the refused request");
  expect(read(dir, files(dir)[2]!)).toMatchObject({ body: "", body_complete: false });
  expect(read(dir, files(dir)[3]!)).toMatchObject({ status: 413, outcome: "proxy_error" });
});

test("20 concurrent exchanges give 40 files that pair up", async () => {
  const dir = freshDir();
  const up = await startUpstream(async (req) => {
    const body = (await req.json()) as { id: number };
    await Bun.sleep(Math.random() * 50);
    return Response.json({ echo: body.id });
  });
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--dump-dir", dir] });
  await Promise.all(
    Array.from({ length: 20 }, (_, id) => fetch(`${proxy.base}/v1/responses`, { method: "POST", body: JSON.stringify({ id }) }).then((r) => r.json())),
  );
  await waitFor(() => files(dir).length === 40, 5000, "40 files");
  const requests = files(dir).filter((f) => f.endsWith("-request.json"));
  expect(requests).toHaveLength(20);
  const ids = new Set<number>();
  for (const f of requests) {
    const request = read(dir, f);
    const response = read(dir, f.replace("-request.json", "-response.json"));
    expect(response.body.echo).toBe(request.body.id);
    ids.add(request.body.id);
  }
  expect(ids.size).toBe(20);
});

test("the dump folder deleted while running: one line per failed write, forwarding goes on", async () => {
  const dir = freshDir();
  const up = await startUpstream();
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--dump-dir", dir] });
  expect((await goodRequest(proxy)).status).toBe(200);
  await waitFor(() => files(dir).length === 2, 5000, "first dumps");
  rmSync(dir, { recursive: true });
  const res = await goodRequest(proxy);
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ object: "response" });
  await waitFor(() => (proxy.stderr().match(/dump: cannot write/g) ?? []).length === 2, 5000, "two warnings");
  expect(proxy.stderr()).toMatch(/dump: cannot write .*000002-\d+-request\.json \(ENOENT\)/);
  expect((await goodRequest(proxy)).status).toBe(200);
});

test("a symlinked dump folder is refused at start-up, before the key is read", async () => {
  const parent = mkdtempSync(join(tmpdir(), "rap-dumplink-"));
  mkdirSync(join(parent, "real"));
  symlinkSync(join(parent, "real"), join(parent, "link"));
  const r = await runProxy({ args: ["--dump-dir", join(parent, "link")] });
  expect(r.code).toBe(1);
  expect(r.stderr).toBe(`responses-api-proxy: cannot use --dump-dir: ${join(parent, "link")} is a symbolic link; give the real folder\n`);
  const f = join(parent, "file");
  await Bun.write(f, "x");
  const r2 = await runProxy({ args: ["--dump-dir", f] });
  expect(r2.code).toBe(1);
  expect(r2.stderr).toContain("is not a folder");
});
