// Entry point. The order below is the SPEC's start-up sequence and is security-critical:
// hardening runs before any other module of ours is loaded and before the key exists.
import { ensureFetchCapacity } from "./upstream/fetch-capacity"; // imports nothing
import { hardenProcess } from "./security/hardening"; // imports only bun:ffi

ensureFetchCapacity(); // may re-execute this binary: before hardening, which exec would undo
const hardening = hardenProcess();
const { start } = await import("./start");
await start(process.argv.slice(2), hardening);
