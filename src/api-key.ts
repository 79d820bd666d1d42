// Key intake (and the same for the GitHub OIDC request token). SECURITY-CRITICAL: read this
// before changing anything.
//
// - The key is read with raw read(2) calls on fd 0 straight into ONE fixed 1024-byte buffer that
//   already starts with "Bearer ". No stream, no readline, no string decoding before validation:
//   each of those keeps its own copies of the bytes that we could never wipe.
// - The only copy that survives is the header value string built once at the end; every request
//   shares it. The buffer is zeroed on every path (success and each error) in `finally`.
// - Error messages never contain any byte of the input.
import { readSync } from "node:fs";

export const BUFFER_SIZE = 1024;
const PREFIX = "Bearer ";

export const MESSAGES = {
  missing: "API key must be provided via stdin (e.g. printenv OPENAI_API_KEY | responses-api-proxy)",
  invalid: "API key may only contain ASCII letters, numbers, '-' or '_'",
  tooLarge: "API key is too large to fit in the 1024-byte buffer",
  terminal:
    "refusing to read the API key from a terminal (typing it would echo the secret); pipe it in, e.g. printenv OPENAI_API_KEY | responses-api-proxy",
} as const;

export class ApiKeyError extends Error {}

/** read(buf, offset, length) → bytes read, 0 at end of input (the shape of fs.readSync on fd 0). */
export type Reader = (buf: Uint8Array, offset: number, length: number) => number;

/** What one secret read from stdin looks like: its buffer, its header prefix, its bytes, its errors. */
export interface SecretSpec {
  bufferSize: number;
  prefix: string;
  isByte(b: number): boolean;
  messages: { missing: string; invalid: string; tooLarge: string };
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
};

/**
 * Reads the first line of input and returns the header value "<prefix><secret>".
 * `buf` is the one buffer the secret ever lands in; it is zeroed before this returns or throws.
 */
export function readSecret(read: Reader, spec: SecretSpec, buf: Uint8Array = new Uint8Array(spec.bufferSize)): string {
  const { prefix, messages } = spec;
  try {
    for (let i = 0; i < prefix.length; i++) buf[i] = prefix.charCodeAt(i);
    let end = prefix.length;
    let newline = -1;
    while (newline < 0) {
      if (end === buf.length) throw new ApiKeyError(messages.tooLarge);
      const n = read(buf, end, buf.length - end);
      if (n === 0) break; // end of input
      newline = buf.subarray(end, end + n).indexOf(LF);
      if (newline >= 0) newline += end;
      end += n;
    }
    // Only the first line counts; then trailing CR/LF are trimmed.
    let keyEnd = newline >= 0 ? newline : end;
    while (keyEnd > prefix.length && (buf[keyEnd - 1] === CR || buf[keyEnd - 1] === LF)) keyEnd--;
    if (keyEnd === prefix.length) throw new ApiKeyError(messages.missing);
    for (let i = prefix.length; i < keyEnd; i++) {
      if (!spec.isByte(buf[i]!)) throw new ApiKeyError(messages.invalid);
    }
    // The one surviving copy: ASCII bytes decoded once into the shared header value.
    return new TextDecoder("latin1").decode(buf.subarray(0, keyEnd));
  } finally {
    buf.fill(0);
  }
}

/** A Reader over fd 0 using raw read(2), retrying while a non-blocking stdin has nothing yet. */
export function stdinReader(fd = 0): Reader {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  return (buf, offset, length) => {
    for (;;) {
      try {
        return readSync(fd, buf, offset, length, null);
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
