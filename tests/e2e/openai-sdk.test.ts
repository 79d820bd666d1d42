// A real client: the official `openai` SDK, streaming a Responses call through the proxy.
import { afterEach, expect, test } from "bun:test";
import OpenAI from "openai";
import { responseEvents } from "../../scripts/fake-upstream";
import { KEY, startProxy, startUpstream, stopAll } from "../helpers";

afterEach(stopAll);

test("openai SDK: client.responses.create({ stream: true }) through the proxy", async () => {
  const words = ["Hello", ", ", "proxy", "!"];
  const up = await startUpstream(async (req, rec) => {
    rec.body = new Uint8Array(await req.arrayBuffer());
    const body = new ReadableStream({
      async start(c) {
        for (const event of responseEvents(words)) {
          c.enqueue(new TextEncoder().encode(event));
          await Bun.sleep(20);
        }
        c.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  const proxy = await startProxy({ args: ["--upstream-url", up.url] });
  const client = new OpenAI({ apiKey: "sk-the-sdk-own-key", baseURL: `${proxy.base}/v1`, maxRetries: 0 });
  const stream = await client.responses.create({ model: "gpt-test", input: "Say hello", stream: true });
  const types: string[] = [];
  let text = "";
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") text += event.delta;
  }
  expect(types.filter((t) => t === "response.output_text.delta")).toHaveLength(words.length);
  expect(types[0]).toBe("response.created");
  expect(types.at(-1)).toBe("response.completed");
  expect(text).toBe("Hello, proxy!");
  const seen = up.requests[0]!;
  expect(seen.headers.get("authorization")).toBe(`Bearer ${KEY}`); // the piped key, not the SDK's
  expect(JSON.parse(new TextDecoder().decode(seen.body))).toMatchObject({ model: "gpt-test", input: "Say hello", stream: true });
  expect(seen.headers.get("user-agent")).toContain("OpenAI");
});

test("openai SDK: a proxy error surfaces as an APIError with the proxy's message", async () => {
  const proxy = await startProxy({ args: ["--upstream-url", "http://127.0.0.1:1/v1/responses"] });
  const client = new OpenAI({ apiKey: "unused", baseURL: `${proxy.base}/v1`, maxRetries: 0 });
  const err = await client.responses.create({ model: "gpt-test", input: "x" }).catch((e) => e);
  expect(err).toBeInstanceOf(OpenAI.APIError);
  expect(err.status).toBe(502);
  expect(err.message).toContain("upstream request failed");
});
