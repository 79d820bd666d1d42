// Log lines on stderr. A request line names method, target path, status, duration and byte
// counts: never a header value, a body, a query string or the key.

const MAX_TARGET = 120;

/** The target's path, with any query replaced by `?…` (it may hold secrets) and control bytes escaped. */
export function printableTarget(target: string): string {
  const q = target.search(/[?#]/);
  let path = q < 0 ? target : `${target.slice(0, q)}${target[q]}…`;
  if (path.length > MAX_TARGET) path = `${path.slice(0, MAX_TARGET)}…`;
  return path.replace(/[^\x21-\x7e…]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

export function requestLine(
  method: string,
  target: string,
  status: number,
  ms: number,
  bytesIn: number,
  bytesOut: number,
  outcome?: string,
): string {
  const m = /^[A-Z]{1,16}$/.test(method) ? method : "?";
  const tail = outcome && outcome !== "complete" ? ` ${outcome}` : "";
  return `${new Date().toISOString()} ${m} ${printableTarget(target)} ${status} ${ms.toFixed(1)}ms in=${bytesIn}B out=${bytesOut}B${tail}`;
}

export function stderrLine(line: string): void {
  process.stderr.write(`${line}\n`);
}
