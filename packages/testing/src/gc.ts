/**
 * Forced garbage collection for capability-lifetime tests. Uses `global.gc` when Node runs with
 * --expose-gc (mptest's --jobs children do); otherwise turns the flag on at run time
 * (`v8.setFlagsFromString`) and takes `gc` from a fresh context, a documented V8 technique.
 *
 * Threading: any thread (each isolate has its own gc).
 */

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

let gcFn: (() => void) | undefined;

export function getGc(): () => void {
  if (gcFn) return gcFn;
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === "function") return (gcFn = g);
  setFlagsFromString("--expose-gc");
  const fn = runInNewContext("gc") as unknown;
  if (typeof fn !== "function") throw new Error("cannot enable garbage collection (run node with --expose-gc)");
  return (gcFn = fn as () => void);
}

/**
 * Collects garbage and lets FinalizationRegistry callbacks run: they are queued as tasks after a
 * GC, so this alternates gc() with turns of the event loop, `rounds` times.
 */
export async function forceGc(rounds = 3): Promise<void> {
  const gc = getGc();
  for (let i = 0; i < rounds; i++) {
    gc();
    await new Promise<void>((r) => setImmediate(r));
  }
}
