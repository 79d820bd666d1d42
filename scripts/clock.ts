// CLOCK_MONOTONIC in nanoseconds, the same clock in every process on this machine (Bun's
// process.hrtime counts from each process's own start, so it cannot time an event from the
// upstream process to the client process). Linux only, like the benchmark.
import { dlopen, FFIType } from "bun:ffi";

const CLOCK_MONOTONIC = 1;
const libc = dlopen("libc.so.6", { clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 } });
const timespec = new BigInt64Array(2);

export function monotonicNs(): bigint {
  libc.symbols.clock_gettime(CLOCK_MONOTONIC, timespec);
  return timespec[0]! * 1_000_000_000n + timespec[1]!;
}
