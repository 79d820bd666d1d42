// The platform C library through bun:ffi, opened once by the hardening and shared with the calls
// Bun offers only through node:fs or not at all (files.ts, peer-user.ts): one dlopen per process.
// SECURITY: imported by hardening.ts, which runs before any other module of ours: this module
// imports only bun:ffi.
import { CString, dlopen, FFIType, read, type Pointer } from "bun:ffi";

export type Platform = "linux" | "darwin" | "freebsd";

/**
 * The C library's file name. glibc: libc.so.6. musl: its dlopen treats any "libc.*" name as
 * itself (a reserved name), so the same name finds musl in a --target=bun-linux-*-musl build;
 * the musl file name is tried second for loaders that do not. macOS: libSystem. FreeBSD: libc.so.7.
 */
export function libcCandidates(platform: string, arch: string): string[] {
  switch (platform) {
    case "linux": {
      const a = arch === "arm64" ? "aarch64" : "x86_64";
      return ["libc.so.6", `libc.musl-${a}.so.1`, `ld-musl-${a}.so.1`];
    }
    case "darwin":
      return ["/usr/lib/libSystem.B.dylib"];
    case "freebsd":
      return ["libc.so.7"];
    default:
      return [];
  }
}

type Call = (...args: unknown[]) => unknown;

export interface Libc {
  /** The functions by name; which exist depends on the platform (see openLibc). */
  fn: Record<string, Call>;
  /** errno after the last failed call. */
  errno(): number;
  /** `No such file or directory (errno 2)`: strerror's text and the number. */
  describe(code: number): string;
}

const i32 = FFIType.i32;
const ptr = FFIType.ptr;

/** What every platform's hardening uses. */
const HARDENING = {
  setrlimit: { args: [i32, ptr], returns: i32 },
  getrlimit: { args: [i32, ptr], returns: i32 },
  strerror: { args: [i32], returns: ptr },
  getenv: { args: [FFIType.cstring], returns: ptr },
  memset: { args: [ptr, i32, FFIType.u64], returns: ptr },
  strlen: { args: [ptr], returns: FFIType.u64 },
  poll: { args: [ptr, FFIType.u64, i32], returns: i32 },
  isatty: { args: [i32], returns: i32 },
} as const;

/**
 * Linux only: prctl and mlockall for the hardening, the file calls of files.ts, and the socket
 * calls of peer-user.ts. Only on Linux:
 * open(2) is variadic, and only there (x86-64, arm64) does a variadic argument travel like a fixed
 * one; on Apple's arm64 the mode would be read from the stack.
 */
const LINUX = {
  prctl: { args: [i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: i32 },
  mlockall: { args: [i32], returns: i32 },
  read: { args: [i32, ptr, FFIType.u64], returns: FFIType.i64 },
  write: { args: [i32, ptr, FFIType.u64], returns: FFIType.i64 },
  open: { args: [ptr, i32, i32], returns: i32 },
  close: { args: [i32], returns: i32 },
  rename: { args: [ptr, ptr], returns: i32 },
  unlink: { args: [ptr], returns: i32 },
  mkdir: { args: [ptr, i32], returns: i32 },
  chmod: { args: [ptr, i32], returns: i32 },
  fchmod: { args: [i32, i32], returns: i32 },
  // peer-user.ts: who owns a client socket (sock_diag over netlink).
  socket: { args: [i32, i32, i32], returns: i32 },
  send: { args: [i32, ptr, FFIType.u64, i32], returns: FFIType.i64 },
  recv: { args: [i32, ptr, FFIType.u64, i32], returns: FFIType.i64 },
} as const;

const DARWIN = { ptrace: { args: [i32, i32, ptr, i32], returns: i32 } } as const;

/** Opens the C library, or throws with the first candidate's error. */
export function openLibc(platform: Platform): Libc {
  const errnoSymbol = platform === "linux" ? "__errno_location" : "__error";
  const symbols = {
    ...HARDENING,
    [errnoSymbol]: { args: [], returns: ptr },
    ...(platform === "linux" ? LINUX : {}),
    ...(platform === "darwin" ? DARWIN : {}),
  };
  // When none loads, the first one's error is the one that matters: the later names are musl's
  // fallbacks, and whether they exist depends on what else the host has installed.
  let firstError: unknown;
  for (const name of libcCandidates(platform, process.arch)) {
    try {
      const fn = dlopen(name, symbols).symbols as unknown as Record<string, Call>;
      const errno = () => read.i32(fn[errnoSymbol]!() as Pointer, 0);
      const describe = (code: number) => {
        const p = fn.strerror!(code) as Pointer | null;
        return `${p ? new CString(p) : "unknown error"} (errno ${code})`;
      };
      return { fn, errno, describe };
    } catch (err) {
      firstError ??= err;
    }
  }
  throw new Error(`cannot load the C library (${String(firstError)})`);
}
