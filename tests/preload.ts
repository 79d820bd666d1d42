// Every test run works in a temporary folder of its own, removed when the run ends. The tests make
// temporary folders (release binaries among them, about 190 MB a run) and do not all remove them:
// a machine that ran the suite often filled its disk (ENOSPC) before this.
import { afterAll } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "rap-test-run-"));
// Like /tmp itself: tests run the proxy as another user (`nobody`), who must reach folders made here.
chmodSync(dir, 0o1777);
process.env.TMPDIR = dir; // os.tmpdir() reads it at each call
// In a preload, afterAll runs once, after every test file (bun test emits no "exit" to hook).
afterAll(() => rmSync(dir, { recursive: true, force: true }));
