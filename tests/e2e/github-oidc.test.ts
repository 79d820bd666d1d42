// --github-oidc against fake GitHub OIDC and OpenAI token endpoints on 127.0.0.1.
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dumpFiles, goodRequest, onCleanup, runProxy, startProxy, startUpstream, stopAll, waitFor } from "../helpers";

afterEach(stopAll);

/** A JWT-shaped request token (dots, base64url), as the runner's ACTIONS_ID_TOKEN_REQUEST_TOKEN. */
const REQUEST_TOKEN = `eyJhbGciOiJSUzI1NiJ9.${"eyJydW5uZXIiOiJ0ZXN0In0".repeat(60)}.c2lnbmF0dXJl-_x`;

interface Mode {
  githubStatus: number;
  githubBody?: string;
  tokenStatus: number;
  tokenBody?: string;
  expiresIn: number;
}

/** Fake GitHub (GET <request-url>&audience=…) and OpenAI token endpoint (POST /oauth/token). */
function fakeEndpoints(initial: Partial<Mode> = {}) {
  const mode: Mode = { githubStatus: 200, tokenStatus: 200, expiresIn: 3600, ...initial };
  const github: Array<{ url: string; authorization: string | null }> = [];
  const exchanges: Array<Record<string, unknown>> = [];
  let issued = 0;
  const gh = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      github.push({ url: req.url, authorization: req.headers.get("authorization") });
      if (req.headers.get("authorization") !== `bearer ${REQUEST_TOKEN}`) return new Response("no", { status: 401 });
      if (mode.githubStatus !== 200) return new Response("refused", { status: mode.githubStatus });
      return new Response(mode.githubBody ?? JSON.stringify({ value: `gh-id-token.${github.length}` }));
    },
  });
  const oa = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = (await req.json()) as Record<string, unknown>;
      exchanges.push(body);
      if (mode.tokenStatus !== 200) return Response.json({ error: "invalid_grant", error_description: "nope" }, { status: mode.tokenStatus });
      if (mode.tokenBody) return new Response(mode.tokenBody);
      issued++;
      return Response.json({ access_token: `at-${issued}`, token_type: "Bearer", expires_in: mode.expiresIn });
    },
  });
  onCleanup(() => {
    gh.stop(true);
    oa.stop(true);
  });
  return {
    mode,
    github,
    exchanges,
    requestUrl: `http://127.0.0.1:${gh.port}/_apis/token?api-version=2.0`,
    tokenUrl: `http://127.0.0.1:${oa.port}/oauth/token`,
  };
}

const AUDIENCE = "api://openai/workload identity&x=1";

function oidcArgs(e: ReturnType<typeof fakeEndpoints>, upstream: string): string[] {
  return [
    "--upstream-url", upstream, "--github-oidc", "--github-oidc-request-url", e.requestUrl, "--oidc-token-url", e.tokenUrl,
    "--oidc-audience", AUDIENCE, "--identity-provider-id", "idp_123", "--service-account-id", "sa_456",
  ];
}

/** No token of any kind in `text`. */
function expectNoTokens(text: string) {
  expect(text).not.toContain(REQUEST_TOKEN.slice(0, 40));
  expect(text).not.toMatch(/gh-id-token/);
  expect(text).not.toMatch(/\bat-\d/);
}

describe("--github-oidc", () => {
  test("happy path: GitHub ID token → OpenAI access token → injected upstream; no token in any output or dump", async () => {
    const e = fakeEndpoints();
    const up = await startUpstream();
    const dumps = join(mkdtempSync(join(tmpdir(), "rap-oidc-")), "d");
    const proxy = await startProxy({ args: [...oidcArgs(e, up.url), "--dump-dir", dumps], input: `${REQUEST_TOKEN}\n` });
    const res = await goodRequest(proxy);
    expect(res.status).toBe(200);
    expect(up.requests[0]!.headers.get("authorization")).toBe("Bearer at-1");
    expect(e.github[0]!.authorization).toBe(`bearer ${REQUEST_TOKEN}`);
    expect(e.exchanges[0]).toEqual({
      grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
      subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
      subject_token: "gh-id-token.1",
      identity_provider_id: "idp_123",
      service_account_id: "sa_456",
    });
    expect(proxy.stderr()).toContain("github-oidc: access token obtained, valid for 3600 s");
    await waitFor(() => dumpFiles(dumps).length === 2, 5000, "dumps");
    expectNoTokens(proxy.stderr());
    for (const f of dumpFiles(dumps)) expectNoTokens(readFileSync(join(dumps, f), "utf8"));
  });

  test("the audience reaches GitHub URL-encoded, after the runner's own query", async () => {
    const e = fakeEndpoints();
    const up = await startUpstream();
    await startProxy({ args: oidcArgs(e, up.url), input: `${REQUEST_TOKEN}\n` });
    const url = e.github[0]!.url;
    expect(url).toContain(`/_apis/token?api-version=2.0&audience=${encodeURIComponent(AUDIENCE)}`);
    expect(url).toContain("audience=api%3A%2F%2Fopenai%2Fworkload%20identity%26x%3D1");
    expect(new URL(url).searchParams.get("audience")).toBe(AUDIENCE);
  });

  test("refresh before expiry: requests during refreshes all succeed, with ever newer tokens", async () => {
    const e = fakeEndpoints({ expiresIn: 2 });
    const up = await startUpstream();
    const proxy = await startProxy({ args: [...oidcArgs(e, up.url), "--quiet"], input: `${REQUEST_TOKEN}\n` });
    const statuses: number[] = [];
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      statuses.push(...(await Promise.all([1, 2, 3].map(async () => (await goodRequest(proxy)).status))));
      await Bun.sleep(20);
    }
    expect(statuses.length).toBeGreaterThan(50);
    expect(new Set(statuses)).toEqual(new Set([200]));
    const tokens = new Set(up.requests.map((r) => r.headers.get("authorization")));
    expect(tokens.size).toBeGreaterThanOrEqual(3); // at-1, then refreshed every 1.5 s
    expect(proxy.stderr()).toContain("github-oidc: access token refreshed, valid for 2 s");
    expectNoTokens(proxy.stderr());
  });

  test("a failed refresh is logged and retried; requests use the valid token, then get a 502 naming the cause, then recover", async () => {
    const e = fakeEndpoints({ expiresIn: 2 });
    const up = await startUpstream();
    const proxy = await startProxy({ args: oidcArgs(e, up.url), input: `${REQUEST_TOKEN}\n` });
    e.mode.tokenStatus = 500; // every refresh from now on fails
    expect((await goodRequest(proxy)).status).toBe(200); // the first token is still valid
    await waitFor(() => proxy.stderr().includes("refresh failed"), 5000, "a failed refresh");
    expect(proxy.stderr()).toMatch(/warning: github-oidc: refresh failed: access token from http:\/\/127\.0\.0\.1:\d+: HTTP 500 \(invalid_grant\); retrying in 1 s/);
    await Bun.sleep(2100); // past the token's expiry
    const res = await goodRequest(proxy);
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("upstream_credentials_unavailable");
    expect(body.error.message).toContain("HTTP 500");
    expect(proxy.stderr()).toMatch(/ 502 [\d.]+ms in=\d+B out=0B proxy_error reason=upstream_credentials_unavailable\n/);
    e.mode.tokenStatus = 200; // the endpoint recovers: the backoff retry picks it up
    await waitFor(() => proxy.stderr().includes("access token refreshed"), 10_000, "recovery");
    expect((await goodRequest(proxy)).status).toBe(200);
    expectNoTokens(proxy.stderr() + JSON.stringify(body));
  }, 30_000);

  const failures: Array<[string, Partial<Mode>, RegExp]> = [
    ["GitHub refusing", { githubStatus: 403 }, /^responses-api-proxy: github-oidc: GitHub ID token from http:\/\/127\.0\.0\.1:\d+: HTTP 403$/],
    ["GitHub answering malformed JSON", { githubBody: "{not json" }, /GitHub ID token from .*: the answer is not JSON \(HTTP 200\)$/],
    ["GitHub answering without a token", { githubBody: "{}" }, /GitHub ID token from .*: no token in the answer$/],
    ["the exchange refusing", { tokenStatus: 400 }, /access token from http:\/\/127\.0\.0\.1:\d+: HTTP 400 \(invalid_grant\)$/],
    ["the exchange answering malformed JSON", { tokenBody: "<html>" }, /access token from .*: the answer is not JSON \(HTTP 200\)$/],
    ["the exchange answering a token that could break a header", { tokenBody: '{"access_token":"a\\r\\nX: y","expires_in":60}' }, /no usable access_token/],
    ["the exchange answering without expires_in", { tokenBody: '{"access_token":"at-x"}' }, /no usable expires_in/],
  ];
  for (const [name, mode, message] of failures) {
    test(`first exchange fails (${name}): one clear line, exit 1, nothing listening, no token printed`, async () => {
      const e = fakeEndpoints(mode);
      const r = await runProxy({ args: oidcArgs(e, "http://127.0.0.1:9/v1/responses"), input: `${REQUEST_TOKEN}\n` });
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd()).toMatch(message);
      expect(r.stderr).not.toContain("listening");
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expectNoTokens(r.stderr);
    });
  }

  test("the request token is read like the key: bad bytes refused, never printed", async () => {
    const e = fakeEndpoints();
    const r = await runProxy({ args: oidcArgs(e, "http://127.0.0.1:9/v1/responses"), input: `${REQUEST_TOKEN} x\n` });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("responses-api-proxy: GitHub OIDC request token may only contain ASCII letters, numbers and - . _ ~ + / =\n");
    expect(e.github).toHaveLength(0);
    const empty = await runProxy({ args: oidcArgs(e, "http://127.0.0.1:9/v1/responses"), input: "" });
    expect(empty.stderr).toContain("GitHub OIDC request token must be provided via stdin");
  });
});

describe("--github-oidc usage errors (exit 2, before anything is read)", () => {
  const all: Record<string, string> = {
    "--github-oidc-request-url": "https://pipelines.actions.example/_apis/token?api-version=2.0",
    "--oidc-audience": "aud",
    "--identity-provider-id": "idp",
    "--service-account-id": "sa",
  };
  const required = Object.keys(all);
  for (const missing of required) {
    test(`--github-oidc without ${missing}`, async () => {
      const args = ["--github-oidc", ...Object.entries(all).filter(([f]) => f !== missing).flat()];
      const r = await runProxy({ args });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--github-oidc needs ${missing}`);
    });
  }
  test("--github-oidc with none of them", async () => {
    const r = await runProxy({ args: ["--github-oidc"] });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--github-oidc needs --");
  });
  for (const flag of [...required, "--oidc-token-url"]) {
    test(`${flag} without --github-oidc`, async () => {
      const r = await runProxy({ args: [flag, all[flag] ?? "https://auth.example/oauth/token"] });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${flag} needs --github-oidc`);
    });
  }
  for (const [flag, url] of [
    ["--github-oidc-request-url", "http://pipelines.actions.example/_apis/token"],
    ["--oidc-token-url", "http://auth.example/oauth/token"],
    ["--oidc-token-url", "not a url"],
  ] as const) {
    test(`${flag} ${url}: https only (plain http only to loopback)`, async () => {
      const r = await runProxy({ args: ["--github-oidc", ...Object.entries({ ...all, [flag]: url }).flat()] });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${flag.slice(2)} must be`);
    });
  }
});
