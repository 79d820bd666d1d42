// The upstream side of a WebSocket relay (--websocket): our own RFC 6455 client handshake on
// Bun.connect, so that the key is written as the one Authorization line (authorization.ts, never
// copied into a string), and so that an upstream that refuses the handshake (401, 429, …) gives
// the client its status and body — Bun's WebSocket client reports neither.
import type { Socket, SocketHandler } from "bun";
import type { AuthorizationLine } from "../security/authorization";
import { LISTS_UPGRADE } from "../http/syntax";
import { parseResponseHead } from "../upstream/response-head";
import { ResponseBody } from "../upstream/response-body";
import { UpstreamError } from "../upstream/upstream-error";
import { acceptFor, closePayload, encodeFrame, FrameError, FrameParser, type Message, OPCODE } from "./frames";
import { WriteQueue } from "../http/write-queue";

/** The most of a refused handshake's body relayed to the client (an error JSON is far smaller). */
export const MAX_REFUSAL_BODY = 1 << 20;
/** How long a close handshake may take before the socket is simply closed. */
const CLOSE_GRACE_MS = 2000;

export interface UpstreamHandlers {
  /** A whole message, or a control frame, from the upstream. */
  message(m: Message): void;
  /** The upstream's bytes broke the protocol: the connection is being failed with `error.code`. */
  protocolError(error: FrameError): void;
  /** The TCP connection ended; `clean` when a close frame was seen first. */
  closed(clean: boolean, cause?: string): void;
  /** Everything queued for the upstream was written. */
  drain(): void;
}

export type Handshake =
  | { kind: "open"; socket: UpstreamWebSocket; headers: Headers }
  | { kind: "refused"; status: number; headers: Headers; body: Uint8Array }
  | { kind: "failed"; error: UpstreamError | Error };

export interface HandshakeRequest {
  url: URL;
  /** The client's headers, already without hop-by-hop and handshake headers (headers.ts). */
  headers: Headers;
  authorization: AuthorizationLine;
  maxMessage: number;
  /** ms to wait for the upstream's answer to the handshake; 0: no limit. */
  timeoutMs: number;
  /** The client went away while we were connecting. */
  signal: AbortSignal;
}

const enum Phase {
  Connecting,
  Head,
  RefusalBody,
  Open,
  Closed,
}

/** One upstream WebSocket connection: the handshake, then frames both ways. */
export class UpstreamWebSocket {
  private socket?: Socket<UpstreamWebSocket>;
  private phase = Phase.Connecting;
  private head: Uint8Array[] = [];
  /** A refused handshake: its status and headers, and its body as far as it has come. */
  private refusal?: { status: number; headers: Headers; body: Uint8Array[]; size: number; framing?: ResponseBody };
  private readonly key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
  private settle?: (h: Handshake) => void;
  private parser: FrameParser;
  private readonly writes = new WriteQueue();
  private closeSent = false;
  private closeSeen = false;
  private timer?: ReturnType<typeof setTimeout>;
  private finished = false;
  readonly tls: boolean;
  handlers?: UpstreamHandlers;

  private constructor(private readonly req: HandshakeRequest) {
    this.parser = new FrameParser(req.maxMessage);
    this.tls = req.url.protocol === "https:";
  }

  static connect(req: HandshakeRequest): Promise<Handshake> {
    const ws = new UpstreamWebSocket(req);
    return new Promise((resolve) => {
      ws.settle = (h) => {
        ws.settle = undefined;
        clearTimeout(ws.timer);
        req.signal.removeEventListener("abort", onAbort);
        resolve(h);
      };
      const onAbort = () => ws.fail(new UpstreamError("CLIENT_GONE", "the client went away"));
      req.signal.addEventListener("abort", onAbort);
      if (req.timeoutMs > 0) ws.timer = setTimeout(() => ws.fail(new UpstreamError("UPSTREAM_TIMEOUT", "no handshake answer")), req.timeoutMs);
      const { tls } = ws;
      const hostname = req.url.hostname.replace(/^\[(.*)\]$/, "$1");
      const port = Number(req.url.port) || (tls ? 443 : 80);
      Bun.connect<UpstreamWebSocket>({ hostname, port, data: ws, socket: HANDLERS, tls: tls ? { serverName: hostname } : undefined }).catch((err) =>
        ws.fail(err),
      );
    });
  }

  private fail(err: unknown) {
    this.phase = Phase.Closed;
    this.socket?.terminate();
    this.settle?.({ kind: "failed", error: err instanceof Error ? err : new UpstreamError("error", "connection failed") });
  }

  connected(socket: Socket<UpstreamWebSocket>) {
    this.socket = socket;
    this.phase = Phase.Head;
    const { url, headers, authorization } = this.req;
    // Header values come from a Headers object, which refuses CR, LF and NUL: nothing can smuggle
    // a line into this head. The key is the Authorization line's own bytes, written as they are.
    let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
    for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
    head += `connection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${this.key}\r\n`;
    this.write(Buffer.from(head, "latin1"));
    this.write(authorization.line);
    this.write(Buffer.from("\r\n", "latin1"));
  }

  /** Writes `bytes` now or queues them (never copied): true when nothing is left queued. */
  private write(bytes: Uint8Array): boolean {
    if (!this.socket || this.phase === Phase.Closed) return true;
    return this.writes.write(this.socket, bytes);
  }

  drained() {
    if (!this.socket || !this.writes.flush(this.socket)) return;
    if (this.phase === Phase.Open) this.handlers?.drain();
  }

  /** Sends one message or control frame; false when it had to be queued (wait for drain). */
  send(opcode: number, payload: Uint8Array): boolean {
    if (this.closeSent) return true;
    return this.write(encodeFrame(opcode, payload));
  }

  /** Starts the close handshake (once); the socket is closed when the upstream answers, or soon. */
  close(code: number | undefined, reason = ""): void {
    if (this.phase !== Phase.Open || this.closeSent) return;
    this.write(encodeFrame(OPCODE.close, closePayload(code, reason)));
    this.closeSent = true;
    if (this.closeSeen) this.socket?.end();
    else this.timer = setTimeout(() => this.socket?.terminate(), CLOSE_GRACE_MS);
  }

  /** Stops reading the upstream (the client is slow), or starts again. */
  pause(): void {
    this.socket?.pause();
  }
  resume(): void {
    this.socket?.resume();
  }

  terminate(): void {
    this.phase = Phase.Closed;
    clearTimeout(this.timer);
    this.socket?.terminate();
  }

  data(chunk: Buffer) {
    if (this.phase === Phase.Head) return this.headData(chunk);
    if (this.phase === Phase.RefusalBody) return this.refusalData(chunk);
    if (this.phase !== Phase.Open) return;
    let messages: Message[];
    try {
      messages = this.parser.push(chunk);
    } catch (err) {
      const error = err instanceof FrameError ? err : new FrameError(1002, "malformed frame");
      this.close(error.code, error.message);
      this.phase = Phase.Closed;
      this.socket?.terminate();
      this.handlers?.protocolError(error);
      return;
    }
    for (const m of messages) {
      if (m.kind === "ping") this.send(OPCODE.pong, m.data); // answered here: pings are per hop
      if (m.kind === "close") {
        this.closeSeen = true;
        if (this.closeSent) this.socket?.end();
      }
      this.handlers?.message(m);
    }
  }

  private headData(chunk: Buffer) {
    this.head.push(chunk);
    const bytes = Buffer.concat(this.head);
    let head: ReturnType<typeof parseResponseHead>;
    try {
      head = parseResponseHead(bytes, 0, true); // the same strict reading as every upstream answer
    } catch (err) {
      return this.fail(err);
    }
    if ("from" in head) {
      this.head = [head.from === 0 ? bytes : bytes.subarray(head.from)];
      return;
    }
    const rest = bytes.subarray(head.end);
    this.head = [];
    const { status, headers, framing } = head;
    if (status === 101) {
      const problem = this.checkUpgrade(headers);
      if (problem) return this.fail(new UpstreamError("BAD_HANDSHAKE", problem));
      this.phase = Phase.Open;
      this.settle?.({ kind: "open", socket: this, headers });
      if (rest.byteLength) this.data(rest);
      return;
    }
    this.phase = Phase.RefusalBody;
    const refusal: NonNullable<typeof this.refusal> = { status, headers, body: [], size: 0 };
    this.refusal = refusal;
    if (framing === "none") return this.refused();
    // Decoded as strictly as any response body (response-body.ts); the client gets the data.
    refusal.framing = new ResponseBody(framing, {
      bodyData: (bytes) => {
        refusal.body.push(bytes);
        refusal.size += bytes.byteLength;
      },
      bodyFramed: () => {}, // never called: nothing passes through
      passThrough: () => false,
      bodyEnd: () => this.refused(),
    });
    if (rest.byteLength) this.refusalData(rest);
  }

  private checkUpgrade(headers: Headers): string | undefined {
    if (headers.get("upgrade")?.toLowerCase() !== "websocket") return "101 without Upgrade: websocket";
    if (!LISTS_UPGRADE.test(headers.get("connection") ?? "")) return "101 without Connection: upgrade";
    if (headers.get("sec-websocket-accept") !== acceptFor(this.key)) return "wrong Sec-WebSocket-Accept";
    if (headers.has("sec-websocket-extensions")) return "an extension the proxy did not offer";
    const protocol = headers.get("sec-websocket-protocol");
    if (protocol !== null) {
      const offered = (this.req.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
      if (!offered.includes(protocol)) return "a subprotocol the client did not offer";
    }
    return undefined;
  }

  private refusalData(chunk: Buffer) {
    const r = this.refusal!;
    try {
      r.framing!.feed(chunk);
    } catch (err) {
      return this.fail(err); // a malformed body: a 502, never a garbled refusal
    }
    if (this.phase === Phase.RefusalBody && r.size > MAX_REFUSAL_BODY) this.refused(); // enough for the client
  }

  /** The refused handshake is complete (or the upstream closed): its status and body go to the client. */
  refused() {
    const r = this.refusal!;
    this.phase = Phase.Closed;
    this.socket?.terminate();
    this.settle?.({ kind: "refused", status: r.status, headers: r.headers, body: Buffer.concat(r.body).subarray(0, MAX_REFUSAL_BODY) });
  }

  ended(err?: unknown) {
    if (this.finished) return; // end, close and error may all report the same ending
    this.finished = true;
    const was = this.phase;
    this.phase = Phase.Closed;
    clearTimeout(this.timer);
    if (was === Phase.RefusalBody) return this.refused(); // a body delimited by the close
    if (was === Phase.Connecting || was === Phase.Head) return this.fail(err ?? new UpstreamError("UPSTREAM_CLOSED", "closed during the handshake"));
    if (was === Phase.Open) this.handlers?.closed(this.closeSeen, err === undefined ? undefined : describe(err));
  }
}

const describe = (err: unknown) => ((err as { code?: string })?.code ?? "UPSTREAM_CLOSED");

const HANDLERS: SocketHandler<UpstreamWebSocket> = {
  open(socket) {
    if (!socket.data.tls) socket.data.connected(socket);
  },
  handshake(socket, success, authorizationError) {
    if (success) socket.data.connected(socket);
    else socket.data.ended(authorizationError ?? new UpstreamError("TLS_HANDSHAKE_FAILED", "TLS handshake failed"));
  },
  connectError(socket, err) {
    socket.data.ended(err);
  },
  data(socket, chunk) {
    socket.data.data(chunk);
  },
  drain(socket) {
    socket.data.drained();
  },
  end(socket) {
    socket.data.ended();
    socket.terminate();
  },
  close(socket, err) {
    socket.data.ended(err);
  },
  error(socket, err) {
    socket.data.ended(err);
  },
};
