// Process hardening. SECURITY-CRITICAL: it runs first, before the key exists in memory.
//
// What must not change, and why:
// - `hardenProcess()` is called by harden-first.ts, which the entry module imports first: before
//   the top-level code of any module that handles input runs (only fetch-capacity.ts, which may
//   re-execute the binary, runs before it), and before stdin is read: a process that can be
//   ptrace'd or core-dumped at the moment the key arrives has already lost it.
// - A failure of PR_SET_DUMPABLE / RLIMIT_CORE / PT_DENY_ATTACH is fatal (exit 5/7/6): running
//   unhardened is exactly what the admin did not ask for. Only mlockall is best effort (it needs
//   root or CAP_IPC_LOCK, and an unlocked page can at worst reach swap, not another user).
// - This module imports only libc.ts, which imports only bun:ffi: nothing else runs before it.
import type { Pointer } from "bun:ffi";
import { type Libc, openLibc, type Platform } from "./libc";

export const EXIT_PRCTL = 5;
export const EXIT_PTRACE = 6;
export const EXIT_RLIMIT = 7;

const PR_SET_DUMPABLE = 4;
const PT_DENY_ATTACH = 31; // macOS <sys/ptrace.h>
const MCL_CURRENT = 1;
const MCL_FUTURE = 2;
const MCL_ONFAULT = 4; // lock pages when first touched, not every reserved mapping up front
const RLIMIT_CORE = 4; // the same number on Linux, macOS and FreeBSD
const RLIMIT_NOFILE: Record<Platform, number> = { linux: 7, darwin: 8, freebsd: 8 };

/**
 * Of those, the ones that make the loader run code of the caller's choosing in this very process,
 * before any line of ours: start-up refuses them (a preloaded library could already have read
 * the key off stdin by the time it arrives). The rest are only removed.
 */
const LOADER_CODE = /^(LD_PRELOAD|LD_AUDIT|LD_LIBRARY_PATH|DYLD_.*)$/;

/** Variables that make the dynamic loader (now or in a child) load foreign code. */
export function loaderVariables(env: Record<string, string | undefined>, platform: string): string[] {
  const prefixes =
    platform === "darwin" ? ["DYLD_", "MallocStackLogging", "MallocLogFile"] : platform === "win32" ? [] : ["LD_"];
  return Object.keys(env).filter((k) => prefixes.some((p) => k.startsWith(p)));
}

export interface HardeningReport {
  /** What is in force, for the start-up line: nodump, nocore, deny-attach, mlock. */
  applied: string[];
  warnings: string[];
  /** OPENAI_API_KEY was in our environment (now wiped and removed). */
  inheritedKey: boolean;
  /** Loader variables (LD_PRELOAD …) set at launch: the loader acted on them before our first line. */
  loaderAtLaunch: string[];
  /**
   * Waits up to `ms` for fd 0 to have input (or its end); false when it stayed quiet. poll(2) from
   * the same C library handle: key intake itself stays a blocking read(2), and this only tells
   * start-up when to say that the proxy is waiting for it. Absent where there is no C library.
   */
  stdinReady?(ms: number): boolean;
  /**
   * Is fd 0 a terminal (isatty(3) from the same handle)? Not node:tty, whose import loads Node's
   * stream library: about 2 ms of every start-up (issue 20). Absent where there is no C library.
   */
  stdinIsTerminal?(): boolean;
  /** The open-file limit in force after raising it (undefined where it could not be read). */
  openFiles?: number;
  /** The C library handle the hardening opened (absent where there is none): files.ts and peer-user.ts use it too. */
  libc?: Libc;
}

class HardeningFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/**
 * Applies every hardening step for this platform. Throws HardeningFailure (with its exit code)
 * when a required step fails; returns the warnings of best-effort steps.
 */
function applyHardening(): HardeningReport {
  const warnings: string[] = [];
  const applied: string[] = [];
  const platform = process.platform;
  const inheritedKey = process.env.OPENAI_API_KEY !== undefined;
  const loaderAtLaunch = loaderVariables(process.env, platform).filter((name) => LOADER_CODE.test(name));
  if (platform !== "linux" && platform !== "darwin" && platform !== "freebsd") {
    delete process.env.OPENAI_API_KEY;
    return { applied, warnings, inheritedKey, loaderAtLaunch };
  }

  const libc = openLibc(platform);
  const { fn, errno, describe } = libc;
  const limit = new BigUint64Array(2); // struct rlimit { rlim_t cur, max } — 64-bit on every target

  if (platform === "linux" && fn.prctl!(PR_SET_DUMPABLE, 0, 0, 0, 0) !== 0) {
    throw new HardeningFailure(`prctl(PR_SET_DUMPABLE, 0) failed: ${describe(errno())}`, EXIT_PRCTL);
  }
  if (platform === "linux") applied.push("nodump");
  if (platform === "darwin" && fn.ptrace!(PT_DENY_ATTACH, 0, null, 0) !== 0) {
    throw new HardeningFailure(`ptrace(PT_DENY_ATTACH) failed: ${describe(errno())}`, EXIT_PTRACE);
  }
  if (platform === "darwin") applied.push("deny-attach");
  limit[0] = 0n;
  limit[1] = 0n;
  if (fn.setrlimit!(RLIMIT_CORE, limit) !== 0) {
    throw new HardeningFailure(`setrlimit(RLIMIT_CORE, 0) failed: ${describe(errno())}`, EXIT_RLIMIT);
  }
  applied.push("nocore");

  // Thousands of concurrent streams need more descriptors than the usual soft limit of 1024.
  const nofile = RLIMIT_NOFILE[platform];
  let openFiles: number | undefined;
  if (fn.getrlimit!(nofile, limit) === 0) {
    openFiles = Number(limit[0]!);
    if (limit[0]! < limit[1]!) {
      limit[0] = limit[1]!;
      if (fn.setrlimit!(nofile, limit) !== 0) {
        warnings.push(`could not raise the open-file limit: setrlimit(RLIMIT_NOFILE) failed: ${describe(errno())}`);
      } else openFiles = Number(limit[1]!);
    }
  }

  if (platform === "linux") {
    if (fn.mlockall!(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) === 0) applied.push("mlock");
    else {
      warnings.push(
        `memory locking is off (mlockall: ${describe(errno())}), so pages holding the key could be written to swap; ` +
          "this is normal when not running as root, and every other protection is in force. " +
          "To lock memory, run as root or grant CAP_IPC_LOCK (systemd: AmbientCapabilities=CAP_IPC_LOCK)",
      );
    }
  }

  for (const name of loaderVariables(process.env, platform)) delete process.env[name];

  if (inheritedKey) scrubInheritedKey(fn);
  return {
    applied,
    warnings,
    inheritedKey,
    loaderAtLaunch,
    stdinReady: (ms) => stdinReady(fn, ms),
    stdinIsTerminal: () => fn.isatty!(0) === 1,
    openFiles,
    libc,
  };
}

/**
 * OPENAI_API_KEY inherited in our own environment lives in the process's initial environment
 * block, which /proc/<pid>/environ shows (to root, once PR_SET_DUMPABLE is 0). Overwrite its value
 * there in place, then drop the variable: the key then exists only where we put it ourselves.
 */
function scrubInheritedKey(fn: Libc["fn"]): void {
  const value = fn.getenv!(Buffer.from("OPENAI_API_KEY\0")) as Pointer | null;
  if (value) fn.memset!(value, 0, fn.strlen!(value));
  delete process.env.OPENAI_API_KEY;
}

const POLLIN = 1;

function stdinReady(fn: Libc["fn"], ms: number): boolean {
  const pollfd = new Int32Array(2); // struct pollfd { int fd = 0; short events; short revents; }
  new Int16Array(pollfd.buffer)[2] = POLLIN;
  // EINTR or any other failure: say nothing and let the read itself wait or fail.
  return (fn.poll!(pollfd, 1, ms) as number) !== 0;
}

/** Runs the hardening; on a required step's failure prints one line and exits with its code. */
export function hardenProcess(): HardeningReport {
  try {
    return applyHardening();
  } catch (err) {
    const code = err instanceof HardeningFailure ? err.exitCode : EXIT_PRCTL;
    process.stderr.write(`responses-api-proxy: hardening failed: ${(err as Error).message}\n`);
    process.exit(code);
  }
}
