// Only with an HTTP(S) proxy configured does the upstream go through Bun's fetch (transport.ts);
// the proxy's own HTTP/1.1 client has no such cap. Bun's fetch runs at most 256 requests at once
// unless BUN_CONFIG_MAX_HTTP_REQUESTS says otherwise, and it reads that variable only when the
// runtime starts (measured with 1.4.5: setting it later through process.env or setenv(3) changes
// nothing). Past that cap a new
// exchange would silently wait for an old stream to end. So when --max-concurrent asks for more
// than 256, the compiled binary's very first act is to re-execute itself with the variable set
// to match. This runs before hardening on purpose: exec resets PR_SET_DUMPABLE and mlockall, and
// nothing has been read from stdin yet; exec keeps the pid and every descriptor. It costs one more
// runtime start (~5 ms measured). An admin's own BUN_CONFIG_MAX_HTTP_REQUESTS is respected.
import { proxyConfigured } from "./proxy-env"; // imports nothing

export const BUN_FETCH_DEFAULT_CAP = 256;

/**
 * The --max-concurrent value in argv when it is a well-formed number, else undefined (the real
 * parser reports malformed flags later; this scan only decides whether to re-execute).
 */
export function requestedConcurrency(argv: string[]): number | undefined {
  let value: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") break;
    if (arg === "--max-concurrent") value = argv[++i];
    else if (arg.startsWith("--max-concurrent=")) value = arg.slice("--max-concurrent=".length);
  }
  return value !== undefined && /^\d{1,5}$/.test(value) ? Number(value) : undefined;
}

export function ensureFetchCapacity(): void {
  const wanted = requestedConcurrency(process.argv.slice(2));
  if (wanted === undefined || wanted <= BUN_FETCH_DEFAULT_CAP) return;
  if (!proxyConfigured(process.env)) return; // fetch is not the transport
  if (process.env.BUN_CONFIG_MAX_HTTP_REQUESTS !== undefined) return; // the admin's own value
  if (!Bun.main.startsWith("/$bunfs/")) return; // only the standalone binary re-executes itself
  if (typeof process.execve !== "function") return; // Windows: carry on with Bun's cap
  try {
    process.execve(process.execPath, [process.execPath, ...process.argv.slice(2)], {
      ...process.env,
      BUN_CONFIG_MAX_HTTP_REQUESTS: String(Math.min(wanted, 65535)),
    });
  } catch {
    // exec failed: carry on with Bun's cap of 256
  }
}
