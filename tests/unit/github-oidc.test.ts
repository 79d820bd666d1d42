import { expect, test } from "bun:test";
import { readSecret, type Reader } from "../../src/security/api-key";
import { backoffMs, idTokenUrl, isHeaderSafeToken, refreshDelayMs, REQUEST_TOKEN } from "../../src/security/github-oidc";
import { parseArgs } from "../../src/cli";

/** A reader that hands out `text`, at most `length` bytes per read, like a pipe. */
const input = (text: string): Reader => {
  let rest = new TextEncoder().encode(text);
  return (buf, off, length) => {
    const n = Math.min(length, rest.length);
    buf.set(rest.subarray(0, n), off);
    rest = rest.subarray(n);
    return n;
  };
};

test("the audience is appended URL-encoded, after any query the runner's URL has", () => {
  expect(idTokenUrl(new URL("https://x.example/_apis/token?api-version=2.0"), "api://a b&c")).toBe(
    "https://x.example/_apis/token?api-version=2.0&audience=api%3A%2F%2Fa%20b%26c",
  );
  expect(idTokenUrl(new URL("https://x.example/token"), "aud")).toBe("https://x.example/token?audience=aud");
});

test("refresh after three quarters of a token's life; backoff 1, 2, 4 … 60 s", () => {
  expect(refreshDelayMs(3600)).toBe(2_700_000);
  expect(refreshDelayMs(2)).toBe(1500);
  expect(refreshDelayMs(0.01)).toBe(100);
  expect([1, 2, 3, 4, 7, 8, 20].map(backoffMs)).toEqual([1000, 2000, 4000, 8000, 60_000, 60_000, 60_000]);
});

test("tokens: JWT characters pass, anything that could break a header does not", () => {
  expect(isHeaderSafeToken("eyJhbGciOi.eyJzdWIi.c2ln-_~+/==")).toBe(true);
  for (const bad of ["", "a b", "a\r\nX: y", "a\0", "é", "a,b", "a;b", "x".repeat(16385)]) expect(isHeaderSafeToken(bad)).toBe(false);
});

test("the request token is read like the key, into an 8 KiB buffer, as a lower-case bearer value", () => {
  const jwt = `eyJ.${"a".repeat(3000)}.sig`;
  const buf = new Uint8Array(REQUEST_TOKEN.bufferSize);
  expect(new TextDecoder().decode(readSecret(input(`${jwt}\n`), REQUEST_TOKEN, buf))).toBe(`bearer ${jwt}`);
  expect(buf.every((b) => b === 0)).toBe(true);
  expect(() => readSecret(input("x".repeat(9000)), REQUEST_TOKEN)).toThrow("8192-byte buffer");
  expect(() => readSecret(input("a b\n"), REQUEST_TOKEN)).toThrow("may only contain");
});

test("command line: the OIDC configuration", () => {
  const c = parseArgs([
    "--github-oidc", "--github-oidc-request-url", "https://r.example/_apis/token?api-version=2.0", "--oidc-audience", "aud",
    "--identity-provider-id", "idp", "--service-account-id", "sa",
  ]);
  if (c.kind !== "run") throw new Error(c.kind);
  expect(c.config.oidc!.tokenUrl.href).toBe("https://auth.openai.com/oauth/token");
  expect(c.config.oidc!.requestUrl.search).toBe("?api-version=2.0");
  expect(c.config.oidc!.audience).toBe("aud");
  const plain = parseArgs([]);
  expect(plain.kind === "run" && plain.config.oidc).toBeUndefined();
});
