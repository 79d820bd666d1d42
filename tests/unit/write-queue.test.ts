// The listener's ordered writes (src/http/write-queue.ts), against a socket that takes what it is told to.
import { describe, expect, test } from "bun:test";
import { WriteQueue } from "../../src/http/write-queue";

/** A socket that takes at most `room` bytes per write (-1: closed, as Bun's write says). */
function socket(room: number) {
  const wire: string[] = [];
  return {
    room,
    wire,
    write(bytes: Uint8Array): number {
      if (this.room < 0) return -1;
      const n = Math.min(this.room, bytes.byteLength);
      if (n > 0) wire.push(Buffer.from(bytes.subarray(0, n)).toString("latin1"));
      return n;
    },
  };
}
const b = (s: string) => Buffer.from(s, "latin1");

describe("WriteQueue", () => {
  test("writes straight through while the socket takes everything", () => {
    const s = socket(100);
    const q = new WriteQueue();
    expect(q.write(s, b("abc"))).toBe(true);
    expect(q.write(s, b("def"))).toBe(true);
    expect(q.empty).toBe(true);
    expect(s.wire.join("")).toBe("abcdef");
  });

  test("queues what the socket did not take, and everything after it, in order", () => {
    const s = socket(2);
    const q = new WriteQueue();
    expect(q.write(s, b("abcd"))).toBe(false);
    s.room = 100;
    // Not written now although the socket has room: it would overtake "cd".
    expect(q.write(s, b("ef"))).toBe(false);
    expect(s.wire.join("")).toBe("ab");
    expect(q.empty).toBe(false);
    expect(q.flush(s)).toBe(true);
    expect(q.empty).toBe(true);
    expect(s.wire.join("")).toBe("abcdef");
    expect(q.write(s, b("g"))).toBe(true);
    expect(s.wire.join("")).toBe("abcdefg");
  });

  test("a flush the socket takes only in part keeps the rest, from where it stopped", () => {
    const s = socket(1);
    const q = new WriteQueue();
    q.write(s, b("abc"));
    q.write(s, b("de"));
    expect(q.flush(s)).toBe(false);
    expect(s.wire.join("")).toBe("ab");
    expect(q.flush(s)).toBe(false); // "c" whole, then "d" of "de"
    expect(s.wire.join("")).toBe("abcd");
    s.room = 3;
    expect(q.flush(s)).toBe(true);
    expect(s.wire.join("")).toBe("abcde");
    expect(q.empty).toBe(true);
  });

  test("copy: queued bytes do not change when the caller reuses its buffer", () => {
    const s = socket(0);
    const q = new WriteQueue();
    const mine = b("xyz");
    q.write(s, mine, true);
    const theirs = b("123");
    q.write(s, theirs);
    mine.fill(0);
    theirs.fill(0x2a); // not copied: the queue holds the caller's bytes
    s.room = 100;
    q.flush(s);
    expect(s.wire.join("")).toBe("xyz***");
  });

  test("a closed socket (write returns -1) queues the whole write; clear drops it", () => {
    const s = socket(-1);
    const q = new WriteQueue();
    expect(q.write(s, b("abc"))).toBe(false);
    expect(q.empty).toBe(false);
    q.clear();
    expect(q.empty).toBe(true);
    s.room = 100;
    expect(q.flush(s)).toBe(true);
    expect(s.wire).toEqual([]);
  });
});
