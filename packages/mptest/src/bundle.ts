/**
 * Single-file builds of the entry points mptest starts fresh in every iteration (a worker thread
 * that exits or is terminated, a child process that is SIGKILLed). Loading the workspace packages
 * and capnp-ts module by module costs a fresh thread or process ~200 ms of CPU (resolution, the
 * CJS lexer, one compile per file); one esbuild bundle of the same code loads in ~25 ms. The code
 * that runs is the same built dist/ JavaScript, only concatenated.
 *
 * - {@link bundled}: an ES module (`new Worker(path)`).
 * - {@link bundledCjs}: a CommonJS bundle, for a worker thread that compiles it with a V8 code cache
 *   made by an earlier thread of the same process (bundle-loader.ts).
 * - {@link cachedChildArgv}: a CommonJS bundle plus its V8 code cache and a launcher
 *   (code-cache.ts), for a child process: `node launch.cjs <bundle> args...` calls the entry's
 *   exported `main(args)`. The code cache saves the child the parse and compile of the bundle.
 *
 * Where a bundle comes from (dist/bundles/, named after its entry; see bundle-build.ts):
 * - In a checkout (src/ next to dist/): built once per mptest process, on first use, from the
 *   current dist/ by a short-lived child process (bundle-build.ts, so esbuild never loads here),
 *   which writes whole files only (temporary name, then rename), so concurrent --jobs processes
 *   (and threads already loading the previous copy) never see a partial one, and a killed process
 *   leaves nothing outside dist/. A failed build throws, with esbuild's message on stderr.
 * - In an installed package (no src/: its dist/ never changes): the bundles built when the
 *   package was packed (`bundle-build.js --all`, the prepack script; docs/packaging.md). Nothing
 *   is built or written at run time, so the package needs neither esbuild nor a writable folder.
 *
 * Threading: main thread of the mptest process (a build blocks it for ~0.3 s, once per entry).
 */

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheFileOf } from "./code-cache.js";

const BUILD_JS = fileURLToPath(new URL("./bundle-build.js", import.meta.url));
const BUNDLES = fileURLToPath(new URL("./bundles/", import.meta.url));
/** A checkout builds its bundles from the current dist/; an installed package ships them. */
const CHECKOUT = existsSync(new URL("../src/bundle.ts", import.meta.url));

const built = new Map<string, string>();

function build(mode: "esm" | "cjs" | "cached", entry: URL): string {
  const src = fileURLToPath(entry);
  const key = `${mode}:${src}`;
  const known = built.get(key);
  if (known !== undefined) return known;
  let out: string;
  if (CHECKOUT) {
    mkdirSync(BUNDLES, { recursive: true });
    out = execFileSync(process.execPath, [BUILD_JS, mode, src, BUNDLES], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" }).trim();
  } else {
    out = join(BUNDLES, `${basename(src, ".js")}.${mode === "esm" ? "mjs" : "cjs"}`);
    const files = mode !== "cached" ? [out] : [out, cacheFileOf(out), join(BUNDLES, "launch.cjs")];
    const missing = files.find((f) => !existsSync(f));
    if (missing !== undefined) {
      throw new Error(`mptest: ${missing} is missing: this installed package was packed without its bundles (bundle-build.js --all)`);
    }
  }
  built.set(key, out);
  return out;
}

/** The path of a one-file ESM build of the built module `entry` (a dist/ .js file URL). */
export function bundled(entry: URL): string {
  return build("esm", entry);
}

/** The path of a one-file CommonJS build of the built module `entry` (for bundle-loader.ts). */
export function bundledCjs(entry: URL): string {
  return build("cjs", entry);
}

/**
 * The argv (after the Node executable) that starts a process running the built module `entry`
 * (a dist/ .js file URL that exports `main(args: string[])` and does nothing else when loaded)
 * from its cached bundle; append the arguments for `main`.
 */
export function cachedChildArgv(entry: URL): [launcher: string, bundle: string] {
  const bundle = build("cached", entry);
  return [join(BUNDLES, "launch.cjs"), bundle];
}
