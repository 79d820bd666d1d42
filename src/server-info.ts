// The server-info file: {"port":N,"pid":N}\n, written atomically once the listener is bound.
import { chmodSync, closeSync, fchmodSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

export function serverInfoLine(port: number, pid: number): string {
  return `${JSON.stringify({ port, pid })}\n`;
}

/**
 * Writes to a fresh temporary file in the same folder (O_EXCL: never through a planted file or
 * link), then renames it over the target: readers never see a partial file, and a symlink at
 * the target is replaced, never followed. Mode 0644: other users are meant to read it.
 */
export function writeServerInfo(path: string, port: number, pid: number): void {
  const dir = dirname(path);
  // Folders created for it are 0755 whatever the umask: other users must reach the file.
  const first = mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (first) for (let d = dir; ; d = dirname(d)) {
    chmodSync(d, 0o755);
    if (d === first || d === dirname(d)) break;
  }
  const tmp = join(dir, `.${basename(path)}.${pid}.${Date.now()}.tmp`);
  const fd = openSync(tmp, "wx", 0o644);
  try {
    try {
      fchmodSync(fd, 0o644); // whatever root's umask is, other users must be able to read it
      // No fsync: the rename already makes the file whole-or-absent for readers, and a file that
      // describes a running process has no use after a power loss (measured: fsync was ~1.5 ms
      // of start-up).
      writeSync(fd, serverInfoLine(port, pid));
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Removes the file on an orderly exit, if it still describes this process: a stale file names a
 * port that any local user could bind next, and the next client would send its prompt there.
 * Best effort: a file another proxy has since written is left alone.
 */
export function removeServerInfo(path: string, pid: number): void {
  try {
    if ((JSON.parse(readFileSync(path, "utf8")) as { pid?: unknown }).pid === pid) rmSync(path);
  } catch {
    // already gone, replaced by something else, or unreadable: nothing of ours to remove
  }
}
