// An upstream's response head, read strictly: the status and headers a client will get, how the
// body is framed, and whether the connection may carry another request. One parser for both
// clients of the upstream: the HTTP/1.1 client (http1.ts) and the WebSocket handshake
// (websocket/upstream.ts).
//
// SECURITY-CRITICAL. What must not change:
// - a head is at most MAX_RESPONSE_HEAD bytes, refused whether its end has arrived or not;
// - header names are tokens right before the colon: no obs-fold, no whitespace before the colon
//   (RFC 9112 §5), a request-smuggling vector;
// - a value with a control byte (but tab) fails the head: it is never passed on to a client's
//   terminal or parser;
// - Content-Length is digits only, and repeated only with the same value;
// - Transfer-Encoding wins over Content-Length (RFC 9112 §6.3), and then the connection is never
//   reused; a Transfer-Encoding that does not end in chunked is framed by the close;
// - interim heads (100, 103) are skipped; a 101 is an answer only to a request that asked to
//   upgrade.
import { CONTROL, LENGTH_DIGITS, TOKEN } from "../http/syntax";
import { bad } from "./upstream-error";

/** An upstream that answers with a head larger than this is broken (or hostile). */
export const MAX_RESPONSE_HEAD = 1 << 20;

/** Statuses whose response has no body whatever its headers say (RFC 9110 §6.4.1). */
const NULL_BODY_STATUS = new Set([204, 205, 304]);
const MIN_STATUS = 200;
/** The fetch Response constructor accepts no status above this: anything higher is broken. */
const MAX_STATUS = 599;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: (.*))?$/;

export interface ResponseHead {
  status: number;
  statusText: string;
  headers: Headers;
  /**
   * How the body is framed: its Content-Length, chunked, until the upstream closes, or none (a
   * 101, 204, 205 or 304, or a Content-Length of 0 with no Transfer-Encoding).
   */
  framing: number | "chunked" | "close" | "none";
  /** As far as the head says, the connection may carry another request once the body has ended. */
  reusable: boolean;
  /** Where the head ends in the buffer: the first byte after its blank line. */
  end: number;
}

/** A head still arriving: it starts at `from` (interim heads before it have been read). */
export interface PartialHead {
  from: number;
}

/**
 * Reads the final response head in `buf` from `start`. `upgrade`: the request asked to switch
 * protocols, so a 101 is its answer. Throws an UpstreamError when the head is malformed or too large.
 */
export function parseResponseHead(buf: Buffer, start = 0, upgrade = false): ResponseHead | PartialHead {
  for (;;) {
    const blank = buf.indexOf("\r\n\r\n", start, "latin1");
    // The limit is exact: a head over it is refused whether its end came in this read or not.
    if ((blank < 0 ? buf.byteLength : blank + 4) - start > MAX_RESPONSE_HEAD) {
      throw bad("UPSTREAM_HEAD_TOO_LARGE", "upstream response head is too large");
    }
    if (blank < 0) return { from: start };
    const lines = buf.toString("latin1", start, blank).split("\r\n");
    start = blank + 4;
    const status = STATUS_LINE.exec(lines[0]!);
    if (!status) throw bad("UPSTREAM_BAD_RESPONSE", "upstream did not answer with HTTP/1.x");
    const code = Number(status[2]);
    if (code === 101 && !upgrade) throw bad("UPSTREAM_BAD_RESPONSE", "upstream switched protocols unasked");
    if (code < MIN_STATUS && code !== 101) continue; // 100 Continue, 103 Early Hints: the real head follows
    return finalHead(code, status[1] === "0", status[3] ?? "", lines, start);
  }
}

function finalHead(status: number, http10: boolean, statusText: string, lines: string[], end: number): ResponseHead {
  const headers = new Headers();
  let length = -1;
  let chunked = false;
  let framedByEncoding = false;
  let reusable = !http10;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) throw bad("UPSTREAM_BAD_RESPONSE", "malformed upstream header");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (CONTROL.test(value)) throw bad("UPSTREAM_BAD_RESPONSE", "control bytes in an upstream header value");
    if (name === "content-length") {
      if (!LENGTH_DIGITS.test(value) || (length >= 0 && Number(value) !== length)) {
        throw bad("UPSTREAM_BAD_RESPONSE", "malformed upstream Content-Length");
      }
      length = Number(value);
    } else if (name === "transfer-encoding") {
      framedByEncoding = true;
      chunked = /(?:^|,)\s*chunked\s*$/i.test(value);
    } else if (name === "connection" && /(?:^|,)\s*close\s*(?:,|$)/i.test(value)) {
      reusable = false;
    }
    headers.append(name, value);
  }
  if (status > MAX_STATUS) throw bad("UPSTREAM_BAD_RESPONSE", "upstream answered with an invalid status");

  let framing: ResponseHead["framing"];
  if (status === 101) {
    framing = "none";
    reusable = false; // the connection now speaks another protocol
  } else if (NULL_BODY_STATUS.has(status) || (!framedByEncoding && length === 0)) {
    framing = "none";
  } else if (framedByEncoding) {
    framing = chunked ? "chunked" : "close";
    if (length >= 0 || !chunked) reusable = false; // both given: never reuse; not chunked: ends with the close
  } else if (length >= 0) {
    framing = length;
  } else {
    framing = "close";
    reusable = false;
  }
  return { status, statusText, headers, framing, reusable, end };
}
