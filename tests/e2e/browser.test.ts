// A real browser cannot spend the key or shut the proxy down: headless Chromium (Debian's
// package) driven by playwright-core, visiting a hostile page served from another loopback port.
import { afterEach, expect } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { goodRequest, needs, onCleanup, startProxy, startUpstream, stopAll, waitFor } from "../helpers";

afterEach(stopAll);

const CHROMIUM = "/usr/bin/chromium";
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

function hostilePage(proxy: string): string {
  const body = JSON.stringify({ model: "gpt-test", input: "spend the key" });
  return `<!doctype html><html><body>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="POST" action="${proxy}/v1/responses" enctype="text/plain" target="sink">
  <input name='{"model":"gpt-test","input":"x","pad":"' value='"}'>
</form>
<script>
  const results = {};
  async function attack() {
    try { await fetch("${proxy}/v1/responses", { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: ${JSON.stringify(body)} }); results.fetch = "sent"; }
    catch (e) { results.fetch = "error " + e; }
    results.beacon = navigator.sendBeacon("${proxy}/v1/responses", ${JSON.stringify(body)});
    document.getElementById("f").submit();
    const img = new Image();
    img.onload = img.onerror = () => { results.img = "done"; };
    img.src = "${proxy}/shutdown";
    try { const ws = new WebSocket("${proxy.replace("http:", "ws:")}/v1/responses"); ws.onerror = () => { results.ws = "refused"; }; ws.onopen = () => { results.ws = "open"; }; }
    catch (e) { results.ws = "error " + e; }
    setTimeout(() => { window.results = results; document.title = "done"; }, 1500);
  }
  attack();
</script></body></html>`;
}

needs(existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing (Debian package chromium)`)("a hostile web page: no-cors fetch, form POST, sendBeacon, <img src=/shutdown> and a WebSocket are all refused", async () => {
  const up = await startUpstream();
  // --websocket on: the page's WebSocket must be refused even where WebSockets are relayed.
  const proxy = await startProxy({ args: ["--upstream-url", up.url, "--http-shutdown", "--websocket"] });
  const page = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => new Response(hostilePage(proxy.base), { headers: { "content-type": "text/html" } }),
  });
  onCleanup(() => page.stop(true));

  const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "rap-chromium-")), {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
  });
  onCleanup(() => context.close());
  const tab = await context.newPage();
  await tab.goto(`http://127.0.0.1:${page.port}/`);
  // Strings, not functions: they run in the page (DOM types are not part of this project).
  await tab.waitForFunction('document.title === "done"', undefined, { timeout: 20_000 });
  const results = (await tab.evaluate("window.results")) as Record<string, unknown>;
  expect(results.fetch).toBe("sent"); // the browser did send it (no-cors hides the answer)
  expect(results.beacon).toBe(true);
  expect(results.img).toBe("done");
  expect(results.ws).toBe("refused");

  // The five attempts reached the proxy and were refused: three POSTs, the shutdown GET and the
  // WebSocket handshake.
  await waitFor(() => (proxy.stderr().match(/ 403 /g) ?? []).length >= 5, 5000, "five refusals in the log");
  const refused = proxy.stderr().split("\n").filter((l) => l.includes(" 403 "));
  expect(refused.filter((l) => l.includes(" POST /v1/responses 403 ")).length).toBeGreaterThanOrEqual(3);
  expect(refused.some((l) => l.includes(" GET /shutdown 403 "))).toBe(true);
  expect(refused.some((l) => l.includes(" GET /v1/responses 403 "))).toBe(true);
  expect(up.hits()).toBe(0); // nothing reached the upstream
  expect((await goodRequest(proxy)).status).toBe(200); // and the proxy is alive
}, 60_000);
