// Garbage collection paced by bytes relayed. Every body chunk the proxy relays is a fresh buffer
// (Bun allocates one per socket read); left to its own heuristics, the collector let a 1 GiB
// download peak at 80-88 MiB RSS. A full collection of this small heap after every 2 MiB relayed
// keeps both directions at 54-60 MiB (idle: 41 MiB), for a few % more CPU on bulk transfers and
// nothing on small requests (measured with `npm run bench -- --only 4`, issue 6).
const EVERY_BYTES = 2 * 1024 * 1024;
let sinceLast = 0;

export function relayed(bytes: number): void {
  sinceLast += bytes;
  if (sinceLast < EVERY_BYTES) return;
  sinceLast = 0;
  Bun.gc(true);
}
