// A chunked request body (RFC 9112 §7.1) turned back into its bytes, and the framing of what the
// proxy itself sends chunked (a request body upstream, an answer to a client). Pure, no I/O.
//
// SECURITY-CRITICAL, like request-head.ts: the decoder decides where the body ends and the next
// request starts. Strict on purpose: a chunk size is hex digits only (an extension after `;` is
// allowed and ignored), every chunk's data ends in CRLF, lines end in CRLF, and the trailer section
// is read to its blank line and dropped: no trailer field is ever forwarded.

/** A chunk-size line or one trailer line longer than this is malformed. */
const MAX_LINE = 4096;
/** The trailer section, all lines together. */
const MAX_TRAILER = 16 * 1024;
const SIZE_LINE = /^([0-9A-Fa-f]{1,12})(;.*)?$/;
const TRAILER_FIELD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00-\x08\x0a-\x1f\x7f]*$/;

export class ChunkError extends Error {}

/** The last chunk, with no trailer: the end of a chunked body. */
export const LAST_CHUNK = Buffer.from("0\r\n\r\n", "latin1");

/**
 * `data` as one chunk: its size in hex, CRLF, the data, CRLF (a copy: `data` may be freed after).
 * Callers skip empty data: an empty chunk would be the last chunk, ending the body.
 */
export function chunkFrame(data: Uint8Array): Buffer {
  const size = data.byteLength.toString(16);
  const framed = Buffer.allocUnsafe(size.length + 2 + data.byteLength + 2);
  framed.write(`${size}\r\n`, 0, "latin1");
  framed.set(data, size.length + 2);
  framed.write("\r\n", size.length + 2 + data.byteLength, "latin1");
  return framed;
}

const enum State {
  Size,
  Data,
  DataEnd,
  Trailer,
  Done,
}

export class ChunkedDecoder {
  private state = State.Size;
  private remaining = 0;
  private line = "";
  private trailerBytes = 0;

  get done(): boolean {
    return this.state === State.Done;
  }

  /**
   * Decodes `buf`: the body bytes found (views into `buf`, in order), and once the body has ended,
   * the offset in `buf` of the first byte after it. Throws ChunkError on a malformed body.
   */
  push(buf: Uint8Array): { data: Uint8Array[]; end?: number } {
    const data: Uint8Array[] = [];
    let i = 0;
    while (i < buf.byteLength && this.state !== State.Done) {
      if (this.state === State.Data) {
        const n = Math.min(this.remaining, buf.byteLength - i);
        data.push(buf.subarray(i, i + n));
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = State.DataEnd;
        continue;
      }
      // A line: Size, DataEnd (must be empty) or Trailer.
      const lf = buf.indexOf(0x0a, i);
      const stop = lf < 0 ? buf.byteLength : lf + 1;
      this.line += Buffer.from(buf.buffer, buf.byteOffset + i, stop - i).toString("latin1");
      i = stop;
      if (this.line.length > MAX_LINE) throw new ChunkError("chunk line too long");
      if (lf < 0) break;
      if (!this.line.endsWith("\r\n") || this.line.indexOf("\r") !== this.line.length - 2) throw new ChunkError("a chunk line not ended by CRLF");
      const text = this.line.slice(0, -2);
      this.line = "";
      if (this.state === State.DataEnd) {
        if (text !== "") throw new ChunkError("chunk data longer than its size");
        this.state = State.Size;
      } else if (this.state === State.Size) {
        const size = SIZE_LINE.exec(text);
        if (!size) throw new ChunkError("malformed chunk size");
        this.remaining = parseInt(size[1]!, 16);
        this.state = this.remaining === 0 ? State.Trailer : State.Data;
      } else {
        this.trailerBytes += text.length + 2;
        if (this.trailerBytes > MAX_TRAILER) throw new ChunkError("trailer section too large");
        if (text === "") this.state = State.Done;
        else if (!TRAILER_FIELD.test(text)) throw new ChunkError("malformed trailer field");
      }
    }
    return this.state === State.Done ? { data, end: i } : { data };
  }
}
