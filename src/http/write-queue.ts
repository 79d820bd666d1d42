// Writes to one socket in order: straight to the socket while it takes them, queued behind what it
// could not take until it drains. Bun's socket.write writes what it can and says how much.

/** The part of a Bun socket this needs. */
interface Writable {
  write(bytes: Uint8Array): number;
}

export class WriteQueue {
  /** What waits for a drain; undefined when nothing does (the usual case: no array to look into). */
  private pending?: Uint8Array[];

  /** Nothing waits for a drain. */
  get empty(): boolean {
    return this.pending === undefined;
  }

  /**
   * Writes `bytes` now, or queues what the socket did not take: true when it all went out. Queued
   * bytes are kept as they are unless `copy` (the caller may reuse or free them once this returns).
   */
  write(socket: Writable, bytes: Uint8Array, copy = false): boolean {
    if (this.pending === undefined) {
      const n = socket.write(bytes);
      if (n === bytes.byteLength) return true;
      bytes = bytes.subarray(Math.max(n, 0));
    }
    (this.pending ??= []).push(copy ? Buffer.from(bytes) : bytes);
    return false;
  }

  /** On drain: writes what waits, as far as the socket takes it; true once nothing is left. */
  flush(socket: Writable): boolean {
    const pending = this.pending;
    while (pending?.length) {
      const bytes = pending[0]!;
      const n = socket.write(bytes);
      if (n < bytes.byteLength) {
        pending[0] = bytes.subarray(Math.max(n, 0));
        return false;
      }
      pending.shift();
    }
    this.pending = undefined;
    return true;
  }

  clear(): void {
    this.pending = undefined;
  }
}
