// Where an upstream response body ends, and which of its bytes are the body: Content-Length,
// chunked, or until the upstream closes.
//
// SECURITY-CRITICAL. A body that ends in the wrong place hands a client bytes that are not its
// answer (the upstream's next bytes, or a hostile upstream's second "response"), and a connection
// is reused only when its body ended exactly. What must not change:
// - a chunk size is hex digits only (at most 12), a line at most 8 KiB; a malformed size or chunk
//   end fails the body with an error, it never ends it quietly;
// - trailers are read and dropped;
// - what goes out in the upstream's own framing (below) is only ever bytes this parser has
//   already validated, and never the last chunk: the client's answer gets the listener's own end.
//
// Pass-through: when the client's answer is chunked too, a chunk whose size line is canonical
// (hex digits, then CRLF, all in one read) goes out exactly as the upstream framed it: its size
// line, data and CRLF are one subarray of the read they came in, written as they are. Otherwise the
// listener would frame a copy of the data in a new buffer, once per server-sent event (issue 20).
// Anything else (an extension, a bare LF, a line split between reads, the last chunk) is decoded,
// and the listener frames the data anew.
import { bad } from "./upstream-error";

/**
 * Where the body's bytes go. Every method runs on the socket's read path: return at once. The
 * HTTP/1.1 client's connection implements it itself (methods, not closures: fewer objects touched
 * per server-sent event, see docs/performance.md).
 */
export interface BodyOut {
  /** Body bytes, in order. */
  bodyData(bytes: Uint8Array): void;
  /** Validated chunked framing to pass on as it is: whole chunks, or parts of one; `dataBytes` of it are body. */
  bodyFramed(raw: Uint8Array, dataBytes: number): void;
  /** May the next chunk go out in the upstream's own framing? Asked at each chunk-size line. */
  passThrough(): boolean;
  /** The body is complete; `extra`: bytes followed it in the same read (never reuse the socket). */
  bodyEnd(extra: boolean): void;
}

/** A chunk-size or trailer line longer than this is malformed. */
const MAX_LINE = 8 * 1024;
const MAX_SIZE_DIGITS = 12;
const CR = 13;
const LF = 10;
const CRLF = new Uint8Array([CR, LF]);

const enum State {
  Length, // `remaining` bytes of body left
  UntilClose, // no framing: the body ends when the upstream closes
  ChunkSize,
  ChunkData, // `remaining` bytes of this chunk left
  ChunkEnd, // the CRLF after a chunk's data
  Trailer,
  Done,
}

/** The value of a hex digit byte, or -1. */
function hexDigit(b: number): number {
  if (b >= 48 && b <= 57) return b - 48;
  const lower = b | 0x20;
  return lower >= 97 && lower <= 102 ? lower - 87 : -1;
}

export class ResponseBody {
  private state: State;
  private remaining = 0;
  /** A line (chunk size, chunk end, trailer) begun in an earlier read. */
  private line = "";
  /** This chunk's size line went out as it was: its data and its CRLF follow as they are. */
  private passing = false;
  /** Validated framing of the current read not yet passed on: [spanStart, …), `spanData` of it body. */
  private spanStart = -1;
  private spanData = 0;

  /** `framing`: a Content-Length, "chunked", or "close" (the body ends when the upstream closes). */
  constructor(
    framing: number | "chunked" | "close",
    private readonly out: BodyOut,
  ) {
    if (framing === "chunked") this.state = State.ChunkSize;
    else if (framing === "close") this.state = State.UntilClose;
    else {
      this.state = State.Length;
      this.remaining = framing;
    }
  }

  /** The body has no framing: the upstream closing the connection is its end. */
  get untilClose(): boolean {
    return this.state === State.UntilClose;
  }

  /** Feeds the bytes `buf[i..]` of one read. Throws an UpstreamError when the framing is malformed. */
  feed(buf: Buffer, i = 0): void {
    const length = buf.byteLength;
    while (i < length) {
      switch (this.state) {
        case State.Length: {
          const n = Math.min(this.remaining, length - i);
          this.out.bodyData(buf.subarray(i, i + n));
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) return this.finish(i < length);
          break;
        }
        case State.UntilClose:
          this.out.bodyData(i === 0 ? buf : buf.subarray(i));
          return;
        case State.ChunkData: {
          const n = Math.min(this.remaining, length - i);
          if (this.passing) {
            if (this.spanStart < 0) this.spanStart = i;
            this.spanData += n;
          } else this.out.bodyData(buf.subarray(i, i + n));
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.ChunkEnd;
          break;
        }
        case State.ChunkEnd:
          // The CRLF of a chunk that is passing through, whole in this read: it joins the span.
          if (this.passing && this.line === "" && i + 1 < length && buf[i] === CR && buf[i + 1] === LF) {
            if (this.spanStart < 0) this.spanStart = i;
            i += 2;
            this.passing = false;
            this.state = State.ChunkSize;
            break;
          }
          i = this.readLine(buf, i);
          break;
        case State.ChunkSize: {
          const next = this.line === "" ? this.canonicalSizeLine(buf, i) : -1;
          if (next < 0) {
            i = this.readLine(buf, i);
            break;
          }
          // A canonical, non-zero size line: the chunk goes out in the upstream's own framing.
          if (this.spanStart < 0) this.spanStart = i;
          this.passing = true;
          this.state = State.ChunkData;
          i = next;
          break;
        }
        case State.Trailer:
          i = this.readLine(buf, i);
          break;
        case State.Done:
          return;
      }
    }
    this.flush(buf, i);
  }

  /**
   * At a chunk-size line that starts at `buf[i]`: when it is canonical (1-12 hex digits, CRLF, all
   * in this read), its size is not 0 and the chunk may pass through, sets `remaining` and returns
   * where the data starts; else -1 (the line is read the general way).
   */
  private canonicalSizeLine(buf: Buffer, i: number): number {
    let size = 0;
    let j = i;
    for (let d; j < buf.byteLength && j - i <= MAX_SIZE_DIGITS && (d = hexDigit(buf[j]!)) >= 0; j++) size = size * 16 + d;
    const digits = j - i;
    if (digits === 0 || digits > MAX_SIZE_DIGITS || size === 0) return -1;
    if (j + 1 >= buf.byteLength || buf[j] !== CR || buf[j + 1] !== LF) return -1;
    if (!this.out.passThrough()) return -1;
    this.remaining = size;
    return j + 2;
  }

  /** Reads (part of) a chunk-size, chunk-end or trailer line from `buf[i]`; returns where it stopped. */
  private readLine(buf: Buffer, i: number): number {
    this.flush(buf, i); // what passed through so far goes before anything this line produces
    const nl = buf.indexOf(LF, i);
    this.line += buf.toString("latin1", i, nl < 0 ? buf.byteLength : nl);
    if (this.line.length > MAX_LINE) throw malformed();
    if (nl < 0) return buf.byteLength;
    const line = this.line.endsWith("\r") ? this.line.slice(0, -1) : this.line;
    this.line = "";
    const next = nl + 1;
    if (this.state === State.ChunkEnd) {
      if (line !== "") throw malformed();
      // The chunk's size line and data went out as they were: its end must too.
      if (this.passing) this.out.bodyFramed(CRLF, 0);
      this.passing = false;
      this.state = State.ChunkSize;
    } else if (this.state === State.Trailer) {
      if (line === "") this.finish(next < buf.byteLength); // trailers are dropped
    } else {
      const size = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(line);
      if (!size) throw malformed();
      this.remaining = parseInt(size[1]!, 16);
      this.state = this.remaining === 0 ? State.Trailer : State.ChunkData;
    }
    return next;
  }

  /** Passes on the span of this read that has been validated, up to `end`. */
  private flush(buf: Buffer, end: number) {
    if (this.spanStart < 0) return;
    // A read that is all whole chunks (one server-sent event, typically) goes on as it is.
    const raw = this.spanStart === 0 && end === buf.byteLength ? buf : buf.subarray(this.spanStart, end);
    const data = this.spanData;
    this.spanStart = -1;
    this.spanData = 0;
    this.out.bodyFramed(raw, data);
  }

  private finish(extra: boolean) {
    this.state = State.Done;
    this.out.bodyEnd(extra);
  }
}

function malformed() {
  return bad("UPSTREAM_BAD_RESPONSE", "malformed chunked upstream body");
}
