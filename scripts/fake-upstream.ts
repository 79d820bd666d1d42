// A local stand-in for the Responses API, for the demo, the tests and the benchmark: it streams a
// canned answer as server-sent events in the Responses event format. Loopback only.

export function sseEvent(type: string, data: object): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

/** The final response object whose output is one assistant message saying `text`. */
export function responseObject(text: string, status = "completed", id = "resp_demo") {
  const done = status === "completed";
  return {
    id,
    object: "response",
    created_at: 1_764_748_800,
    status,
    model: "fake-model",
    output: done ? [messageItem(text, "completed")] : [],
    parallel_tool_calls: true,
    tool_choice: "auto",
    tools: [],
    usage: done
      ? { input_tokens: 5, input_tokens_details: { cached_tokens: 0 }, output_tokens: 7, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 12 }
      : null,
  };
}

function messageItem(text: string, status: string) {
  return { id: "msg_1", type: "message", status, role: "assistant", content: status === "completed" ? [outputText(text)] : [] };
}

const outputText = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] });

/**
 * The events of one streamed response whose text is `words` joined, in the order and shape the
 * Responses API sends them (strict clients such as the Vercel AI SDK, LangChain and the Codex CLI
 * parse every one).
 */
export function responseEvents(words: string[], id = "resp_demo"): string[] {
  const text = words.join("");
  const part = { item_id: "msg_1", output_index: 0, content_index: 0 };
  const events: Array<[string, object]> = [
    ["response.created", { response: responseObject("", "in_progress", id) }],
    ["response.in_progress", { response: responseObject("", "in_progress", id) }],
    ["response.output_item.added", { output_index: 0, item: messageItem("", "in_progress") }],
    ["response.content_part.added", { ...part, part: outputText("") }],
    ...words.map((delta): [string, object] => ["response.output_text.delta", { ...part, delta, logprobs: [] }]),
    ["response.output_text.done", { ...part, text, logprobs: [] }],
    ["response.content_part.done", { ...part, part: outputText(text) }],
    ["response.output_item.done", { output_index: 0, item: messageItem(text, "completed") }],
    ["response.completed", { response: responseObject(text, "completed", id) }],
  ];
  return events.map(([type, data], sequence_number) => sseEvent(type, { sequence_number, ...data }));
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
