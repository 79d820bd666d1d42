// The upstream transport: a small, strict HTTP/1.1 client on Bun.connect.
//
// Why not fetch: Bun's fetch runs on a thread of its own, and the hop there and back cost ~14 µs
// of CPU and tens of µs of latency per request (measured for issue 6: 21 vs 15 µs of CPU per
// small request, 43k vs 57k req/s on 2 cores). This client does only what the proxy needs, and
// nothing a proxy must not do:
// - one origin, POST only; keep-alive sockets, one exchange at a time on each;
// - redirects are never followed and bodies never decoded: there is no code that could;
// - TLS verifies the certificate chain and the host name (Bun's defaults; NODE_EXTRA_CA_CERTS is
//   honoured). Do not pass `rejectUnauthorized` or a `checkServerIdentity` here: the key is sent on
//   this socket;
// - nothing here times out an exchange: a reasoning model may be quiet for minutes;
// - how a response head is read is response-head.ts's; where a response body ends, and what of it
//   passes through as it is, is response-body.ts's.
// With an HTTP(S) proxy configured, `transport.ts` uses fetch instead (Bun implements the proxy).
import type { Socket, SocketHandler } from "bun";
import type { AuthorizationLine } from "../security/authorization";
import { relayed, release } from "../http/chunk-memory";
import { chunkFrame, LAST_CHUNK } from "../http/chunked";
import { ResponseBody, type BodyOut } from "./response-body";
import { parseResponseHead } from "./response-head";
import { UpstreamError } from "./upstream-error";

/** A request body that arrives piece by piece; read() rejects when the client's body fails. */
export interface BodyReader {
  read(): Promise<{ done: boolean; value?: Uint8Array }>;
  cancel(reason?: unknown): Promise<void>;
}

export interface UpstreamRequest {
  /** Already rewritten for the upstream: hop-by-hop, Host and the client's Authorization out. */
  headers: Headers;
  /** The key's header line, shared by every request: written as it is, never copied. */
  authorization: AuthorizationLine;
  body?: Uint8Array | BodyReader;
  signal: AbortSignal;
  /**
   * Whose connections it may use: connections are pooled per owner (a local user) and never
   * carry another owner's request. Undefined: a new connection, closed after the exchange.
   */
  owner?: string;
}

/** The upstream's answer. */
export interface UpstreamResponse {
  status: number;
  statusText: string;
  headers: Headers;
  /** The body still arriving; null when there is none or it is `whole`. */
  body: UpstreamBody | null;
  /** The whole body, when it came with the head (a small JSON answer): no stream needed. */
  whole?: Uint8Array;
}

/**
 * A response body pushed chunk by chunk into one sink, from the socket's own callback: no
 * JavaScript stream and no promise in between, so each server-sent event is written to the
 * client the moment it is read (measured for issue 6: 100-130 µs less median delay, 50 streams).
 */
export interface UpstreamBody {
  /** Starts the flow into `sink`; call once. Bytes that came before it wait, in order. */
  pipe(sink: BodySink): void;
  /** The client is gone: stop reading and drop the connection; the sink hears nothing more. */
  cancel(): void;
}

export interface BodySink {
  /**
   * One chunk, the sink's only until write returns: it is freed then (chunk-memory.ts), so it
   * must be sent or copied, never kept. A promise means the client is slow: no more is read
   * until it settles.
   */
  write(chunk: Uint8Array): Promise<unknown> | undefined;
  /**
   * Offered only when the client's answer is chunked: bytes already in chunked framing, validated
   * by response-body.ts (whole or partial chunks, never the last one), to write as they are;
   * `dataBytes` of them are body. The same contract as write otherwise.
   */
  writeFramed?(raw: Uint8Array, dataBytes: number): Promise<unknown> | undefined;
  /** Called once: the body is complete (no error) or was cut (the upstream failed, or aborted). */
  end(err?: unknown): void;
}

export type Send = (req: UpstreamRequest) => Promise<UpstreamResponse>;

/** A body still arriving from the client (not bytes in hand). */
export function isStreamed(body: UpstreamRequest["body"]): body is BodyReader {
  return body !== undefined && !(body instanceof Uint8Array);
}

/** Idle pooled sockets are closed after this long, well before a server is likely to drop them. */
const IDLE_SECONDS = 15;
const MAX_IDLE = 256;

const enum Phase {
  Connecting,
  Head,
  Body, // framed by `body` (response-body.ts)
  Done,
}

interface Exchange {
  resolve(res: UpstreamResponse): void;
  reject(err: unknown): void;
  signal: AbortSignal;
  onAbort: () => void;
  /** The request body is still being sent from this reader. */
  reader?: BodyReader;
  requestSent: boolean;
  responded: boolean;
  /** Any response byte arrived: a failure from here on is never retried. */
  heard: boolean;
  /** Where the response body goes, once forward attaches it. */
  sink?: BodySink;
  /** Body bytes that arrived before the sink was attached (the socket is paused meanwhile). */
  early?: Uint8Array[];
  /** The body ended before the sink was attached. */
  ended?: { err?: unknown };
  cancelled?: boolean;
}

class Connection implements BodyOut {
  socket?: Socket<Connection>;
  phase = Phase.Connecting;
  reused = false;
  keepAlive = true;
  closed = false;
  exchange?: Exchange;
  private head?: Buffer;
  /** The response body's parser, which hands its bytes to this connection's BodyOut methods. */
  private body?: ResponseBody;
  private backlog?: Uint8Array;
  private drained?: { resolve(): void; reject(err: unknown): void };
  private ready?: { resolve(c: Connection): void; reject(err: unknown): void };

  constructor(readonly pool: Pool) {}

  open(): Promise<Connection> {
    return new Promise((resolve, reject) => {
      this.ready = { resolve, reject };
      const { hostname, port, tls } = this.pool;
      Bun.connect<Connection>({ hostname, port, data: this, socket: HANDLERS, tls: tls ? { serverName: hostname } : undefined }).catch(
        (err) => this.connectFailed(err),
      );
    });
  }

  connected(socket: Socket<Connection>) {
    this.socket = socket;
    this.phase = Phase.Done;
    this.ready?.resolve(this);
    this.ready = undefined;
  }

  connectFailed(err: unknown) {
    this.closed = true;
    this.ready?.reject(err);
    this.ready = undefined;
    this.socket?.terminate();
  }

  /**
   * Sends one request (`start`: its request line and host; `rest`: the rest of its head, the blank
   * line, and the body when it is in hand); resolves with the response once its head has arrived.
   */
  send(start: HeadStart, rest: Buffer, req: UpstreamRequest): Promise<UpstreamResponse> {
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const ex: Exchange = {
        resolve,
        reject,
        signal: req.signal,
        onAbort: () => this.fail(req.signal.reason ?? new UpstreamError("ABORTED", "aborted")),
        requestSent: false,
        responded: false,
        heard: false,
      };
      this.exchange = ex;
      this.phase = Phase.Head;
      this.keepAlive = true;
      this.socket!.timeout(0); // pooled sockets have an idle timer; an exchange has none
      req.signal.addEventListener("abort", ex.onAbort, { once: true });
      const body = req.body;
      // The key is never copied into a per-request buffer (authorization.ts): its line is written
      // from its own buffer, which also holds this upstream's request line and host, so a request
      // goes out in two writes. A line made for another head start (none in the proxy) costs a third.
      const { authorization } = req;
      const parts = authorization.headStart === start.text ? [authorization.head, rest] : [start.bytes, authorization.line, rest];
      const wrote = this.writeAll(parts);
      if (isStreamed(body)) {
        const chunked = !req.headers.has("content-length");
        ex.reader = body;
        void (wrote ? wrote.then(() => this.pump(ex, chunked)) : this.pump(ex, chunked)).catch((err) => this.fail(err, ex));
      } else if (wrote) wrote.then(() => this.sent(ex), (err) => this.fail(err, ex));
      else this.sent(ex);
    });
  }

  /** Streams the request body; chunked when the client declared no length. */
  private async pump(ex: Exchange, chunked: boolean) {
    const reader = ex.reader!;
    for (;;) {
      const { done, value } = await reader.read();
      if (this.exchange !== ex) return; // failed or finished meanwhile
      if (done || !value) break;
      if (value.byteLength === 0) continue;
      const bytes = chunked ? chunkFrame(value) : value;
      const wrote = this.write(bytes);
      if (wrote) await wrote;
      // Written in full: nothing reads these bytes again (the client's chunk, and our framed copy).
      release(value);
      if (bytes !== value) release(bytes);
    }
    if (chunked) {
      const wrote = this.write(LAST_CHUNK);
      if (wrote) await wrote;
    }
    this.sent(ex);
  }

  private sent(ex: Exchange) {
    if (this.exchange !== ex) return;
    ex.requestSent = true;
    ex.reader = undefined;
  }

  /** Writes `parts` in order: undefined when the socket took them all at once, else a promise. */
  private writeAll(parts: Uint8Array[]): Promise<void> | undefined {
    for (let i = 0; i < parts.length; i++) {
      const wrote = this.write(parts[i]!);
      if (wrote) {
        const rest = parts.slice(i + 1);
        return rest.length ? wrote.then(() => this.writeAll(rest)) : wrote;
      }
    }
    return undefined;
  }

  /** Writes all of `bytes`: undefined when the socket took it at once, else a promise for drain. */
  private write(bytes: Uint8Array): Promise<void> | undefined {
    if (this.closed) return Promise.reject(new UpstreamError("UPSTREAM_CLOSED", "upstream closed the connection"));
    const n = this.socket!.write(bytes);
    if (n >= bytes.byteLength) return undefined;
    this.backlog = bytes.subarray(Math.max(n, 0));
    return new Promise((resolve, reject) => {
      this.drained = { resolve, reject };
    });
  }

  drain() {
    while (this.backlog) {
      const n = this.socket!.write(this.backlog);
      if (n < this.backlog.byteLength) {
        this.backlog = this.backlog.subarray(Math.max(n, 0));
        return;
      }
      this.backlog = undefined;
      const waiter = this.drained;
      this.drained = undefined;
      waiter?.resolve();
    }
  }

  data(chunk: Buffer) {
    const ex = this.exchange;
    if (!ex) {
      // Bytes nobody asked for on an idle socket: it can no longer be trusted.
      this.destroy();
      return;
    }
    ex.heard = true;
    // A read in the head phase may be kept (a partial head, a whole small body, early body bytes).
    let kept = true;
    try {
      if (this.phase === Phase.Head) {
        const buf = this.head ? Buffer.concat([this.head, chunk]) : chunk;
        this.head = undefined;
        this.parseHead(buf, ex);
      } else {
        this.body!.feed(chunk);
        kept = ex.early !== undefined;
      }
    } catch (err) {
      this.fail(err, ex);
    }
    // Every body byte of this read went to the sink, which sent or copied it: free it now.
    if (!kept) release(chunk);
  }

  private parseHead(buf: Buffer, ex: Exchange) {
    const head = parseResponseHead(buf);
    if ("from" in head) {
      this.head = head.from === 0 ? buf : buf.subarray(head.from);
      return;
    }
    const { status, statusText, headers, framing, end } = head;
    if (!head.reusable) this.keepAlive = false;
    ex.responded = true;
    // No body, or the whole body came with the head (a small JSON answer): no stream.
    if (framing === "none" || (typeof framing === "number" && buf.byteLength - end >= framing)) {
      const length = framing === "none" ? 0 : framing;
      if (buf.byteLength - end > length) this.keepAlive = false; // bytes after the body: never reuse
      this.phase = Phase.Done;
      ex.resolve({ status, statusText, headers, body: null, whole: framing === "none" ? undefined : buf.subarray(end, end + length) });
      this.finish(ex);
      return;
    }
    this.phase = Phase.Body;
    this.body = new ResponseBody(framing, this);
    const body: UpstreamBody = { pipe: (sink) => void this.attach(ex, sink), cancel: () => this.cancel(ex) };
    ex.resolve({ status, statusText, headers, body });
    if (end < buf.byteLength) this.body.feed(buf, end);
  }

  // Where the response body's bytes go (BodyOut, called by `this.body`): to the exchange's sink,
  // or kept until it is attached.

  bodyData(bytes: Uint8Array) {
    const ex = this.exchange!;
    if (!ex.sink) {
      relayed(bytes.byteLength);
      (ex.early ??= []).push(bytes);
      this.socket!.pause();
      return;
    }
    const slow = ex.sink.write(bytes);
    if (slow) this.pauseUntil(slow);
  }

  /** A slow client: stop reading the upstream (TCP backpressure) until its socket drains. */
  private pauseUntil(slow: Promise<unknown>) {
    const ex = this.exchange;
    this.socket!.pause();
    slow.then(
      () => this.exchange === ex && this.socket!.resume(),
      () => {},
    );
  }

  passThrough(): boolean {
    return this.exchange?.sink?.writeFramed !== undefined;
  }

  /** Chunks in the upstream's own framing: only ever asked for by a sink that takes them. */
  bodyFramed(raw: Uint8Array, dataBytes: number) {
    const sink = this.exchange?.sink;
    if (!sink?.writeFramed) return; // cancelled meanwhile: nobody to send it to
    const slow = sink.writeFramed(raw, dataBytes);
    if (slow) this.pauseUntil(slow);
  }

  /** Connects the body to its sink: first what arrived early, then the socket directly. */
  private async attach(ex: Exchange, sink: BodySink) {
    for (const chunk of ex.early ?? []) {
      if (ex.cancelled) return;
      const slow = sink.write(chunk);
      if (slow) await slow;
    }
    ex.early = undefined;
    if (ex.cancelled) return;
    if (ex.ended) return sink.end(ex.ended.err);
    ex.sink = sink;
    this.socket!.resume();
  }

  /** The body's end: to the sink, or kept for it. */
  private ended(ex: Exchange, err?: unknown) {
    if (ex.sink) ex.sink.end(err);
    else ex.ended = { err };
  }

  /** The client is gone: the sink is detached first, so the failure reaches nobody. */
  private cancel(ex: Exchange) {
    ex.cancelled = true;
    ex.sink = undefined;
    ex.early = undefined;
    this.fail(new UpstreamError("CANCELLED", "the client went away"), ex);
  }

  bodyEnd(extra: boolean) {
    if (extra) this.keepAlive = false;
    this.phase = Phase.Done;
    this.body = undefined;
    const ex = this.exchange!;
    this.ended(ex);
    this.finish(ex);
  }

  /** The response is whole: the socket serves the next exchange, if the request went out whole. */
  private finish(ex: Exchange) {
    ex.signal.removeEventListener("abort", ex.onAbort);
    if (ex.requestSent) return this.release();
    // The upstream answered before taking the whole request body (an early error, say): stop
    // sending, and never reuse a socket whose request was cut short.
    this.exchange = undefined;
    ex.reader?.cancel().catch(() => {});
    this.destroy();
  }

  private release() {
    this.exchange = undefined;
    if (!this.keepAlive || this.closed) return this.destroy();
    this.socket!.resume();
    this.pool.put(this);
  }

  /** Fails the exchange in flight (if it is still `ex`) and drops the socket. */
  fail(err: unknown, ex = this.exchange) {
    if (!ex || this.exchange !== ex) return;
    this.exchange = undefined;
    ex.signal.removeEventListener("abort", ex.onAbort);
    if (!ex.responded) ex.reject(err);
    else if (this.phase !== Phase.Done) this.ended(ex, err);
    ex.reader?.cancel(err).catch(() => {});
    this.destroy();
  }

  /** The upstream closed (or reset) the socket. */
  closedByPeer(err?: Error) {
    if (this.ready) return this.connectFailed(err ?? new UpstreamError("UPSTREAM_CLOSED", "upstream closed the connection"));
    const ex = this.exchange;
    if (ex && this.phase === Phase.Body && this.body!.untilClose) {
      this.phase = Phase.Done; // a body without framing ends here
      this.ended(ex);
      this.finish(ex);
    } else if (ex) {
      const code = (err as { code?: unknown } | undefined)?.code;
      const failure = new UpstreamError(
        typeof code === "string" ? code : "UPSTREAM_CLOSED",
        ex.responded ? "upstream closed the connection mid-response" : "upstream closed the connection before responding",
        this.reused && !ex.heard,
      );
      this.fail(failure, ex);
    }
    this.destroy();
  }

  destroy() {
    this.closed = true;
    this.pool.forget(this);
    this.drained?.reject(new UpstreamError("UPSTREAM_CLOSED", "upstream connection closed"));
    this.drained = undefined;
    this.socket?.terminate();
  }
}


const HANDLERS: SocketHandler<Connection> = {
  open(socket) {
    if (!socket.data.pool.tls) socket.data.connected(socket);
  },
  handshake(socket, success, authorizationError) {
    if (success) socket.data.connected(socket);
    else socket.data.connectFailed(authorizationError ?? new UpstreamError("TLS_HANDSHAKE_FAILED", "TLS handshake failed"));
  },
  connectError(socket, err) {
    socket.data.connectFailed(err);
  },
  data(socket, chunk) {
    socket.data.data(chunk);
  },
  drain(socket) {
    socket.data.drain();
  },
  end(socket) {
    socket.data.closedByPeer();
    socket.terminate();
  },
  close(socket, err) {
    socket.data.closedByPeer(err);
  },
  error(socket, err) {
    socket.data.closedByPeer(err);
  },
  timeout(socket) {
    // Only idle pooled sockets have a timer.
    if (!socket.data.exchange) socket.data.destroy();
  },
};

/** The idle connections of one owner (or, when `reusable` is false, none: each is closed after use). */
class Pool {
  readonly hostname: string;
  readonly port: number;
  readonly tls: boolean;
  private readonly idle: Connection[] = [];

  constructor(
    url: URL,
    private readonly reusable: boolean,
  ) {
    this.tls = url.protocol === "https:";
    this.hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    this.port = Number(url.port) || (this.tls ? 443 : 80);
  }

  take(): Connection | undefined {
    const conn = this.idle.pop();
    if (conn) conn.reused = true;
    return conn;
  }

  put(conn: Connection) {
    if (!this.reusable || this.idle.length >= MAX_IDLE) return conn.destroy();
    conn.socket!.timeout(IDLE_SECONDS);
    this.idle.push(conn);
  }

  forget(conn: Connection) {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }
}

/** A request head's constant start: its request line and host, the same for every request. */
export interface HeadStart {
  text: string;
  bytes: Buffer;
}

/** The request line and host of every request to `url` (what AuthorizationLine.from puts before the key). */
export function requestStart(url: URL): string {
  return `POST ${url.pathname + url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
}

/**
 * The request after its start and the Authorization line: the other header lines, the blank line
 * and, when it is in hand, the body (one copy of it, as one write); latin1 keeps header bytes as
 * the client sent them.
 */
export function requestRest(headers: Headers, body: UpstreamRequest["body"]): Buffer {
  // Header names and values come from a Headers object, which refuses CR, LF and NUL: no header
  // can smuggle a line into this head.
  let lines = "";
  for (const [name, value] of headers) lines += `${name}: ${value}\r\n`;
  if (!headers.has("content-length")) {
    if (isStreamed(body)) lines += "transfer-encoding: chunked\r\n";
    else lines += `content-length: ${body?.byteLength ?? 0}\r\n`;
  }
  lines += "\r\n";
  if (isStreamed(body) || !body?.byteLength) return Buffer.from(lines, "latin1");
  const rest = Buffer.allocUnsafe(Buffer.byteLength(lines, "latin1") + body.byteLength);
  const at = rest.write(lines, 0, "latin1");
  rest.set(body, at);
  return rest;
}

/** A client for the one upstream URL. */
export function http1Client(url: URL): Send {
  // SECURITY: one pool per owner. A socket that carried one local user's exchange must never
  // carry another's request: bytes an upstream sends after a response (a second response, a body
  // on a 204, bytes past Content-Length) racing the next request would reach that next client.
  const pools = new Map<string, Pool>();
  const poolFor = (owner: string | undefined): Pool => {
    if (owner === undefined) return new Pool(url, false);
    let pool = pools.get(owner);
    if (!pool) pools.set(owner, (pool = new Pool(url, true)));
    return pool;
  };
  const text = requestStart(url);
  const start: HeadStart = { text, bytes: Buffer.from(text, "latin1") };
  return async (req) => {
    const rest = requestRest(req.headers, req.body);
    const pool = poolFor(req.owner);
    let retried = false;
    for (;;) {
      if (req.signal.aborted) throw req.signal.reason;
      const conn = (retried ? undefined : pool.take()) ?? (await new Connection(pool).open());
      if (req.signal.aborted) {
        pool.put(conn); // healthy and unused: the owner's next request may have it
        throw req.signal.reason;
      }
      try {
        return await conn.send(start, rest, req);
      } catch (err) {
        // A pooled socket the upstream closed just as we reused it, before answering a byte: the
        // request was not processed; send it again, as browsers do — ONCE, on a NEW connection
        // (another pooled socket may be just as stale: each try could be a billed request), and
        // only when the body is still in hand (never a stream that is half consumed).
        if (!retried && err instanceof UpstreamError && err.stale && !isStreamed(req.body)) {
          retried = true;
          continue;
        }
        throw err;
      }
    }
  };
}
