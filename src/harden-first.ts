// Start-up's first step, run by importing this module. SECURITY-CRITICAL.
//
// main.ts imports this module before anything else. ES modules evaluate their imports in order,
// each one completely before the next, so this body runs before the top-level code of any other
// module of ours (start.ts and all it imports), and before stdin is read. What must not change:
// - this module and its imports stay free of anything that handles input (fetch-capacity.ts
//   imports only proxy-env.ts; hardening.ts only libc.ts, which imports only bun:ffi);
// - main.ts imports it first, and nothing of ours is imported dynamically (tests/unit/start-order.test.ts).
import { ensureFetchCapacity } from "./upstream/fetch-capacity";
import { hardenProcess } from "./security/hardening";

ensureFetchCapacity(); // may re-execute this binary: before hardening, which exec would undo
export const hardening = hardenProcess();
