// `npm run demo`: see the proxy work without a real key. It starts dist/responses-api-proxy
// against a local fake Responses upstream, pipes it a made-up key, and streams one answer
// through it with the official openai SDK — the same path a real client takes.
import OpenAI from "openai";
import { startFakeResponses } from "./fake-upstream";

const words = "The proxy streamed this answer event by event, and the SDK never saw the key.".split(/(?<= )/);
const upstream = startFakeResponses(words);
const demoKey = "sk-demo-not-a-real-key";

const proxy = Bun.spawn(["dist/responses-api-proxy", "--http-shutdown", "--upstream-url", upstream.url], {
  stdin: new Blob([`${demoKey}\n`]),
  stderr: "pipe",
});
let log = "";
const decoder = new TextDecoder();
const port = await (async () => {
  for await (const chunk of proxy.stderr) {
    log += decoder.decode(chunk);
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
    if (m) return Number(m[1]);
  }
  throw new Error(`the proxy did not start:\n${log}`);
})();
console.log(`proxy:    ${log.trim()}`);
console.log(`upstream: fake Responses API at ${upstream.url}\n`);

const client = new OpenAI({ apiKey: "the-client-has-no-real-key", baseURL: `http://127.0.0.1:${port}/v1` });
const stream = await client.responses.create({ model: "fake-model", input: "Say something", stream: true });
process.stdout.write("answer:   ");
for await (const event of stream) {
  if (event.type === "response.output_text.delta") process.stdout.write(event.delta);
}
console.log(`\n\nthe upstream saw: Authorization: ${upstream.authorizations[0]?.replace(demoKey, "<the piped key>")}`);

await fetch(`http://127.0.0.1:${port}/shutdown`);
console.log(`proxy exited with code ${await proxy.exited}`);
upstream.stop();
