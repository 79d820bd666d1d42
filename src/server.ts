// The listener: Bun.serve on 127.0.0.1, the gate in front of `forward`, and shutdown.
import type { Server } from "bun";
import type { Config } from "./cli";
import { forbidden, proxyError } from "./errors";
import { type Credential, forward, type ForwardOptions, type Tap } from "./forward";
import { classify, headBytes, requestTarget } from "./gate";
import type { Logger, RequestRecord } from "./log";
import { upstreamTransport } from "./transport";

export interface ProxyHooks {
  /** Request log lines go here (it drops successful ones under --quiet). */
  log: Logger;
  /** Extra observer of each forwarded exchange (the dump), if any. */
  tap?: (req: Request) => Partial<Tap>;
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
    const logLine = (status: number, more: Partial<RequestRecord> = {}) =>
      log.request({ method: req.method, target, status, ms: performance.now() - started, bytesIn: 0, bytesOut: 0, ...more });

    if (headBytes(req.method, target, req.headers) > config.maxHeaderBytes) {
      logLine(431, { reason: "request_header_too_large" });
      return proxyError(431, "request_header_too_large", `request head exceeds the proxy's limit of ${config.maxHeaderBytes} bytes`);
    }
    const verdict = classify(req.method, target, req.headers, port, config.httpShutdown);
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
    const extra = hooks.tap?.(req);
    try {
      return await forward(req, opts, {
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
