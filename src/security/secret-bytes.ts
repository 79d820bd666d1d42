// Copying and searching a secret's bytes. SECURITY-CRITICAL: what must not change.
//
// These are plain byte loops on purpose; do not replace them with `set`, `slice`, `indexOf` or
// `copyWithin`. Those call libc's `memmove` / `memchr`, which on an AVX-512 machine load the bytes
// into vector registers (a 65-byte copy leaves its last 64 bytes, `earer <key>`, whole in
// `zmm17`), and the registers stay there until another routine reuses them. Whatever saves all
// registers to the stack next (the dynamic linker's lazy binding, any signal handler's frame)
// then writes the key into stack memory that nothing ever zeroes: the key-copies test found that
// second copy on the main thread's stack after start, now and then (one run in eight, one day).
// A byte loop moves one byte at a time through a general-purpose register, overwritten at once.
// scripts/key-through-libc.py (a gdb watch, run by the hardening test) checks that no libc call
// sees the key.

/** A copy of `from[start..end)` in an ArrayBuffer of its own (a GC-heap array can be moved, leaving the old bytes behind). */
export function copySecret(from: Uint8Array, start: number, end: number): Uint8Array {
  const out = new Uint8Array(new ArrayBuffer(end - start));
  for (let i = start; i < end; i++) out[i - start] = from[i]!;
  return out;
}

/** Writes `bytes` into `into` at `at`. */
export function writeSecret(into: Uint8Array, at: number, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) into[at + i] = bytes[i]!;
}

/** The index of the first `byte` in `bytes[start..end)`, or -1. */
export function findByte(bytes: Uint8Array, byte: number, start: number, end: number): number {
  for (let i = start; i < end; i++) if (bytes[i] === byte) return i;
  return -1;
}
