// WebSocket framing (RFC 6455 §5), both sides of it: frames the proxy sends upstream are masked,
// frames it sends its clients are not; frames from either are parsed strictly. Pure, no I/O.
// SECURITY-RELEVANT: both are peers the proxy does not trust; every length and flag they send is
// checked before anything is allocated.

export const OPCODE = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** The GUID of RFC 6455 §1.3, concatenated with the key to compute Sec-WebSocket-Accept. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The Sec-WebSocket-Accept an upstream must answer to our Sec-WebSocket-Key. */
export function acceptFor(key: string): string {
  return new Bun.CryptoHasher("sha1").update(key + GUID).digest("base64");
}

/**
 * One frame, FIN set. Upstream (client to server) it is masked with a fresh random key; to a
 * client (`mask` null) it is not.
 */
export function encodeFrame(opcode: number, payload: Uint8Array, mask: Uint8Array | null = crypto.getRandomValues(new Uint8Array(4))): Uint8Array {
  const n = payload.byteLength;
  const lengthBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const head = 2 + lengthBytes + (mask ? 4 : 0);
  const frame = new Uint8Array(head + n);
  const maskBit = mask ? 0x80 : 0;
  frame[0] = 0x80 | opcode;
  if (lengthBytes === 0) frame[1] = maskBit | n;
  else if (lengthBytes === 2) {
    frame[1] = maskBit | 126;
    frame[2] = n >>> 8;
    frame[3] = n & 0xff;
  } else {
    frame[1] = maskBit | 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(n));
  }
  if (!mask) {
    frame.set(payload, head);
    return frame;
  }
  frame.set(mask, 2 + lengthBytes);
  for (let i = 0; i < n; i++) frame[head + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/** A close frame's payload: the code (omitted for 1005, "no status") and a reason of at most 123 bytes. */
export function closePayload(code: number | undefined, reason = ""): Uint8Array {
  if (code === undefined || code === 1005) return new Uint8Array(0);
  const text = new TextEncoder().encode(reason);
  let end = Math.min(text.byteLength, 123);
  while (end > 0 && end < text.byteLength && (text[end]! & 0xc0) === 0x80) end--; // not mid-character
  const out = new Uint8Array(2 + end);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  out.set(text.subarray(0, end), 2);
  return out;
}

/** Close codes a peer may put on the wire (RFC 6455 §7.4.1; 1004–1006, 1015 never are). */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

export type Message =
  | { kind: "text"; data: string }
  | { kind: "binary"; data: Uint8Array }
  | { kind: "ping"; data: Uint8Array }
  | { kind: "pong"; data: Uint8Array }
  | { kind: "close"; code: number | undefined; reason: string };

/** Why a peer's bytes are not a WebSocket stream we accept, and the close code it earns. */
export class FrameError extends Error {
  constructor(
    readonly code: 1002 | 1007 | 1009,
    message: string,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Turns a peer's bytes into whole messages: fragments joined, control frames between them
 * delivered as they come. Throws FrameError on anything RFC 6455 says must fail the connection:
 * a frame masked when it must not be (from the upstream) or unmasked when it must be (from a
 * client, `fromClient`), a reserved bit (no extension is negotiated), an unknown opcode, a
 * fragmented or oversized control frame, a continuation out of place, invalid UTF-8 in a text
 * message, a message over `maxMessage` bytes.
 */
export class FrameParser {
  private buffered: Uint8Array[] = [];
  private bufferedBytes = 0;
  private fragments: Uint8Array[] = [];
  private fragmentBytes = 0;
  private fragmentOpcode = -1;

  constructor(
    private readonly maxMessage: number,
    private readonly fromClient = false,
  ) {}

  push(chunk: Uint8Array): Message[] {
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.byteLength;
    const out: Message[] = [];
    for (;;) {
      const frame = this.nextFrame();
      if (!frame) return out;
      const message = this.assemble(frame.fin, frame.opcode, frame.payload);
      if (message) out.push(message);
    }
  }

  /** The buffered bytes as one array (joined only when a frame spans chunks). */
  private bytes(): Uint8Array {
    if (this.buffered.length > 1) this.buffered = [Buffer.concat(this.buffered)];
    return this.buffered[0] ?? new Uint8Array(0);
  }

  private nextFrame(): { fin: boolean; opcode: number; payload: Uint8Array } | undefined {
    if (this.bufferedBytes < 2) return undefined;
    const b = this.bytes();
    const fin = (b[0]! & 0x80) !== 0;
    if (b[0]! & 0x70) throw new FrameError(1002, "reserved bits set (no extension was negotiated)");
    const opcode = b[0]! & 0x0f;
    const masked = (b[1]! & 0x80) !== 0;
    if (masked !== this.fromClient) throw new FrameError(1002, masked ? "masked frame from the server" : "unmasked frame from the client");
    let length = b[1]! & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (b.byteLength < 4) return undefined;
      length = (b[2]! << 8) | b[3]!;
      offset = 4;
    } else if (length === 127) {
      if (b.byteLength < 10) return undefined;
      const big = new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(2);
      if (big > BigInt(this.maxMessage)) throw new FrameError(1009, "message too big");
      length = Number(big);
      offset = 10;
    }
    const maskAt = offset;
    if (masked) offset += 4;
    if (opcode >= 0x8) {
      if (opcode > 0xa) throw new FrameError(1002, `unknown opcode ${opcode}`);
      if (!fin || length > 125) throw new FrameError(1002, "fragmented or oversized control frame");
    } else if (opcode > 0x2) throw new FrameError(1002, `unknown opcode ${opcode}`);
    // Checked before the payload arrives: a peer cannot make us buffer more than the limit.
    if (opcode < 0x8 && this.fragmentBytes + length > this.maxMessage) throw new FrameError(1009, "message too big");
    if (b.byteLength < offset + length) return undefined;
    const payload = b.slice(offset, offset + length);
    if (masked) for (let i = 0; i < length; i++) payload[i] = payload[i]! ^ b[maskAt + (i & 3)]!;
    const rest = b.subarray(offset + length);
    this.buffered = rest.byteLength ? [rest] : [];
    this.bufferedBytes = rest.byteLength;
    return { fin, opcode, payload };
  }

  private assemble(fin: boolean, opcode: number, payload: Uint8Array): Message | undefined {
    if (opcode === OPCODE.ping) return { kind: "ping", data: payload };
    if (opcode === OPCODE.pong) return { kind: "pong", data: payload };
    if (opcode === OPCODE.close) return parseClose(payload);
    if (opcode === OPCODE.continuation) {
      if (this.fragmentOpcode < 0) throw new FrameError(1002, "continuation frame without a message to continue");
    } else {
      if (this.fragmentOpcode >= 0) throw new FrameError(1002, "new message inside a fragmented one");
      this.fragmentOpcode = opcode;
    }
    this.fragments.push(payload);
    this.fragmentBytes += payload.byteLength;
    if (!fin) return undefined;
    const data = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments);
    const kind = this.fragmentOpcode === OPCODE.text ? "text" : "binary";
    this.fragments = [];
    this.fragmentBytes = 0;
    this.fragmentOpcode = -1;
    if (kind === "binary") return { kind, data };
    try {
      return { kind, data: utf8.decode(data) };
    } catch {
      throw new FrameError(1007, "text message is not valid UTF-8");
    }
  }
}

function parseClose(payload: Uint8Array): Message {
  if (payload.byteLength === 0) return { kind: "close", code: undefined, reason: "" };
  if (payload.byteLength === 1) throw new FrameError(1002, "close frame with a 1-byte payload");
  const code = (payload[0]! << 8) | payload[1]!;
  if (!isSendableCloseCode(code)) throw new FrameError(1002, `close code ${code} may not be sent`);
  try {
    return { kind: "close", code, reason: utf8.decode(payload.subarray(2)) };
  } catch {
    throw new FrameError(1007, "close reason is not valid UTF-8");
  }
}
