// The gate: which requests are forwarded, which shut the proxy down, which are refused. Pure.

export const FORWARD_TARGET = "/v1/responses";
export const SHUTDOWN_TARGET = "/shutdown";

export type Verdict = "forward" | "shutdown" | "forbidden";

/** Header view the gate needs; `Headers` satisfies it. */
export interface HeaderLookup {
  get(name: string): string | null;
  has(name: string): boolean;
  keys(): Iterable<string>;
}

/**
 * The request target as the client sent it, taken from Bun's `req.url` (`scheme://host/target`).
 * Bun keeps the query, a bare `?`, a fragment, case and percent-encoding as sent; it has already
 * resolved `.`/`..` segments and absolute-form targets (README: "Known difference").
 */
export function requestTarget(url: string): string {
  const authority = url.indexOf("//") + 2;
  const slash = url.indexOf("/", authority);
  return slash < 0 ? "/" : url.slice(slash);
}

/**
 * Browsers always send Origin or Sec-Fetch-* on the requests a hostile page could make, and a DNS
 * rebinding page sends its own host name; command-line clients send none of these. Refusing them
 * keeps web pages on this host from spending the key or shutting the proxy down.
 */
export function isBrowserRequest(headers: HeaderLookup, port: number): boolean {
  if (headers.has("origin")) return true;
  for (const name of headers.keys()) if (name.startsWith("sec-fetch-")) return true;
  const host = headers.get("host");
  return host === null || !isLocalHost(host, port);
}

const LOCAL_NAMES = ["127.0.0.1", "localhost", "[::1]"];

export function isLocalHost(host: string, port: number): boolean {
  const h = host.toLowerCase();
  for (const name of LOCAL_NAMES) {
    if (h === name || h === `${name}:${port}`) return true;
  }
  return false;
}

export function classify(
  method: string,
  target: string,
  headers: HeaderLookup,
  port: number,
  httpShutdown: boolean,
): Verdict {
  if (isBrowserRequest(headers, port)) return "forbidden";
  if (method === "POST" && target === FORWARD_TARGET) {
    // A WebSocket upgrade is never forwarded, whatever its method.
    return headers.has("upgrade") ? "forbidden" : "forward";
  }
  if (httpShutdown && method === "GET" && target === SHUTDOWN_TARGET) return "shutdown";
  return "forbidden";
}

/** Size of the request head as sent: request line, header lines, blank line. */
export function headBytes(method: string, target: string, headers: Headers): number {
  let n = method.length + target.length + 12; // " " + " HTTP/1.1\r\n"
  for (const [name, value] of headers) n += name.length + value.length + 4; // ": " + "\r\n"
  return n + 2;
}
