// Real Node clients, run under Node (never Bun): `node node-clients.mjs <client> <mode> <baseURL>`.
// Each text delta is printed on its own line the moment the client hands it over, so the test can
// time every event; `ABORTED` after an abort; a final `RESULT <json>` line.
//   clients: openai (modes stream, nonstream, abort, retry), ai-sdk and langchain (stream, abort),
//   fetch (stream, abort: Node's own fetch with a streamed request body, duplex "half")
const [client, mode, baseURL] = process.argv.slice(2);
const input = "Say hello";
const out = (line) => process.stdout.write(`${line}\n`);
const controller = new AbortController();
let deltas = 0;
/** Prints a delta; in abort mode the first one aborts the request. */
function delta(text) {
  out(`DELTA ${JSON.stringify(text)}`);
  if (mode === "abort" && ++deltas === 1) {
    controller.abort();
    out("ABORTED");
    return false;
  }
  return true;
}
const done = (result) => out(`RESULT ${JSON.stringify(result)}`);

async function openaiClient() {
  const { default: OpenAI } = await import("openai");
  const sdk = new OpenAI({ apiKey: "sk-client-own-key", baseURL, maxRetries: mode === "retry" ? 2 : 0 });
  if (mode === "nonstream" || mode === "retry") {
    const res = await sdk.responses.create({ model: "fake-model", input });
    return done({ id: res.id, status: res.status, text: res.output_text });
  }
  const stream = await sdk.responses.create({ model: "fake-model", input, stream: true }, { signal: controller.signal });
  const types = [];
  try {
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta" && !delta(event.delta)) break;
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  done({ types });
}

async function aiSdkClient() {
  const { streamText } = await import("ai");
  const { createOpenAI } = await import("@ai-sdk/openai");
  const provider = createOpenAI({ apiKey: "sk-client-own-key", baseURL });
  const result = streamText({ model: provider.responses("fake-model"), prompt: input, abortSignal: controller.signal, maxRetries: 0 });
  try {
    for await (const text of result.textStream) if (!delta(text)) break;
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  if (mode === "abort") return done({});
  done({ text: await result.text, finishReason: await result.finishReason });
}

async function langchainClient() {
  const { ChatOpenAI } = await import("@langchain/openai");
  const model = new ChatOpenAI({ model: "fake-model", apiKey: "sk-client-own-key", useResponsesApi: true, maxRetries: 0, configuration: { baseURL } });
  try {
    const stream = await model.stream(input, { signal: controller.signal });
    for await (const chunk of stream) {
      const text = typeof chunk.content === "string" ? chunk.content : chunk.content.map((c) => c.text ?? "").join("");
      if (text && !delta(text)) break;
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  done({});
}

async function fetchClient() {
  // The request body streams (duplex: "half"), as a Node program uploading a large input would.
  const body = new ReadableStream({
    start(c) {
      c.enqueue(new TextEncoder().encode(`{"model":"fake-model","input":"${input}",`));
      c.enqueue(new TextEncoder().encode('"stream":true}'));
      c.close();
    },
  });
  const res = await fetch(`${baseURL}/responses`, {
    method: "POST", headers: { "content-type": "application/json", authorization: "Bearer sk-client-own-key" },
    body, duplex: "half", signal: controller.signal,
  });
  out(`STATUS ${res.status}`);
  const decoder = new TextDecoder();
  let buffered = "";
  try {
    for await (const chunk of res.body) {
      buffered += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const event = JSON.parse(buffered.slice(buffered.indexOf("data: ") + 6, end));
        buffered = buffered.slice(end + 2);
        if (event.type === "response.output_text.delta" && !delta(event.delta)) return done({});
      }
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  done({});
}

const clients = { openai: openaiClient, "ai-sdk": aiSdkClient, langchain: langchainClient, fetch: fetchClient };
try {
  await clients[client]();
  // An aborted request may leave a timer or socket behind in some SDKs: the run is over.
  process.exit(0);
} catch (err) {
  out(`ERROR ${err?.status ?? ""} ${err?.message ?? err}`);
  process.exit(1);
}
