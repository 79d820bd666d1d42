// The benchmark's fake Responses upstream, run as its own process (so its CPU use can be shown
// not to be the bottleneck). The `x-bench` request header picks the behaviour; the proxy
// forwards it like any other header. Prints its port on stdout. Loopback only; https when
// BENCH_TLS_CERT and BENCH_TLS_KEY name a certificate and its key.
//
//   small        ~1 KB JSON answer
//   sse          `x-events` events, `x-gap-ms` apart, each stamped with the monotonic send time (ns)
//   download     `x-bytes` bytes in 1 MiB chunks
//   upload       reads the whole body, answers its size
//
// A WebSocket on /v1/responses (figure 8): each message {"events":N,"gap":ms} is answered by N
// text messages `gap` ms apart, each stamped with the monotonic send time (ns), then one more
// saying {"type":"response.completed"}.

import { monotonicNs } from "./clock";

const SMALL = JSON.stringify({
  id: "resp_bench",
  object: "response",
  status: "completed",
  model: "bench-model",
  output: [{ type: "message", role: "assistant", content: [{ type: "output_text", text: "x".repeat(760) }] }],
  usage: { input_tokens: 12, output_tokens: 190, total_tokens: 202 },
});
const CHUNK = new Uint8Array(1 << 20).fill(0x61);
const encoder = new TextEncoder();

const { BENCH_TLS_CERT: cert, BENCH_TLS_KEY: key } = process.env;

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  // https with this certificate when the benchmark asks for it (figure 7)
  tls: cert && key ? { cert: Bun.file(cert), key: Bun.file(key) } : undefined,
  idleTimeout: 0,
  maxRequestBodySize: Number.MAX_SAFE_INTEGER,
  async fetch(req, srv) {
    if (req.headers.get("upgrade")?.toLowerCase() === "websocket" && srv.upgrade(req, { data: undefined })) return undefined;
    const mode = req.headers.get("x-bench");
    if (mode === "upload") {
      let n = 0;
      for await (const c of req.body!) n += c.byteLength;
      return Response.json({ bytes: n });
    }
    await req.arrayBuffer();
    if (mode === "sse") {
      const events = Number(req.headers.get("x-events") ?? 10);
      const gap = Number(req.headers.get("x-gap-ms") ?? 10);
      const body = new ReadableStream<Uint8Array>({
        async start(c) {
          for (let i = 0; i < events; i++) {
            if (i > 0) await Bun.sleep(gap);
            c.enqueue(encoder.encode(`event: response.output_text.delta\ndata: {"n":${i},"t":${monotonicNs()}}\n\n`));
          }
          c.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    }
    if (mode === "download") {
      let left = Number(req.headers.get("x-bytes") ?? 0);
      const body = new ReadableStream<Uint8Array>({
        pull(c) {
          if (left <= 0) return c.close();
          const n = Math.min(left, CHUNK.byteLength);
          left -= n;
          c.enqueue(n === CHUNK.byteLength ? CHUNK : CHUNK.subarray(0, n));
        },
      });
      return new Response(body, { headers: { "content-type": "application/octet-stream" } });
    }
    return new Response(SMALL, { headers: { "content-type": "application/json" } });
  },
  websocket: {
    idleTimeout: 0,
    async message(ws, m) {
      const { events, gap } = JSON.parse(String(m)) as { events: number; gap: number };
      for (let i = 0; i < events; i++) {
        if (i > 0) await Bun.sleep(gap);
        ws.send(`{"type":"response.output_text.delta","n":${i},"t":${monotonicNs()}}`);
      }
      ws.send('{"type":"response.completed"}');
    },
  },
});
console.log(server.port);
