import { describe, expect, test } from "bun:test";
import { API_KEY, BUFFER_SIZE, MESSAGES, readSecret, type Reader } from "../../src/security/api-key";

/** The API key's header value, as start-up reads it (bytes, shown here as text). */
const readAuthorization = (read: Reader, buf?: Uint8Array) => new TextDecoder("latin1").decode(readSecret(read, API_KEY, buf));

/** A reader that hands out `chunks` one per read call (like a pipe delivering pieces). */
function chunked(...chunks: string[]): Reader {
  const queue = chunks.map((c) => new TextEncoder().encode(c));
  return (buf, offset, length) => {
    const next = queue.shift();
    if (!next) return 0;
    const n = Math.min(length, next.length);
    buf.set(next.subarray(0, n), offset);
    if (n < next.length) queue.unshift(next.subarray(n));
    return n;
  };
}

function expectError(read: Reader, message: string) {
  const buf = new Uint8Array(BUFFER_SIZE);
  expect(() => readAuthorization(read, buf)).toThrow(message);
  expect(buf.every((b) => b === 0)).toBe(true); // zeroed on the error path too
}

describe("readAuthorization", () => {
  test("builds the header value and zeroes the buffer", () => {
    const buf = new Uint8Array(BUFFER_SIZE);
    expect(readAuthorization(chunked("sk-abc_DEF-123\n"), buf)).toBe("Bearer sk-abc_DEF-123");
    expect(buf.every((b) => b === 0)).toBe(true);
  });
  test("accepts end of input without a newline", () => {
    expect(readAuthorization(chunked("key"))).toBe("Bearer key");
  });
  test("trims trailing CR/LF", () => {
    expect(readAuthorization(chunked("key\r\n"))).toBe("Bearer key");
    expect(readAuthorization(chunked("key\r\r"))).toBe("Bearer key");
  });
  test("reads across several short reads", () => {
    expect(readAuthorization(chunked("sk-", "ab", "c\n"))).toBe("Bearer sk-abc");
  });
  test("only the first line counts, and reading stops there", () => {
    let calls = 0;
    const read: Reader = (buf, off) => {
      calls++;
      if (calls > 1) throw new Error("read past the newline");
      buf.set(new TextEncoder().encode("first\n"), off);
      return 6;
    };
    expect(readAuthorization(read)).toBe("Bearer first");
    expect(readAuthorization(chunked("first\nsecond\n"))).toBe("Bearer first");
  });
  test("1016 characters fit, 1017 do not", () => {
    expect(readAuthorization(chunked(`${"a".repeat(1016)}\n`))).toBe(`Bearer ${"a".repeat(1016)}`);
    expect(readAuthorization(chunked("a".repeat(1016)))).toBe(`Bearer ${"a".repeat(1016)}`);
    expectError(chunked(`${"a".repeat(1017)}\n`), MESSAGES.tooLarge);
    expectError(chunked("a".repeat(1017)), MESSAGES.tooLarge);
    expectError(chunked("a".repeat(5000)), MESSAGES.tooLarge);
  });
  test("nothing read: empty input, or only a blank line", () => {
    expectError(chunked(), MESSAGES.empty);
    expectError(chunked("\n"), MESSAGES.empty);
    expectError(chunked("\r\n"), MESSAGES.empty);
    expectError(chunked("\n", "\r\n"), MESSAGES.empty);
  });
  test("a blank first line with the key after it", () => {
    expectError(chunked("\nkey\n"), MESSAGES.blankFirstLine);
    expectError(chunked("\r\nkey"), MESSAGES.blankFirstLine);
  });
  test("a first line shaped like NAME=value or a Bearer header value is named, never quoted", () => {
    for (const line of ["OPENAI_API_KEY=sk-abc\n", "openai_api_key=sk-abc", "KEY=\n"]) expectError(chunked(line), MESSAGES.assignment);
    for (const line of ["Bearer sk-abc\n", "bearer sk-abc"]) expectError(chunked(line), MESSAGES.bearer);
    // Other invalid lines keep the plain message; no message quotes the input.
    for (const line of ["export OPENAI_API_KEY=sk-abc\n", "=sk-abc\n", "Bearer\tsk-abc\n"]) expectError(chunked(line), MESSAGES.invalid);
    for (const message of Object.values(MESSAGES)) expect(message).not.toContain("sk-abc");
  });
  test("invalid bytes, including header injection attempts", () => {
    for (const bad of ["sk key\n", "sk\tkey", "ké\n", "a.b\n", "a:b", "k\0ey", "key\rx\n", " key"]) {
      expectError(chunked(bad), MESSAGES.invalid);
    }
    // A second line can never reach the header: only the first line is the key.
    expect(readAuthorization(chunked("key\r\nX-Evil: 1\n"))).toBe("Bearer key");
  });
  test("no error message contains the input", () => {
    for (const input of ["SECRETsecret secret\n", "x".repeat(2000)]) {
      try {
        readAuthorization(chunked(input));
      } catch (err) {
        expect((err as Error).message).not.toContain("SECRET");
        expect((err as Error).message).not.toContain("xxxx");
      }
    }
  });
});
