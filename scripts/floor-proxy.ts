// `bun scripts/floor-proxy.ts [--port N] [--server-info FILE] --upstream-url URL` (key on stdin)
//
// The floor: the least work that still makes an authenticating proxy on Bun, for the benchmark
// (`npm run bench -- --peer "bun scripts/floor-proxy.ts"`). It is NOT the product and must never
// hold a real key: no gate, no browser refusal, no limits, no timeouts, no hardening, no JSON
// errors. Raw sockets on both sides (Bun.listen, Bun.connect; TLS to an https upstream, as the
// product), one upstream connection per client connection, each request head rewritten (Host and Authorization), Content-Length bodies only,
// and the response bytes relayed untouched (no parsing at all). Whatever this reaches on a
// machine, no Bun proxy that checks anything will beat: the product's distance from it is what its
// own code costs. On Linux it does the SPEC's process hardening first, as the product must before
// it reads a key (no dumps, no core files, memory locked where allowed): start-up (figure 6, where
// the bench compiles it like the product) pays for it too.
import { dlopen, FFIType } from "bun:ffi";
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { Socket } from "bun";

if (process.platform === "linux") {
  try {
    // glibc's name; on musl the floor says so and runs unhardened (the product tries musl's names too).
    const { symbols: c } = dlopen("libc.so.6", {
      prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
      setrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
      mlockall: { args: [FFIType.i32], returns: FFIType.i32 },
    });
    c.prctl(4, 0, 0, 0, 0); // PR_SET_DUMPABLE 0
    c.setrlimit(4, new BigUint64Array(2)); // RLIMIT_CORE 0/0
    c.mlockall(1 | 2 | 4); // MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT: fails without root, as the product's does
  } catch (err) {
    process.stderr.write(`floor proxy: no hardening, its start-up is not comparable (${String(err)})\n`);
  }
}

const { values } = parseArgs({ options: { port: { type: "string" }, "server-info": { type: "string" }, "upstream-url": { type: "string" } }, strict: false });
const upstream = new URL(String(values["upstream-url"]));
const key = (await new Response(Bun.stdin.stream()).text()).split("\n")[0]!.trim();
const prefix = `host: ${upstream.host}\r\nauthorization: Bearer ${key}\r\n`;
const tls = upstream.protocol === "https:";

/** One direction of a connection pair. */
interface Pipe {
  to?: Socket<any>;
  from?: Socket<any>;
  backlog?: Uint8Array;
}

/** Writes `bytes` to `to`; what the socket cannot take now waits, and `from` pauses until it drains. */
function send(pipe: Pipe, bytes: Uint8Array) {
  if (pipe.backlog) {
    pipe.backlog = Buffer.concat([pipe.backlog, bytes]);
    return;
  }
  const n = pipe.to!.write(bytes);
  if (n < bytes.byteLength) {
    pipe.backlog = bytes.subarray(Math.max(n, 0));
    pipe.from?.pause();
  }
}
function drain(pipe: Pipe) {
  if (!pipe.backlog) return;
  const n = pipe.to!.write(pipe.backlog);
  if (n < pipe.backlog.byteLength) pipe.backlog = pipe.backlog.subarray(Math.max(n, 0));
  else {
    pipe.backlog = undefined;
    pipe.from?.resume();
  }
}

interface Client {
  up: Pipe; // client -> upstream
  down: Pipe; // upstream -> client
  head?: Buffer; // a partial request head
  body: number; // request body bytes still to relay as they are
  early: Uint8Array[]; // what the client sent before the upstream connection was up
}

function onClientData(c: Client, chunk: Buffer) {
  let buf: Buffer = c.head ? Buffer.concat([c.head, chunk]) : chunk;
  c.head = undefined;
  let i = 0;
  while (i < buf.byteLength) {
    if (c.body > 0) {
      const n = Math.min(c.body, buf.byteLength - i);
      forward(c, i === 0 && n === buf.byteLength ? buf : buf.subarray(i, i + n));
      c.body -= n;
      i += n;
      continue;
    }
    const end = buf.indexOf("\r\n\r\n", i, "latin1");
    if (end < 0) {
      c.head = buf.subarray(i);
      return;
    }
    const lines = buf.toString("latin1", i, end).split("\r\n");
    let head = `${lines[0]}\r\n${prefix}`;
    for (let k = 1; k < lines.length; k++) {
      const line = lines[k]!;
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      if (name === "host" || name === "authorization") continue;
      if (name === "content-length") c.body = Number(line.slice(colon + 1));
      head += `${line}\r\n`;
    }
    forward(c, Buffer.from(`${head}\r\n`, "latin1"));
    i = end + 4;
  }
}

function forward(c: Client, bytes: Uint8Array) {
  if (c.up.to) send(c.up, bytes);
  else c.early.push(bytes);
}

const server = Bun.listen<{ client?: Client }>({
  hostname: "127.0.0.1",
  port: Number(values.port ?? 0),
  socket: {
    open(socket) {
      const client: Client = { up: {}, down: { to: socket }, body: 0, early: [] };
      socket.data = { client };
      client.up.from = socket;
      const ready = (up: Socket<any>) => {
        client.up.to = up;
        client.down.from = up;
        for (const bytes of client.early) send(client.up, bytes);
        client.early = [];
      };
      Bun.connect({
        hostname: upstream.hostname,
        port: Number(upstream.port) || (tls ? 443 : 80),
        tls: tls ? { serverName: upstream.hostname } : undefined,
        socket: {
          open(up) {
            if (!tls) ready(up);
          },
          handshake(up, success) {
            if (success) ready(up);
            else up.end();
          },
          data: (_up, chunk) => send(client.down, chunk),
          drain: () => drain(client.up),
          close: () => void socket.end(),
          error: () => void socket.end(),
        },
      }).catch(() => void socket.end());
    },
    data: (socket, chunk) => onClientData(socket.data.client!, chunk),
    drain: (socket) => drain(socket.data.client!.down),
    close: (socket) => void socket.data.client!.up.to?.end(),
    error: (socket) => void socket.data.client!.up.to?.end(),
  },
});

if (values["server-info"]) writeFileSync(String(values["server-info"]), `${JSON.stringify({ port: server.port, pid: process.pid })}\n`);
process.stderr.write(`floor proxy listening on 127.0.0.1:${server.port}\n`);
