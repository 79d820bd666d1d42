// The GitHub Action's post step: stop the proxy the main step started (SIGTERM, its orderly exit)
// and print its log, so that why a request failed is in the job's output.
import { existsSync, readFileSync } from "node:fs";

const pid = Number(process.env.STATE_pid);
const log = process.env.STATE_log;
if (!pid) {
  console.log("responses-api-proxy was not started: nothing to stop");
  process.exit(0);
}
const alive = () => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // An exited process nobody has reaped yet (a zombie) still takes signal 0.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return process.platform !== "linux";
  }
};
let outcome = "had already exited";
if (alive()) {
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (alive()) {
    process.kill(pid, "SIGKILL");
    outcome = "did not stop within 10 s of SIGTERM and was killed";
  } else outcome = "stopped";
}
console.log(`::group::responses-api-proxy log (${outcome})`);
if (log && existsSync(log)) console.log(readFileSync(log, "utf8").trimEnd());
console.log("::endgroup::");
if (outcome !== "stopped") console.log(`::warning title=responses-api-proxy::the proxy ${outcome}`);
