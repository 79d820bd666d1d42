// --websocket: one client WebSocket (downstream.ts) joined to one upstream WebSocket
// (upstream.ts). Messages go both ways as they arrive, text as text and binary as
// binary; pings are answered at each hop; close codes and reasons cross; whichever side goes
// first, the other is closed at once. Backpressure both ways: a slow reader pauses the other side.
import type { RawConnection } from "../http/listener";
import { DownstreamWebSocket } from "./downstream";
import { isSendableCloseCode, type Message, OPCODE } from "./frames";
import type { UpstreamWebSocket } from "./upstream";

/** How a relayed connection ended, for its log line and its dump. */
export interface RelayEnd {
  ms: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Who ended it: `client`, `upstream` or `proxy` (shutting down, or the upstream broke the protocol). */
  closedBy: "client" | "upstream" | "proxy";
  /** The close code that ended it, as sent or received (1005: none given; 1006: no close frame). */
  code: number;
  /** `complete` for a close handshake by either side; else what went wrong. */
  outcome: "complete" | "upstream_lost" | "upstream_protocol_error" | "proxy_shutdown";
  cause?: string;
}

/** An observer of the messages (the dump). */
export interface RelayTap {
  message(from: "client" | "upstream", m: { kind: "text"; data: string } | { kind: "binary"; data: Uint8Array }): void;
  end(e: RelayEnd): void;
}

const encoder = new TextEncoder();

export class Relay {
  private client?: DownstreamWebSocket;
  /** What the upstream sent before the client's side was open: delivered on open, in order. */
  private early: Message[] = [];
  private readonly started = performance.now();
  private counts = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 };
  private done = false;
  /** Set when the relay ended before the client's side was open: applied on open. */
  private pendingClose?: { code: number; reason: string };

  constructor(
    private readonly upstream: UpstreamWebSocket,
    private readonly maxMessage: number,
    private readonly onEnd: (e: RelayEnd) => void,
    private readonly tap?: RelayTap,
  ) {
    upstream.handlers = {
      message: (m) => {
        if (this.done) return; // after the end, nothing more crosses
        if (this.client) this.fromUpstream(m);
        else this.early.push(m);
      },
      protocolError: (e) => this.end("proxy", e.code === 1009 ? 1009 : 1011, "upstream_protocol_error", `upstream ${e.message}`),
      closed: (clean, cause) => {
        if (!clean) this.end("upstream", 1011, "upstream_lost", "upstream connection lost", cause ?? "UPSTREAM_CLOSED");
      },
      drain: () => this.client?.resume(),
    };
  }

  /** The client's 101 is out: its connection is the client's side from here on. */
  opened(conn: RawConnection): void {
    this.client = new DownstreamWebSocket(conn, this.maxMessage, {
      message: (m) => this.fromClient(m),
      closed: (code, reason) => this.clientClosed(code, reason),
      drain: () => this.upstream.resume(),
    });
    for (const m of this.early.splice(0)) this.fromUpstream(m);
    if (this.pendingClose) this.closeClient(this.pendingClose.code, this.pendingClose.reason);
  }

  private closeClient(code: number, reason: string): void {
    if (!this.client) {
      this.pendingClose = { code, reason };
      return;
    }
    if (isSendableCloseCode(code)) this.client.close(code, reason);
    else this.client.close(code === 1005 ? undefined : 1000, reason);
  }

  private fromUpstream(m: Message): void {
    const ws = this.client!;
    if (m.kind === "close") return this.end("upstream", m.code ?? 1005, "complete", m.reason);
    if (m.kind !== "text" && m.kind !== "binary") return; // ping/pong: answered per hop
    this.counts.messagesOut++;
    this.counts.bytesOut += m.kind === "text" ? Buffer.byteLength(m.data) : m.data.byteLength;
    this.tap?.message("upstream", m);
    // Queued behind a slow client: stop reading the upstream until the client drains.
    if (!ws.send(m)) this.upstream.pause();
  }

  /** A message from the client. */
  private fromClient(m: Extract<Message, { kind: "text" | "binary" }>): void {
    if (this.done) return;
    const bytes = m.kind === "text" ? encoder.encode(m.data) : m.data;
    this.counts.messagesIn++;
    this.counts.bytesIn += bytes.byteLength;
    this.tap?.message("client", m);
    if (!this.upstream.send(m.kind === "text" ? OPCODE.text : OPCODE.binary, bytes)) this.client!.pause(); // until the upstream drains
  }

  /** The client's side closed: its close frame, a protocol fault (1002, 1007, 1009), or its connection gone (1006). */
  clientClosed(code: number, reason: string): void {
    this.end("client", code, "complete", reason);
  }

  /** The proxy is stopping: both sides get 1001. */
  shutdown(): void {
    this.end("proxy", 1001, "proxy_shutdown", "proxy shutting down");
  }

  /** Closes the other side(s) with `code` and reports, once. */
  private end(by: RelayEnd["closedBy"], code: number, outcome: RelayEnd["outcome"], reason: string, cause?: string): void {
    if (this.done) return;
    this.done = true;
    // To the upstream (its close handshake's answer when it closed first): the code where it may be
    // sent on, none for 1005, and 1001 (going away) for a client that vanished without one.
    this.upstream.close(isSendableCloseCode(code) ? code : code === 1005 ? undefined : 1001, reason);
    if (by !== "client") this.closeClient(code, reason);
    if (outcome !== "complete" && by !== "client") this.upstream.terminate();
    const e: RelayEnd = { ms: performance.now() - this.started, ...this.counts, closedBy: by, code, outcome, ...(cause ? { cause } : {}) };
    this.onEnd(e);
    this.tap?.end(e);
  }
}
