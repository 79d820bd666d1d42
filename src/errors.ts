// Errors the proxy itself answers, in the OpenAI error shape, so SDKs surface them readably.
// Messages are fixed text plus an OS/network error code: never a header, a body or the key.
import type { Reply } from "./http/listener";

export type ProxyErrorCode =
  | "upstream_unreachable"
  | "upstream_credentials_unavailable"
  | "upstream_timeout"
  | "request_too_large"
  | "too_many_requests"
  | "request_timeout"
  | "request_header_too_large"
  | "bad_request"
  | "client_body_error"
  | "user_not_allowed"
  | "internal_error";

export function proxyErrorBody(code: ProxyErrorCode, message: string): string {
  return JSON.stringify({ error: { message, type: "proxy_error", param: null, code } });
}

export function proxyError(
  status: number,
  code: ProxyErrorCode,
  message: string,
  headers: Record<string, string> = {},
): Reply {
  return { status, headers: { "content-type": "application/json", ...headers }, body: proxyErrorBody(code, message) };
}

export function forbidden(): Reply {
  return { status: 403 };
}

/** A short, key-free description of a fetch/network error: its code, else its class name. */
export function describeError(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown };
  if (typeof e?.code === "string" && /^[A-Za-z0-9_]+$/.test(e.code)) return e.code;
  if (typeof e?.name === "string" && /^[A-Za-z]+$/.test(e.name)) return e.name;
  return "error";
}
