/**
 * Loads a one-file CommonJS bundle (bundle-build.ts, `cached` mode) with V8's code cache: the
 * bytecode of the functions the bundle ran while it loaded, serialized once at build time
 * (`vm.Script#createCachedData`), so that a fresh process starting it deserializes that bytecode
 * instead of parsing and compiling ~600 KB of JavaScript (upstream V8: "code caching for
 * developers"; Node 20 has no compile cache for user code of its own).
 *
 * The bundle is compiled as Node compiles a CommonJS module (the same wrapper function and
 * arguments, already in the file: {@link wrapBundle}). A cache file belongs to one bundle (its id
 * comes first), and V8 refuses a cache made by another V8 version or with other V8 flags; the
 * bundle then compiles from source as usual, only slower (`rejected` says so).
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
  /** True when a cache was there but not used: another bundle's, or V8 did not accept it. */
  rejected: boolean;
  /** The code cache of the bundle as far as it has run (top level, and what it called). */
  createCachedData(): Buffer;
}

const WRAPPER_HEAD = "(function (exports, require, module, __filename, __dirname) { ";
const WRAPPER_TAIL = "\n});\n";
/** First line of a stored bundle: `// mptest-bundle <id>`, the id its cache file starts with. */
const ID_PREFIX = "// mptest-bundle ";
const ID_LENGTH = 16;

/**
 * The file a CommonJS bundle `code` is stored as: a first line naming it by `id` (16 characters,
 * e.g. a content hash: its cache file starts with the same id, see {@link cacheData}), then the
 * code already inside Node's module wrapper function (so loading it compiles the file's text as
 * it is, with no copy into a wrapped string). ASCII only (esbuild escapes everything else), so it
 * is read as Latin-1 with no UTF-8 decoding. Throws for a non-ASCII `code` or a bad `id`.
 */
export function wrapBundle(code: string, id: string): string {
  if (!/^[0-9a-z]{16}$/.test(id)) throw new RangeError(`bundle id must be 16 characters [0-9a-z], got ${JSON.stringify(id)}`);
  const bad = /[^\x00-\x7f]/.exec(code);
  if (bad !== null) throw new Error(`bundle is not ASCII at offset ${bad.index}`);
  return `${ID_PREFIX}${id}\n${WRAPPER_HEAD}${code}${WRAPPER_TAIL}`;
}

/** The contents of a bundle's cache file: its id, a newline, then V8's cache `data`. */
export function cacheData(id: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${id}\n`, "latin1"), data]);
}

function idOf(source: string): string | undefined {
  return source.startsWith(ID_PREFIX) ? source.slice(ID_PREFIX.length, ID_PREFIX.length + ID_LENGTH) : undefined;
}

function run(file: string, source: string, cachedData: Buffer | undefined): LoadedBundle {
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

/**
 * Compiles the stored bundle `file` ({@link wrapBundle}) from source, with no cache, and runs its
 * top level, as Node runs a CommonJS module.
 */
export function loadBundle(file: string): LoadedBundle {
  return run(file, readFileSync(file, "latin1"), undefined);
}

/** The code cache file of a bundle (written next to it by bundle-build.ts). */
export function cacheFileOf(bundle: string): string {
  return `${bundle}.cache`;
}

/**
 * {@link loadBundle} with the bundle's cache file when there is one and it starts with the
 * bundle's id (a cache of other bytes, e.g. written by another build meanwhile, is not used:
 * `rejected`). A missing cache only costs the compile.
 */
export function loadCachedBundle(bundle: string): LoadedBundle {
  const source = readFileSync(bundle, "latin1");
  let cached: Buffer | undefined;
  try {
    cached = readFileSync(cacheFileOf(bundle));
  } catch {
    return run(bundle, source, undefined);
  }
  const id = idOf(source);
  if (id === undefined || cached.toString("latin1", 0, ID_LENGTH + 1) !== `${id}\n`) {
    return { ...run(bundle, source, undefined), rejected: true };
  }
  return run(bundle, source, cached.subarray(ID_LENGTH + 1));
}
