// A local stand-in for the Responses API, for the demo, the tests and the benchmark: it streams a
// canned answer as server-sent events in the Responses event format. Loopback only.

export function sseEvent(type: string, data: object): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

/** The events of one streamed response whose text is `words` joined. */
export function responseEvents(words: string[]): string[] {
  const response = { id: "resp_demo", object: "response", status: "in_progress", model: "fake-model", output: [] };
  return [
    sseEvent("response.created", { sequence_number: 0, response }),
    ...words.map((delta, i) =>
      sseEvent("response.output_text.delta", { sequence_number: i + 1, item_id: "msg_1", output_index: 0, content_index: 0, delta }),
    ),
    sseEvent("response.completed", { sequence_number: words.length + 1, response: { ...response, status: "completed" } }),
  ];
}

export interface FakeResponses {
  url: string;
  /** The Authorization header of each request received. */
  authorizations: string[];
  stop(): void;
}

/** Serves POST /v1/responses on 127.0.0.1, streaming `words` with `gapMs` between events. */
export function startFakeResponses(words: string[], gapMs = 60): FakeResponses {
  const authorizations: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      authorizations.push(req.headers.get("authorization") ?? "");
      await req.arrayBuffer();
      const body = new ReadableStream({
        async start(c) {
          for (const event of responseEvents(words)) {
            c.enqueue(new TextEncoder().encode(event));
            await Bun.sleep(gapMs);
          }
          c.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    },
  });
  return { url: `http://127.0.0.1:${server.port}/v1/responses`, authorizations, stop: () => server.stop(true) };
}
