// The listener: HTTP/1.1 on Bun.listen, one exchange at a time per connection, in order.
//
// Why not Bun.serve: it closes a connection when a second request arrives before the first one's
// answer (HTTP/1.1 pipelining, oven-sh/bun#38128), abandoning a request already billed upstream;
// it resolves `..` and absolute-form targets before the proxy sees them; it fails a chunked body
// with a trailer after the body has streamed. Here the proxy reads its own requests:
// - heads and chunked bodies are parsed strictly (request-head.ts, chunked.ts);
// - pipelined requests wait in the connection's buffer and are answered in order, each after the
//   one before has ended (the socket is paused while more than one head's worth waits);
// - a client that vanishes aborts its exchange (IncomingRequest.signal) at once.
// SECURITY-CRITICAL: the next request on a connection starts exactly where this listener ended the
// body before it. A body the handler did not read is read and dropped (up to DISCARD_LIMIT) or the
// connection is closed, never parsed as a request.
import type { Socket, TCPSocketListener } from "bun";
import { proxyError } from "../errors";
import { release } from "./chunk-memory";
import { WriteQueue } from "./write-queue";
import { chunkFrame, ChunkedDecoder, ChunkError, LAST_CHUNK } from "./chunked";
import { HeadError, parseRequestHead, type RequestHead } from "./request-head";
import { CONTROL } from "./syntax";

/** What a handler answers. */
export interface Reply {
  status: number;
  statusText?: string;
  headers?: Headers | Record<string, string>;
  /** A body in hand (sent with its Content-Length). */
  body?: Uint8Array | string | null;
  /** A body that streams: called with the sink once the head is out (chunked, or until close in HTTP/1.0). */
  stream?: (sink: ReplySink) => void;
  /** A 101: once its head is out, the connection's bytes belong to this (the WebSocket relay). */
  upgrade?: (socket: RawConnection) => void;
}

export interface ReplySink {
  /**
   * Writes one chunk now (it is copied if the socket cannot take it all, so the caller may free it
   * when this returns). true: written; a promise: the client is slow, write no more until it
   * settles; false (or a promise of false): the client is gone.
   */
  write(chunk: Uint8Array): boolean | Promise<boolean>;
  /**
   * Only on a chunked answer: bytes already in chunked framing (whole or partial chunks, never the
   * last one), written as they are. The caller vouches for the framing (upstream/response-body.ts).
   */
  writeFramed?(raw: Uint8Array): boolean | Promise<boolean>;
  /** The body is complete; with an error it was cut, and the client sees the connection cut. */
  end(err?: unknown): void;
}

/** An upgraded connection, bytes both ways. */
export interface RawConnection {
  /** true: written; false: queued, wait for `drain`. */
  write(bytes: Uint8Array): boolean;
  end(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
  handlers?: { data(chunk: Uint8Array): void; drain(): void; closed(err?: Error): void };
}

/** Per connection: a connection's owner cannot change while it is open, so it is asked once. */
export interface PeerMemo {
  owner?: { uid: number | undefined };
}

export type Handler = (req: IncomingRequest) => Reply | Promise<Reply>;

export interface ListenOptions {
  port: number;
  /** Largest request head in bytes (a larger one gets 431 and the connection closes). */
  maxHeadBytes: number;
  /** Seconds a connection may stay silent while the proxy waits for its next bytes. */
  idleTimeout: number;
  handle: Handler;
  /** The answer to a head the listener will not read (the connection then closes). */
  refusal(error: HeadError, remote: { address: string; port: number }): Reply;
}

/** A request body not read by the handler is read and dropped up to this; beyond, the connection closes. */
const DISCARD_LIMIT = 1024 * 1024;
/** Seconds from a head's first byte to its blank line (Bun.serve's own limit was about 10 s). */
const HEAD_SECONDS = 10;
/** Body bytes waiting for the handler's next read before the socket is paused. */
const BODY_HIGH_WATER = 256 * 1024;
const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n", "latin1");
/**
 * How an answer's head frames its body: by its length, chunked, until the connection closes
 * (HTTP/1.0), no body at all (204, 304), or a 101 after which the bytes are the WebSocket's.
 */
type Framing = "length" | "chunked" | "close" | "none" | "upgrade";
/** Framing is the listener's alone: these never come from a reply's headers. */
const FRAMING = new Set(["content-length", "transfer-encoding", "connection", "keep-alive", "date"]);
const REASONS: Record<number, string> = {
  101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 304: "Not Modified",
  400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
  408: "Request Timeout", 409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type",
  422: "Unprocessable Content", 429: "Too Many Requests", 431: "Request Header Fields Too Large", 499: "Client Closed Request",
  500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
  504: "Gateway Timeout", 505: "HTTP Version Not Supported",
};

let dateSecond = 0;
let dateText = "";
/** The Date header, formatted once a second. */
function httpDate(): string {
  const now = Math.floor(Date.now() / 1000);
  if (now !== dateSecond) {
    dateSecond = now;
    dateText = new Date(now * 1000).toUTCString();
  }
  return dateText;
}

/** One request as the handler sees it; its body is read with read() or bytes(). */
export class IncomingRequest {
  readonly method: string;
  readonly target: string;
  readonly headers: Headers;
  readonly signal: AbortSignal;
  /** The client's address and port (to ask the kernel who owns the connection). */
  readonly remote: { address: string; port: number };
  /** What the proxy learnt of this request's connection, kept for its next requests (its owner). */
  readonly peer: PeerMemo;
  /** The request declares a body (it may still be empty when chunked). */
  readonly hasBody: boolean;
  private chunks: Uint8Array[] = [];
  private queued = 0;
  private finished = false;
  private failure?: Error;
  private waiter?: { resolve: (r: { done: boolean; value?: Uint8Array }) => void; reject: (e: Error) => void };
  /** The handler has asked for the body (a 100 Continue is due, if the client waits for one). */
  asked = false;
  /** The handler gave up on the body: what still comes is dropped. */
  cancelled = false;

  constructor(
    head: RequestHead,
    private readonly conn: Connection,
    readonly controller: AbortController,
  ) {
    this.method = head.method;
    this.target = head.target;
    this.headers = head.headers;
    this.signal = controller.signal;
    this.remote = conn.remote;
    this.peer = conn.peer;
    this.hasBody = head.framing.kind !== "none";
    if (!this.hasBody) this.finished = true;
  }

  /** The next piece of the body; done at its end. Rejects when the body failed or the client left. */
  read(): Promise<{ done: boolean; value?: Uint8Array }> {
    if (!this.asked) {
      this.asked = true;
      this.conn.bodyWanted();
    }
    const chunk = this.chunks.shift();
    if (chunk) {
      this.queued -= chunk.byteLength;
      if (this.queued < BODY_HIGH_WATER) this.conn.bodyDrained();
      return Promise.resolve({ done: false, value: chunk });
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.finished) return Promise.resolve({ done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** Stops reading: the rest of the body is dropped by the listener. */
  cancel(_reason?: unknown): Promise<void> {
    this.cancelled = true;
    this.chunks = [];
    this.queued = 0;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.resolve({ done: true }); // a read waiting now ends, as a stream reader's would
    this.conn.bodyDrained();
    return Promise.resolve();
  }

  /** The whole body. */
  async bytes(): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for (;;) {
      const { done, value } = await this.read();
      if (done) break;
      parts.push(value!);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Seconds the connection may stay silent from now on; 0: no limit (a long quiet stream). */
  timeout(seconds: number): void {
    this.conn.setTimeout(seconds);
  }

  /** From the listener: body bytes. false: the handler has enough queued (pause the socket). */
  push(chunk: Uint8Array): boolean {
    if (this.cancelled) return true;
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter.resolve({ done: false, value: chunk });
      return true;
    }
    this.chunks.push(chunk);
    this.queued += chunk.byteLength;
    return this.queued < BODY_HIGH_WATER;
  }

  /** From the listener: the body ended, or failed. */
  close(err?: Error): void {
    if (this.finished || this.failure) return;
    if (err) this.failure = err;
    else this.finished = true;
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) err ? waiter.reject(err) : waiter.resolve({ done: true });
  }
}

const enum Body {
  None,
  Length,
  Chunked,
}

/** One client connection. */
class Connection implements RawConnection {
  socket!: Socket<Connection>;
  remote = { address: "", port: 0 };
  readonly peer: PeerMemo = {};
  /** Bytes read and not yet used: a partial head, body bytes held back, pipelined requests. */
  private buf?: Buffer;
  private req?: IncomingRequest;
  private head?: RequestHead;
  private body = Body.None;
  private remaining = 0;
  private chunked?: ChunkedDecoder;
  private discarded = 0;
  /** The answer to the current request is complete. */
  private answered = false;
  private keepAlive = true;
  private paused = false;
  private readonly writes = new WriteQueue();
  private drainWaiters: Array<(ok: boolean) => void> = [];
  private idle: number;
  /** Ending: what is queued is written, nothing more is read. */
  private closing = false;
  /** An exchange ended with its answer still queued: the next request waits for the drain. */
  private nextAfterDrain = false;
  closed = false;
  upgraded = false;
  handlers?: RawConnection["handlers"];

  constructor(private readonly server: Listener) {
    this.idle = server.options.idleTimeout;
  }

  opened(socket: Socket<Connection>) {
    this.socket = socket;
    this.remote = { address: socket.remoteAddress, port: socket.remotePort };
    socket.timeout(this.idle);
  }

  setTimeout(seconds: number) {
    this.idle = seconds;
    if (!this.closed) this.socket.timeout(seconds);
  }

  data(chunk: Buffer) {
    if (this.upgraded) return this.handlers?.data(chunk);
    if (this.closing) return; // after a refusal or a cut answer, nothing more is read as a request
    // Silence is counted from the last byte, but a head must be whole within HEAD_SECONDS of its
    // first byte: a client dripping a head byte by byte cannot hold a connection for ever.
    if (this.req) {
      if (this.idle) this.socket.timeout(this.idle);
    } else if (!this.buf) this.socket.timeout(this.idle ? Math.min(this.idle, HEAD_SECONDS) : HEAD_SECONDS);
    this.buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    this.process();
  }

  /** Uses what is buffered: body bytes for the current request, else the next request's head. */
  private process() {
    while (this.buf && !this.closed && !this.closing && !this.upgraded && !this.nextAfterDrain) {
      if (this.body !== Body.None) {
        if (!this.feedBody()) return;
        continue;
      }
      if (this.req) {
        // A pipelined request waits until the answer ahead of it has ended; past one head's worth
        // of waiting bytes the socket stops reading (the kernel's buffer then holds the client).
        if (this.buf.byteLength > this.server.options.maxHeadBytes) this.pause();
        return;
      }
      if (!this.nextRequest()) return;
    }
  }

  /** Reads the next request's head and starts its exchange; false while the head is incomplete. */
  private nextRequest(): boolean {
    let parsed;
    try {
      parsed = parseRequestHead(this.buf!, this.server.options.maxHeadBytes);
    } catch (err) {
      this.refuse(err instanceof HeadError ? err : new HeadError(400, "malformed request head"));
      return false;
    }
    if (!parsed) return false;
    const { head, end } = parsed;
    this.buf = end < this.buf!.byteLength ? this.buf!.subarray(end) : undefined;
    this.head = head;
    this.answered = false;
    this.keepAlive = head.keepAlive;
    this.discarded = 0;
    if (head.framing.kind === "length") {
      this.body = Body.Length;
      this.remaining = head.framing.length;
    } else if (head.framing.kind === "chunked") {
      this.body = Body.Chunked;
      this.chunked = new ChunkedDecoder();
    } else this.body = Body.None;
    const req = new IncomingRequest(head, this, new AbortController());
    this.req = req;
    this.server.exchanges++;
    let reply: Reply | Promise<Reply>;
    try {
      reply = this.server.options.handle(req);
    } catch {
      reply = internalError();
    }
    if (reply instanceof Promise) {
      reply.then(
        (r) => this.respond(req, r),
        () => this.respond(req, internalError()),
      );
    } else this.respond(req, reply);
    return true;
  }

  /**
   * Moves buffered body bytes to the request. false: stop (more bytes are needed, or the handler
   * has enough queued, or the connection is closing).
   */
  private feedBody(): boolean {
    const req = this.req!;
    const buf = this.buf!;
    let data: Uint8Array[];
    let used: number;
    let ended = false;
    if (this.body === Body.Length) {
      used = Math.min(this.remaining, buf.byteLength);
      // The whole read when it is all body: freed at once once relayed (chunk-memory.ts).
      data = [used === buf.byteLength ? buf : buf.subarray(0, used)];
      this.remaining -= used;
      ended = this.remaining === 0;
    } else {
      let out;
      try {
        out = this.chunked!.push(buf);
      } catch (err) {
        req.close(err instanceof ChunkError ? err : new ChunkError("malformed chunked body"));
        this.keepAlive = false;
        this.body = Body.None;
        this.buf = undefined;
        // The handler's read fails with this error (its 400); else its answer stands. Either way
        // nothing after a broken body is read: the connection closes after the answer.
        if (this.answered) this.finishExchange();
        return false;
      }
      data = out.data;
      used = out.end ?? buf.byteLength;
      ended = out.end !== undefined;
    }
    this.buf = used < buf.byteLength ? buf.subarray(used) : undefined;
    let room = true;
    for (const chunk of data) {
      if (chunk.byteLength === 0) continue;
      if (req.cancelled || this.answered) {
        this.discarded += chunk.byteLength;
        if (chunk === buf) release(buf);
        continue;
      }
      room = req.push(chunk) && room;
    }
    if (ended) {
      this.body = Body.None;
      req.close();
      if (this.answered) this.finishExchange();
      return true;
    }
    if (this.discarded > DISCARD_LIMIT) {
      this.keepAlive = false;
      if (this.answered) this.finishExchange();
      return false;
    }
    if (!room) this.pause();
    return !!this.buf && room;
  }

  /** The handler reads the body: a client waiting on `Expect: 100-continue` may send it now. */
  bodyWanted() {
    if (this.head?.expectContinue && !this.answered && this.body !== Body.None) this.write(CONTINUE);
  }

  bodyDrained() {
    if (this.paused && !this.closed) {
      this.resume();
      this.process();
    }
  }

  /** Answers a head it will not read, and closes: nothing after it on this connection can be trusted. */
  private refuse(error: HeadError) {
    this.keepAlive = false;
    this.buf = undefined;
    const reply = this.server.options.refusal(error, this.remote);
    const headers = reply.headers instanceof Headers ? reply.headers : new Headers(reply.headers);
    this.writeHead(reply.status, headers, "length", reply.body ?? undefined);
    this.closeSoon();
  }

  /** Writes the head of `reply` and its body; the exchange ends when both are out. */
  private respond(req: IncomingRequest, reply: Reply) {
    if (this.req !== req || this.closed) {
      reply.stream?.(goneSink);
      return;
    }
    const headers = reply.headers instanceof Headers ? reply.headers : new Headers(reply.headers);
    const { status } = reply;
    if (reply.upgrade) {
      this.writeHead(101, headers, "upgrade");
      this.upgraded = true;
      this.answered = true;
      this.endExchange();
      this.setTimeout(0);
      reply.upgrade(this);
      const early = this.buf;
      this.buf = undefined;
      if (early) this.handlers?.data(early);
      return;
    }
    // A body the handler never asked for, behind an `Expect: 100-continue`, may never come: close.
    if (this.body !== Body.None && !req.asked && this.head?.expectContinue) this.keepAlive = false;
    const minor = this.head!.minor;
    const noBody = status === 204 || status === 304 || (status >= 100 && status < 200);
    if (reply.stream && !noBody) {
      const chunked = minor === 1;
      if (!chunked) this.keepAlive = false; // HTTP/1.0: the body ends with the connection
      this.writeHead(status, headers, chunked ? "chunked" : "close", undefined, reply.statusText);
      reply.stream(chunked ? new ChunkedAnswer(this, req) : new Answer(this, req, false));
      return;
    }
    reply.stream?.(goneSink);
    this.writeHead(status, headers, noBody ? "none" : "length", noBody ? undefined : (reply.body ?? undefined), reply.statusText);
    this.answerEnded(req);
  }

  /** The status line and headers, framed as `framing` says, then `body` if given. */
  private writeHead(status: number, headers: Headers, framing: Framing, body?: Uint8Array | string, statusText?: string) {
    const bytes = typeof body === "string" ? Buffer.from(body) : body;
    // The upstream's reason phrase is passed on only when it is plain text (no control bytes).
    const reason = statusText && !CONTROL.test(statusText) ? statusText : (REASONS[status] ?? "");
    let head = `HTTP/1.1 ${status} ${reason}\r\n`;
    for (const [name, value] of headers) if (!FRAMING.has(name)) head += `${name}: ${value}\r\n`;
    head += `date: ${httpDate()}\r\n`;
    if (framing === "upgrade") head += "connection: Upgrade\r\n";
    else {
      if (framing === "chunked") head += "transfer-encoding: chunked\r\n";
      else if (framing === "length") head += `content-length: ${bytes?.byteLength ?? 0}\r\n`;
      if (!this.keepAlive || this.server.stopping) head += "connection: close\r\n";
      else if (this.head?.minor === 0) head += "connection: keep-alive\r\n";
    }
    head += "\r\n";
    if (bytes && bytes.byteLength) this.write(Buffer.concat([Buffer.from(head, "latin1"), bytes]));
    else this.write(Buffer.from(head, "latin1"));
  }

  /** Still answering `req`: the connection is open and has not moved on. */
  answering(req: IncomingRequest): boolean {
    return !this.closed && this.req === req;
  }

  /** A streamed answer's end (Answer.end): with an error it was cut, and the client sees the connection cut. */
  answerStreamEnded(req: IncomingRequest, err: unknown, chunked: boolean) {
    if (!this.answering(req)) return;
    if (err !== undefined) {
      // Cut: no last chunk, so the client cannot take the body for complete.
      this.keepAlive = false;
      this.terminateAfterWrites();
      return;
    }
    if (chunked) this.write(LAST_CHUNK);
    this.answerEnded(req);
  }

  /** Writes; when the socket could not take it all, a promise that settles on drain (or close). */
  writeOrWait(bytes: Uint8Array, own: boolean): boolean | Promise<boolean> {
    const all = this.write(bytes, !own);
    // A large framed copy (a buffer of its own) is freed at once; a small one (a slice of Buffer's
    // pool) is left to the collector by release().
    if (own && all) release(bytes);
    if (all) return true;
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** true when all of it went out now; else the rest waits (copied when `copy`) for drain. */
  write(bytes: Uint8Array, copy = true): boolean {
    if (this.closed) return false;
    return this.writes.write(this.socket, bytes, copy);
  }

  drained() {
    if (this.closed || !this.writes.flush(this.socket)) return;
    if (this.closing) return void this.socket.end();
    if (this.upgraded) return this.handlers?.drain();
    for (const w of this.drainWaiters.splice(0)) w(true);
    if (this.nextAfterDrain) {
      this.nextAfterDrain = false;
      this.resume();
      this.process();
    }
  }

  /** Closes once everything written has gone out. */
  private closeSoon() {
    this.closing = true;
    this.pause();
    if (this.writes.empty) this.socket.end();
  }

  private terminateAfterWrites() {
    this.answered = true;
    this.req?.controller.abort(new Error("the answer was cut"));
    this.endExchange();
    this.closeSoon();
  }

  /** The answer is out: the exchange ends once the request body has been read (or dropped). */
  private answerEnded(req: IncomingRequest) {
    if (this.req !== req) return;
    this.answered = true;
    if (this.body === Body.None) return this.finishExchange();
    // The rest of the body is read and dropped; the next request starts after it.
    if (!this.keepAlive || this.remaining > DISCARD_LIMIT) {
      this.keepAlive = false;
      return this.finishExchange();
    }
    req.cancel();
    this.resume();
    this.process();
  }

  private finishExchange() {
    this.endExchange();
    if (!this.keepAlive || this.server.stopping) return this.closeSoon();
    this.setTimeout(this.server.options.idleTimeout);
    // The next request is read only once this answer has gone out: a client that pipelines and
    // never reads cannot make the proxy queue answers without end.
    if (!this.writes.empty) {
      this.nextAfterDrain = true;
      this.pause();
      return;
    }
    this.resume();
    queueMicrotask(() => this.process()); // a pipelined request, after this one's callers return
  }

  private endExchange() {
    if (!this.req) return;
    this.req = undefined;
    this.head = undefined;
    this.body = Body.None;
    this.chunked = undefined;
    this.server.exchanges--;
  }

  pause() {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.socket.pause();
  }

  resume() {
    if (!this.paused || this.closed || this.closing) return;
    this.paused = false;
    this.socket.resume();
  }

  end() {
    if (!this.closed) this.closeSoon();
  }

  terminate() {
    if (!this.closed) this.socket.terminate();
  }

  /** The socket is gone (either side): the exchange in flight is aborted, waiting writers told. */
  gone(err?: Error) {
    if (this.closed) return;
    this.closed = true;
    this.server.connections.delete(this);
    for (const w of this.drainWaiters.splice(0)) w(false);
    this.writes.clear();
    if (this.upgraded) return this.handlers?.closed(err);
    const req = this.req;
    if (req) {
      req.close(new Error("the client closed the connection"));
      if (!this.answered) req.controller.abort(new Error("the client closed the connection"));
      this.endExchange();
    }
  }

  /** Idle while waiting for a request (nothing in flight): may be closed at once when stopping. */
  get idleNow(): boolean {
    return !this.req && !this.upgraded;
  }
}

/**
 * A streamed answer's body (the ReplySink a handler writes to), framed by the connection's end
 * (HTTP/1.0) or chunked. A class, not closures: every server-sent event passes here, and each
 * object it touches on the way costs (docs/performance.md).
 */
class Answer implements ReplySink {
  private done = false;

  constructor(
    protected readonly conn: Connection,
    private readonly req: IncomingRequest,
    private readonly chunked: boolean,
  ) {}

  /** This answer may still write: not ended, and its connection is still on its request. */
  protected open(): boolean {
    return !this.done && this.conn.answering(this.req);
  }

  write(chunk: Uint8Array): boolean | Promise<boolean> {
    if (!this.open()) return false;
    if (!this.chunked) return this.conn.writeOrWait(chunk, false);
    return this.conn.writeOrWait(chunkFrame(chunk), true);
  }

  end(err?: unknown): void {
    if (this.done) return;
    this.done = true;
    this.conn.answerStreamEnded(this.req, err, this.chunked);
  }
}

/** A chunked answer, which also takes bytes already in chunked framing (ReplySink.writeFramed). */
class ChunkedAnswer extends Answer {
  constructor(conn: Connection, req: IncomingRequest) {
    super(conn, req, true);
  }

  writeFramed(raw: Uint8Array): boolean | Promise<boolean> {
    return this.open() && this.conn.writeOrWait(raw, false);
  }
}

const goneSink: ReplySink = { write: () => false, end: () => {} };
/** A handler that threw (a bug): still JSON, still nothing of the request. */
const internalError = (): Reply => proxyError(500, "internal_error", "internal proxy error");

export class Listener {
  private listener: TCPSocketListener<undefined>;
  readonly connections = new Set<Connection>();
  /** Exchanges in flight (a request read, its answer not yet complete). */
  exchanges = 0;
  stopping = false;
  readonly port: number;

  constructor(readonly options: ListenOptions) {
    // The same handler object for every socket: each socket's own state is its Connection.
    this.listener = Bun.listen<undefined>({
      hostname: "127.0.0.1",
      port: options.port,
      // Never share the port (SO_REUSEPORT): a second proxy must fail with EADDRINUSE.
      exclusive: true,
      socket: {
        open: (socket) => {
          const conn = new Connection(this);
          (socket as unknown as Socket<Connection>).data = conn;
          this.connections.add(conn);
          conn.opened(socket as unknown as Socket<Connection>);
        },
        data: (socket, chunk) => (socket.data as unknown as Connection).data(chunk),
        drain: (socket) => (socket.data as unknown as Connection).drained(),
        end: (socket) => (socket.data as unknown as Connection).gone(),
        close: (socket, err) => (socket.data as unknown as Connection).gone(err),
        error: (socket, err) => (socket.data as unknown as Connection)?.gone(err),
        timeout: (socket) => {
          (socket.data as unknown as Connection).gone();
          socket.terminate();
        },
      },
    });
    this.port = this.listener.port;
  }

  /** Stops accepting; idle connections close now, busy ones after their answer. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.listener.stop(false);
    for (const conn of [...this.connections]) if (conn.idleNow) conn.end();
  }
}
