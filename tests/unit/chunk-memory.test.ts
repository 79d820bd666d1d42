// release(): a chunk that is its whole buffer is freed at once; a view into a shared buffer never.
import { expect, test } from "bun:test";
import { release } from "../../src/http/chunk-memory";

test("a whole-buffer chunk is freed (its buffer detached); a view into a larger buffer is left alone", () => {
  const whole = new Uint8Array(1 << 20).fill(1);
  release(whole);
  expect(whole.buffer.byteLength).toBe(0);
  expect(whole.byteLength).toBe(0);

  const shared = new Uint8Array(1024).fill(7);
  const head = shared.subarray(0, 512);
  const tail = shared.subarray(512);
  release(head);
  expect(shared.buffer.byteLength).toBe(1024);
  expect(tail[0]).toBe(7);
  const offset = Buffer.from(shared.buffer, 1, 1023);
  release(offset);
  expect(shared.byteLength).toBe(1024);
});
