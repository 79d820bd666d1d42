// The npm install channel, written by `npm run release` from the release binaries: one package per
// platform holding its binary (os/cpu/libc let npm install only the one that fits), and the
// `responses-api-proxy` package naming them all as optional dependencies, whose command is
// npm/launcher.sh — a shell script that execs the binary, so no Node process is ever involved.
// Nothing is downloaded at install time: the binary is in the package tarball. Windows is left to
// the release .exe (npm would run the launcher through sh, which Windows does not have).
import { chmodSync, copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../package.json";

export const NPM_DIR = "dist/npm";

/** npm's platform fields for each release target the npm channel carries. */
export const NPM_PLATFORMS: Record<string, { os: string; cpu: string; libc?: string }> = {
  "linux-x64": { os: "linux", cpu: "x64", libc: "glibc" },
  "linux-x64-musl": { os: "linux", cpu: "x64", libc: "musl" },
  "linux-arm64": { os: "linux", cpu: "arm64", libc: "glibc" },
  "linux-arm64-musl": { os: "linux", cpu: "arm64", libc: "musl" },
  "darwin-x64": { os: "darwin", cpu: "x64" },
  "darwin-arm64": { os: "darwin", cpu: "arm64" },
};

export const platformPackage = (target: string) => `${pkg.name}-${target}`;
export const tarballName = (name: string) => `${name}-${pkg.version}.tgz`;

const common = { version: pkg.version, license: pkg.license };

function pack(dir: string, out: string): void {
  const r = Bun.spawnSync(["npm", "pack", "--silent", "--pack-destination", out], { cwd: dir, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`npm pack in ${dir} failed: ${r.stderr}`);
}

/** Writes the tarball dist/npm/<name>-<version>.tgz of every package, and returns their names. */
export function writeNpmPackages(binaryOf: (target: string) => string): string[] {
  rmSync(NPM_DIR, { recursive: true, force: true });
  const out = join(process.cwd(), NPM_DIR);
  const names: string[] = [];
  for (const [target, platform] of Object.entries(NPM_PLATFORMS)) {
    const name = platformPackage(target);
    const dir = join(NPM_DIR, name);
    mkdirSync(join(dir, "bin"), { recursive: true });
    copyFileSync(binaryOf(target), join(dir, "bin", pkg.name));
    chmodSync(join(dir, "bin", pkg.name), 0o755);
    copyFileSync("LICENSE", join(dir, "LICENSE"));
    writeFileSync(join(dir, "README.md"), `# ${name}\n\nThe ${target} binary of ${pkg.name}. Install \`${pkg.name}\`, not this package.\n`);
    const fields = { os: [platform.os], cpu: [platform.cpu], ...(platform.libc ? { libc: [platform.libc] } : {}) };
    writeFileSync(join(dir, "package.json"), `${JSON.stringify({ name, ...common, description: `The ${target} binary of ${pkg.name}.`, ...fields, files: ["bin/"] }, null, 2)}\n`);
    pack(dir, out);
    rmSync(dir, { recursive: true }); // the tarball is what ships; the folder is a 100 MB copy
    names.push(name);
  }
  const dir = join(NPM_DIR, pkg.name);
  mkdirSync(join(dir, "bin"), { recursive: true });
  copyFileSync("npm/launcher.sh", join(dir, "bin", pkg.name));
  chmodSync(join(dir, "bin", pkg.name), 0o755);
  copyFileSync("LICENSE", join(dir, "LICENSE"));
  copyFileSync("README.md", join(dir, "README.md"));
  const main = {
    name: pkg.name, ...common, description: pkg.description,
    bin: { [pkg.name]: `bin/${pkg.name}` },
    os: [...new Set(Object.values(NPM_PLATFORMS).map((p) => p.os))],
    files: ["bin/"],
    optionalDependencies: Object.fromEntries(names.map((n) => [n, pkg.version])),
  };
  writeFileSync(join(dir, "package.json"), `${JSON.stringify(main, null, 2)}\n`);
  pack(dir, out);
  rmSync(dir, { recursive: true });
  names.push(pkg.name);
  const written = readdirSync(NPM_DIR).filter((f) => f.endsWith(".tgz"));
  for (const n of names) if (!written.includes(tarballName(n))) throw new Error(`npm pack did not write ${tarballName(n)}`);
  return names;
}
