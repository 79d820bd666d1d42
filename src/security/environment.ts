// Environment variables that would expose or divert the key. SECURITY-CRITICAL. Pure.
//
// The proxy refuses to start (before the key is read) when one is set. Removing them is not
// enough: the Bun runtime reads several of them before any of our code runs (measured with
// Bun 1.4.5: deleting BUN_CONFIG_VERBOSE_FETCH from process.env at start-up does not stop it
// printing every upstream request, Authorization included, as a curl command; BUN_OPTIONS'
// --preload has already run by then). Refusing is also what an admin wants: the variable says
// they expected a behaviour the proxy will not give them.
// Variables that only concern the dynamic loader (LD_*, DYLD_*) are removed by hardening.ts, and
// OPENAI_API_KEY is wiped and removed with a warning (SPEC "The API key").

interface Rule {
  /** Does this variable (name, value) make the key readable or send it elsewhere? */
  matches(name: string, value: string): boolean;
  why: string;
}

const RULES: Rule[] = [
  {
    matches: (n, v) => n === "BUN_CONFIG_VERBOSE_FETCH" && !["", "0", "false"].includes(v.toLowerCase()),
    why: "it makes Bun print every upstream request, with the Authorization header, on stderr",
  },
  {
    matches: (n, v) => n === "NODE_TLS_REJECT_UNAUTHORIZED" && v === "0",
    why: "it turns off TLS certificate checks on the connection that carries the key (for a private CA use NODE_EXTRA_CA_CERTS)",
  },
  {
    matches: (n) => n === "SSLKEYLOGFILE",
    why: "it asks for TLS session keys to be written to a file, from which the key could be decrypted",
  },
  {
    matches: (n) => n === "BUN_OPTIONS",
    why: "it passes runtime options (such as --preload) that run code inside the proxy",
  },
  {
    matches: (n) => n.startsWith("BUN_INSPECT"),
    why: "it asks for a debugger, which can read the proxy's memory",
  },
  {
    matches: (n) => n.startsWith("BUN_JSC_") || n.startsWith("JSC_"),
    why: "it changes JavaScript engine internals of a process holding the key",
  },
];

/** The refusal message for the first variable that must not be set, or undefined. */
export function unsafeEnvironment(env: Record<string, string | undefined>): string | undefined {
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    const rule = RULES.find((r) => r.matches(name, value));
    // The value is never printed: it could be anything, a secret included.
    if (rule) return `refusing to start: ${name} is set, and ${rule.why}; unset it`;
  }
  return undefined;
}
