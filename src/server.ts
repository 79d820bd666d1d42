// The listener: Bun.serve on 127.0.0.1, the gate in front of `forward`, and shutdown.
import type { Server } from "bun";
import type { Config } from "./cli";
import { forbidden, proxyError } from "./errors";
import { type Credential, forward, type ForwardOptions, type Tap } from "./forward";
import { classify, headBytes, requestTarget } from "./gate";
import type { Logger, RequestRecord } from "./log";
import type { PeerUsers } from "./peer-user";
import { upstreamTransport } from "./transport";
import type { UserPolicy } from "./users";

export interface ProxyHooks {
  /** Request log lines go here (it drops successful ones under --quiet). */
  log: Logger;
  /** Extra observer of each forwarded exchange (the dump), if any; `user` as the log names it. */
  tap?: (req: Request, user: string | undefined) => Partial<Tap>;
  /** Names of local users, and who may use the proxy. */
  users: UserPolicy;
  /** Who owns a client connection (Linux); undefined where the platform cannot tell. */
  peers: () => PeerUsers | undefined;
  /** GET /shutdown was accepted; its 200 is on its way. */
  shutdown: () => void;
}

export function startProxy(config: Config, credential: Credential, hooks: ProxyHooks): Server<undefined> {
  const opts: ForwardOptions = {
    send: upstreamTransport(config.upstream),
    credential,
    maxBodyBytes: config.maxBodyBytes,
    clientTimeoutMs: config.clientTimeout * 1000,
    upstreamTimeoutMs: config.upstreamTimeout * 1000,
  };
  const { log } = hooks;
  let active = 0;
  let port = 0;

  async function handle(req: Request, server: Server<undefined>): Promise<Response> {
    const started = performance.now();
    const target = requestTarget(req.url);
    // Who sent it: the kernel's owner of the client's socket, asked per request (a keep-alive
    // connection cannot change owner, but Bun.serve shows no connection, and a port can be
    // reused by another user's next connection; the lookup costs ~6 µs, docs/security.md).
    const peers = hooks.peers();
    const ip = peers && server.requestIP(req);
    const uid = ip ? peers.uid(ip.address, ip.port, port) : undefined;
    const user = peers ? hooks.users.label(uid) : undefined;
    const logLine = (status: number, more: Partial<RequestRecord> = {}) =>
      log.request({ method: req.method, target, status, ms: performance.now() - started, bytesIn: 0, bytesOut: 0, user, uid, ...more });

    if (headBytes(req.method, target, req.headers) > config.maxHeaderBytes) {
      logLine(431, { reason: "request_header_too_large" });
      return proxyError(431, "request_header_too_large", `request head exceeds the proxy's limit of ${config.maxHeaderBytes} bytes`);
    }
    const verdict = classify(req.method, target, req.headers, port, config.httpShutdown);
    if ((verdict === "forward" || verdict === "shutdown") && !hooks.users.allows(uid)) {
      logLine(403, { reason: "user" });
      return proxyError(403, "user_not_allowed", `local user ${user ?? "unknown"} may not use this proxy (--allow-user / --allow-group)`);
    }
    if (verdict === "shutdown") {
      logLine(200);
      hooks.shutdown();
      return new Response(null, { status: 200 });
    }
    if (verdict !== "forward") {
      logLine(403, { reason: verdict });
      return forbidden();
    }
    if (active >= config.maxConcurrent) {
      logLine(503, { reason: "too_many_requests" });
      return proxyError(503, "too_many_requests", `the proxy is already forwarding ${config.maxConcurrent} requests`, {
        "retry-after": "1",
      });
    }

    active++;
    let ended = false;
    const extra = hooks.tap?.(req, user);
    // Upstream connections are pooled per local user, never shared between two: a socket that
    // carried one user's exchange never carries another's request (stray bytes an upstream sends
    // after a response can only reach the user whose exchange it was). An owner the kernel could
    // not name gets a connection of its own; where the platform cannot tell (not Linux), one pool.
    const owner = peers ? (uid === undefined ? undefined : `uid:${uid}`) : "all";
    try {
      return await forward(req, opts, owner, {
        ...extra,
        untimed() {
          server.timeout(req, 0); // back to --client-timeout once the exchange is over (end)
        },
        end(summary) {
          ended = true;
          active--;
          try {
            server.timeout(req, config.clientTimeout);
          } catch {
            // the client's connection is already gone
          }
          const { status, bytesIn, bytesOut, outcome, reason, cause, requestId } = summary;
          logLine(status, { bytesIn, bytesOut, outcome, reason, cause, requestId });
          extra?.end?.(summary);
        },
      });
    } catch (err) {
      // Only a bug gets here: give the capacity back; error() answers with a JSON 500.
      if (!ended) {
        active--;
        logLine(500, { outcome: "proxy_error", reason: "internal_error" });
      }
      throw err;
    }
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: config.port,
    // Bun otherwise sets SO_REUSEPORT: a second proxy (same user) would silently share the port
    // instead of failing with EADDRINUSE.
    reusePort: false,
    development: false, // never an HTML error page
    idleTimeout: config.clientTimeout,
    // The proxy enforces its own limit (413 JSON, also while a chunked body streams).
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    fetch: handle,
    error() {
      // Reached only by a bug: still JSON, still no stack trace and nothing of the request.
      return proxyError(500, "internal_error", "internal proxy error");
    },
  });
  // Read once: server.port asks the kernel (getsockname) every time.
  port = server.port!;
  return server;
}
