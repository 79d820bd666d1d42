// Start-up after hardening, in the SPEC's order: command line, environment, key, listener,
// server info, "listening" line. Every failure is one line on stderr and a documented exit code.
import { isatty } from "node:tty";
import { API_KEY, ApiKeyError, MESSAGES, readSecret, stdinReader } from "./api-key";
import { isInsecureUpstream, parseArgs, UsageError, USAGE, VERSION } from "./cli";
import { Dumper, prepareDumpDir } from "./dump";
import { unsafeEnvironment } from "./environment";
import { describeError } from "./errors";
import type { Credential } from "./forward";
import { OidcCredential, OidcError, REQUEST_TOKEN } from "./github-oidc";
import type { HardeningReport } from "./hardening";
import { stderrLine } from "./log";
import { startProxy } from "./server";
import { writeServerInfo } from "./server-info";

const NAME = "responses-api-proxy";
const SHUTDOWN_GRACE_MS = 5000;

function fail(message: string, code: number): never {
  stderrLine(`${NAME}: ${message}`);
  process.exit(code);
}

const warn = (message: string) => stderrLine(`${NAME}: warning: ${message}`);

export async function start(argv: string[], hardening: HardeningReport): Promise<void> {
  // 1. Command line: a usage error exits 2 before the key is read.
  let command;
  try {
    command = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    fail(`${err.message}\nTry '${NAME} --help' for more information.`, 2);
  }
  if (command.kind === "help") {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (command.kind === "version") {
    process.stdout.write(`${VERSION}\n`);
    process.exit(0);
  }
  const { config } = command;

  // 2. What hardening could not do, and a key inherited through the environment.
  for (const w of hardening.warnings) warn(w);
  if (hardening.inheritedKey) {
    warn("OPENAI_API_KEY was set in the proxy's environment and has been removed; start it with `env -u OPENAI_API_KEY`");
  }

  const refusal = unsafeEnvironment(process.env);
  if (refusal) fail(refusal, 1);

  let dumper: Dumper | undefined;
  if (config.dumpDir) {
    try {
      prepareDumpDir(config.dumpDir);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      fail(`cannot use --dump-dir: ${e.code ? `${config.dumpDir} (${e.code})` : e.message}`, 1);
    }
    dumper = new Dumper(config.dumpDir, (line) => stderrLine(`${NAME}: ${line}`));
  }

  // 3. The key (or, with --github-oidc, the runner's request token): stdin only, never a terminal.
  if (isatty(0)) fail(MESSAGES.terminal, 1);
  let secret: string;
  try {
    secret = readSecret(stdinReader(), config.oidc ? REQUEST_TOKEN : API_KEY);
  } catch (err) {
    if (err instanceof ApiKeyError) fail(err.message, 1);
    fail(`cannot read the ${config.oidc ? "request token" : "API key"} from stdin (${describeError(err)})`, 1);
  }
  let credential: Credential;
  if (config.oidc) {
    // The first exchange happens before the proxy reports itself listening.
    try {
      const oidc = await OidcCredential.start(config.oidc, secret, (line) => stderrLine(`${NAME}: ${line}`));
      credential = () => oidc.current();
    } catch (err) {
      fail(`github-oidc: ${err instanceof OidcError ? err.message : "unexpected error"}`, 1);
    }
  } else {
    const fixed = { authorization: secret }; // built once, shared by every request
    credential = () => fixed;
  }

  if (isInsecureUpstream(config.upstream)) {
    warn(`upstream ${config.upstream.origin} is plain http off loopback: the key crosses the network unencrypted`);
  }

  // 4. Listen on 127.0.0.1 only.
  let server: ReturnType<typeof startProxy>;
  const exitSoon = () => setTimeout(() => process.exit(0), 100);
  try {
    server = startProxy(config, credential, {
      log: config.quiet ? undefined : stderrLine,
      tap: dumper && ((req) => dumper.tap(req)),
      shutdown() {
        server.stop();
        exitSoon(); // lets the 200 reach the client first
      },
    });
  } catch (err) {
    fail(`cannot listen on 127.0.0.1:${config.port} (${describeError(err)})`, 1);
  }
  const port = server.port!;

  // 5. Signals: stop accepting, give in-flight exchanges a short grace, exit 0. Installed before
  // the proxy announces itself, so a SIGTERM sent the moment server-info appears is orderly.
  let stopping = false;
  const onSignal = () => {
    if (stopping) process.exit(0); // a second signal: do not wait
    stopping = true;
    server.stop(false);
    const deadline = Date.now() + SHUTDOWN_GRACE_MS;
    setInterval(() => {
      if (server.pendingRequests === 0 || Date.now() >= deadline) process.exit(0);
    }, 25);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  // 6. Server info, only once the listener is bound and signals are handled.
  if (config.serverInfo) {
    try {
      writeServerInfo(config.serverInfo, port, process.pid);
    } catch (err) {
      fail(`cannot write server info to ${config.serverInfo} (${describeError(err)})`, 1);
    }
  }
  stderrLine(`${NAME} listening on 127.0.0.1:${port}`);

  // A bug must never print a stack trace (which could quote a request) nor stop the service.
  process.on("uncaughtException", (err) => stderrLine(`${NAME}: internal error (${describeError(err)})`));
  process.on("unhandledRejection", (err) => stderrLine(`${NAME}: internal error (${describeError(err)})`));
}
