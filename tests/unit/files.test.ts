import { describe, expect, test } from "bun:test";
import { closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { type Files, FileError, libcFiles, linuxErrnoName, nodeFiles, posixPath } from "../../src/files";
import { openLibc } from "../../src/security/libc";
import { removeServerInfo, serverInfoLine, writeServerInfo } from "../../src/server-info";
import { needs } from "../helpers";

const scratch = () => mkdtempSync(join(tmpdir(), "rap-files-"));
const code = (run: () => unknown): string | undefined => {
  try {
    run();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

// The same behaviour from both implementations: the C library's on Linux, node:fs elsewhere.
const implementations: Array<[string, () => Files, string | undefined]> = [
  ["node:fs", nodeFiles, undefined],
  ["the C library", () => libcFiles(openLibc("linux")), process.platform === "linux" ? undefined : "the C library's file calls are Linux only"],
];

for (const [name, make, missing] of implementations) {
  const it = needs(missing);
  describe(`files through ${name}`, () => {
    it("readFile: the whole file (past one read's 64 KiB), undefined when missing, an error code otherwise", () => {
      const files = make();
      const dir = scratch();
      const big = "x".repeat(200_000) + "end";
      writeFileSync(join(dir, "big"), big);
      expect(new TextDecoder().decode(files.readFile(join(dir, "big")))).toBe(big);
      writeFileSync(join(dir, "empty"), "");
      expect(files.readFile(join(dir, "empty"))?.byteLength).toBe(0);
      expect(files.readFile(join(dir, "missing"))).toBeUndefined();
      expect(code(() => files.readFile(dir))).toBe("EISDIR");
      expect(code(() => files.readFile(join(dir, "big", "below")))).toBe("ENOTDIR");
    });

    it("read: into the given offset and length only, 0 at the end", () => {
      const files = make();
      const dir = scratch();
      writeFileSync(join(dir, "f"), "abcdefgh");
      const fd = openSync(join(dir, "f"), "r");
      try {
        const buf = new Uint8Array(10).fill(0x2e);
        expect(files.read(fd, buf, 3, 4)).toBe(4);
        expect(new TextDecoder().decode(buf)).toBe("...abcd...");
        expect(files.read(fd, buf, 0, 10)).toBe(4);
        expect(files.read(fd, buf, 0, 10)).toBe(0);
      } finally {
        closeSync(fd);
      }
      expect(code(() => files.read(987_654, new Uint8Array(4), 0, 4))).toBe("EBADF");
    });

    it("mkdirs: the first folder it created, with the mode; nothing when it exists; ENOTDIR through a file", () => {
      const files = make();
      const dir = scratch();
      const deep = join(dir, "a", "b", "c");
      expect(files.mkdirs(deep, 0o700)).toBe(join(dir, "a"));
      expect(statSync(join(dir, "a", "b")).isDirectory()).toBe(true);
      expect(statSync(deep).mode & 0o077).toBe(0);
      expect(files.mkdirs(deep, 0o700)).toBeUndefined();
      expect(files.mkdirs(join(deep, "d"), 0o700)).toBe(join(deep, "d"));
      writeFileSync(join(dir, "file"), "x");
      expect(code(() => files.mkdirs(join(dir, "file", "below", "more"), 0o700))).toBe("ENOTDIR");
    });

    it("createExclusive: a new file only, never through a symlink or over a file", () => {
      const files = make();
      const dir = scratch();
      const fd = files.createExclusive(join(dir, "new"), 0o600);
      files.fchmod(fd, 0o640);
      files.writeAll(fd, new TextEncoder().encode("hello"));
      files.close(fd);
      expect(readFileSync(join(dir, "new"), "utf8")).toBe("hello");
      expect(statSync(join(dir, "new")).mode & 0o777).toBe(0o640);
      expect(code(() => files.createExclusive(join(dir, "new"), 0o600))).toBe("EEXIST");
      symlinkSync(join(dir, "elsewhere"), join(dir, "dangling"));
      expect(code(() => files.createExclusive(join(dir, "dangling"), 0o600))).toBe("EEXIST");
      expect(readdirSync(dir).sort()).toEqual(["dangling", "new"]); // the link's target was not created
    });

    it("chmod, rename, remove (a missing file is no error), and a failed rename names its code", () => {
      const files = make();
      const dir = scratch();
      writeFileSync(join(dir, "a"), "1");
      files.chmod(join(dir, "a"), 0o604);
      expect(statSync(join(dir, "a")).mode & 0o777).toBe(0o604);
      files.rename(join(dir, "a"), join(dir, "b"));
      expect(readdirSync(dir)).toEqual(["b"]);
      files.remove(join(dir, "b"));
      files.remove(join(dir, "b"));
      expect(readdirSync(dir)).toEqual([]);
      expect(code(() => files.rename(join(dir, "missing"), join(dir, "c")))).toBe("ENOENT");
      expect(code(() => files.chmod(join(dir, "missing"), 0o600))).toBe("ENOENT");
    });

    it("server info: one JSON line, parents created 0755, mode 0644, atomic, a symlink replaced not followed", () => {
      const files = make();
      expect(serverInfoLine(8080, 42)).toBe('{"port":8080,"pid":42}\n');
      const dir = scratch();
      const target = join(dir, "a", "b", "info.json");
      const umask = process.umask(0o077); // a strict umask: the file and folders are still readable
      try {
        writeServerInfo(files, target, 1234, 99);
      } finally {
        process.umask(umask);
      }
      expect(readFileSync(target, "utf8")).toBe('{"port":1234,"pid":99}\n');
      expect(lstatSync(target).mode & 0o777).toBe(0o644);
      expect(statSync(join(dir, "a")).mode & 0o777).toBe(0o755);
      expect(statSync(join(dir, "a", "b")).mode & 0o777).toBe(0o755);
      const victim = join(dir, "victim");
      writeFileSync(victim, "precious");
      const link = join(dir, "link.json");
      symlinkSync(victim, link);
      writeServerInfo(files, link, 1, 2);
      expect(readFileSync(victim, "utf8")).toBe("precious");
      expect(lstatSync(link).isSymbolicLink()).toBe(false);
      expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    });

    it("server info that cannot be written throws with a code and leaves no temporary file", () => {
      const files = make();
      const dir = scratch();
      writeFileSync(join(dir, "file"), "x");
      expect(code(() => writeServerInfo(files, join(dir, "file", "info.json"), 1, 2))).toMatch(/^(ENOTDIR|EEXIST)$/);
      mkdirSync(join(dir, "taken"));
      mkdirSync(join(dir, "taken", "sub"));
      expect(code(() => writeServerInfo(files, join(dir, "taken"), 1, 2))).toMatch(/^(EISDIR|ENOTEMPTY|EEXIST)$/);
      expect(readdirSync(dir).sort()).toEqual(["file", "taken"]);
    });

    it("server info is removed on exit only while it still names this process", () => {
      const files = make();
      const dir = scratch();
      const path = join(dir, "info.json");
      writeServerInfo(files, path, 1234, 99);
      removeServerInfo(files, path, 98); // another proxy's file: left alone
      expect(readFileSync(path, "utf8")).toBe('{"port":1234,"pid":99}\n');
      removeServerInfo(files, path, 99);
      expect(readdirSync(dir)).toEqual([]);
      removeServerInfo(files, path, 99); // already gone: no error
      writeFileSync(path, "not json");
      removeServerInfo(files, path, 99); // not ours to judge: left alone
      expect(readdirSync(dir)).toEqual(["info.json"]);
    });
  });
}

needs(process.platform === "linux" ? undefined : "Linux only")("the C library: a NUL in a path is refused, never cut short", () => {
  const files = libcFiles(openLibc("linux"));
  const dir = scratch();
  writeFileSync(join(dir, "a"), "x");
  expect(code(() => files.readFile(`${join(dir, "a")}\0.json`))).toBe("EINVAL");
  expect(code(() => files.createExclusive(`${join(dir, "b")}\0c`, 0o600))).toBe("EINVAL");
  expect(readdirSync(dir)).toEqual(["a"]);
});

test("errno names: Linux's numbers, as Node names them", () => {
  const known = constants.errno as Record<string, number>;
  for (const n of [1, 2, 4, 5, 9, 11, 12, 13, 17, 20, 21, 22, 24, 28, 30, 36, 39, 40, 122]) {
    const name = linuxErrnoName(n);
    if (process.platform === "linux") expect(known[name]).toBe(n);
    else expect(name).toMatch(/^E[A-Z]+$/);
  }
  expect(linuxErrnoName(1234)).toBe("ERRNO_1234");
  expect(new FileError("EACCES", "open").code).toBe("EACCES");
});

test("POSIX paths: the folder and the name, as node:path gives them up to repeated slashes", () => {
  const cases: Array<[string, string, string]> = [
    ["/a/b", "/a", "b"],
    ["/a/b/", "/a", "b"],
    ["a/b", "a", "b"],
    ["a", ".", "a"],
    ["a/", ".", "a"],
    ["./x", ".", "x"],
    ["/a", "/", "a"],
    ["/", "/", ""],
    ["", ".", ""],
    ["/a//b", "/a", "b"],
    ["//a", "/", "a"],
    ["/a/b//", "/a", "b"],
  ];
  for (const [path, dir, base] of cases) {
    expect([path, posixPath.dirname(path), posixPath.basename(path)]).toEqual([path, dir, base]);
  }
  expect(posixPath.join("/a", "b")).toBe("/a/b");
  expect(posixPath.join("/", "b")).toBe("/b");
  expect(posixPath.join(".", "b")).toBe("./b");
});

test("no module links node:fs or node:path at start-up: each is a require inside a function", async () => {
  // A static import anywhere in src/ is hoisted into the bundle's top and loaded before main.ts
  // runs: about 1.1 ms of every start (docs/performance.md, issue 20's sixth pass).
  const out = await Bun.build({ entrypoints: [join(import.meta.dir, "../../src/main.ts")], target: "bun", format: "esm" });
  expect(out.success).toBe(true);
  const text = await out.outputs[0]!.text();
  const statics = [...text.matchAll(/^import\s[^;]*?from\s*"([^"]+)"/gm)].map((m) => m[1]);
  expect(statics.length).toBeGreaterThan(0); // the pattern does see the bundle's imports (bun:ffi)
  expect(statics.filter((m) => !m!.startsWith("bun:"))).toEqual([]);
});
