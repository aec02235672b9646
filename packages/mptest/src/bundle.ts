/**
 * Single-file builds of the entry points mptest starts fresh in every iteration (a worker thread
 * that exits or is terminated, a child process that is SIGKILLed). Loading the workspace packages
 * and capnp-ts module by module costs a fresh thread or process ~200 ms of CPU (resolution, the
 * CJS lexer, one compile per file); one esbuild bundle of the same code loads in ~25 ms. The code
 * that runs is the same built dist/ JavaScript, only concatenated.
 *
 * Where a bundle comes from (dist/bundles/<entry>.mjs):
 * - In a checkout (src/ next to dist/): built once per mptest process, on first use, from the
 *   current dist/ by a short-lived child process (bundle-build.ts, so esbuild never loads here).
 *   The build goes to a per-process temporary name that is then renamed over the bundle, so
 *   concurrent --jobs processes (and threads already loading the previous copy) only ever see a
 *   whole file, and a killed process leaves nothing outside dist/. A failed build throws, with
 *   esbuild's message on stderr.
 * - In an installed package (no src/: its dist/ never changes): the bundles built when the
 *   package was packed (`bundle-build.js --all`, the prepack script; docs/packaging.md). Nothing
 *   is built or written at run time, so the package needs neither esbuild nor a writable folder.
 *
 * Threading: main thread of the mptest process (a build blocks it for ~0.3 s, once per entry).
 */

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";

const BUILD_JS = fileURLToPath(new URL("./bundle-build.js", import.meta.url));
const BUNDLES = new URL("./bundles/", import.meta.url);
/** A checkout builds its bundles from the current dist/; an installed package ships them. */
const CHECKOUT = existsSync(new URL("../src/bundle.ts", import.meta.url));

const built = new Map<string, string>();

/** The path of a one-file ESM build of the built module `entry` (a dist/ .js file URL). */
export function bundled(entry: URL): string {
  const src = fileURLToPath(entry);
  const known = built.get(src);
  if (known !== undefined) return known;
  const out = fileURLToPath(new URL(`${basename(src, ".js")}.mjs`, BUNDLES));
  if (CHECKOUT) {
    mkdirSync(BUNDLES, { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync(process.execPath, [BUILD_JS, src, tmp], { stdio: ["ignore", "ignore", "inherit"] });
    renameSync(tmp, out);
  } else if (!existsSync(out)) {
    throw new Error(`mptest: ${out} is missing: this installed package was packed without its bundles (bundle-build.js --all)`);
  }
  built.set(src, out);
  return out;
}
