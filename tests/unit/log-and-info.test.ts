import { expect, test } from "bun:test";
import { lstatSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { printableTarget, requestLine } from "../../src/log";
import { serverInfoLine, writeServerInfo } from "../../src/server-info";

test("log target: path only, query hidden, control bytes escaped, bounded", () => {
  expect(printableTarget("/v1/responses")).toBe("/v1/responses");
  expect(printableTarget("/v1/responses?api-key=SECRET")).toBe("/v1/responses?…");
  expect(printableTarget("/x#frag")).toBe("/x#…");
  expect(printableTarget("/a\x1b[31mb")).toBe("/a\\x1b[31mb");
  expect(printableTarget(`/${"a".repeat(500)}`).length).toBeLessThan(130);
});

test("request line", () => {
  const line = requestLine("POST", "/v1/responses", 200, 12.345, 300, 1024);
  expect(line).toMatch(/^\S+Z POST \/v1\/responses 200 12\.3ms in=300B out=1024B$/);
  expect(requestLine("POST", "/v1/responses", 200, 1, 0, 5, "client_closed")).toEndWith(" client_closed");
});

test("server info: one JSON line, parents created, atomic, symlink replaced not followed", () => {
  expect(serverInfoLine(8080, 42)).toBe('{"port":8080,"pid":42}\n');
  const dir = mkdtempSync(join(tmpdir(), "rap-info-"));
  const target = join(dir, "a", "b", "info.json");
  writeServerInfo(target, 1234, 99);
  expect(readFileSync(target, "utf8")).toBe('{"port":1234,"pid":99}\n');
  expect(lstatSync(target).mode & 0o777).toBe(0o644);
  const victim = join(dir, "victim");
  writeFileSync(victim, "precious");
  const link = join(dir, "link.json");
  symlinkSync(victim, link);
  writeServerInfo(link, 1, 2);
  expect(readFileSync(victim, "utf8")).toBe("precious");
  expect(lstatSync(link).isSymbolicLink()).toBe(false);
  expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
});
