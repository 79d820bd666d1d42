// Which client carries requests upstream: the HTTP/1.1 client of http1.ts, or Bun's fetch when an
// HTTP(S) proxy is configured (fetch implements CONNECT, NO_PROXY and proxy credentials).
import { type BodyReader, http1Client, isStreamed, type Send, type UpstreamBody } from "./http1";
import { relayed } from "../http/chunk-memory";
import { proxyConfigured } from "./proxy-env";

/** fetch wants a stream: pulled one piece at a time, so nothing queues in between. */
function toStream(body: BodyReader): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await body.read();
          if (done || !value) controller.close();
          else {
            relayed(value.byteLength); // fetch owns it now: the collector reclaims it
            controller.enqueue(value);
          }
        } catch (err) {
          controller.error(err); // fails the upstream fetch
        }
      },
      cancel: (reason) => body.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/** fetch's body stream as an UpstreamBody: read one chunk at a time, each written before the next. */
function fromStream(stream: ReadableStream<Uint8Array>): UpstreamBody {
  const reader = stream.getReader();
  let cancelled = false;
  return {
    async pipe(sink) {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (cancelled) return; // like http1: after cancel() the sink hears nothing
          if (done) break;
          relayed(value.byteLength);
          const slow = sink.write(value);
          if (slow) await slow;
        }
      } catch (err) {
        if (!cancelled) sink.end(err);
        return;
      }
      sink.end();
    },
    cancel() {
      cancelled = true;
      reader.cancel().catch(() => {});
    },
  };
}

export function fetchTransport(url: string): Send {
  // As in http1.ts: one connection pool per owner (a Bun.FetchSession never shares its connections
  // with another), and for an unknown owner a session that keeps no connection.
  const sessions = new Map<string, Bun.FetchSession>();
  const sessionFor = (owner: string | undefined): Bun.FetchSession => {
    if (owner === undefined) return new Bun.FetchSession({ keepAlive: false });
    let session = sessions.get(owner);
    if (!session) sessions.set(owner, (session = new Bun.FetchSession()));
    return session;
  };
  return async ({ headers, authorization, body, signal, owner }) => {
    // fetch takes header values only as strings: here each request makes a copy of the key (the
    // HTTP/1.1 client does not; docs/security.md says what remains behind an HTTP proxy).
    headers.set("authorization", authorization.value());
    const res = await sessionFor(owner).fetch(url, {
      method: "POST",
      headers,
      body: isStreamed(body) ? toStream(body) : body,
      duplex: "half",
      signal,
      redirect: "manual", // a 3xx goes back to the client: the key goes nowhere but the upstream
      decompress: false, // compressed bodies pass through as bytes with Content-Encoding intact
      timeout: false, // Bun's own fetch idle timeout would cut a quiet reasoning stream
    } as RequestInit);
    const { status, statusText, headers: answer, body: stream } = res;
    return { status, statusText, headers: answer, body: stream && fromStream(stream) };
  };
}

export function upstreamTransport(url: URL, env: Record<string, string | undefined> = process.env): Send {
  return proxyConfigured(env) ? fetchTransport(url.href) : http1Client(url);
}
