// The Authorization header as bytes. SECURITY-CRITICAL: this is where the key lives.
//
// What must not change:
// - One buffer per credential, made once: the head's start (the request line and `host`, the
//   same for every request to the one upstream), then `authorization: Bearer <key>\r\n`. The
//   HTTP/1.1 client writes it to the socket as it is, so a request head goes out in two writes
//   (this buffer, then the rest of the head and the body); the key is never concatenated into a
//   per-request string or buffer (each such copy stays in freed, never-zeroed memory until the
//   allocator reuses it: 1,252 copies after 10,000 requests, measured).
// - The key goes into it through a byte loop (secret-bytes.ts), never `set`: libc's memmove
//   would leave it in vector registers, which end up on the stack.
// - `line` is a view of that buffer, not a copy (the WebSocket client writes it alone).
// - `value()` makes a string copy per call: only the fetch transport (behind an HTTP proxy) uses
//   it, because fetch takes header values as strings.

import { writeSecret } from "./secret-bytes";

const PREFIX = "authorization: ";

export class AuthorizationLine {
  /** `authorization: Bearer <key>\r\n`: a view of the one buffer. */
  readonly line: Uint8Array;

  private constructor(
    /** `headStart`, then the line. */
    readonly head: Uint8Array,
    /** What comes before the line in `head` (ASCII): "" or a request line and `host`. */
    readonly headStart: string,
  ) {
    this.line = head.subarray(headStart.length);
  }

  /**
   * From the header value's bytes (`Bearer <secret>`); the caller zeroes its own copy. `headStart`
   * goes in the same buffer before the line: the start of every request head, for one write.
   */
  static from(value: Uint8Array, headStart = ""): AuthorizationLine {
    if (!/^[\x20-\x7e\r\n]*$/.test(headStart)) throw new TypeError("a head start is ASCII text");
    const text = headStart + PREFIX; // holds no secret: the key is only ever copied byte by byte, below
    // An ArrayBuffer of its own from the start: a small `new Uint8Array(n)` lives in the collector's
    // heap, and the engine moves it out, leaving the old bytes behind unzeroed, the first time a
    // view of it is taken (`line`): a second copy of the key (measured, the key-copies test).
    const head = new Uint8Array(new ArrayBuffer(text.length + value.byteLength + 2));
    for (let i = 0; i < text.length; i++) head[i] = text.charCodeAt(i);
    writeSecret(head, text.length, value); // a byte loop, not `set`: see secret-bytes.ts
    head[head.length - 2] = 0x0d;
    head[head.length - 1] = 0x0a;
    return new AuthorizationLine(head, headStart);
  }

  /** The header value as a string (a copy per call): for fetch, which takes only strings. */
  value(): string {
    return new TextDecoder("latin1").decode(this.line.subarray(PREFIX.length, this.line.byteLength - 2));
  }

  /** Overwrites the secret once nothing can still be writing it. */
  wipe(): void {
    this.head.fill(0);
  }
}
