/**
 * `node bundle-build.js <entry.js> <out.mjs>`: writes a one-file ESM build of the built module
 * `entry` (see bundle.ts). Runs as a short-lived child process so that mptest's own processes
 * never load esbuild (its heap and its service process would stay for the whole run).
 *
 * Threading: main thread of its own process.
 */

import { writeFileSync } from "node:fs";
import { buildSync } from "esbuild";

// CJS code inside an ESM bundle (capnp-ts) requires Node builtins: give it a real `require`.
const BANNER =
  'import { createRequire as __mptestCreateRequire } from "node:module";\n' +
  "const require = __mptestCreateRequire(import.meta.url);";

const [entry, out] = process.argv.slice(2);
if (entry === undefined || out === undefined) {
  process.stderr.write("usage: bundle-build.js <entry.js> <out.mjs>\n");
  process.exit(2);
}
const r = buildSync({
  entryPoints: [entry],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  banner: { js: BANNER },
  write: false,
  logLevel: "error",
});
writeFileSync(out, r.outputFiles[0]!.contents);
