// The listener in process, against raw sockets: what only a misbehaving client shows.
import { afterEach, expect, test } from "bun:test";
import net from "node:net";
import { Listener } from "../../src/http/listener";

const listeners: Listener[] = [];
afterEach(() => {
  for (const l of listeners.splice(0)) l.stop();
});

test("a client that pipelines and never reads its answers stops being read: the proxy does not queue answers without end", async () => {
  let handled = 0;
  const body = new Uint8Array(64 * 1024).fill(0x61); // each answer 64 KiB
  const listener = new Listener({
    port: 0,
    maxHeadBytes: 8192,
    idleTimeout: 30,
    handle: () => (handled++, { status: 200, body }),
    refusal: (e) => ({ status: e.status }),
  });
  listeners.push(listener);
  const sock = net.connect(listener.port, "127.0.0.1");
  sock.on("error", () => {});
  await new Promise<void>((r) => sock.on("connect", () => r()));
  sock.pause(); // never reads: the kernel buffers fill, then the proxy's
  const request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  const count = 5000; // 320 MiB of answers if all were queued
  sock.write(request.repeat(count));
  await Bun.sleep(1500);
  // What the socket buffers hold (a few MiB on loopback) and no more.
  expect(handled).toBeGreaterThan(0);
  expect(handled).toBeLessThan(500);
  // Reading again lets every request through, in order.
  let received = 0;
  sock.on("data", (d: Buffer) => (received += d.byteLength));
  sock.resume();
  const deadline = Date.now() + 20_000;
  while (handled < count && Date.now() < deadline) await Bun.sleep(50);
  expect(handled).toBe(count);
  sock.destroy();
}, 30_000);
