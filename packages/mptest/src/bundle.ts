/**
 * Single-file builds of the entry points mptest starts fresh in every iteration (a worker thread
 * that exits or is terminated, a child process that is SIGKILLed). Loading the workspace packages
 * and capnp-ts module by module costs a fresh thread or process ~200 ms of CPU (resolution, the
 * CJS lexer, one compile per file); one esbuild bundle of the same code loads in ~25 ms. The code
 * that runs is the same built dist/ JavaScript, only concatenated.
 *
 * - {@link bundled}: an ES module, for a worker thread (`new Worker(path)`).
 * - {@link cachedChildArgv}: a CommonJS bundle plus its V8 code cache and a launcher
 *   (code-cache.ts), for a child process: `node launch.cjs <bundle> args...` calls the entry's
 *   exported `main(args)`. The code cache saves the child the parse and compile of the bundle.
 *
 * Each is built once per mptest process, on first use, by a short-lived child process
 * (bundle-build.ts, so esbuild never loads here), into dist/bundles/ next to the built code
 * (whole files only: see bundle-build.ts). A failed build throws, with esbuild's message on stderr.
 *
 * Threading: main thread of the mptest process (a build blocks it for ~0.3 s, once per entry).
 */

import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const BUILD_JS = fileURLToPath(new URL("./bundle-build.js", import.meta.url));
const BUNDLES = fileURLToPath(new URL("./bundles/", import.meta.url));

const built = new Map<string, string>();

function build(mode: "esm" | "cached", entry: URL): string {
  const src = fileURLToPath(entry);
  const key = `${mode}:${src}`;
  const known = built.get(key);
  if (known !== undefined) return known;
  mkdirSync(BUNDLES, { recursive: true });
  const out = execFileSync(process.execPath, [BUILD_JS, mode, src, BUNDLES], {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  }).trim();
  built.set(key, out);
  return out;
}

/** The path of a one-file ESM build of the built module `entry` (a dist/ .js file URL). */
export function bundled(entry: URL): string {
  return build("esm", entry);
}

/**
 * The argv (after the Node executable) that starts a process running the built module `entry`
 * (a dist/ .js file URL that exports `main(args: string[])` and does nothing else when loaded)
 * from its cached bundle; append the arguments for `main`.
 */
export function cachedChildArgv(entry: URL): [launcher: string, bundle: string] {
  const bundle = build("cached", entry);
  return [join(dirname(bundle), "launch.cjs"), bundle];
}
