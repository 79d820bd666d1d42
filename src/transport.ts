// Which client carries requests upstream: the HTTP/1.1 client of http1.ts, or Bun's fetch when an
// HTTP(S) proxy is configured (fetch implements CONNECT, NO_PROXY and proxy credentials).
import { type BodyReader, http1Client, isStreamed, type Send } from "./http1";
import { proxyConfigured } from "./proxy-env";

/** fetch wants a stream: pulled one piece at a time, so nothing queues in between. */
function toStream(body: BodyReader): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await body.read();
          if (done || !value) controller.close();
          else controller.enqueue(value);
        } catch (err) {
          controller.error(err); // fails the upstream fetch
        }
      },
      cancel: (reason) => body.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

export function fetchTransport(url: string): Send {
  return ({ headers, body, signal }) =>
    fetch(url, {
      method: "POST",
      headers,
      body: isStreamed(body) ? toStream(body) : body,
      duplex: "half",
      signal,
      redirect: "manual", // a 3xx goes back to the client: the key goes nowhere but the upstream
      decompress: false, // compressed bodies pass through as bytes with Content-Encoding intact
      timeout: false, // Bun's own fetch idle timeout would cut a quiet reasoning stream
    } as RequestInit);
}

export function upstreamTransport(url: URL, env: Record<string, string | undefined> = process.env): Send {
  return proxyConfigured(env) ? fetchTransport(url.href) : http1Client(url);
}
