// Request heads as clients send them (RFC 9112 §2-§7), parsed strictly. Pure, no I/O.
//
// SECURITY-CRITICAL: what this accepts decides where one request ends and the next begins on a
// kept-alive connection, and two parsers that disagree on it are how requests are smuggled. Do not
// loosen any of these: CRLF line ends only; no obs-fold; no whitespace before a header's colon;
// Content-Length digits only, and all copies equal; Transfer-Encoding exactly `chunked`, never
// beside Content-Length, never in HTTP/1.0; HTTP/1.1 has exactly one Host.

import { CONTROL, LENGTH_DIGITS, TOKEN } from "./syntax";

export type BodyFraming = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" };

export interface RequestHead {
  method: string;
  /** The request target exactly as sent: nothing resolved, nothing decoded. */
  target: string;
  /** The minor version: HTTP/1.0 or HTTP/1.1. */
  minor: 0 | 1;
  headers: Headers;
  framing: BodyFraming;
  /** The connection may carry another request after this one (RFC 9112 §9.3). */
  keepAlive: boolean;
  /** `Expect: 100-continue`: the client waits for a 100 before it sends the body. */
  expectContinue: boolean;
}

/** A head the proxy will not read, the status that says why, and its request line when that was readable. */
export class HeadError extends Error {
  line?: { method: string; target: string };
  constructor(
    readonly status: 400 | 431 | 501 | 505,
    message: string,
  ) {
    super(message);
  }
}

const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP\/(\d)\.(\d)$/;
/** Empty lines a client may send before a request line (RFC 9112 §2.2): a few are skipped. */
const MAX_LEADING_EMPTY = 8;

const tokens = (value: string) => value.split(",").map((t) => t.trim().toLowerCase()).filter(Boolean);

/**
 * The head at the start of `buf`: undefined while its blank line has not arrived (and it is still
 * within `maxBytes`), else the head and the offset of the first body byte. Throws HeadError.
 */
export function parseRequestHead(buf: Buffer, maxBytes: number): { head: RequestHead; end: number } | undefined {
  try {
    return parseHead(buf, maxBytes);
  } catch (err) {
    // For the log: which request was refused, when its first line can tell.
    if (err instanceof HeadError) {
      const start = afterEmptyLines(buf);
      const eol = buf.indexOf("\r\n", start, "latin1");
      try {
        if (eol >= 0) err.line = requestLine(buf.toString("latin1", start, eol));
      } catch {
        // a request line that is itself malformed: nothing to name
      }
    }
    throw err;
  }
}

/** Where the request line starts: after the empty lines a client may send first. */
function afterEmptyLines(buf: Buffer): number {
  let start = 0;
  for (let i = 0; i < MAX_LEADING_EMPTY && buf[start] === 0x0d && buf[start + 1] === 0x0a; i++) start += 2;
  return start;
}

function parseHead(buf: Buffer, maxBytes: number): { head: RequestHead; end: number } | undefined {
  const start = afterEmptyLines(buf);
  const blank = buf.indexOf("\r\n\r\n", start, "latin1");
  if (blank < 0) {
    if (buf.byteLength - start > maxBytes) throw new HeadError(431, "request head too large");
    // A head is text: a byte no request line can start with means this is not HTTP/1.x at all.
    if (buf.byteLength > start && !TOKEN.test(String.fromCharCode(buf[start]!))) throw new HeadError(400, "not an HTTP/1.1 request");
    // A request line is judged as soon as it is whole (an HTTP/0.9 `GET /` never sends a blank line).
    const eol = buf.indexOf("\r\n", start, "latin1");
    if (eol >= 0) requestLine(buf.toString("latin1", start, eol));
    return undefined;
  }
  if (blank + 4 - start > maxBytes) throw new HeadError(431, "request head too large");
  const lines = buf.toString("latin1", start, blank).split("\r\n");
  const { method, target, minor } = requestLine(lines[0]!);

  const headers = new Headers();
  const lengths: string[] = [];
  const codings: string[] = [];
  const connection: string[] = [];
  let hosts = 0;
  let expectContinue = false;
  for (let i = 1; i < lines.length; i++) {
    const field = lines[i]!;
    if (field.includes("\r") || field.includes("\n")) throw new HeadError(400, "bare CR or LF in the head");
    if (field.charCodeAt(0) === 0x20 || field.charCodeAt(0) === 0x09) throw new HeadError(400, "obsolete line folding");
    const colon = field.indexOf(":");
    const name = colon > 0 ? field.slice(0, colon) : "";
    if (!TOKEN.test(name)) throw new HeadError(400, "malformed header field");
    const value = field.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (CONTROL.test(value)) throw new HeadError(400, "control character in a header value");
    const lower = name.toLowerCase();
    if (lower === "content-length") lengths.push(...value.split(",").map((v) => v.trim()));
    else if (lower === "transfer-encoding") codings.push(...tokens(value));
    else if (lower === "connection") connection.push(...tokens(value));
    else if (lower === "host") hosts++;
    else if (lower === "expect") expectContinue ||= value.toLowerCase() === "100-continue";
    headers.append(name, value);
  }
  if (minor === 1 && hosts !== 1) throw new HeadError(400, hosts ? "more than one Host" : "no Host");
  if (hosts > 1) throw new HeadError(400, "more than one Host");

  let framing: BodyFraming = { kind: "none" };
  if (headers.has("transfer-encoding")) {
    if (minor === 0) throw new HeadError(400, "Transfer-Encoding in HTTP/1.0");
    if (lengths.length) throw new HeadError(400, "both Transfer-Encoding and Content-Length");
    if (codings.length !== 1 || codings[0] !== "chunked") throw new HeadError(501, "a transfer coding other than chunked");
    framing = { kind: "chunked" };
  } else if (lengths.length) {
    if (!lengths.every((v) => v === lengths[0] && LENGTH_DIGITS.test(v))) throw new HeadError(400, "malformed Content-Length");
    const length = Number(lengths[0]);
    if (length > 0) framing = { kind: "length", length };
  }
  const keepAlive = minor === 1 ? !connection.includes("close") : connection.includes("keep-alive") && !connection.includes("close");
  return { head: { method, target, minor, headers, framing, keepAlive, expectContinue }, end: blank + 4 };
}

function requestLine(text: string): { method: string; target: string; minor: 0 | 1 } {
  const line = REQUEST_LINE.exec(text);
  if (!line) throw new HeadError(400, "malformed request line");
  const [, method, target, major, minor] = line;
  if (major !== "1" || (minor !== "0" && minor !== "1")) throw new HeadError(505, `HTTP/${major}.${minor} is not supported`);
  return { method: method!, target: target!, minor: minor === "1" ? 1 : 0 };
}
