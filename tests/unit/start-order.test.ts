// Start-up order in the bundle that becomes the binary. SECURITY-CRITICAL (main.ts, harden-first.ts):
// nothing of ours may run before the process is hardened, and the bundle must evaluate modules in
// the order main.ts imports them.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const bundle = async (entry: string) => {
  const out = await Bun.build({ entrypoints: [entry], target: "bun", format: "esm" });
  expect(out.success).toBe(true);
  return out.outputs[0]!.text();
};
/** The modules of a bundle in the order their code appears: `// src/…` markers before each. */
const modules = (text: string) => [...text.matchAll(/^\/\/ (\S+\.ts)$/gm)].map((m) => m[1]!.replace(/^.*\bsrc\//, "src/"));
/** Bun's lazy module initialiser: a wrapped module runs when first reached, not in bundle order. */
const LAZY = /\b__esm\b/;

test("the bundle wraps no module for lazy evaluation (it would run out of order, and cost a JIT compile at start)", async () => {
  expect(LAZY.test(await bundle(join(import.meta.dir, "../../src/main.ts")))).toBe(false);
  // Control: a dynamic import of a module of ours is what brings the wrapper in, and the pattern sees it.
  const dir = mkdtempSync(join(tmpdir(), "rap-order-"));
  try {
    writeFileSync(join(dir, "main.ts"), 'const { f } = await import("./later");\nf();\n');
    writeFileSync(join(dir, "later.ts"), 'import { g } from "./dep";\nexport const f = () => console.log(g);\nconsole.log("later");\n');
    writeFileSync(join(dir, "dep.ts"), "export const g = Date.now();\n");
    expect(LAZY.test(await bundle(join(dir, "main.ts")))).toBe(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("hardening runs first: only its own imports come before it in the bundle", async () => {
  const order = modules(await bundle(join(import.meta.dir, "../../src/main.ts")));
  const first = order.indexOf("src/harden-first.ts");
  expect(first).toBeGreaterThan(0);
  expect(order.slice(0, first).sort()).toEqual([
    "src/security/hardening.ts",
    "src/security/libc.ts",
    "src/upstream/fetch-capacity.ts",
    "src/upstream/proxy-env.ts",
  ]);
  // Everything else follows it: start.ts and the modules that read stdin, the environment and sockets.
  for (const later of ["src/start.ts", "src/security/api-key.ts", "src/security/environment.ts", "src/server.ts"]) {
    expect(order.indexOf(later)).toBeGreaterThan(first);
  }
  expect(order.at(-1)).toBe("src/main.ts");
});
