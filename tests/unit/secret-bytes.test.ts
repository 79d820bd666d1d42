import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { copySecret, findByte, writeSecret } from "../../src/security/secret-bytes";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("secret bytes: copied and searched by byte loops", () => {
  test("copySecret copies a range into an ArrayBuffer of its own", () => {
    const from = bytes("Bearer sk-abc\nrest");
    const out = copySecret(from, 0, 13);
    expect(text(out)).toBe("Bearer sk-abc");
    expect(out.buffer).not.toBe(from.buffer);
    expect(out.byteOffset).toBe(0);
    expect(out.buffer.byteLength).toBe(13); // nothing else in its buffer to wipe or to leak
    expect(text(copySecret(from, 7, 13))).toBe("sk-abc");
    expect(copySecret(from, 5, 5).length).toBe(0);
  });

  test("writeSecret writes at an offset and nowhere else", () => {
    const into = new Uint8Array(10);
    writeSecret(into, 3, bytes("abc"));
    expect([...into]).toEqual([0, 0, 0, 97, 98, 99, 0, 0, 0, 0]);
  });

  test("findByte searches only [start, end)", () => {
    const b = bytes("a\nbc\nd");
    expect(findByte(b, 0x0a, 0, b.length)).toBe(1);
    expect(findByte(b, 0x0a, 2, b.length)).toBe(4);
    expect(findByte(b, 0x0a, 2, 4)).toBe(-1);
    expect(findByte(b, 0x0a, 0, 0)).toBe(-1);
  });

  // The rule secret-bytes.ts exists for: libc's memmove/memchr (behind these methods) leave the
  // key in vector registers, which lazy binding or a signal frame then writes onto the stack.
  test("the key's modules use no copying or searching method of the engine on secret bytes", () => {
    for (const file of ["src/security/api-key.ts", "src/security/authorization.ts"]) {
      const code = readFileSync(file, "utf8").replace(/^\s*\/\/.*$/gm, "").replace(/\/\*\*[\s\S]*?\*\//g, "");
      const calls = code.match(/\.(set|slice|indexOf|lastIndexOf|includes|copyWithin)\(/g) ?? [];
      expect({ file, calls }).toEqual({ file, calls: [] });
    }
  });
});
