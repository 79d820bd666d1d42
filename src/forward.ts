// Forwarding one allowed exchange: the client's body streams upstream as it arrives, the
// upstream's response streams back chunk by chunk. Nothing is buffered whole.
import { describeError, proxyError, proxyErrorBody, type ProxyErrorCode } from "./errors";
import { downstreamHeaders, upstreamHeaders } from "./headers";

/** The Authorization value to inject now, or why there is none (answered with a 502). */
export type Credential = () => { authorization: string } | { error: string };

export interface ForwardOptions {
  upstream: string;
  credential: Credential;
  maxBodyBytes: number;
  /** ms a client may take to deliver the next piece of its request body. */
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

/** Observes one exchange. Every callback must return at once: it runs on the streaming path. */
export interface Tap {
  requestChunk?(chunk: Uint8Array): void;
  /** The whole request body has been read (called at once when there is none). */
  requestEnd?(): void;
  response?(status: number, headers: Headers): void;
  responseChunk?(chunk: Uint8Array): void;
  /** Called exactly once, when the exchange is over; `errorBody` when the proxy answered itself. */
  end(status: number, bytesIn: number, bytesOut: number, outcome: Outcome, errorBody?: string): void;
}

/** An error the proxy answers itself. */
interface ProxyFailure {
  status: number;
  code: ProxyErrorCode;
  message: string;
}

class BodyFailure extends Error {
  constructor(readonly failure: ProxyFailure) {
    super("request body failed");
  }
}

export async function forward(req: Request, opts: ForwardOptions, tap: Tap): Promise<Response> {
  let bytesIn = 0;
  let ended = false;
  const end = (status: number, bytesOut: number, outcome: Outcome, errorBody?: string) => {
    if (ended) return;
    ended = true;
    tap.end(status, bytesIn, bytesOut, outcome, errorBody);
  };
  const fail = ({ status, code, message }: ProxyFailure) => {
    end(status, 0, "proxy_error", proxyErrorBody(code, message));
    return proxyError(status, code, message);
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

  // One controller aborts the upstream request: client gone, body failed, or header timeout.
  const abort = new AbortController();
  const onClientAbort = () => abort.abort(req.signal.reason);
  if (req.signal.aborted) onClientAbort();
  else req.signal.addEventListener("abort", onClientAbort, { once: true });

  let bodyFailure: BodyFailure | undefined;
  let bodyCancelled = false; // fetch gave up on the body (the upstream failed): not the client's fault
  let body: ReadableStream<Uint8Array> | undefined;
  if (req.body) {
    const reader = req.body.getReader();
    body = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          // The stall timer measures only the client: it runs while we wait on its next bytes.
          let timer: Timer | undefined;
          const stalled = new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              reject(
                (bodyFailure = new BodyFailure({
                  status: 408,
                  code: "request_timeout",
                  message: `client sent no request body data for ${opts.clientTimeoutMs / 1000} s`,
                })),
              );
            }, opts.clientTimeoutMs);
          });
          try {
            const { done, value } = await Promise.race([reader.read(), stalled]);
            if (done) {
              tap.requestEnd?.();
              return controller.close();
            }
            bytesIn += value.byteLength;
            if (bytesIn > opts.maxBodyBytes) throw (bodyFailure = new BodyFailure(tooLarge));
            tap.requestChunk?.(value);
            controller.enqueue(value);
          } catch (err) {
            if (!bodyCancelled) {
              bodyFailure ??= new BodyFailure({
                status: 400,
                code: "client_body_error",
                message: `reading the request body failed (${describeError(err)})`,
              });
            }
            reader.cancel(err).catch(() => {});
            abort.abort(bodyFailure ?? err);
            controller.error(bodyFailure ?? err);
          } finally {
            clearTimeout(timer);
          }
        },
        cancel(reason) {
          bodyCancelled = true;
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
  } else {
    tap.requestEnd?.();
  }

  let headerTimer: Timer | undefined;
  let timedOut = false;
  if (opts.upstreamTimeoutMs > 0) {
    headerTimer = setTimeout(() => {
      timedOut = true;
      abort.abort(new Error("upstream timeout"));
    }, opts.upstreamTimeoutMs);
  }

  let upstream: Response;
  try {
    upstream = await fetch(opts.upstream, {
      method: "POST",
      headers: upstreamHeaders(req.headers, credential.authorization),
      body,
      duplex: "half",
      signal: abort.signal,
      redirect: "manual", // a 3xx goes back to the client: the key goes nowhere but the upstream
      decompress: false, // compressed bodies pass through as bytes with Content-Encoding intact
      timeout: false, // Bun's own fetch idle timeout would cut a quiet reasoning stream
    } as RequestInit);
  } catch (err) {
    req.signal.removeEventListener("abort", onClientAbort);
    if (bodyFailure) return fail(bodyFailure.failure);
    if (timedOut) {
      return fail({ status: 504, code: "upstream_timeout", message: `upstream sent no response within ${opts.upstreamTimeoutMs / 1000} s` });
    }
    if (req.signal.aborted) {
      end(499, 0, "client_closed");
      return new Response(null, { status: 499 }); // nobody is listening any more
    }
    return fail({ status: 502, code: "upstream_unreachable", message: `upstream request failed (${describeError(err)})` });
  } finally {
    clearTimeout(headerTimer);
  }

  tap.response?.(upstream.status, upstream.headers);
  let bytesOut = 0;
  const source = upstream.body;
  const finish = (outcome: Outcome) => {
    req.signal.removeEventListener("abort", onClientAbort);
    end(upstream.status, bytesOut, outcome);
  };
  let out: ReadableStream<Uint8Array> | null = null;
  if (source) {
    const reader = source.getReader();
    out = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          let chunk: Awaited<ReturnType<typeof reader.read>>;
          try {
            chunk = await reader.read();
          } catch (err) {
            // Upstream failed mid-response (or the client left): end the client's stream with an
            // error so it sees a cut connection at once, never a hang or a clean-looking end.
            finish(req.signal.aborted ? "client_closed" : "upstream_error");
            controller.error(err);
            return;
          }
          if (chunk.done) {
            finish("complete");
            controller.close();
            return;
          }
          bytesOut += chunk.value.byteLength;
          tap.responseChunk?.(chunk.value);
          controller.enqueue(chunk.value);
        },
        cancel(reason) {
          // The client hung up: stop paying for tokens nobody will read.
          abort.abort(reason);
          finish("client_closed");
          return reader.cancel(reason).catch(() => {});
        },
      },
      { highWaterMark: 0 },
    );
  } else {
    finish("complete");
  }
  return new Response(out, {
    status: upstream.status,
    statusText: upstream.statusText,
    headers: downstreamHeaders(upstream.headers),
  });
}
