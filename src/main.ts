// Entry point: the SPEC's start-up sequence. Its order is security-critical: harden-first.ts
// hardens the process on import, before any other module of ours runs and before the key exists.
//
// Both imports are static on purpose. A dynamic import (as here until issue 20's seventh pass)
// makes the bundler wrap every module it reaches in a lazy initialiser; the one function behind
// those wrappers then ran often enough at start-up to be JIT-compiled there, 0.2-0.8 ms of every
// start (docs/performance.md).
import { hardening } from "./harden-first";
import { start } from "./start";

await start(process.argv.slice(2), hardening);
