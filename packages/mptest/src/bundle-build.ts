/**
 * `node bundle-build.js <entry.js> <out.mjs>`: writes a one-file ESM build of the built module
 * `entry` (see bundle.ts). Runs as a short-lived child process so that mptest's own processes
 * never load esbuild (its heap and its service process would stay for the whole run).
 *
 * `node bundle-build.js --all` (mptest's prepack script, build time): writes into dist/bundles/ a
 * bundle of every entry mptest starts fresh, that is every module of dist/children/ and
 * dist/workers/, so that the packed package ships them and needs no esbuild when installed.
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

import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
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

/** Writes a one-file ESM build of `entry` to `out`. */
async function bundle(entry: string, out: string): Promise<void> {
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    banner: { js: BANNER },
    write: false,
    logLevel: "error",
    // capnp-ts resolves from this package (a devDependency of mptest, the runtime's pinned version).
    plugins: [stubWs, oneCapnpNamespace(fileURLToPath(new URL(".", import.meta.url)))],
  });
  writeFileSync(out, r.outputFiles[0]!.contents);
}

/**
 * Every fresh-start entry (dist/children/*.js, dist/workers/*.js) into dist/bundles/. Each bundle
 * is written under a temporary name and renamed over the old one, as bundle.ts does, because an
 * mptest process of this checkout may be loading them meanwhile (the consumer test packs while
 * other test files run). A bundle whose entry is gone is removed, so none ships stale code; the
 * `*.tmp` files belong to running mptest processes and are left alone (not packed).
 */
async function bundleAll(): Promise<void> {
  const bundles = new URL("./bundles/", import.meta.url);
  mkdirSync(bundles, { recursive: true });
  const wanted = new Set<string>();
  for (const dir of ["children", "workers"]) {
    const base = new URL(`./${dir}/`, import.meta.url);
    for (const f of readdirSync(base).filter((n) => n.endsWith(".js")).sort()) {
      const name = f.replace(/\.js$/, ".mjs");
      // bundled() names a bundle by its entry's file name: two entries must not share one.
      if (wanted.has(name)) throw new Error(`bundle-build: two entries named ${f} (children/ and workers/)`);
      wanted.add(name);
      const out = fileURLToPath(new URL(name, bundles));
      const tmp = `${out}.${process.pid}.tmp`;
      await bundle(fileURLToPath(new URL(f, base)), tmp);
      renameSync(tmp, out);
      process.stdout.write(`mptest: bundled ${dir}/${f} into ${out}\n`);
    }
  }
  for (const f of readdirSync(bundles)) if (f.endsWith(".mjs") && !wanted.has(f)) rmSync(new URL(f, bundles));
}

const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--all") {
  await bundleAll();
} else if (args.length === 2) {
  await bundle(args[0]!, args[1]!);
} else {
  process.stderr.write("usage: bundle-build.js <entry.js> <out.mjs> | bundle-build.js --all\n");
  process.exit(2);
}
