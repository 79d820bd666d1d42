// `npm run release`: cross-compiles the proxy for every supported platform into dist/release/
// as responses-api-proxy-<version>-<os>-<arch>[.exe], writes SHA256SUMS beside them (check with
// `sha256sum -c SHA256SUMS`), and the npm tarballs into dist/npm/ (scripts/npm-packages.ts).
// The target runtimes come from the npm registry.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { version } from "../package.json";
import { build } from "./build";
import { NPM_DIR, tarballName, writeNpmPackages } from "./npm-packages";

export const TARGETS = [
  "linux-x64",
  "linux-x64-musl",
  "linux-arm64",
  "linux-arm64-musl",
  "darwin-x64",
  "darwin-arm64",
  "windows-x64",
] as const;

export const RELEASE_DIR = "dist/release";

export function artifactName(target: string): string {
  return `responses-api-proxy-${version}-${target}${target.startsWith("windows") ? ".exe" : ""}`;
}

if (import.meta.main) {
  rmSync(RELEASE_DIR, { recursive: true, force: true });
  mkdirSync(RELEASE_DIR, { recursive: true });
  const sums: string[] = [];
  for (const target of TARGETS) {
    const name = artifactName(target);
    const path = join(RELEASE_DIR, name);
    await build(path, `bun-${target}`);
    sums.push(`${createHash("sha256").update(readFileSync(path)).digest("hex")}  ${name}`);
    console.log(`${name}  ${(statSync(path).size / 2 ** 20).toFixed(1)} MiB`);
  }
  writeFileSync(join(RELEASE_DIR, "SHA256SUMS"), `${sums.join("\n")}\n`);
  console.log(`wrote ${TARGETS.length} binaries and SHA256SUMS to ${RELEASE_DIR}/`);
  const packages = writeNpmPackages((target) => join(RELEASE_DIR, artifactName(target)));
  console.log(`wrote ${packages.map(tarballName).join(", ")} to ${NPM_DIR}/`);
}
