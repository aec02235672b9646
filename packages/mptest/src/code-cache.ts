/**
 * Loads a one-file CommonJS bundle (bundle-build.ts, `cached` mode) with V8's code cache: the
 * bytecode of the functions the bundle ran while it loaded, serialized once at build time
 * (`vm.Script#createCachedData`), so that a fresh process starting it deserializes that bytecode
 * instead of parsing and compiling ~600 KB of JavaScript (upstream V8: "code caching for
 * developers"; Node 20 has no compile cache for user code of its own).
 *
 * The bundle is compiled as Node compiles a CommonJS module (the same wrapper function and
 * arguments, already in the file: {@link wrapBundle}). V8 rejects a cache made by another V8 version, with other V8 flags or for another
 * source; the bundle then compiles from source as usual (only slower): `rejected` says which.
 *
 * Threading: any thread (a spawned child's main thread; the bundle build's main thread).
 */

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { Script } from "node:vm";

/** A bundle compiled (with or without its code cache) and run: what it exports. */
export interface LoadedBundle {
  exports: Record<string, unknown>;
  /** True when a cache was given and V8 did not accept it. */
  rejected: boolean;
  /** The code cache of the bundle as far as it has run (top level, and what it called). */
  createCachedData(): Buffer;
}

const WRAPPER_HEAD = "(function (exports, require, module, __filename, __dirname) { ";
const WRAPPER_TAIL = "\n});\n";

/**
 * The file a CommonJS bundle `code` is stored as: already inside Node's module wrapper function
 * (so loading it compiles the file's text as it is, with no copy into a wrapped string), and
 * ASCII only (esbuild escapes everything else), so it is read as Latin-1 with no UTF-8 decoding.
 * Throws for a non-ASCII `code`.
 */
export function wrapBundle(code: string): string {
  const bad = /[^\x00-\x7f]/.exec(code);
  if (bad !== null) throw new Error(`bundle is not ASCII at offset ${bad.index}`);
  return WRAPPER_HEAD + code + WRAPPER_TAIL;
}

/**
 * Compiles the wrapped bundle `file` ({@link wrapBundle}; with `cachedData` when given) and runs
 * its top level, as Node runs a CommonJS module.
 */
export function loadBundle(file: string, cachedData?: Buffer): LoadedBundle {
  const source = readFileSync(file, "latin1");
  const script = new Script(source, cachedData === undefined ? { filename: file } : { filename: file, cachedData });
  const module = { exports: {} as Record<string, unknown> };
  const fn = script.runInThisContext() as (...args: unknown[]) => void;
  fn.call(module.exports, module.exports, createRequire(file), module, file, dirname(file));
  return {
    exports: module.exports,
    rejected: cachedData !== undefined && script.cachedDataRejected === true,
    createCachedData: () => script.createCachedData(),
  };
}

/** The code cache file of a bundle (written next to it by bundle-build.ts). */
export function cacheFileOf(bundle: string): string {
  return `${bundle}.cache`;
}

/** `loadBundle` with the bundle's cache file when there is one (a missing cache only costs time). */
export function loadCachedBundle(bundle: string): LoadedBundle {
  let cached: Buffer | undefined;
  try {
    cached = readFileSync(cacheFileOf(bundle));
  } catch {
    cached = undefined;
  }
  return loadBundle(bundle, cached);
}
