/**
 * `node bundle-build.js <entry.js> <out.mjs>`: writes a one-file ESM build of the built module
 * `entry` (see bundle.ts). Runs as a short-lived child process so that mptest's own processes
 * never load esbuild (its heap and its service process would stay for the whole run).
 *
 * Two plugins keep the bundle's load cost down (it is paid by every fresh worker thread and every
 * spawned child; ~95 ms of CPU before them, ~60 ms after, on this machine):
 * - `ws` is replaced by a stub whose classes throw when constructed. The entries bundled here
 *   never open a WebSocket; `@multiprocess-ts/node`'s index imports its WebSocket transport, and
 *   `ws` is CommonJS, so it cannot be tree-shaken and would load node:zlib, streams and http.
 * - every `import ... from "capnp-ts"` goes through one ESM re-export module, so capnp-ts's
 *   exports are copied into an ES namespace once, not once per importing module.
 *
 * Threading: main thread of its own process.
 */

import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

// CJS code inside an ESM bundle (capnp-ts) requires Node builtins: give it a real `require`.
const BANNER =
  'import { createRequire as __mptestCreateRequire } from "node:module";\n' +
  "const require = __mptestCreateRequire(import.meta.url);";

const WS_STUB = `class NotBundled {
  constructor() {
    throw new Error("mptest: ws is not part of this bundle (its entry never opens a WebSocket)");
  }
}
export const WebSocket = NotBundled;
export const WebSocketServer = NotBundled;
export default NotBundled;
`;

const stubWs: Plugin = {
  name: "mptest-stub-ws",
  setup(b) {
    b.onResolve({ filter: /^ws$/ }, () => ({ path: "ws", namespace: "mptest-stub" }));
    b.onLoad({ filter: /.*/, namespace: "mptest-stub" }, () => ({ contents: WS_STUB, loader: "js" }));
  },
};

const oneCapnpNamespace = (resolveDir: string): Plugin => ({
  name: "mptest-one-capnp-namespace",
  setup(b) {
    // The shim's own import resolves normally (namespace "mptest-capnp"); every other one to it.
    b.onResolve({ filter: /^capnp-ts$/ }, (a) =>
      a.namespace === "mptest-capnp" ? undefined : { path: "capnp-ts", namespace: "mptest-capnp" },
    );
    b.onLoad({ filter: /.*/, namespace: "mptest-capnp" }, () => ({
      contents: 'export * from "capnp-ts";',
      loader: "js",
      resolveDir,
    }));
  },
});

const [entry, out] = process.argv.slice(2);
if (entry === undefined || out === undefined) {
  process.stderr.write("usage: bundle-build.js <entry.js> <out.mjs>\n");
  process.exit(2);
}
const r = await build({
  entryPoints: [entry],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  banner: { js: BANNER },
  write: false,
  logLevel: "error",
  // capnp-ts resolves from this package (a dependency of mptest, the same pinned version).
  plugins: [stubWs, oneCapnpNamespace(fileURLToPath(new URL(".", import.meta.url)))],
});
writeFileSync(out, r.outputFiles[0]!.contents);
