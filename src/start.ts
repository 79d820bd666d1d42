// Start-up after hardening, in the SPEC's order: command line, environment, key, listener,
// server info, "listening" line. Every failure is one line on stderr and a documented exit code.
import { API_KEY, ApiKeyError, MESSAGES, readSecret, stdinReader } from "./security/api-key";
import { AuthorizationLine } from "./security/authorization";
import { type Config, concurrencyForOpenFiles, isInsecureUpstream, parseArgs, RESERVED_FILES, UsageError, USAGE, VERSION } from "./cli";
import { Dumper, prepareDumpDir } from "./dump";
import { unsafeEnvironment } from "./security/environment";
import { describeError } from "./errors";
import { type Files, systemFiles } from "./files";
import type { Credential } from "./forward";
import { OidcCredential, OidcError, REQUEST_TOKEN } from "./security/github-oidc";
import type { HardeningReport } from "./security/hardening";
import { Logger, NAME, stderrLine } from "./log";
import { startProxy } from "./server";
import { openPeerUsers, type PeerUsers } from "./security/peer-user";
import { requestStart } from "./upstream/http1";
import { proxyConfigured } from "./upstream/proxy-env";
import { removeServerInfo, writeServerInfo } from "./server-info";
import { parseGroup, parsePasswd, UserError, UserPolicy } from "./security/users";

const SHUTDOWN_GRACE_MS = 5000;

const readIfThere = (files: Files, path: string) => {
  const bytes = files.readFile(path);
  return bytes ? new TextDecoder().decode(bytes) : "";
};
/** How long stdin may stay silent before the proxy says it is waiting for the key. */
const KEY_NOTICE_MS = 2000;

/** --max-concurrent, lowered (with a warning) to what the open-file limit can carry. */
function withinOpenFiles(config: Config, openFiles: number | undefined, log: Logger): Config {
  if (openFiles === undefined) return config;
  const cap = concurrencyForOpenFiles(openFiles);
  if (config.maxConcurrent <= cap) return config;
  log.warning(
    `--max-concurrent ${config.maxConcurrent} needs ${2 * config.maxConcurrent + RESERVED_FILES} open files and the limit is ${openFiles}: ` +
      `at most ${cap} exchanges at once, more get 503; raise the hard limit (systemd: LimitNOFILE=, shell: ulimit -Hn) to allow more`,
  );
  return { ...config, maxConcurrent: cap };
}

export async function start(argv: string[], hardening: HardeningReport): Promise<void> {
  // 1. Command line: a usage error exits 2 before the key is read (always as text: the log
  // format is one of the arguments that did not parse).
  let command;
  try {
    command = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    stderrLine(`${NAME}: ${err.message}\nTry '${NAME} --help' for more information.`);
    process.exit(2);
  }
  if (command.kind === "help") {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (command.kind === "version") {
    process.stdout.write(`${VERSION}\n`);
    process.exit(0);
  }
  const log = new Logger(command.config.logFormat, command.config.quiet);
  // Start-up's file calls: through the hardening's C library handle on Linux, not node:fs (files.ts).
  const files = systemFiles(hardening.libc);
  const config = withinOpenFiles(command.config, hardening.openFiles, log);
  const fail: (message: string, code: number) => never = (message, code) => {
    log.error(message, code);
    process.exit(code);
  };

  // 2. What hardening could not do, and a key inherited through the environment.
  for (const w of hardening.warnings) log.warning(w);
  if (hardening.inheritedKey) {
    log.warning("OPENAI_API_KEY was set in the proxy's environment and has been removed; start it with `env -u OPENAI_API_KEY`");
  }

  if (hardening.loaderAtLaunch.length) {
    fail(
      `refusing to start: ${hardening.loaderAtLaunch.join(", ")} was set at launch, so the dynamic loader ran code of ` +
        "the caller's choosing inside this process before it could refuse; start it with a cleared environment " +
        "(env -i PATH=/usr/bin:/bin …, see the README)",
      1,
    );
  }
  const refusal = unsafeEnvironment(process.env);
  if (refusal) fail(refusal, 1);
  if (config.websocket && proxyConfigured(process.env)) {
    fail("--websocket cannot reach the upstream through an HTTP(S) proxy (HTTPS_PROXY / HTTP_PROXY is set); clients fall back to POST without it", 1);
  }

  // Local users: names for the log, and who may use the key (before the key is read).
  let users: UserPolicy;
  try {
    const accounts = parsePasswd(readIfThere(files, "/etc/passwd"));
    // Only --allow-group needs the groups (names come from /etc/passwd): not read otherwise.
    const groups = config.allowGroups.length ? parseGroup(readIfThere(files, "/etc/group")) : [];
    users = new UserPolicy(accounts, groups, config.allowUsers, config.allowGroups);
  } catch (err) {
    fail(err instanceof UserError ? err.message : `cannot read the local users (${describeError(err)})`, 1);
  }
  let peerUsers: PeerUsers | undefined;
  let peersOpened = false;
  const peers = () => {
    if (!peersOpened) {
      peersOpened = true;
      peerUsers = openPeerUsers(hardening.libc);
    }
    return peerUsers;
  };
  if (users.restricted && !peers()) {
    fail("--allow-user and --allow-group need Linux's socket table to tell which local user opened a connection; this platform cannot tell", 1);
  }

  let dumper: Dumper | undefined;
  if (config.dumpDir) {
    let base: string;
    try {
      base = prepareDumpDir(config.dumpDir);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      fail(`cannot use --dump-dir: ${e.code ? `${config.dumpDir} (${e.code})` : e.message}`, 1);
    }
    dumper = new Dumper(base, config.dumpDir, (line) => log.warning(line));
  }

  // 3. The key (or, with --github-oidc, the runner's request token): stdin only, never a terminal.
  const terminal = hardening.stdinIsTerminal ?? (() => (require("node:tty") as typeof import("node:tty")).isatty(0));
  if (terminal()) fail(MESSAGES.terminal, 1);
  // A silent stdin is most often a forgotten pipe: say so once, and keep waiting.
  if (hardening.stdinReady && !hardening.stdinReady(KEY_NOTICE_MS)) {
    log.info(config.oidc ? "waiting for the GitHub OIDC request token on standard input (it keeps waiting)" : MESSAGES.waiting);
  }
  let secret: Uint8Array;
  try {
    secret = readSecret(stdinReader(files), config.oidc ? REQUEST_TOKEN : API_KEY);
  } catch (err) {
    if (err instanceof ApiKeyError) fail(err.message, 1);
    fail(`cannot read the ${config.oidc ? "request token" : "API key"} from stdin (${describeError(err)})`, 1);
  }
  let credential: Credential;
  // Every request head starts the same way: it shares the key's buffer, so that a request goes
  // upstream in two writes with no copy of the key (authorization.ts).
  const headStart = requestStart(config.upstream);
  if (config.oidc) {
    // The first exchange happens before the proxy reports itself listening.
    try {
      // The request token goes to GitHub through fetch, which takes header values as strings.
      const requestAuthorization = new TextDecoder("latin1").decode(secret);
      secret.fill(0);
      const oidc = await OidcCredential.start(config.oidc, requestAuthorization, headStart, log);
      credential = () => oidc.current();
    } catch (err) {
      fail(`github-oidc: ${err instanceof OidcError ? err.message : "unexpected error"}`, 1);
    }
  } else {
    // The one copy of the key from here on: every request writes this same line (authorization.ts).
    const fixed = { authorization: AuthorizationLine.from(secret, headStart) };
    secret.fill(0);
    credential = () => fixed;
  }

  if (isInsecureUpstream(config.upstream)) {
    log.warning(`upstream ${config.upstream.origin} is plain http off loopback: the key crosses the network unencrypted`);
  }

  // 4. Listen on 127.0.0.1 only.
  let proxy: ReturnType<typeof startProxy>;
  let websocketsCut = 0;
  // Every orderly exit: one line with its cause and the exchanges it cut, and no server-info
  // file left behind that names a port anyone could take next.
  const exit = (cause: string) => {
    log.stop({ cause, cut: proxy.server.exchanges + websocketsCut });
    if (config.serverInfo) removeServerInfo(files, config.serverInfo, process.pid);
    process.exit(0);
  };
  try {
    proxy = startProxy(config, credential, {
      log,
      users,
      peers,
      tap: dumper && ((req, user) => dumper.tap(req, user)),
      websocketTap: dumper && ((req, user) => dumper.websocket(req, user)),
      shutdown() {
        proxy.server.stop();
        websocketsCut += proxy.closeWebSockets();
        setTimeout(() => exit("/shutdown"), 100); // lets the 200 reach the client first
      },
    });
  } catch (err) {
    fail(`cannot listen on 127.0.0.1:${config.port} (${describeError(err)})`, 1);
  }
  const port = proxy.server.port;

  // 5. Signals: stop accepting, give in-flight exchanges a short grace, exit 0. Installed before
  // the proxy announces itself, so a SIGTERM sent the moment server-info appears is orderly.
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) exit(signal); // a second signal: do not wait
    stopping = true;
    proxy.server.stop();
    websocketsCut += proxy.closeWebSockets(); // a relayed WebSocket has no natural end: both sides get 1001
    const deadline = Date.now() + SHUTDOWN_GRACE_MS;
    setInterval(() => {
      if (proxy.server.exchanges === 0 || Date.now() >= deadline) exit(signal);
    }, 25);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  // 6. Server info, only once the listener is bound and signals are handled.
  if (config.serverInfo) {
    try {
      writeServerInfo(files, config.serverInfo, port, process.pid);
    } catch (err) {
      fail(`cannot write server info to ${config.serverInfo} (${describeError(err)})`, 1);
    }
  }
  log.start({
    version: VERSION,
    listen: `127.0.0.1:${port}`,
    upstream: config.upstream.origin,
    credential: config.oidc ? "github-oidc" : "key",
    hardening: hardening.applied,
  });

  // A bug must never print a stack trace (which could quote a request) nor stop the service.
  process.on("uncaughtException", (err) => log.warning(`internal error (${describeError(err)})`));
  process.on("unhandledRejection", (err) => log.warning(`internal error (${describeError(err)})`));
}
