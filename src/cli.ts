// Command-line parsing: argv in, a validated Config (or a UsageError) out. Pure, no I/O.
import mri from "mri";
import { version } from "../package.json";
import { DEFAULT_TOKEN_URL, type OidcConfig } from "./security/github-oidc";
import type { LogFormat } from "./log";

export const VERSION: string = version;
export const DEFAULT_UPSTREAM = "https://api.openai.com/v1/responses";

export interface Config {
  port: number;
  serverInfo?: string;
  httpShutdown: boolean;
  upstream: URL;
  dumpDir?: string;
  quiet: boolean;
  logFormat: LogFormat;
  maxBodyBytes: number;
  maxConcurrent: number;
  maxHeaderBytes: number;
  clientTimeout: number;
  upstreamTimeout: number;
  /** --allow-user / --allow-group (names or numbers, as given): who may use the proxy. */
  allowUsers: string[];
  allowGroups: string[];
  /** --github-oidc: the credential is a refreshed OpenAI access token, not a key. */
  oidc?: OidcConfig;
  /** --websocket: relay WebSocket handshakes on /v1/responses (Codex's transport). */
  websocket: boolean;
  maxWebSocketMessageBytes: number;
}

export type Command = { kind: "help" } | { kind: "version" } | { kind: "run"; config: Config };

export class UsageError extends Error {}

/** The largest --max-header-bytes. */
export const MAX_HEADER_CEILING = 1024 * 1024;

// Defaults of the product's own limits (SPEC: "Flags beyond these … are the product's own additions").
export const DEFAULTS = {
  maxBodyBytes: 64 * 1024 * 1024,
  maxConcurrent: 256,
  maxHeaderBytes: 64 * 1024,
  clientTimeout: 30,
  upstreamTimeout: 0,
  maxWebSocketMessageBytes: 64 * 1024 * 1024,
} as const;

const OIDC_REQUIRED = ["oidc-audience", "identity-provider-id", "service-account-id", "github-oidc-request-url"];
const OIDC_FLAGS = [...OIDC_REQUIRED, "oidc-token-url"];
const STRING_FLAGS = [
  "port", "server-info", "upstream-url", "dump-dir", "log-format",
  "max-body-bytes", "max-concurrent", "max-header-bytes", "client-timeout", "upstream-timeout",
  "max-websocket-message-bytes", ...OIDC_FLAGS,
];
const BOOLEAN_FLAGS = ["http-shutdown", "quiet", "help", "version", "github-oidc", "websocket"];
/** String flags that may be given more than once. */
const LIST_FLAGS = ["allow-user", "allow-group"];

export const USAGE = `responses-api-proxy ${VERSION}
A strict local proxy for the OpenAI Responses API. It forwards only POST /v1/responses to the
upstream, adds "Authorization: Bearer <key>", and answers everything else with 403.
The key is read from standard input (first line), e.g.:

  printenv OPENAI_API_KEY | env -u OPENAI_API_KEY responses-api-proxy --server-info /tmp/server-info.json

Usage: responses-api-proxy [options]

  --port <PORT>             port on 127.0.0.1; 0 or omitted: an ephemeral port
  --server-info <FILE>      once listening, write {"port":N,"pid":N} and a newline to FILE (atomically)
  --http-shutdown           let GET /shutdown stop the proxy (exit code 0)
  --upstream-url <URL>      absolute http(s) URL to forward to, query string kept
                            (default ${DEFAULT_UPSTREAM})
  --dump-dir <DIR>          write every exchange as JSON files into DIR (mode 0700; secrets redacted)
  --quiet                   no log line for a successful request (refusals and failures are logged)
  --log-format <FORMAT>     text (default) or json: one JSON object per line, for log shippers
  --allow-user <NAME|UID>   only these local users may use the proxy (repeatable; Linux); others get 403
  --allow-group <NAME|GID>  only members of these groups may (repeatable; with --allow-user: either)
  --max-body-bytes <N>      largest request body; larger gets 413 (default ${DEFAULTS.maxBodyBytes})
  --max-concurrent <N>      most exchanges forwarded at once, 1-65535; more get 503
                            (default ${DEFAULTS.maxConcurrent}; behind an HTTP(S) proxy, above 256 the binary
                            re-executes itself once at start-up to raise Bun's own fetch limit to match)
  --max-header-bytes <N>    largest request head (request line and headers), 1024-${MAX_HEADER_CEILING};
                            larger gets 431 (default ${DEFAULTS.maxHeaderBytes})
  --client-timeout <S>      seconds a client may stay silent while sending its request body, and an
                            idle keep-alive connection stays open, 1-255 (default ${DEFAULTS.clientTimeout}); a request
                            head must be complete within about 12 s; a quiet upstream response is never cut
  --upstream-timeout <S>    seconds to wait for the upstream's response headers; 0: no limit
                            (default ${DEFAULTS.upstreamTimeout}); once the response starts it is never cut
  --websocket               also relay WebSocket connections to /v1/responses (Codex's transport) to
                            the upstream URL's ws(s): form, the key in the upstream handshake
  --max-websocket-message-bytes <N>  largest WebSocket message either way; larger closes the
                            connection with 1009 (default ${DEFAULTS.maxWebSocketMessageBytes})

Keyless CI with GitHub Actions (instead of a key, stdin carries the runner's
ACTIONS_ID_TOKEN_REQUEST_TOKEN; the job needs "permissions: id-token: write"):
  --github-oidc             exchange the job's GitHub OIDC identity for a short-lived OpenAI access
                            token, refreshed in the background, and inject that instead of a key
  --github-oidc-request-url <URL>   the runner's ACTIONS_ID_TOKEN_REQUEST_URL, as the trusted runner
                            environment gives it (https)
  --oidc-audience <AUDIENCE>        the audience of the GitHub ID token
  --identity-provider-id <ID>       the OpenAI workload identity provider
  --service-account-id <ID>         the OpenAI service account to act as
  --oidc-token-url <URL>    the OpenAI token endpoint (default ${DEFAULT_TOKEN_URL})

  -h, --help                this help
  -V, --version             the version

Exit codes: 0 shutdown or signal, 1 runtime error (key, bind, server info), 2 usage error,
5/6/7 process hardening failed (prctl / ptrace / setrlimit).`;

function integer(flag: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw)) throw new UsageError(`--${flag} needs a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`--${flag} must be between ${min} and ${max}, got ${raw}`);
  return n;
}

/** An https URL, or plain http to this machine's loopback (for local endpoints and tests). */
function parseSecureUrl(flag: string, raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--${flag} must be an absolute https URL, got "${raw}"`);
  }
  if (!(url.protocol === "https:" || (url.protocol === "http:" && isLoopback(url))) || !url.hostname) {
    throw new UsageError(`--${flag} must be an https URL (plain http only to 127.0.0.1 or localhost), got "${raw}"`);
  }
  if (url.username || url.password || url.hash) throw new UsageError(`--${flag} must not contain credentials or a fragment`);
  return url;
}

function parseOidc(str: (flag: string) => string | undefined, enabled: boolean): OidcConfig | undefined {
  if (!enabled) {
    const stray = OIDC_FLAGS.find((f) => str(f) !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --github-oidc`);
    return undefined;
  }
  const missing = OIDC_REQUIRED.find((f) => str(f) === undefined);
  if (missing) throw new UsageError(`--github-oidc needs --${missing}`);
  return {
    requestUrl: parseSecureUrl("github-oidc-request-url", str("github-oidc-request-url")!),
    audience: str("oidc-audience")!,
    identityProviderId: str("identity-provider-id")!,
    serviceAccountId: str("service-account-id")!,
    tokenUrl: parseSecureUrl("oidc-token-url", str("oidc-token-url") ?? DEFAULT_TOKEN_URL),
  };
}

export function parseUpstreamUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--upstream-url must be an absolute http(s) URL, got "${raw}"`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || !url.hostname) {
    throw new UsageError(`--upstream-url must be an absolute http(s) URL, got "${raw}"`);
  }
  // Credentials in the URL would be sent upstream as Basic auth beside the key: refuse them.
  if (url.username || url.password) throw new UsageError("--upstream-url must not contain a user name or password");
  if (url.hash) throw new UsageError("--upstream-url must not contain a fragment");
  return url;
}

export function parseArgs(argv: string[]): Command {
  const unknown: string[] = [];
  const alias: Record<string, string[]> = { help: ["h"], version: ["V"] };
  for (const f of [...STRING_FLAGS, ...LIST_FLAGS, ...BOOLEAN_FLAGS]) alias[f] ??= [];
  const args = mri(argv, {
    // mri pushes alias names into these arrays: hand it copies, never the module's constants.
    string: [...STRING_FLAGS, ...LIST_FLAGS],
    boolean: [...BOOLEAN_FLAGS],
    alias,
    unknown: (flag) => {
      unknown.push(flag);
      return false;
    },
  }) as Record<string, unknown> & { _: string[] };
  if (unknown.length) throw new UsageError(`unknown option ${unknown[0]}`);
  if (args._.length) throw new UsageError(`unexpected argument "${args._[0]}"`);

  const str = (flag: string): string | undefined => {
    const v = args[flag];
    if (v === undefined) return undefined;
    if (Array.isArray(v)) throw new UsageError(`--${flag} given more than once`);
    if (v === "") throw new UsageError(`--${flag} needs a value`);
    return String(v);
  };
  const list = (flag: string): string[] => {
    const v = args[flag];
    const values = v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String);
    for (const value of values) if (!/^[A-Za-z0-9._-][A-Za-z0-9._$-]*$/.test(value)) throw new UsageError(`--${flag} needs a user or group name or number, got "${value}"`);
    return values;
  };
  const bool = (flag: string): boolean => {
    const v = args[flag];
    if (Array.isArray(v)) return v.every(Boolean);
    return v === true;
  };

  if (bool("help")) return { kind: "help" };
  if (bool("version")) return { kind: "version" };

  const num = (flag: string, dflt: number, min: number, max: number): number => {
    const raw = str(flag);
    return raw === undefined ? dflt : integer(flag, raw, min, max);
  };
  const port = str("port");
  return {
    kind: "run",
    config: {
      port: port === undefined ? 0 : integer("port", port, 0, 65535),
      serverInfo: str("server-info"),
      httpShutdown: bool("http-shutdown"),
      upstream: parseUpstreamUrl(str("upstream-url") ?? DEFAULT_UPSTREAM),
      dumpDir: str("dump-dir"),
      quiet: bool("quiet"),
      logFormat: logFormat(str("log-format")),
      allowUsers: list("allow-user"),
      allowGroups: list("allow-group"),
      maxBodyBytes: num("max-body-bytes", DEFAULTS.maxBodyBytes, 1, Number.MAX_SAFE_INTEGER),
      maxConcurrent: num("max-concurrent", DEFAULTS.maxConcurrent, 1, 65535),
      maxHeaderBytes: num("max-header-bytes", DEFAULTS.maxHeaderBytes, 1024, MAX_HEADER_CEILING),
      clientTimeout: num("client-timeout", DEFAULTS.clientTimeout, 1, 255),
      upstreamTimeout: num("upstream-timeout", DEFAULTS.upstreamTimeout, 0, 86_400),
      oidc: parseOidc(str, bool("github-oidc")),
      websocket: bool("websocket"),
      maxWebSocketMessageBytes: websocketLimit(str, bool("websocket")),
    },
  };
}

function websocketLimit(str: (flag: string) => string | undefined, websocket: boolean): number {
  const raw = str("max-websocket-message-bytes");
  if (raw === undefined) return DEFAULTS.maxWebSocketMessageBytes;
  if (!websocket) throw new UsageError("--max-websocket-message-bytes needs --websocket");
  return integer("max-websocket-message-bytes", raw, 125, 2 ** 32 - 1);
}

function logFormat(raw: string | undefined): LogFormat {
  if (raw === undefined || raw === "text" || raw === "json") return raw ?? "text";
  throw new UsageError(`--log-format must be text or json, got "${raw}"`);
}

function isLoopback(url: URL): boolean {
  const h = url.hostname;
  return h === "localhost" || h === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** A plain-http upstream off loopback sends the key across the network unencrypted. */
export function isInsecureUpstream(url: URL): boolean {
  return url.protocol === "http:" && !isLoopback(url);
}

/**
 * Descriptors kept aside from the open-file limit: standard streams, the listener, the dump folder,
 * the netlink socket, the runtime's own, and a few idle pooled upstream sockets (at full
 * concurrency the pools are drained: every upstream socket is in an exchange).
 */
export const RESERVED_FILES = 64;

/**
 * The most exchanges an open-file limit lets the proxy carry (each holds two sockets: the client's
 * and the upstream's). Beyond it, connections would wait unaccepted with no answer and no log
 * line; capped here, the extra ones get a 503 that says why.
 */
export function concurrencyForOpenFiles(openFiles: number): number {
  return Math.max(1, Math.floor((openFiles - RESERVED_FILES) / 2));
}
