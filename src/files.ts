// The few file operations of start-up and exit (the key from stdin, the local users, the
// server-info file), without node:fs where the C library can do them.
//
// Why: node:fs is one of Bun's JavaScript-built Node modules, and a module that imports it
// statically has it loaded before the first line of main.ts runs. That was about 1.1 ms of every
// start of the compiled binary, and its pages made mlockall slower (issue 20, sixth pass in
// docs/performance.md). On Linux these calls go through the C library handle the hardening
// opened; elsewhere (macOS, FreeBSD, Windows) through node:fs, loaded on first use. Keep every
// import of node:fs and node:path in src/ a `require` inside a function (a test holds the bundle
// to it).
import type { Libc } from "./security/libc";

/** A failed call, with the errno name that describeError reports (as Node's errors have). */
export class FileError extends Error {
  constructor(
    readonly code: string,
    call: string,
  ) {
    super(`${call} failed (${code})`);
  }
}

export interface PathSyntax {
  dirname(path: string): string;
  basename(path: string): string;
  join(dir: string, name: string): string;
}

export interface Files {
  path: PathSyntax;
  /** The whole file; undefined when it does not exist (ENOENT). Throws on any other failure. */
  readFile(path: string): Uint8Array | undefined;
  /** read(2) on a descriptor: bytes read, 0 at end of input. */
  read(fd: number, buf: Uint8Array, offset: number, length: number): number;
  /** `mkdir -p` with `mode` for what it creates; the first folder it created, if any (as Node's). */
  mkdirs(path: string, mode: number): string | undefined;
  chmod(path: string, mode: number): void;
  /** A new file, write-only (O_CREAT | O_EXCL: never through anything already there, a symlink included). */
  createExclusive(path: string, mode: number): number;
  fchmod(fd: number, mode: number): void;
  /** All of `bytes`. */
  writeAll(fd: number, bytes: Uint8Array): void;
  close(fd: number): void;
  rename(from: string, to: string): void;
  /** unlink(2); a file already gone is not an error. */
  remove(path: string): void;
}

/** Linux's errno names (the same numbers on x86-64 and arm64), for the messages. */
const LINUX_ERRNO: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 4: "EINTR", 5: "EIO", 6: "ENXIO", 9: "EBADF", 11: "EAGAIN", 12: "ENOMEM",
  13: "EACCES", 14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 18: "EXDEV", 19: "ENODEV", 20: "ENOTDIR",
  21: "EISDIR", 22: "EINVAL", 23: "ENFILE", 24: "EMFILE", 26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC",
  30: "EROFS", 31: "EMLINK", 36: "ENAMETOOLONG", 38: "ENOSYS", 39: "ENOTEMPTY", 40: "ELOOP",
  95: "EOPNOTSUPP", 122: "EDQUOT",
};

export function linuxErrnoName(errno: number): string {
  return LINUX_ERRNO[errno] ?? `ERRNO_${errno}`;
}

/** `path` without trailing slashes (a lone "/" stays). A loop, not a regular expression: start-up
 * runs this once, and a regular expression's first use costs more than the rest of the call. */
function trimSlashes(path: string): string {
  let end = path.length;
  while (end > 1 && path.charCodeAt(end - 1) === 0x2f) end--;
  return path.slice(0, end);
}

/** POSIX paths, as node:path's posix functions for what this module needs. */
export const posixPath: PathSyntax = {
  dirname(path) {
    const trimmed = trimSlashes(path);
    const i = trimmed.lastIndexOf("/");
    if (i < 0) return ".";
    return i === 0 ? "/" : trimSlashes(trimmed.slice(0, i));
  },
  basename(path) {
    const trimmed = trimSlashes(path);
    return trimmed === "/" ? "" : trimmed.slice(trimmed.lastIndexOf("/") + 1);
  },
  join(dir, name) {
    return dir.endsWith("/") ? `${dir}${name}` : `${dir}/${name}`;
  },
};

const O_WRONLY = 0o1;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_CLOEXEC = 0o2000000; // the same on x86-64 and arm64 (unlike O_NOFOLLOW and O_DIRECTORY)
const ENOENT = 2;
const EINTR = 4;
const EEXIST = 17;

/** Linux through the C library handle (libc.ts opens these calls on Linux only). */
export function libcFiles(libc: Libc): Files {
  const { fn, errno } = libc;
  const encoder = new TextEncoder();
  const fail = (call: string): never => {
    throw new FileError(linuxErrnoName(errno()), call);
  };
  const cstr = (path: string) => {
    // A NUL would end the C string early and name another file: refused, as Node does.
    if (path.includes("\0")) throw new FileError("EINVAL", "path");
    return encoder.encode(`${path}\0`);
  };
  // A retried EINTR: a signal handler ran (SIGTERM is handled, and start-up may receive it).
  const call = (name: string, run: () => number): number => {
    for (;;) {
      const r = run();
      if (r >= 0) return r;
      if (errno() !== EINTR) return fail(name);
    }
  };
  const files: Files = {
    path: posixPath,
    readFile(path) {
      const name = cstr(path);
      let fd: number;
      for (;;) {
        fd = fn.open!(name, O_CLOEXEC, 0) as number; // O_RDONLY is 0
        if (fd >= 0) break;
        const e = errno();
        if (e === ENOENT) return undefined;
        if (e !== EINTR) fail("open");
      }
      try {
        const chunks: Uint8Array[] = [];
        let total = 0;
        for (;;) {
          const chunk = new Uint8Array(64 * 1024);
          const n = files.read(fd, chunk, 0, chunk.byteLength);
          if (n === 0) break;
          chunks.push(chunk.subarray(0, n));
          total += n;
        }
        if (chunks.length === 1) return chunks[0]!;
        const out = new Uint8Array(total);
        let at = 0;
        for (const c of chunks) {
          out.set(c, at);
          at += c.byteLength;
        }
        return out;
      } finally {
        fn.close!(fd);
      }
    },
    read(fd, buf, offset, length) {
      if (length === 0) return 0;
      const view = buf.subarray(offset, offset + length);
      return call("read", () => Number(fn.read!(fd, view, view.byteLength)));
    },
    mkdirs(path, mode) {
      const name = cstr(path);
      if ((fn.mkdir!(name, mode) as number) === 0) return path;
      const e = errno();
      if (e === EEXIST) return undefined; // whether it is a folder, the next call into it says
      if (e !== ENOENT) fail("mkdir");
      const parent = posixPath.dirname(path);
      if (parent === path) fail("mkdir");
      const first = files.mkdirs(parent, mode);
      if ((fn.mkdir!(name, mode) as number) !== 0 && errno() !== EEXIST) fail("mkdir");
      return first ?? path;
    },
    chmod(path, mode) {
      call("chmod", () => fn.chmod!(cstr(path), mode) as number);
    },
    createExclusive(path, mode) {
      const name = cstr(path);
      return call("open", () => fn.open!(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode) as number);
    },
    fchmod(fd, mode) {
      call("fchmod", () => fn.fchmod!(fd, mode) as number);
    },
    writeAll(fd, bytes) {
      for (let done = 0; done < bytes.byteLength; ) {
        const view = bytes.subarray(done);
        done += call("write", () => Number(fn.write!(fd, view, view.byteLength)));
      }
    },
    close(fd) {
      // Not retried on EINTR: on Linux the descriptor is released whatever close answers.
      if ((fn.close!(fd) as number) !== 0 && errno() !== EINTR) fail("close");
    },
    rename(from, to) {
      call("rename", () => fn.rename!(cstr(from), cstr(to)) as number);
    },
    remove(path) {
      if ((fn.unlink!(cstr(path)) as number) !== 0 && errno() !== ENOENT) fail("unlink");
    },
  };
  return files;
}

/** node:fs and node:path, loaded on their first use (never at start-up on Linux): see above. */
export const nodeFs = () => require("node:fs") as typeof import("node:fs");
export const nodePath = () => require("node:path") as typeof import("node:path");

/** node:path's functions for this platform, node:path loaded on first use (dump.ts uses them too). */
export const nodePathSyntax: PathSyntax = {
  dirname: (p) => nodePath().dirname(p),
  basename: (p) => nodePath().basename(p),
  join: (dir, name) => nodePath().join(dir, name),
};

/** Anywhere else: node:fs and node:path, loaded on first use. */
export function nodeFiles(): Files {
  return {
    path: nodePathSyntax,
    readFile(p) {
      try {
        return nodeFs().readFileSync(p);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
    },
    read: (fd, buf, offset, length) => nodeFs().readSync(fd, buf, offset, length, null),
    mkdirs: (p, mode) => nodeFs().mkdirSync(p, { recursive: true, mode }),
    chmod: (p, mode) => nodeFs().chmodSync(p, mode),
    createExclusive: (p, mode) => nodeFs().openSync(p, "wx", mode),
    fchmod: (fd, mode) => nodeFs().fchmodSync(fd, mode),
    writeAll(fd, bytes) {
      for (let done = 0; done < bytes.byteLength; ) done += nodeFs().writeSync(fd, bytes, done);
    },
    close: (fd) => nodeFs().closeSync(fd),
    rename: (from, to) => nodeFs().renameSync(from, to),
    remove: (p) => nodeFs().rmSync(p, { force: true }),
  };
}

/** This platform's: the C library's calls on Linux when the hardening opened it, else node:fs. */
export function systemFiles(libc: Libc | undefined): Files {
  return libc && process.platform === "linux" ? libcFiles(libc) : nodeFiles();
}
