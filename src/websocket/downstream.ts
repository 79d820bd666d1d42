// --websocket: the client's side of a relayed WebSocket, on the listener's upgraded connection.
// Frames from the client must be masked and are parsed as strictly as the upstream's
// (frames.ts); frames to it are not masked. Pings are answered here (per hop).
import type { RawConnection } from "../http/listener";
import { LISTS_UPGRADE } from "../http/syntax";
import { acceptFor, closePayload, encodeFrame, FrameError, FrameParser, type Message, OPCODE } from "./frames";

const CLOSE_GRACE_MS = 2000;
const encoder = new TextEncoder();

export interface DownstreamHandlers {
  message(m: Extract<Message, { kind: "text" | "binary" }>): void;
  /** The client's side ended: its close frame (1005: it gave no code), a protocol fault, or 1006 (its connection went). */
  closed(code: number, reason: string): void;
  /** What could not be written at once has gone out. */
  drain(): void;
}

/** Why a client's opening handshake (RFC 6455 §4.2.1) cannot be completed; undefined when it can. */
export function clientHandshakeProblem(headers: Headers): string | undefined {
  if (!LISTS_UPGRADE.test(headers.get("connection") ?? "")) return "no Connection: upgrade";
  if (headers.get("sec-websocket-version") !== "13") return "Sec-WebSocket-Version is not 13";
  const key = headers.get("sec-websocket-key") ?? "";
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key)) return "Sec-WebSocket-Key is not 16 bytes in base64";
  return undefined;
}

/** The client's 101: the upstream's own headers (websocketDownstreamHeaders' copy, completed here), upgrade and its accept. */
export function clientHandshakeHeaders(clientHeaders: Headers, upstream: Headers): Headers {
  upstream.set("upgrade", "websocket");
  upstream.set("sec-websocket-accept", acceptFor(clientHeaders.get("sec-websocket-key")!));
  return upstream;
}

export class DownstreamWebSocket {
  private readonly parser: FrameParser;
  private closeSent = false;
  private closeSeen = false;
  private reported = false;
  private timer?: ReturnType<typeof setTimeout>;

  constructor(
    private readonly conn: RawConnection,
    maxMessage: number,
    private readonly handlers: DownstreamHandlers,
  ) {
    this.parser = new FrameParser(maxMessage, true);
    conn.handlers = { data: (chunk) => this.data(chunk), drain: () => handlers.drain(), closed: () => this.lost() };
  }

  /** Sends one message; false when it had to be queued (wait for drain). */
  send(m: Extract<Message, { kind: "text" | "binary" }>): boolean {
    if (this.closeSent) return true;
    const bytes = m.kind === "text" ? encoder.encode(m.data) : m.data;
    return this.conn.write(encodeFrame(m.kind === "text" ? OPCODE.text : OPCODE.binary, bytes, null));
  }

  /** Starts the close handshake (once); the connection ends when the client answers, or soon. */
  close(code: number | undefined, reason = ""): void {
    if (this.closeSent) return;
    this.closeSent = true;
    this.conn.write(encodeFrame(OPCODE.close, closePayload(code, reason), null));
    if (this.closeSeen) this.conn.end();
    else this.timer = setTimeout(() => this.conn.terminate(), CLOSE_GRACE_MS);
  }

  pause(): void {
    this.conn.pause();
  }
  resume(): void {
    this.conn.resume();
  }
  terminate(): void {
    clearTimeout(this.timer);
    this.conn.terminate();
  }

  private data(chunk: Uint8Array) {
    if (this.closeSeen) return;
    let messages: Message[];
    try {
      messages = this.parser.push(chunk);
    } catch (err) {
      const error = err instanceof FrameError ? err : new FrameError(1002, "malformed frame");
      // Reported before the close: ending the connection may report it lost (1006) at once.
      this.report(error.code, error.message);
      this.close(error.code, error.message);
      this.closeSeen = true; // nothing more is read from a client that broke the protocol
      return;
    }
    for (const m of messages) {
      if (m.kind === "ping") this.conn.write(encodeFrame(OPCODE.pong, m.data, null));
      else if (m.kind === "close") {
        this.closeSeen = true;
        this.report(m.code ?? 1005, m.reason);
        // Its close handshake is answered with its own code (none when it gave none).
        if (this.closeSent) this.conn.end();
        else this.close(m.code, m.reason);
        return;
      } else if (m.kind !== "pong") this.handlers.message(m);
    }
  }

  private lost() {
    clearTimeout(this.timer);
    this.report(1006, "");
  }

  private report(code: number, reason: string) {
    if (this.reported) return;
    this.reported = true;
    this.handlers.closed(code, reason);
  }
}
