import { expect, test } from "bun:test";
import { requestedConcurrency } from "../../src/upstream/fetch-capacity";

test("finds --max-concurrent in both spellings, the last one winning", () => {
  expect(requestedConcurrency([])).toBeUndefined();
  expect(requestedConcurrency(["--port", "8080"])).toBeUndefined();
  expect(requestedConcurrency(["--max-concurrent", "1000"])).toBe(1000);
  expect(requestedConcurrency(["--max-concurrent=2000", "--quiet"])).toBe(2000);
  expect(requestedConcurrency(["--max-concurrent", "10", "--max-concurrent", "300"])).toBe(300);
});

test("anything malformed is left to the real parser", () => {
  expect(requestedConcurrency(["--max-concurrent"])).toBeUndefined();
  expect(requestedConcurrency(["--max-concurrent", "lots"])).toBeUndefined();
  expect(requestedConcurrency(["--max-concurrent", "-5"])).toBeUndefined();
  expect(requestedConcurrency(["--max-concurrent", "1234567"])).toBeUndefined();
  expect(requestedConcurrency(["--", "--max-concurrent", "999"])).toBeUndefined();
});
