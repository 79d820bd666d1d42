// Key intake (and the same for the GitHub OIDC request token). SECURITY-CRITICAL: read this
// before changing anything.
//
// - The key is read with raw read(2) calls on fd 0 straight into ONE fixed 1024-byte buffer that
//   already starts with "Bearer ". No stream, no readline, no string decoding before validation:
//   each of those keeps its own copies of the bytes that we could never wipe.
// - The only copy that survives is the header value's bytes, copied out once at the end and turned
//   into the shared Authorization line (authorization.ts) by the caller, which zeroes them. The
//   buffer is zeroed on every path (success and each error) in `finally`.
// - Error messages never contain any byte of the input (a wrong shape is named, never quoted).
// - Its bytes are searched and copied only by secret-bytes.ts's loops, never by `indexOf` or
//   `slice` (libc's vector routines leave them in registers that end up on the stack).
import type { Files } from "../files";
import { copySecret, findByte } from "./secret-bytes";

export const BUFFER_SIZE = 1024;
const PREFIX = "Bearer ";

const PIPE = "printenv OPENAI_API_KEY | env -u OPENAI_API_KEY responses-api-proxy";

export const MESSAGES = {
  empty:
    `standard input held no API key (it was empty): pipe the key in as the first line, e.g. ${PIPE}. ` +
    "An empty input usually means the variable is not set where printenv ran, or the key file is empty",
  blankFirstLine: "the first line of standard input is empty, and the key must be on the first line: remove the blank line before it",
  assignment: `the first line of standard input looks like NAME=value (a .env or shell line); pipe the key alone, e.g. ${PIPE}`,
  bearer: 'the first line of standard input starts with "Bearer "; pipe the key alone, without that prefix',
  invalid: "API key may only contain ASCII letters, numbers, '-' or '_'",
  tooLarge: "API key is too large to fit in the 1024-byte buffer",
  terminal: `refusing to read the API key from a terminal (typing it would echo the secret); pipe it in, e.g. ${PIPE}`,
  waiting: `waiting for the API key on standard input (the first line; it keeps waiting), e.g. ${PIPE}`,
} as const;

export class ApiKeyError extends Error {}

/** read(buf, offset, length) → bytes read, 0 at end of input (the shape of fs.readSync on fd 0). */
export type Reader = (buf: Uint8Array, offset: number, length: number) => number;

/** What one secret read from stdin looks like: its buffer, its header prefix, its bytes, its errors. */
export interface SecretSpec {
  bufferSize: number;
  prefix: string;
  isByte(b: number): boolean;
  messages: { empty: string; blankFirstLine: string; invalid: string; tooLarge: string };
  /** A clearer message for an invalid first line of a recognisable wrong shape (never quoting it). */
  misshapen?(line: Uint8Array): string | undefined;
}

const LF = 0x0a;
const CR = 0x0d;

const isAlnum = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);

/** The OpenAI API key: ^[A-Za-z0-9_-]+$ (which also rules out header injection). */
export const API_KEY: SecretSpec = {
  bufferSize: BUFFER_SIZE,
  prefix: PREFIX,
  isByte: (b) => isAlnum(b) || b === 0x2d || b === 0x5f,
  messages: MESSAGES,
  misshapen(line) {
    // `OPENAI_API_KEY=sk-…` (a .env line, `env` output) or `Bearer sk-…` (a header value).
    const eq = findByte(line, 0x3d, 0, line.length);
    if (eq > 0 && line.subarray(0, eq).every((b) => isAlnum(b) || b === 0x5f)) return MESSAGES.assignment;
    if (line.length > 7 && asciiLower(line.subarray(0, 7)) === "bearer ") return MESSAGES.bearer;
    return undefined;
  },
};

/** Lower-cased ASCII of a few bytes that are not part of the secret (a prefix to compare). */
function asciiLower(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 32 : b);
  return out;
}

/**
 * Reads the first line of input and returns the header value "<prefix><secret>" as bytes (a
 * copy the caller owns and zeroes). `buf` is the buffer the input lands in; it is zeroed before
 * this returns or throws.
 */
export function readSecret(read: Reader, spec: SecretSpec, buf: Uint8Array = new Uint8Array(spec.bufferSize)): Uint8Array {
  const { prefix, messages } = spec;
  try {
    for (let i = 0; i < prefix.length; i++) buf[i] = prefix.charCodeAt(i);
    let end = prefix.length;
    let newline = -1;
    while (newline < 0) {
      if (end === buf.length) throw new ApiKeyError(messages.tooLarge);
      const n = read(buf, end, buf.length - end);
      if (n === 0) break; // end of input
      newline = findByte(buf, LF, end, end + n);
      end += n;
    }
    // Only the first line counts; then trailing CR/LF are trimmed.
    let keyEnd = newline >= 0 ? newline : end;
    while (keyEnd > prefix.length && (buf[keyEnd - 1] === CR || buf[keyEnd - 1] === LF)) keyEnd--;
    if (keyEnd === prefix.length) {
      // Bytes after a blank first line (as far as they came in the same read): the key is there.
      const more = newline >= 0 && buf.subarray(newline + 1, end).some((b) => b !== CR && b !== LF);
      throw new ApiKeyError(more ? messages.blankFirstLine : messages.empty);
    }
    for (let i = prefix.length; i < keyEnd; i++) {
      if (!spec.isByte(buf[i]!)) {
        throw new ApiKeyError(spec.misshapen?.(buf.subarray(prefix.length, keyEnd)) ?? messages.invalid);
      }
    }
    return copySecret(buf, 0, keyEnd);
  } finally {
    buf.fill(0);
  }
}

/** A Reader over fd 0 using raw read(2), retrying while a non-blocking stdin has nothing yet. */
export function stdinReader(files: Files, fd = 0): Reader {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  return (buf, offset, length) => {
    for (;;) {
      try {
        return files.read(fd, buf, offset, length);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EAGAIN" || code === "EWOULDBLOCK") {
          Atomics.wait(nap, 0, 0, 10); // stdin is non-blocking and empty: wait, do not spin
          continue;
        }
        if (code === "EINTR") continue;
        if (code === "EOF") return 0;
        throw err;
      }
    }
  };
}
