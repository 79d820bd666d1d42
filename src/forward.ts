// Forwarding one allowed exchange: the client's body goes upstream, the upstream's response
// streams back chunk by chunk as it arrives. Large bodies are never buffered whole.
import type { AuthorizationLine } from "./security/authorization";
import { describeError, proxyError, proxyErrorBody, type ProxyErrorCode } from "./errors";
import { rewriteUpstreamHeaders, downstreamHeaders } from "./headers";
import type { BodyReader, BodySink, Send, UpstreamBody, UpstreamResponse } from "./upstream/http1";
import type { IncomingRequest, Reply, ReplySink } from "./http/listener";
import { printableRequestId } from "./log";

/** The Authorization line to inject now, or why there is none (answered with a 502). */
export type Credential = () => { authorization: AuthorizationLine } | { error: string };

export interface ForwardOptions {
  /** Sends the rewritten request to the upstream (transport.ts). */
  send: Send;
  credential: Credential;
  maxBodyBytes: number;
  /** ms a client may take to deliver the next piece of a streamed request body. */
  clientTimeoutMs: number;
  /** ms to wait for the upstream's response headers; 0 = no limit. */
  upstreamTimeoutMs: number;
}

/** How an exchange ended, for the log line and the dump. */
export type Outcome =
  | "complete" // the whole response reached the client
  | "client_closed" // the client hung up; the upstream request was aborted
  | "upstream_error" // the upstream failed mid-response; the client's stream was cut
  | "proxy_error"; // the proxy answered with its own JSON error

/** How one exchange ended: what its log line and its dump say. */
export interface ExchangeEnd {
  status: number;
  bytesIn: number;
  bytesOut: number;
  outcome: Outcome;
  /** The proxy's own JSON error body, when it answered itself. */
  errorBody?: string;
  /** Why it did not complete: the proxy's error code (`upstream_unreachable`, …). */
  reason?: string;
  /** The underlying cause: an OS, TLS or protocol error code, never a header or a body. */
  cause?: string;
  /** The upstream's `x-request-id`. */
  requestId?: string;
}

/** Observes one exchange. Every callback must return at once: it runs on the streaming path. */
export interface Tap {
  requestChunk?(chunk: Uint8Array): void;
  /** The whole request body has been read (called at once when there is none). */
  requestEnd?(): void;
  /** From here on the exchange may stay quiet for as long as the upstream likes. */
  untimed?(): void;
  response?(status: number, headers: Headers): void;
  responseChunk?(chunk: Uint8Array): void;
  /** Called exactly once, when the exchange is over. */
  end(summary: ExchangeEnd): void;
}

/** An error the proxy answers itself. */
interface ProxyFailure {
  status: number;
  code: ProxyErrorCode;
  message: string;
  /** For the log: the error code behind it (ECONNREFUSED, a TLS error, …). */
  cause?: string;
}

class BodyFailure extends Error {
  constructor(readonly failure: ProxyFailure) {
    super("request body failed");
  }
}

/**
 * Declared request bodies up to this size (a Responses API JSON request, typically) are read
 * whole and sent as bytes: bounded memory (this x --max-concurrent at most), and measured to save
 * ~60 µs of CPU per request against a JavaScript stream in between. The whole read is timed by
 * `stallGuard`. Larger or chunked bodies stream.
 */
export const SMALL_BODY_BYTES = 64 * 1024;

/** The 408 for a client that went quiet while sending its request body. */
function stallFailure(opts: ForwardOptions): BodyFailure {
  return new BodyFailure({
    status: 408,
    code: "request_timeout",
    message: `client sent no request body data for ${opts.clientTimeoutMs / 1000} s`,
  });
}

/** The 400 for a request body that failed while it was read (not a stall, not the limit). */
function clientBodyError(err: unknown): ProxyFailure {
  const cause = describeError(err);
  return { status: 400, code: "client_body_error", message: `reading the request body failed (${cause})`, cause };
}

/** Rejects with a 408 BodyFailure if `work` takes longer than the client timeout. */
async function stallGuard<T>(work: Promise<T>, opts: ForwardOptions): Promise<T> {
  let timer: Timer | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      work.catch(() => {}); // abandoned: its own failure no longer matters
      reject(stallFailure(opts));
    }, opts.clientTimeoutMs);
  });
  try {
    return await Promise.race([work, stalled]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A request body read upstream as it arrives: counted against the limit, stalls timed. A reader,
 * not a stream: the HTTP/1.1 client pulls from it directly (one JavaScript stream fewer per chunk).
 */
function streamedBody(
  reader: BodyReader,
  opts: ForwardOptions,
  tap: Tap,
  state: { bytesIn: number; failure?: BodyFailure; cancelled: boolean },
  tooLarge: ProxyFailure,
): BodyReader {
  // One timer for the whole body, re-armed at each read (cheaper than a timer per piece). It only
  // counts while a read waits on the client: an upstream slow to take the body is not a stall.
  let stall: Timer | undefined;
  let waiting = false;
  const onStall = () => {
    if (!waiting) return;
    state.failure ??= stallFailure(opts);
    reader.cancel(state.failure).catch(() => {}); // ends the pending read
  };
  return {
    async read() {
      waiting = true;
      if (!stall) stall = setTimeout(onStall, opts.clientTimeoutMs);
      else stall.refresh();
      try {
        const chunk = await reader.read();
        waiting = false;
        if (state.failure) throw state.failure;
        if (chunk.done) {
          clearTimeout(stall);
          // The listener ends a chunked body only after its trailer section: the upstream never
          // gets a whole request that the client was told failed.
          tap.requestEnd?.();
          return chunk;
        }
        state.bytesIn += chunk.value!.byteLength;
        if (state.bytesIn > opts.maxBodyBytes) throw (state.failure = new BodyFailure(tooLarge));
        tap.requestChunk?.(chunk.value!);
        return chunk;
      } catch (err) {
        waiting = false;
        clearTimeout(stall);
        // The transport giving up on the body (the upstream failed) is not the client's fault.
        if (!state.cancelled) state.failure ??= new BodyFailure(clientBodyError(err));
        reader.cancel(err).catch(() => {});
        throw state.failure ?? err; // fails the upstream request
      }
    },
    cancel(reason) {
      clearTimeout(stall);
      state.cancelled = true;
      return reader.cancel(reason);
    },
  };
}

/** `owner`: whose upstream connections this exchange may use (http1.ts); undefined: a new one. */
export async function forward(req: IncomingRequest, opts: ForwardOptions, owner: string | undefined, tap: Tap): Promise<Reply> {
  const state = { bytesIn: 0, failure: undefined as BodyFailure | undefined, cancelled: false };
  let ended = false;
  const end = (summary: Omit<ExchangeEnd, "bytesIn">) => {
    if (ended) return;
    ended = true;
    tap.end({ ...summary, bytesIn: state.bytesIn });
  };
  const fail = ({ status, code, message, cause }: ProxyFailure) => {
    end({ status, bytesOut: 0, outcome: "proxy_error", errorBody: proxyErrorBody(code, message), reason: code, cause });
    return proxyError(status, code, message);
  };
  const clientGone = () => {
    end({ status: 499, bytesOut: 0, outcome: "client_closed" });
    return { status: 499 }; // nobody is listening any more
  };
  const tooLarge: ProxyFailure = {
    status: 413,
    code: "request_too_large",
    message: `request body exceeds the proxy's limit of ${opts.maxBodyBytes} bytes`,
  };

  // Refuse an oversize body up front when its length is declared.
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > opts.maxBodyBytes) return fail(tooLarge);

  const credential = opts.credential();
  if ("error" in credential) return fail({ status: 502, code: "upstream_credentials_unavailable", message: credential.error });

  // The listener's idle timeout would cut a quiet but healthy exchange (a reasoning model can be
  // silent for minutes): it is off from here on; a stalled request body is timed here instead.
  tap.untimed?.();

  let body: BodyReader | Uint8Array | undefined;
  if (req.hasBody && declared !== null && Number(declared) <= SMALL_BODY_BYTES) {
    try {
      body = await stallGuard(req.bytes(), opts);
    } catch (err) {
      if (err instanceof BodyFailure) return fail(err.failure);
      if (req.signal.aborted) return clientGone();
      return fail(clientBodyError(err));
    }
    state.bytesIn = body.byteLength;
    tap.requestChunk?.(body);
    tap.requestEnd?.();
  } else if (req.hasBody) {
    body = streamedBody(req, opts, tap, state, tooLarge);
  } else {
    tap.requestEnd?.();
  }

  // The client's signal aborts the upstream request when the client hangs up, at any point; an
  // --upstream-timeout adds a timer that only runs until the response headers arrive.
  let signal = req.signal;
  let headerTimer: Timer | undefined;
  let timedOut = false;
  if (opts.upstreamTimeoutMs > 0) {
    const timeout = new AbortController();
    headerTimer = setTimeout(() => {
      timedOut = true;
      timeout.abort();
    }, opts.upstreamTimeoutMs);
    signal = AbortSignal.any([req.signal, timeout.signal]);
  }

  let upstream: UpstreamResponse;
  try {
    upstream = await opts.send({ headers: rewriteUpstreamHeaders(req.headers), authorization: credential.authorization, body, signal, owner });
  } catch (err) {
    if (state.failure) return fail(state.failure.failure);
    if (timedOut && !req.signal.aborted) {
      return fail({ status: 504, code: "upstream_timeout", message: `upstream sent no response within ${opts.upstreamTimeoutMs / 1000} s` });
    }
    if (req.signal.aborted) return clientGone();
    const cause = describeError(err);
    return fail({ status: 502, code: "upstream_unreachable", message: `upstream request failed (${cause})`, cause });
  } finally {
    clearTimeout(headerTimer);
  }

  tap.response?.(upstream.status, upstream.headers);
  const { status } = upstream;
  const requestId = printableRequestId(upstream.headers.get("x-request-id"));
  const reply = { status, statusText: upstream.statusText, headers: downstreamHeaders(upstream.headers) };
  const { whole } = upstream;
  if (whole) {
    // Already whole in memory: handed to the listener as bytes, the cheapest way out.
    tap.responseChunk?.(whole);
    end({ status, bytesOut: whole.byteLength, outcome: "complete", requestId });
    return { ...reply, body: whole };
  }
  const source = upstream.body;
  if (!source) {
    end({ status, bytesOut: 0, outcome: "complete", requestId });
    return reply;
  }
  const stream = (sink: ReplySink) => {
    const finish = (outcome: Outcome, cause?: string) => end({ status, bytesOut: relay.bytesOut, outcome, requestId, cause });
    const RelayClass = sink.writeFramed && !tap.responseChunk ? FramedRelay : Relay;
    const relay = new RelayClass(sink, source, req, tap, finish);
    relay.start();
  };
  return { ...reply, stream };
}

/**
 * The response body on its way to the client. Each chunk is written to the client's socket from
 * the upstream socket's own callback (no queue, no JavaScript stream in between). A write the
 * client's socket cannot take at once returns a promise: the upstream is not read until it
 * settles (backpressure, bounded memory). A class, not closures: every server-sent event passes
 * here, and each object it touches on the way costs (docs/performance.md).
 */
class Relay implements BodySink {
  bytesOut = 0;
  private left = false;
  private readonly gone = () => this.leave();

  constructor(
    protected readonly sink: ReplySink,
    private readonly source: UpstreamBody,
    private readonly req: IncomingRequest,
    private readonly tap: Tap,
    /** The exchange's end, for the log and the dump: called once. */
    private readonly finish: (outcome: Outcome, cause?: string) => void,
  ) {}

  start() {
    if (this.req.signal.aborted) return this.leave();
    this.req.signal.addEventListener("abort", this.gone);
    this.source.pipe(this);
  }

  /** The client has gone: stop paying for tokens nobody will read. */
  private leave() {
    if (this.left) return;
    this.left = true;
    this.req.signal.removeEventListener("abort", this.gone);
    this.finish("client_closed");
    this.source.cancel();
  }

  protected sent(written: boolean | Promise<boolean>): Promise<unknown> | undefined {
    if (written === true) return undefined;
    if (written === false) return void this.leave();
    return written.then((ok) => void (ok || this.leave()));
  }

  write(chunk: Uint8Array) {
    if (chunk.byteLength === 0) return undefined;
    this.bytesOut += chunk.byteLength;
    this.tap.responseChunk?.(chunk);
    return this.sent(this.sink.write(chunk));
  }

  end(err?: unknown) {
    this.req.signal.removeEventListener("abort", this.gone);
    if (err === undefined) this.finish("complete");
    // Upstream failed mid-response (or the client left): the client's connection is cut so
    // it sees a broken body at once, never a hang or a clean-looking end.
    else if (this.req.signal.aborted) this.finish("client_closed");
    else this.finish("upstream_error", describeError(err));
    this.sink.end(err);
  }
}

/**
 * A relay that passes the upstream's own chunk framing on (offered when the client's answer is
 * chunked too): never when a tap (the dump) wants the body's bytes alone.
 */
class FramedRelay extends Relay {
  writeFramed(raw: Uint8Array, dataBytes: number) {
    this.bytesOut += dataBytes;
    return this.sent(this.sink.writeFramed!(raw));
  }
}
