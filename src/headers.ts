// Which headers cross the proxy, in each direction. Pure.

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy Keep-Alive / Proxy-Connection of
 * RFC 2616 §13.5.1 and RFC 9112 §9.6, and HTTP2-Settings, connection-specific by RFC 9113
 * §3.2.1 even when a client forgets to name it in Connection): they describe one connection,
 * never the exchange, so they are never forwarded. Every header named in `Connection` is too.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

/** Lower-case names listed in the Connection header(s). */
function connectionNamed(headers: Headers): Set<string> {
  const named = new Set<string>();
  const value = headers.get("connection");
  if (value) for (const token of value.split(",")) named.add(token.trim().toLowerCase());
  return named;
}

/** Headers the proxy itself answers or replaces on the way upstream. */
const REPLACED_UPSTREAM = new Set([
  "authorization", // replaced by the key
  "host", // set from the upstream URL by fetch
  "expect", // `100-continue` is answered by the proxy's own listener
]);

/**
 * Client headers → upstream headers, rewritten in place (the request's own Headers object is sent
 * on; a copy per request was measurable): hop-by-hop and replaced headers out. The key goes in
 * by the transport, as its own line (authorization.ts), never into these Headers.
 */
export function rewriteUpstreamHeaders(headers: Headers): Headers {
  const named = connectionNamed(headers);
  const drop: string[] = [];
  for (const name of headers.keys()) {
    if (HOP_BY_HOP.has(name) || named.has(name) || REPLACED_UPSTREAM.has(name)) drop.push(name);
  }
  for (const name of drop) headers.delete(name);
  return headers;
}

/** Upstream response headers → client: everything but hop-by-hop headers. */
export function downstreamHeaders(upstream: Headers): Headers {
  const named = connectionNamed(upstream);
  const out = new Headers();
  for (const [name, value] of upstream) {
    if (HOP_BY_HOP.has(name) || named.has(name)) continue;
    out.append(name, value);
  }
  return out;
}

/**
 * The handshake headers of RFC 6455 §4: each hop makes its own (its key, its accept, its
 * extensions — the proxy negotiates none upstream), so the client's never go upstream and the
 * upstream's never come back. Sec-WebSocket-Protocol is the exception: the client's offer goes
 * upstream, and the upstream's choice comes back.
 */
const WEBSOCKET_HANDSHAKE = new Set(["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept"]);

/** Client headers → the upstream WebSocket handshake: as for a POST, and without the client's handshake headers. */
export function websocketUpstreamHeaders(headers: Headers): Headers {
  rewriteUpstreamHeaders(headers);
  for (const name of WEBSOCKET_HANDSHAKE) headers.delete(name);
  return headers;
}

/** The upstream's 101 headers → the client's 101: without hop-by-hop and handshake headers (Bun makes its own). */
export function websocketDownstreamHeaders(upstream: Headers): Headers {
  const out = downstreamHeaders(upstream);
  for (const name of WEBSOCKET_HANDSHAKE) out.delete(name);
  return out;
}
