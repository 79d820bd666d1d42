// The memory of relayed body chunks. Bun hands the proxy a fresh buffer for every socket read;
// left to the collector, a 1 GiB transfer peaked at 80-93 MiB RSS (idle: 41 MiB).
//
// `release` gives a spent chunk's memory back at once: detaching its ArrayBuffer frees the bytes
// without a collection. It replaced a full collection every 2 MiB: on 512 MiB, proxy CPU went
// 520 -> 270 ms (download) and 700 -> 410-460 ms (upload); 1 GiB peaks: download 53-55 MiB,
// upload 57-67 MiB (48-57 before, at 3/4 of the speed) (issue 6). Chunks that cannot be released
// (a view into a larger buffer, or bytes handed to fetch) are `relayed`: a full collection after
// every 2 MiB of those.
const EVERY_BYTES = 2 * 1024 * 1024;
const SMALL_CHUNK = 16 * 1024;
let sinceLast = 0;

/** Bytes relayed that the collector must reclaim. */
export function relayed(bytes: number): void {
  sinceLast += bytes;
  if (sinceLast < EVERY_BYTES) return;
  sinceLast = 0;
  Bun.gc(true);
}

/**
 * Frees `chunk` now. Call it only when nothing will read the chunk again: it was written to a
 * socket (or copied) in full, and no one kept a reference. A chunk that is not the whole of its
 * buffer (it may share it with others) is left to the collector instead.
 */
export function release(chunk: Uint8Array): void {
  // A small chunk (a server-sent event is a few hundred bytes) costs the collector next to nothing,
  // less than detaching it (0.6 µs) or counting it: left alone. Checked before `.buffer`, whose
  // getter is not free on a view (3% of the proxy's samples at 300 streams).
  if (chunk.byteLength < SMALL_CHUNK) return;
  const { buffer } = chunk;
  if (buffer instanceof ArrayBuffer && chunk.byteOffset === 0 && chunk.byteLength === buffer.byteLength) buffer.transfer(0);
  else relayed(chunk.byteLength);
}
