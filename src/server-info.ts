// The server-info file: {"port":N,"pid":N}\n, written atomically once the listener is bound.
import type { Files } from "./files";

export function serverInfoLine(port: number, pid: number): string {
  return `${JSON.stringify({ port, pid })}\n`;
}

/**
 * Writes to a fresh temporary file in the same folder (O_EXCL: never through a planted file or
 * link), then renames it over the target: readers never see a partial file, and a symlink at
 * the target is replaced, never followed. Mode 0644: other users are meant to read it.
 */
export function writeServerInfo(files: Files, path: string, port: number, pid: number): void {
  const { dirname, basename, join } = files.path;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${pid}.${Date.now()}.tmp`);
  let fd: number;
  try {
    fd = files.createExclusive(tmp, 0o644);
  } catch (err) {
    if ((err as { code?: unknown }).code !== "ENOENT") throw err;
    // The folder is missing (checked only then: one system call less at every start). Folders
    // created for it are 0755 whatever the umask: other users must reach the file.
    const first = files.mkdirs(dir, 0o755);
    if (first) for (let d = dir; ; d = dirname(d)) {
      files.chmod(d, 0o755);
      if (d === first || d === dirname(d)) break;
    }
    fd = files.createExclusive(tmp, 0o644);
  }
  try {
    try {
      files.fchmod(fd, 0o644); // whatever root's umask is, other users must be able to read it
      // No fsync: the rename already makes the file whole-or-absent for readers, and a file that
      // describes a running process has no use after a power loss (measured: fsync was ~1.5 ms
      // of start-up).
      files.writeAll(fd, new TextEncoder().encode(serverInfoLine(port, pid)));
    } finally {
      files.close(fd);
    }
    files.rename(tmp, path);
  } catch (err) {
    files.remove(tmp);
    throw err;
  }
}

/**
 * Removes the file on an orderly exit, if it still describes this process: a stale file names a
 * port that any local user could bind next, and the next client would send its prompt there.
 * Best effort: a file another proxy has since written is left alone.
 */
export function removeServerInfo(files: Files, path: string, pid: number): void {
  try {
    const bytes = files.readFile(path);
    if (bytes && (JSON.parse(new TextDecoder().decode(bytes)) as { pid?: unknown }).pid === pid) files.remove(path);
  } catch {
    // already gone, replaced by something else, or unreadable: nothing of ours to remove
  }
}
