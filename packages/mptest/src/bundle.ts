/**
 * Single-file builds of the entry points mptest starts fresh in every iteration (a worker thread
 * that exits or is terminated, a child process that is SIGKILLed). Loading the workspace packages
 * and capnp-ts module by module costs a fresh thread or process ~200 ms of CPU (resolution, the
 * CJS lexer, one compile per file); one esbuild bundle of the same code loads in ~25 ms. The code
 * that runs is the same built dist/ JavaScript, only concatenated.
 *
 * Each bundle is built once per mptest process, on first use, into a temporary directory that is
 * removed when the process exits.
 *
 * Threading: main thread of the mptest process (a build blocks it for ~100 ms, once).
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";

let dir: string | undefined;
const built = new Map<string, string>();

// CJS code inside an ESM bundle (capnp-ts) requires Node builtins: give it a real `require`.
const BANNER = 'import { createRequire as __mptestCreateRequire } from "node:module";\n' +
  "const require = __mptestCreateRequire(import.meta.url);";

/** The path of a one-file ESM build of the built module `entry` (a dist/ .js file URL). */
export function bundled(entry: URL): string {
  const src = fileURLToPath(entry);
  const known = built.get(src);
  if (known !== undefined) return known;
  if (dir === undefined) {
    const made = mkdtempSync(join(tmpdir(), "mptest-bundle-"));
    dir = made;
    process.once("exit", () => rmSync(made, { recursive: true, force: true }));
  }
  const out = join(dir, `${built.size}-${basename(src, ".js")}.mjs`);
  const r = buildSync({
    entryPoints: [src],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    banner: { js: BANNER },
    write: false,
    logLevel: "silent",
  });
  writeFileSync(out, r.outputFiles[0]!.contents);
  built.set(src, out);
  return out;
}
