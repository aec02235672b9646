/**
 * `node bundle-build.js <esm|cached> <entry.js> <outDir>`: writes a one-file build of the built
 * module `entry` into `outDir` (see bundle.ts) and prints the path of what to start on stdout.
 * Runs as a short-lived child process so that mptest's own processes never load esbuild (its
 * heap and its service process would stay for the whole run).
 *
 * - `esm`: `<name>.mjs`, an ES module.
 * - `cjs`: `<name>.cjs`, a CommonJS bundle (a worker thread's entry, which the thread compiles with
 *   a V8 code cache made at run time by an earlier thread: bundle-loader.ts).
 * - `cached`: `<name>.cjs`, a CommonJS bundle whose entry exports `main(args)`, stored in its
 *   module wrapper under a first line with its content hash (code-cache.ts `wrapBundle`), its V8
 *   code cache `<name>.cjs.cache` (starting with the same hash, so a cache is never used with
 *   other bytes, whichever `--jobs` process wrote which file) and the launcher `launch.cjs` that
 *   starts a process from the two (children/launch.ts). To make the cache, this process loads the
 *   bundle (its top level runs: an entry must only define things there) and serializes the
 *   bytecode of everything that ran.
 *
 * `node bundle-build.js --all` (mptest's prepack script, build time): writes into dist/bundles/
 * the bundles of every entry mptest starts fresh (every module of dist/workers/ as `cjs`, of
 * dist/children/ but the launcher as `cached`), so that the packed package ships them and needs
 * no esbuild when installed; bundles whose entry is gone are removed.
 *
 * Every file is written under a temporary name (`*.<pid>.tmp`) and renamed over its final name,
 * so concurrent `--jobs` processes (and processes already loading a previous copy, or a test
 * running mptest while the consumer test packs) only ever see whole files.
 *
 * Plugins that keep a bundle's load cost down (paid by every fresh worker thread and spawned
 * child):
 * - `ws` is replaced by a stub whose classes throw when constructed. The entries bundled here
 *   never open a WebSocket; `@multiprocess-ts/node`'s index imports its WebSocket transport, and
 *   `ws` is CommonJS, so it cannot be tree-shaken and would load node:zlib, streams and http.
 * - `debug` (capnp-ts's trace logging, off unless DEBUG is set) is replaced by loggers that do
 *   nothing: the real one loads node:tty and reads the environment at startup (~10 ms of CPU).
 * - `tslib` (capnp-ts's helpers) is the CommonJS build, as Node's `require` would load.
 * - every import of `capnp-ts` or one of its files goes through one ESM re-export module per
 *   specifier, so each CommonJS module's exports are copied into an ES namespace once, not once
 *   per importing module (`capnp-ts/src/std/rpc.capnp.js` alone exports hundreds of names).
 *
 * Threading: main thread of its own process.
 */

import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type BuildOptions, type Plugin } from "esbuild";
import { cacheData, cacheFileOf, loadBundle, wrapBundle } from "./code-cache.js";

// CJS code inside an ESM bundle (capnp-ts) requires Node builtins: give it a real `require`.
const ESM_BANNER =
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

// The parts of debug's API capnp-ts uses: createDebug(namespace) and createDebug.formatters.
// CommonJS, as debug is: every capnp-ts file requires it, and an ES module required from CommonJS
// gets its exports copied into a new object at each require.
const DEBUG_STUB = `function createDebug() {
  const log = () => {};
  log.enabled = false;
  log.extend = createDebug;
  return log;
}
createDebug.formatters = {};
createDebug.enable = () => {};
createDebug.disable = () => "";
createDebug.enabled = () => false;
module.exports = createDebug;
`;

const stubs: Plugin = {
  name: "mptest-stubs",
  setup(b) {
    b.onResolve({ filter: /^(ws|debug)$/ }, (a) => ({ path: a.path, namespace: "mptest-stub" }));
    b.onLoad({ filter: /.*/, namespace: "mptest-stub" }, (a) => ({ contents: a.path === "ws" ? WS_STUB : DEBUG_STUB, loader: "js" }));
  },
};

// capnp-ts's files `require("tslib")`; esbuild's default "module" condition picks tslib's ES build,
// whose ~30 helpers would then be copied into a new object at each of those ~30 requires. Node
// itself resolves a require to the CommonJS build: so does the bundle.
const tslibAsNodeRequires: Plugin = {
  name: "mptest-tslib-cjs",
  setup(b) {
    b.onResolve({ filter: /^tslib$/ }, (a) =>
      a.kind === "require-call" && a.importer !== "" ? { path: createRequire(a.importer).resolve("tslib") } : undefined,
    );
  },
};

const oneCapnpNamespace = (resolveDir: string): Plugin => ({
  name: "mptest-one-capnp-namespace",
  setup(b) {
    // A shim's own import resolves normally (namespace "mptest-capnp"); every other one to a shim.
    b.onResolve({ filter: /^capnp-ts(\/.*)?$/ }, (a) =>
      a.namespace === "mptest-capnp" ? undefined : { path: a.path, namespace: "mptest-capnp" },
    );
    b.onLoad({ filter: /.*/, namespace: "mptest-capnp" }, (a) => ({
      contents: `export * from ${JSON.stringify(a.path)};`,
      loader: "js",
      resolveDir,
    }));
  },
});

async function bundle(entry: string, format: "esm" | "cjs"): Promise<Uint8Array> {
  const opts: BuildOptions = {
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    format,
    target: "node20",
    write: false,
    logLevel: "error",
    // Less source to read and to parse lazily (~5 ms of a child's startup); names are kept, so
    // stack traces still name functions.
    minifyWhitespace: true,
    minifySyntax: true,
    // capnp-ts resolves from this package (a devDependency of mptest, the runtime's pinned version).
    plugins: [stubs, tslibAsNodeRequires, oneCapnpNamespace(fileURLToPath(new URL(".", import.meta.url)))],
  };
  if (format === "esm") opts.banner = { js: ESM_BANNER };
  const r = await build(opts);
  return r.outputFiles![0]!.contents;
}

/** Writes `data` to `file` through a temporary name. */
function writeWhole(file: string, data: Uint8Array): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

async function buildCached(entry: string, outDir: string): Promise<string> {
  const cjs = new TextDecoder().decode(await bundle(entry, "cjs"));
  const id = createHash("sha256").update(cjs).digest("hex").slice(0, 16);
  const out = join(outDir, `${basename(entry, ".js")}.cjs`);
  writeWhole(out, new TextEncoder().encode(wrapBundle(cjs, id)));
  writeWhole(cacheFileOf(out), cacheData(id, loadBundle(out).createCachedData()));
  const launcher = fileURLToPath(new URL("./children/launch.js", import.meta.url));
  writeWhole(join(outDir, "launch.cjs"), await bundle(launcher, "cjs"));
  return out;
}

async function buildEsm(entry: string, outDir: string): Promise<string> {
  const out = join(outDir, `${basename(entry, ".js")}.mjs`);
  writeWhole(out, await bundle(entry, "esm"));
  return out;
}

async function buildCjs(entry: string, outDir: string): Promise<string> {
  const out = join(outDir, `${basename(entry, ".js")}.cjs`);
  writeWhole(out, await bundle(entry, "cjs"));
  return out;
}

/** Every fresh-start entry into dist/bundles/; bundles of entries that are gone are removed. */
async function bundleAll(): Promise<void> {
  const outDir = fileURLToPath(new URL("./bundles/", import.meta.url));
  mkdirSync(outDir, { recursive: true });
  const wanted = new Set<string>();
  for (const [dir, cached] of [["workers", false], ["children", true]] as const) {
    const base = fileURLToPath(new URL(`./${dir}/`, import.meta.url));
    for (const f of readdirSync(base).filter((n) => n.endsWith(".js") && !(cached && n === "launch.js")).sort()) {
      const out = cached ? await buildCached(join(base, f), outDir) : await buildCjs(join(base, f), outDir);
      const name = basename(out);
      // bundled() names a bundle by its entry's file name: two entries must not share one.
      if (wanted.has(name)) throw new Error(`bundle-build: two entries named ${f}`);
      wanted.add(name);
      if (cached) wanted.add(basename(cacheFileOf(out))).add("launch.cjs");
      process.stdout.write(`mptest: bundled ${dir}/${f} into ${out}\n`);
    }
  }
  for (const f of readdirSync(outDir)) if (!f.endsWith(".tmp") && !wanted.has(f)) rmSync(join(outDir, f));
}

const args = process.argv.slice(2);
const [mode, entry, outDir] = args;
if (args.length === 1 && mode === "--all") {
  await bundleAll();
} else if ((mode === "esm" || mode === "cjs" || mode === "cached") && entry !== undefined && outDir !== undefined && args.length === 3) {
  const build = { esm: buildEsm, cjs: buildCjs, cached: buildCached }[mode];
  process.stdout.write(`${await build(entry, outDir)}\n`);
} else {
  process.stderr.write("usage: bundle-build.js <esm|cjs|cached> <entry.js> <outDir> | bundle-build.js --all\n");
  process.exit(2);
}
