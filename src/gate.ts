// The gate: which requests are forwarded, which shut the proxy down, which are refused. Pure.

export const FORWARD_TARGET = "/v1/responses";
export const SHUTDOWN_TARGET = "/shutdown";

/**
 * Why a request is refused, as the log names it (stable words; docs/logging.md):
 * `path` another target; `query` the right path with a query or fragment; `method` the right
 * target with another method; `upgrade` an upgrade other than h2c (a WebSocket); `shutdown-disabled`
 * GET /shutdown without --http-shutdown; `browser:<header>` a browser sign; `host` a Host that is
 * not a loopback name (DNS rebinding).
 */
export type Refusal = "path" | "query" | "method" | "upgrade" | "shutdown-disabled" | `browser:${BrowserSign}` | "host";

/** `websocket`: a WebSocket handshake on the forwarded path, relayed with --websocket. */
export type Verdict = "forward" | "websocket" | "shutdown" | Refusal;

/** Header view the gate needs; `Headers` satisfies it. */
export interface HeaderLookup {
  get(name: string): string | null;
  has(name: string): boolean;
  keys(): Iterable<string>;
}

/**
 * What gives a browser away, checked in this order; the first found is the refusal's reason.
 * The table behind each entry (which browser sends what, for each attack shape, and what
 * command-line runtimes send) is in docs/browser-refusal.md. Do not loosen this without it:
 * - `origin`: every browser sends Origin on every request whose method is not GET or HEAD (the
 *   Fetch standard), so no page can POST here without it: form, fetch, sendBeacon alike;
 * - `sec-fetch-site` / `sec-fetch-dest` / `sec-fetch-user`: Fetch Metadata, sent by Chromium,
 *   Firefox and Safari (16.4+) on every request to a trustworthy origin, which 127.0.0.1 is.
 *   `Sec-Fetch-Mode` alone is NOT a browser: Node's fetch (undici) sends `sec-fetch-mode: cors`
 *   on every request, so the openai SDK, the Vercel AI SDK and LangChain on Node all send it;
 * - `user-agent`: every browser's User-Agent starts with `Mozilla/`, also the ones that predate
 *   Fetch Metadata (their `<img src=…/shutdown>` sends neither Origin nor Sec-Fetch-*); no
 *   command-line client's default does;
 * - `host`: a DNS-rebinding page sends its own host name, never a loopback one.
 */
export type BrowserSign = "origin" | "sec-fetch-site" | "sec-fetch-dest" | "sec-fetch-user" | "user-agent" | "host";

const FETCH_METADATA = ["sec-fetch-site", "sec-fetch-dest", "sec-fetch-user"] as const;

/** Why this request looks like it came from a browser, or undefined when it does not. */
export function browserSign(headers: HeaderLookup, port: number): BrowserSign | undefined {
  if (headers.has("origin")) return "origin";
  for (const name of FETCH_METADATA) if (headers.has(name)) return name;
  if (headers.get("user-agent")?.startsWith("Mozilla/")) return "user-agent";
  const host = headers.get("host");
  if (host === null || !isLocalHost(host, port)) return "host";
  return undefined;
}

const LOCAL_NAMES = ["127.0.0.1", "localhost", "[::1]"];

export function isLocalHost(host: string, port: number): boolean {
  const h = host.toLowerCase();
  for (const name of LOCAL_NAMES) {
    if (h === name || h === `${name}:${port}`) return true;
  }
  return false;
}

/**
 * An `Upgrade: h2c` offer (curl --http2, Java's default HttpClient on plain http) may be ignored by
 * the server (RFC 9110 §7.8): the request is answered over HTTP/1.1, and `Upgrade` and
 * `HTTP2-Settings` are hop-by-hop, so they never go upstream. Any other upgrade is refused.
 */
export function isH2cOffer(upgrade: string): boolean {
  return upgrade.split(",").every((token) => token.trim().toLowerCase() === "h2c");
}

/** A WebSocket opening handshake (RFC 6455 §4.1): GET with `Upgrade: websocket`. */
export function isWebSocketHandshake(method: string, headers: HeaderLookup): boolean {
  return method === "GET" && headers.get("upgrade")?.trim().toLowerCase() === "websocket";
}

export function classify(
  method: string,
  target: string,
  headers: HeaderLookup,
  port: number,
  httpShutdown: boolean,
  websocket = false,
): Verdict {
  // First, for every request a WebSocket included: a browser never gets through (a page's
  // WebSocket always carries Origin).
  const sign = browserSign(headers, port);
  if (sign) return sign === "host" ? "host" : `browser:${sign}`;
  if (target === FORWARD_TARGET) {
    // A WebSocket handshake is relayed only with --websocket; any other non-h2c upgrade, and a
    // WebSocket without the flag, is never forwarded, whatever its method.
    const upgrade = headers.get("upgrade");
    if (websocket && isWebSocketHandshake(method, headers)) return "websocket";
    if (upgrade !== null && !isH2cOffer(upgrade)) return "upgrade";
    return method === "POST" ? "forward" : "method";
  }
  if (target === SHUTDOWN_TARGET) {
    if (method !== "GET") return "method";
    return httpShutdown ? "shutdown" : "shutdown-disabled";
  }
  return /^\/(v1\/responses|shutdown)[?#]/.test(target) ? "query" : "path";
}

/** Size of the request head as sent: request line, header lines, blank line. */
export function headBytes(method: string, target: string, headers: Headers): number {
  let n = method.length + target.length + 12; // " " + " HTTP/1.1\r\n"
  for (const [name, value] of headers) n += name.length + value.length + 4; // ": " + "\r\n"
  return n + 2;
}
