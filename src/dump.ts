// --dump-dir: each forwarded exchange as two JSON files, for debugging what an agent sent and got.
// Secrets are redacted; files are private; dumping never delays or breaks the exchange.
import type { ExchangeEnd, Tap } from "./forward";
import type { RelayEnd, RelayTap } from "./websocket/relay";
import type { IncomingRequest } from "./http/listener";
import { nodeFs, nodePathSyntax } from "./files";

// node:fs and node:path are loaded only with --dump-dir: a static import would load them before
// main.ts, at every start (files.ts).
const { basename, dirname, join } = nodePathSyntax;

/** What a dump records of a request's head. */
type RequestHeadView = Pick<IncomingRequest, "method" | "target" | "headers">;

/** Headers whose values are never written (SPEC "Dumps"). */
export const SECRET_HEADERS: ReadonlySet<string> = new Set([
  "authorization",
  "proxy-authorization",
  "cookie",
  "set-cookie",
  "x-api-key",
  "api-key",
]);
export const REDACTED = "[REDACTED]";

/** The most of each body a dump keeps (the exchange itself is never limited by this). */
export const DUMP_BODY_LIMIT = 64 * 1024 * 1024;

export interface HeaderEntry {
  name: string;
  value: string;
}

export function redactedHeaders(headers: Headers): HeaderEntry[] {
  const out: HeaderEntry[] = [];
  for (const [name, value] of headers) out.push({ name, value: SECRET_HEADERS.has(name) ? REDACTED : value });
  return out;
}

/** The body as the dump shows it: parsed JSON when it is JSON, else the text. */
export function dumpBody(bytes: Uint8Array): unknown {
  if (bytes.byteLength === 0) return "";
  const text = new TextDecoder().decode(bytes);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * What a dump says of the request, taken when the exchange starts (before the proxy rewrites its
 * headers for the upstream). `url` is the request target as the client sent it, as in the
 * reference (not scheme://host/…).
 */
function requestHead(req: RequestHeadView, user?: string) {
  return { method: req.method, url: req.target, ...(user ? { user } : {}), headers: redactedHeaders(req.headers) };
}

export function dumpFileName(seq: number, unixMs: number, kind: "request" | "response" | "websocket"): string {
  return `${String(seq).padStart(6, "0")}-${unixMs}-${kind}.json`;
}

/** Collects a body's chunks up to DUMP_BODY_LIMIT. */
class BodyRecorder {
  private chunks: Uint8Array[] = [];
  private size = 0;
  truncated = false;
  add(chunk: Uint8Array): void {
    if (this.truncated) return;
    const room = DUMP_BODY_LIMIT - this.size;
    if (chunk.byteLength > room) this.truncated = true;
    // A copy (a Buffer's slice() would be a view): the proxy frees a relayed chunk once written.
    const part = new Uint8Array(chunk.subarray(0, room));
    this.chunks.push(part);
    this.size += part.byteLength;
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.chunks);
  }
}

/**
 * Prepares the folder (before the key is read, so a bad folder fails fast): created with mode
 * 0700 when missing; refused when it is a symlink (it could point anywhere root can write) or
 * not a folder. Throws an Error with a one-line message.
 */
export function prepareDumpDir(dir: string): string {
  const { chmodSync, constants, lstatSync, mkdirSync, openSync, realpathSync, statSync } = nodeFs();
  let stat;
  try {
    stat = lstatSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700); // whatever the umask
    stat = lstatSync(dir);
  }
  if (stat.isSymbolicLink()) throw new Error(`${dir} is a symbolic link; give the real folder`);
  if (!stat.isDirectory()) throw new Error(`${dir} is not a folder`);
  const me = process.getuid?.();
  if (me !== undefined) {
    // Dumps hold every prompt and answer: the folder must be ours alone to change, and so must
    // every folder on the way to it (another user who can rename an entry there can swap ours).
    if (stat.uid !== me) throw new Error(`${dir} is owned by uid ${stat.uid}, not by the proxy's user (uid ${me})`);
    if (stat.mode & 0o022) throw new Error(`${dir} is writable by its group or by others; chmod go-w it (0700 is best)`);
    const real = realpathSync(dir);
    for (let up = dirname(real); ; up = dirname(up)) {
      const a = statSync(up);
      const sticky = (a.mode & 0o1000) !== 0; // /tmp: others may add entries, never rename ours
      if ((a.uid !== 0 && a.uid !== me) || ((a.mode & 0o022) !== 0 && !sticky)) {
        throw new Error(`${dir} is reached through ${up}, which another user can change; use a folder under one only root and the proxy's user control`);
      }
      if (up === dirname(up)) break;
    }
  }
  // Every dump is written relative to this descriptor, opened now: whatever later happens to the
  // path (renamed, swapped for a symlink), no dump lands anywhere but in this very folder.
  if (process.platform !== "linux") return dir;
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  return `/proc/self/fd/${fd}`;
}

/**
 * Writes one file, exclusively and atomically, mode 0600: the data goes to a fresh temporary file
 * (O_EXCL), which is then hard-linked to its name — link(2) fails if anything, a planted symlink
 * included, already has that name — so a reader never sees a partial dump.
 */
async function writeExclusive(path: string, data: string): Promise<void> {
  // Loaded on the first dump, not at start-up: node:fs/promises brings Node's stream library,
  // measured at about 2 ms of every start (issue 20), with or without --dump-dir.
  const { link, open, unlink } = await import("node:fs/promises");
  const tmp = join(dirname(path), `.${basename(path)}.tmp`);
  const file = await open(tmp, "wx", 0o600);
  try {
    await file.writeFile(data);
  } finally {
    await file.close();
  }
  try {
    await link(tmp, path);
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

export class Dumper {
  private seq = 0;

  /** `base`: where files are written (prepareDumpDir's answer); `dir`: the folder as given, for messages. */
  constructor(
    private readonly base: string,
    private readonly dir: string,
    private readonly warn: (line: string) => void,
  ) {}

  private write(name: string, record: object): void {
    writeExclusive(join(this.base, name), `${JSON.stringify(record, null, 2)}\n`).catch((err: NodeJS.ErrnoException) =>
      this.warn(`dump: cannot write ${join(this.dir, name)} (${err.code ?? err.name})`),
    );
  }

  /** The observer of one exchange. */
  tap(req: RequestHeadView, user?: string): Partial<Tap> & { requestEnd(): void } {
    const seq = ++this.seq;
    const unixMs = Date.now();
    const requestBody = new BodyRecorder();
    const responseBody = new BodyRecorder();
    let requestWritten = false;
    let status = 0;
    let headers: HeaderEntry[] = [];
    const head = requestHead(req, user);

    const writeRequest = (complete: boolean) => {
      if (requestWritten) return;
      requestWritten = true;
      this.write(dumpFileName(seq, unixMs, "request"), {
        ...head,
        body: dumpBody(requestBody.bytes()),
        ...(requestBody.truncated ? { body_truncated: true } : {}),
        ...(complete ? {} : { body_complete: false }),
      });
    };

    return {
      requestChunk: (chunk) => requestBody.add(chunk),
      requestEnd: () => writeRequest(true),
      response: (s, h) => {
        status = s;
        headers = redactedHeaders(h);
      },
      responseChunk: (chunk) => responseBody.add(chunk),
      end: ({ status: finalStatus, outcome, errorBody, requestId }: ExchangeEnd) => {
        writeRequest(false); // only still unwritten when the request body never completed
        this.write(dumpFileName(seq, unixMs, "response"), {
          status: status || finalStatus,
          headers,
          body: errorBody !== undefined ? dumpBody(new TextEncoder().encode(errorBody)) : dumpBody(responseBody.bytes()),
          ...(responseBody.truncated ? { body_truncated: true } : {}),
          outcome,
          complete: outcome === "complete",
          ...(requestId ? { request_id: requestId } : {}),
        });
      },
    };
  }

  /**
   * The observer of one relayed WebSocket: one file when it ends, with the handshake (redacted)
   * and every message each way, in order, with its time (ms since the handshake). Messages are
   * kept up to DUMP_BODY_LIMIT in all; the rest are counted, not kept.
   */
  websocket(req: RequestHeadView, user?: string): RelayTap & { handshake(status: number, headers: Headers, body?: Uint8Array): void } {
    const seq = ++this.seq;
    // Now, before the proxy rewrites the request's headers for the upstream.
    const head = requestHead(req, user);
    const unixMs = Date.now();
    const started = performance.now();
    const messages: Array<{ from: string; at_ms: number; type: string; data: unknown }> = [];
    let kept = 0;
    let dropped = 0;
    let answer: { status: number; headers: HeaderEntry[]; body?: unknown } = { status: 0, headers: [] };
    return {
      handshake: (status, headers, body) => {
        answer = { status, headers: redactedHeaders(headers), ...(body ? { body: dumpBody(body) } : {}) };
      },
      message: (from, m) => {
        const size = m.kind === "text" ? m.data.length : m.data.byteLength;
        if (kept + size > DUMP_BODY_LIMIT) {
          dropped++;
          return;
        }
        kept += size;
        const data = m.kind === "text" ? dumpBody(new TextEncoder().encode(m.data)) : Buffer.from(m.data).toString("base64");
        messages.push({ from, at_ms: Number((performance.now() - started).toFixed(1)), type: m.kind, data });
      },
      end: (e: RelayEnd) => {
        this.write(dumpFileName(seq, unixMs, "websocket"), {
          ...head,
          response: answer,
          messages,
          ...(dropped ? { messages_not_kept: dropped } : {}),
          end: { closed_by: e.closedBy, code: e.code, outcome: e.outcome, ...(e.cause ? { cause: e.cause } : {}), ms: Number(e.ms.toFixed(1)) },
        });
      },
    };
  }
}
