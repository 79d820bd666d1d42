import { afterEach, expect, setSystemTime, test } from "bun:test";
import { mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DUMP_BODY_LIMIT, dumpBody, dumpFileName, Dumper, redactedHeaders } from "../../src/dump";

afterEach(() => setSystemTime());

test("file names: six-digit sequence, unix ms, kind", () => {
  expect(dumpFileName(7, 1764000000123, "request")).toBe("000007-1764000000123-request.json");
  expect(dumpFileName(1234567, 1, "response")).toBe("1234567-1-response.json");
});

test("bodies: JSON parsed, anything else text", () => {
  expect(dumpBody(new TextEncoder().encode('{"a":[1]}'))).toEqual({ a: [1] });
  expect(dumpBody(new TextEncoder().encode("data: x\n\n"))).toBe("data: x\n\n");
  expect(dumpBody(new Uint8Array())).toBe("");
});

test("secret headers are redacted, others kept in order", () => {
  const h = new Headers([["Authorization", "Bearer x"], ["X-Api-Key", "k"], ["Accept", "text/event-stream"]]);
  expect(redactedHeaders(h)).toEqual([
    { name: "accept", value: "text/event-stream" },
    { name: "authorization", value: "[REDACTED]" },
    { name: "x-api-key", value: "[REDACTED]" },
  ]);
});

test("files are created exclusively: a planted symlink is never followed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "rap-dumpx-"));
  const victim = join(dir, "..", `victim-${Date.now()}`);
  writeFileSync(victim, "untouched");
  setSystemTime(new Date(1764000000000));
  symlinkSync(victim, join(dir, "000001-1764000000000-request.json"));
  const warnings: string[] = [];
  const tap = new Dumper(dir, dir, (l) => warnings.push(l)).tap({ method: "POST", target: "/v1/responses", headers: new Headers() });
  tap.requestChunk!(new TextEncoder().encode("{}"));
  tap.requestEnd();
  tap.end!({ status: 200, bytesIn: 2, bytesOut: 0, outcome: "complete" });
  for (let i = 0; i < 50 && warnings.length === 0; i++) await Bun.sleep(10);
  expect(warnings).toEqual([expect.stringMatching(/dump: cannot write .*000001-1764000000000-request\.json \(EEXIST\)/)]);
  expect(readFileSync(victim, "utf8")).toBe("untouched");
  expect(readdirSync(dir).sort()).toEqual(["000001-1764000000000-request.json", "000001-1764000000000-response.json"]);
});

test("a dumped body is capped, and says so", async () => {
  const dir = mkdtempSync(join(tmpdir(), "rap-dumpcap-"));
  const tap = new Dumper(dir, dir, () => {}).tap({ method: "POST", target: "/v1/responses", headers: new Headers() });
  const chunk = new Uint8Array(8 * 1024 * 1024).fill(0x61);
  for (let i = 0; i < DUMP_BODY_LIMIT / chunk.byteLength + 2; i++) tap.requestChunk!(chunk);
  tap.requestEnd();
  // Wait for the dump itself, not its temporary file (a dot file until it is linked to its name):
  // writing 64 MiB of JSON took over 200 ms on a slow machine.
  const dumped = () => readdirSync(dir).filter((name) => !name.startsWith("."));
  for (let i = 0; i < 500 && dumped().length === 0; i++) await Bun.sleep(20);
  const request = JSON.parse(readFileSync(join(dir, dumped()[0]!), "utf8"));
  expect(request.body.length).toBe(DUMP_BODY_LIMIT);
  expect(request.body_truncated).toBe(true);
});
