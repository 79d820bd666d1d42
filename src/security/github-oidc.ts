// --github-oidc: keyless CI. The job's GitHub OIDC identity is exchanged for a short-lived OpenAI
// access token, which is injected exactly where the key would be, and refreshed in the background.
//
// SECURITY: the request token (from stdin), the GitHub ID token and the access token are secrets
// held like the key: never logged, never in an error message, a dump or a response. Messages
// name the step, the endpoint's origin and an HTTP status or error code, nothing else.
import { AuthorizationLine } from "./authorization";
import type { SecretSpec } from "./api-key";

export const DEFAULT_TOKEN_URL = "https://auth.openai.com/oauth/token";

export interface OidcConfig {
  /** The runner's ACTIONS_ID_TOKEN_REQUEST_URL. */
  requestUrl: URL;
  audience: string;
  identityProviderId: string;
  serviceAccountId: string;
  tokenUrl: URL;
}

/**
 * The GitHub OIDC request token (ACTIONS_ID_TOKEN_REQUEST_TOKEN) on stdin: read like the key, into
 * one fixed buffer that is zeroed afterwards, but the token is a JWT that can be longer than an
 * API key, so the buffer is 8 KiB. Accepted bytes are RFC 6750's b64token characters (a JWT's
 * base64url parts and dots among them): nothing that could break a header.
 */
export const REQUEST_TOKEN: SecretSpec = {
  bufferSize: 8192,
  prefix: "bearer ",
  isByte: isTokenByte,
  messages: {
    empty:
      "GitHub OIDC request token must be provided via stdin (e.g. printenv ACTIONS_ID_TOKEN_REQUEST_TOKEN | responses-api-proxy --github-oidc …); " +
      'it was empty: does the job have "permissions: id-token: write"?',
    blankFirstLine: "the first line of standard input is empty, and the GitHub OIDC request token must be on the first line",
    invalid: "GitHub OIDC request token may only contain ASCII letters, numbers and - . _ ~ + / =",
    tooLarge: "GitHub OIDC request token is too large to fit in the 8192-byte buffer",
  },
};

function isTokenByte(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ||
    b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e || b === 0x2b || b === 0x2f || b === 0x3d
  );
}

/** A token that may be put into a header: the same character set. */
export function isHeaderSafeToken(token: string): boolean {
  if (token.length === 0 || token.length > 16384) return false;
  for (let i = 0; i < token.length; i++) if (!isTokenByte(token.charCodeAt(i))) return false;
  return true;
}

export class OidcError extends Error {}

/** The GitHub request URL with the audience added, as GitHub documents it. */
export function idTokenUrl(requestUrl: URL, audience: string): string {
  const sep = requestUrl.search ? "&" : "?";
  return `${requestUrl.href}${sep}audience=${encodeURIComponent(audience)}`;
}

async function readJson(res: Response, what: string): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new OidcError(`${what}: the answer is not JSON (HTTP ${res.status})`);
  }
  if (typeof body !== "object" || body === null) throw new OidcError(`${what}: the answer is not a JSON object`);
  return body as Record<string, unknown>;
}

/** A short, safe rendering of an OAuth error code from an error answer, if there is one. */
function oauthErrorCode(body: Record<string, unknown>): string {
  const code = body.error;
  return typeof code === "string" && /^[a-z_]{1,64}$/.test(code) ? ` (${code})` : "";
}

async function request(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, { ...init, redirect: "error", signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    const e = err as { code?: string; name?: string };
    throw new OidcError(`${what}: request failed (${e.code ?? e.name ?? "error"})`);
  }
}

/** Step 1: the job's GitHub ID token for `audience`. */
export async function fetchGithubIdToken(config: OidcConfig, requestAuthorization: string): Promise<string> {
  const what = `GitHub ID token from ${config.requestUrl.origin}`;
  const res = await request(idTokenUrl(config.requestUrl, config.audience), { headers: { authorization: requestAuthorization } }, what);
  if (!res.ok) {
    await res.body?.cancel();
    throw new OidcError(`${what}: HTTP ${res.status}`);
  }
  const body = await readJson(res, what);
  if (typeof body.value !== "string" || !isHeaderSafeToken(body.value)) throw new OidcError(`${what}: no token in the answer`);
  return body.value;
}

export interface AccessToken {
  /** "Bearer <access token>", ready for the upstream request. */
  authorization: string;
  /** Seconds it is valid for, from now. */
  expiresIn: number;
}

/** Step 2: the GitHub ID token exchanged for an OpenAI access token. */
export async function exchangeForAccessToken(config: OidcConfig, idToken: string): Promise<AccessToken> {
  const what = `access token from ${config.tokenUrl.origin}`;
  const res = await request(
    config.tokenUrl.href,
    {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
        subject_token: idToken,
        identity_provider_id: config.identityProviderId,
        service_account_id: config.serviceAccountId,
      }),
    },
    what,
  );
  const body = await readJson(res, what);
  if (!res.ok) throw new OidcError(`${what}: HTTP ${res.status}${oauthErrorCode(body)}`);
  const token = body.access_token;
  const expiresIn = Number(body.expires_in);
  if (typeof token !== "string" || !isHeaderSafeToken(token)) throw new OidcError(`${what}: no usable access_token in the answer`);
  if (!Number.isFinite(expiresIn) || expiresIn <= 0) throw new OidcError(`${what}: no usable expires_in in the answer`);
  return { authorization: `Bearer ${token}`, expiresIn };
}

/** Both steps: a fresh access token. */
export async function obtainAccessToken(config: OidcConfig, requestAuthorization: string): Promise<AccessToken> {
  return exchangeForAccessToken(config, await fetchGithubIdToken(config, requestAuthorization));
}

/** When to refresh a token valid for `expiresIn` seconds: after three quarters of its life. */
export function refreshDelayMs(expiresIn: number): number {
  return Math.max(100, expiresIn * 750);
}

/** Retry delay after `failures` failed refreshes in a row: 1 s, 2 s, 4 s … at most 60 s. */
export function backoffMs(failures: number): number {
  return Math.min(60_000, 1000 * 2 ** Math.max(0, failures - 1));
}

/** Where the token's life is reported: a refresh that failed is a warning, the rest notices. */
export interface OidcLog {
  info(line: string): void;
  warning(line: string): void;
}

/** How long a replaced token's line is kept before it is wiped: a slow write may still send it. */
const WIPE_AFTER_MS = 60_000;

/**
 * The current access token, refreshed in the background ahead of its expiry. Requests never wait
 * on a refresh: they use the token in hand while it is valid, and get the last refresh error
 * (for a 502) once it is not. Each token has one Authorization line (authorization.ts); a
 * replaced one is wiped once no write can still be sending it.
 */
export class OidcCredential {
  private failures = 0;
  private lastError = "";

  private constructor(
    private readonly config: OidcConfig,
    private readonly requestAuthorization: string,
    private readonly headStart: string,
    private token: { line: AuthorizationLine; expiresAt: number; expiresIn: number },
    private readonly log: OidcLog,
  ) {
    this.schedule(refreshDelayMs(token.expiresIn));
  }

  private static held(token: AccessToken, headStart: string) {
    const value = Buffer.from(token.authorization, "latin1");
    const line = AuthorizationLine.from(value, headStart);
    value.fill(0);
    return { line, expiresAt: Date.now() + token.expiresIn * 1000, expiresIn: token.expiresIn };
  }

  /**
   * The first exchange, before the proxy reports itself listening. Throws OidcError. `headStart`:
   * what each token's line has before it in its buffer (authorization.ts).
   */
  static async start(config: OidcConfig, requestAuthorization: string, headStart: string, log: OidcLog): Promise<OidcCredential> {
    const token = await obtainAccessToken(config, requestAuthorization);
    log.info(`github-oidc: access token obtained, valid for ${token.expiresIn} s`);
    return new OidcCredential(config, requestAuthorization, headStart, OidcCredential.held(token, headStart), log);
  }

  /** The Authorization header value, or why there is no valid token. */
  current(): { authorization: AuthorizationLine } | { error: string } {
    if (Date.now() < this.token.expiresAt) return { authorization: this.token.line };
    return { error: `the OpenAI access token expired and could not be refreshed (${this.lastError || "refresh pending"})` };
  }

  private schedule(ms: number): void {
    setTimeout(() => void this.refresh(), ms);
  }

  private async refresh(): Promise<void> {
    try {
      const token = await obtainAccessToken(this.config, this.requestAuthorization);
      const old = this.token.line;
      this.token = OidcCredential.held(token, this.headStart);
      setTimeout(() => old.wipe(), WIPE_AFTER_MS).unref();
      this.failures = 0;
      this.lastError = "";
      this.log.info(`github-oidc: access token refreshed, valid for ${token.expiresIn} s`);
      this.schedule(refreshDelayMs(token.expiresIn));
    } catch (err) {
      this.failures++;
      this.lastError = err instanceof OidcError ? err.message : "unexpected error";
      const retry = backoffMs(this.failures);
      this.log.warning(`github-oidc: refresh failed: ${this.lastError}; retrying in ${retry / 1000} s`);
      this.schedule(retry);
    }
  }
}
