/**
 * `node launch.cjs <bundle.cjs> args...`: starts a child process from a CommonJS bundle and its
 * V8 code cache (code-cache.ts; bundle-build.ts builds this file as `launch.cjs` next to the
 * bundles), then calls the bundle's exported `main(args)`. A failure to load, or a rejected
 * `main`, prints the error and exits with status 1, as a failing entry module would.
 *
 * Threading: the child process's main thread.
 */

import { loadCachedBundle } from "../code-cache.js";

function fail(e: unknown): void {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
}

const [bundle, ...args] = process.argv.slice(2);
if (bundle === undefined) {
  process.stderr.write("usage: launch.cjs <bundle.cjs> args...\n");
  process.exit(2);
}
try {
  const { main } = loadCachedBundle(bundle).exports;
  if (typeof main !== "function") throw new TypeError(`${bundle} does not export a main(args) function`);
  (main as (args: string[]) => Promise<void>)(args).then(undefined, fail);
} catch (e) {
  fail(e);
}
