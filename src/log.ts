// Log lines on stderr, as text (the default) or one JSON object per line (--log-format json).
// A line names what happened and why, in stable words: never a header value, a body, a query
// string or the key. docs/logging.md shows every kind of line in both formats.

export type LogFormat = "text" | "json";

const MAX_TARGET = 120;

/** The target's path, with any query replaced by `?…` (it may hold secrets) and control bytes escaped. */
export function printableTarget(target: string): string {
  const q = target.search(/[?#]/);
  let path = q < 0 ? target : `${target.slice(0, q)}${target[q]}…`;
  if (path.length > MAX_TARGET) path = `${path.slice(0, MAX_TARGET)}…`;
  return path.replace(/[^\x21-\x7e…]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** An upstream request id as logged: token characters only, at most 128 (it comes from the network). */
export function printableRequestId(value: string | null): string | undefined {
  if (!value) return undefined;
  return /^[A-Za-z0-9._:-]{1,128}$/.test(value) ? value : undefined;
}

/** One request, as its log line reports it. */
export interface RequestRecord {
  method: string;
  target: string;
  status: number;
  ms: number;
  bytesIn: number;
  bytesOut: number;
  /** How a forwarded exchange ended, when not `complete`. */
  outcome?: string;
  /** Why it was refused or failed: a gate rule (`path`, `browser:origin`, …) or a proxy error code. */
  reason?: string;
  /** The underlying cause of a failure: an OS, TLS or protocol error code. */
  cause?: string;
  /** The upstream's `x-request-id`, what OpenAI's support asks for. */
  requestId?: string;
  /** The local user who sent it (`alice(1000)`, `unknown`), where the platform can tell. */
  user?: string;
  uid?: number;
  /** A relayed WebSocket (status 101): messages each way, and who closed it with which code. */
  websocket?: { messagesIn: number; messagesOut: number; closedBy: string; code: number };
}

export interface StartRecord {
  version: string;
  listen: string;
  upstream: string;
  credential: "key" | "github-oidc";
  hardening: string[];
}

export interface StopRecord {
  /** `SIGTERM`, `SIGINT` or `/shutdown`. */
  cause: string;
  /** Exchanges still in flight when the process exited. */
  cut: number;
}

export const NAME = "responses-api-proxy";

/**
 * stderr through Bun's own file sink, made on the first line. Not `process.stderr`: its first use
 * loads Node's whole stream library, measured at about 2 ms of every start-up (issue 20). Like
 * `process.stderr` on a pipe, a line that cannot be written at once waits in memory, in order:
 * a log reader that stalls never stalls the proxy. A write that fails (stderr closed, its reader
 * gone) is dropped: the log is never a reason to stop serving.
 */
let sink: import("bun").FileSink | undefined;
export function stderrLine(line: string): void {
  try {
    sink ??= Bun.stderr.writer();
    sink.write(`${line}\n`);
    void Promise.resolve(sink.flush()).catch(() => {});
  } catch {
    // nowhere to write: see above
  }
}

const isFailure = (r: RequestRecord) => r.status >= 400 || (r.outcome !== undefined && r.outcome !== "complete");

export class Logger {
  constructor(
    readonly format: LogFormat = "text",
    /** --quiet: successful requests are not logged; refusals and failures still are. */
    readonly quiet = false,
    private readonly write: (line: string) => void = stderrLine,
  ) {}

  private json(event: string, fields: Record<string, unknown>) {
    this.write(JSON.stringify({ time: new Date().toISOString(), event, ...fields }));
  }

  request(r: RequestRecord): void {
    if (this.quiet && !isFailure(r)) return;
    const method = /^[A-Z]{1,16}$/.test(r.method) ? r.method : "?";
    const path = printableTarget(r.target);
    const outcome = r.outcome && r.outcome !== "complete" ? r.outcome : undefined;
    if (this.format === "json") {
      return this.json("request", {
        ...(r.user && { user: r.user.replace(/\(\d+\)$/, ""), uid: r.uid ?? null }),
        method, path, status: r.status, ms: Number(r.ms.toFixed(1)), bytes_in: r.bytesIn, bytes_out: r.bytesOut,
        ...(outcome && { outcome }), ...(r.reason && { reason: r.reason }), ...(r.cause && { cause: r.cause }),
        ...(r.requestId && { request_id: r.requestId }),
        ...(r.websocket && {
          messages_in: r.websocket.messagesIn, messages_out: r.websocket.messagesOut, closed_by: r.websocket.closedBy, close_code: r.websocket.code,
        }),
      });
    }
    const user = r.user ? ` user=${r.user}` : "";
    let line = `${new Date().toISOString()}${user} ${method} ${path} ${r.status} ${r.ms.toFixed(1)}ms in=${r.bytesIn}B out=${r.bytesOut}B`;
    if (r.websocket) line += ` messages=${r.websocket.messagesIn}/${r.websocket.messagesOut} closed_by=${r.websocket.closedBy} code=${r.websocket.code}`;
    if (outcome) line += ` ${outcome}`;
    if (r.reason) line += ` reason=${r.reason}`;
    if (r.cause) line += ` cause=${r.cause}`;
    if (r.requestId) line += ` request_id=${r.requestId}`;
    this.write(line);
  }

  start(s: StartRecord): void {
    if (this.format === "json") return this.json("start", { ...s });
    const hardening = s.hardening.length ? s.hardening.join(",") : "none";
    this.write(
      `${NAME} ${s.version} listening on ${s.listen} upstream=${s.upstream} credential=${s.credential} hardening=${hardening}`,
    );
  }

  stop(s: StopRecord): void {
    if (this.format === "json") return this.json("stop", { ...s });
    this.write(`${NAME} stopped (${s.cause}): ${s.cut} exchange${s.cut === 1 ? "" : "s"} cut`);
  }

  warning(message: string): void {
    if (this.format === "json") return this.json("warning", { message });
    this.write(`${NAME}: warning: ${message}`);
  }

  /** A notice that is not a problem (the proxy waits for its key, a token was refreshed, …). */
  info(message: string): void {
    if (this.format === "json") return this.json("info", { message });
    this.write(`${NAME}: ${message}`);
  }

  /** A fatal start-up error; the caller exits with `exitCode`. */
  error(message: string, exitCode: number): void {
    if (this.format === "json") return this.json("error", { message, exit_code: exitCode });
    this.write(`${NAME}: ${message}`);
  }
}
