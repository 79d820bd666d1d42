// The proxy's HTTP side: the listener on 127.0.0.1, the gate in front of `forward`, and shutdown.
import type { Config } from "./cli";
import { describeError, forbidden, proxyError } from "./errors";
import { type Credential, forward, type ForwardOptions, type Tap } from "./forward";
import { classify, headBytes } from "./gate";
import { downstreamHeaders, websocketDownstreamHeaders, websocketUpstreamHeaders } from "./headers";
import { type IncomingRequest, Listener, type Reply } from "./http/listener";
import { type Logger, printableRequestId, type RequestRecord } from "./log";
import type { PeerUsers } from "./security/peer-user";
import { upstreamTransport } from "./upstream/transport";
import type { UserPolicy } from "./security/users";
import { clientHandshakeHeaders, clientHandshakeProblem } from "./websocket/downstream";
import { Relay, type RelayEnd, type RelayTap } from "./websocket/relay";
import { UpstreamWebSocket } from "./websocket/upstream";

export interface ProxyHooks {
  /** Request log lines go here (it drops successful ones under --quiet). */
  log: Logger;
  /** Extra observer of each forwarded exchange (the dump), if any; `user` as the log names it. */
  tap?: (req: IncomingRequest, user: string | undefined) => Partial<Tap>;
  /** The same for a relayed WebSocket: told the handshake's answer, then each message. */
  websocketTap?: (req: IncomingRequest, user: string | undefined) => RelayTap & { handshake(status: number, headers: Headers, body?: Uint8Array): void };
  /** Names of local users, and who may use the proxy. */
  users: UserPolicy;
  /** Who owns a client connection (Linux); undefined where the platform cannot tell. */
  peers: () => PeerUsers | undefined;
  /** GET /shutdown was accepted; its 200 is on its way. */
  shutdown: () => void;
}

/** The end of a WebSocket that never opened (its handshake failed, was refused, or was left). */
const unopened = (closedBy: RelayEnd["closedBy"], outcome: RelayEnd["outcome"], cause?: string): RelayEnd => ({
  ms: 0, messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, closedBy, code: 1006, outcome, ...(cause ? { cause } : {}),
});

export interface Proxy {
  server: Listener;
  /** Relayed WebSockets still open. */
  readonly relays: ReadonlySet<Relay>;
  /** Ends every relayed WebSocket with 1001 (going away), both sides: the proxy is stopping. How many. */
  closeWebSockets(): number;
}

export function startProxy(config: Config, credential: Credential, hooks: ProxyHooks): Proxy {
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
  const relays = new Set<Relay>();

  async function handle(req: IncomingRequest): Promise<Reply> {
    const started = performance.now();
    const { target } = req;
    // Who sent it: the kernel's owner of the client's socket, asked once per connection (a socket's
    // owner is fixed while it is open; a new connection, even on a reused port, is asked anew).
    const peers = hooks.peers();
    let uid: number | undefined;
    if (peers) {
      req.peer.owner ??= { uid: peers.uid(req.remote.address, req.remote.port, port) };
      uid = req.peer.owner.uid;
    }
    const user = peers ? hooks.users.label(uid) : undefined;
    const logLine = (status: number, more: Partial<RequestRecord> = {}) =>
      log.request({ method: req.method, target, status, ms: performance.now() - started, bytesIn: 0, bytesOut: 0, user, uid, ...more });

    if (headBytes(req.method, target, req.headers) > config.maxHeaderBytes) {
      logLine(431, { reason: "request_header_too_large" });
      return proxyError(431, "request_header_too_large", `request head exceeds the proxy's limit of ${config.maxHeaderBytes} bytes`);
    }
    const verdict = classify(req.method, target, req.headers, port, config.httpShutdown, config.websocket);
    if ((verdict === "forward" || verdict === "websocket" || verdict === "shutdown") && !hooks.users.allows(uid)) {
      logLine(403, { reason: "user" });
      return proxyError(403, "user_not_allowed", `local user ${user ?? "unknown"} may not use this proxy (--allow-user / --allow-group)`);
    }
    if (verdict === "shutdown") {
      logLine(200);
      hooks.shutdown();
      return { status: 200 };
    }
    if (verdict !== "forward" && verdict !== "websocket") {
      logLine(403, { reason: verdict });
      return forbidden();
    }
    if (active >= config.maxConcurrent) {
      logLine(503, { reason: "too_many_requests" });
      return proxyError(503, "too_many_requests", `the proxy is already forwarding ${config.maxConcurrent} requests`, {
        "retry-after": "1",
      });
    }

    if (verdict === "websocket") return relayWebSocket(req, user, logLine);

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
          req.timeout(0); // back to --client-timeout once the exchange is over (the listener)
        },
        end(summary) {
          ended = true;
          active--;
          const { status, bytesIn, bytesOut, outcome, reason, cause, requestId } = summary;
          logLine(status, { bytesIn, bytesOut, outcome, reason, cause, requestId });
          extra?.end?.(summary);
        },
      });
    } catch (err) {
      // Only a bug gets here: give the capacity back; the listener answers with a JSON 500.
      if (!ended) {
        active--;
        logLine(500, { outcome: "proxy_error", reason: "internal_error" });
      }
      throw err;
    }
  }

  /**
   * --websocket: the upstream handshake first, with the key; only once the upstream has said 101
   * is the client upgraded. A refusal (401, 429, …) reaches the client as it is, status and body.
   */
  async function relayWebSocket(
    req: IncomingRequest,
    user: string | undefined,
    logLine: (status: number, more?: Partial<RequestRecord>) => void,
  ): Promise<Reply> {
    // A handshake the proxy could not complete with the client is refused before the upstream hears of it.
    const problem = clientHandshakeProblem(req.headers);
    if (problem) {
      logLine(400, { reason: "websocket_handshake" });
      return proxyError(400, "bad_request", `the proxy cannot complete this WebSocket handshake: ${problem}`);
    }
    const cred = credential();
    if ("error" in cred) {
      logLine(502, { outcome: "proxy_error", reason: "upstream_credentials_unavailable" });
      return proxyError(502, "upstream_credentials_unavailable", cred.error);
    }
    active++;
    const tap = hooks.websocketTap?.(req, user);
    req.timeout(0); // the handshake may take as long as --upstream-timeout allows
    const handshake = await UpstreamWebSocket.connect({
      url: config.upstream,
      // A copy: the client's own handshake headers make its 101 below.
      headers: websocketUpstreamHeaders(new Headers(req.headers)),
      authorization: cred.authorization,
      maxMessage: config.maxWebSocketMessageBytes,
      timeoutMs: config.upstreamTimeout * 1000,
      signal: req.signal,
    });
    if (handshake.kind === "failed") {
      active--;
      const cause = describeError(handshake.error);
      if (req.signal.aborted) {
        // The client left while the proxy was connecting: nobody to answer, nothing was relayed.
        tap?.end(unopened("client", "complete"));
        logLine(502, { outcome: "client_closed" });
        return { status: 502 };
      }
      tap?.handshake(502, new Headers());
      tap?.end(unopened("proxy", "upstream_lost", cause));
      logLine(502, { outcome: "proxy_error", reason: "upstream_unreachable", cause });
      return proxyError(502, "upstream_unreachable", `upstream WebSocket handshake failed (${cause})`);
    }
    if (handshake.kind === "refused") {
      active--;
      const headers = downstreamHeaders(handshake.headers);
      headers.delete("content-length");
      tap?.handshake(handshake.status, handshake.headers, handshake.body);
      tap?.end(unopened("upstream", "complete"));
      logLine(handshake.status, { bytesOut: handshake.body.byteLength, requestId: printableRequestId(handshake.headers.get("x-request-id")) });
      return { status: handshake.status, headers, body: handshake.body };
    }
    const requestId = printableRequestId(handshake.headers.get("x-request-id"));
    const relay = new Relay(
      handshake.socket,
      config.maxWebSocketMessageBytes,
      (e) => {
        active--;
        relays.delete(relay);
        logLine(101, {
          bytesIn: e.bytesIn, bytesOut: e.bytesOut, outcome: e.outcome, cause: e.cause, requestId,
          websocket: { messagesIn: e.messagesIn, messagesOut: e.messagesOut, closedBy: e.closedBy, code: e.code },
        });
      },
      tap,
    );
    relays.add(relay);
    tap?.handshake(101, handshake.headers);
    if (req.signal.aborted) {
      // The client left as the upstream said yes: nothing was relayed.
      relay.clientClosed(1006, "");
      return { status: 499 };
    }
    return {
      status: 101,
      headers: clientHandshakeHeaders(req.headers, websocketDownstreamHeaders(handshake.headers)),
      upgrade: (conn) => relay.opened(conn),
    };
  }

  const server = new Listener({
    port: config.port,
    // The exact limit is checked on the parsed head (its 431 names method and target); the raw
    // head may carry a little more (optional whitespace, empty lines) before the listener says 431.
    maxHeadBytes: config.maxHeaderBytes + 1024,
    idleTimeout: config.clientTimeout,
    handle,
    refusal(error, remote) {
      const peers = hooks.peers();
      const uid = peers ? peers.uid(remote.address, remote.port, port) : undefined;
      const code = error.status === 431 ? "request_header_too_large" : "bad_request";
      log.request({
        method: error.line?.method ?? "-", target: error.line?.target ?? "-", status: error.status, ms: 0, bytesIn: 0, bytesOut: 0,
        user: peers ? hooks.users.label(uid) : undefined, uid, reason: code, ...(error.status !== 431 && { cause: error.message.replace(/[^A-Za-z0-9]+/g, "_") }),
      });
      return proxyError(error.status, code, error.status === 431 ? `request head exceeds the proxy's limit of ${config.maxHeaderBytes} bytes` : `the proxy cannot read this request: ${error.message}`);
    },
  });
  port = server.port;
  return {
    server,
    relays,
    closeWebSockets: () => {
      const open = [...relays];
      for (const relay of open) relay.shutdown();
      return open.length;
    },
  };
}
