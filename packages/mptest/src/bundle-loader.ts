/**
 * Starts worker threads on a CommonJS bundle of a worker entry (bundle.ts), compiled with a V8 code
 * cache so that a new thread does not parse and compile the bundle's code again.
 *
 * A worker thread pays its Node bootstrap (~50 ms of CPU here) and then loads our code. As an ES
 * module the bundle costs ~55 ms more: Node's ESM loader (a dozen internal modules a CommonJS start
 * never loads), then V8 parses the 600 KB bundle and compiles each function the first time it runs.
 * Here the thread runs a small eval'd CommonJS script (LOADER_SOURCE) that compiles the bundle with
 * vm.Script, giving V8 the code cache of the same source that an earlier worker thread produced
 * (loaded-bundle.ts) after it had run the scenarios' code paths: V8 deserializes the bytecode of
 * the top level and of those functions instead of compiling them. The source (read once per
 * process) travels with the code cache in workerData, both in SharedArrayBuffers (no copy on the
 * main thread, one on the worker's), so a cache always matches its source (V8 only checks a cache
 * against the source's length) even if dist/ is rebuilt during a run. The bundle is a worker entry
 * of dist/workers/ (bundle-build.ts bundles those as CommonJS); this module and loaded-bundle.ts
 * live outside that folder because they are not entries.
 *
 * The code that runs is the same: one bundle of the built dist/ JavaScript, in a function with
 * CommonJS's parameters, on the worker's main context. A rejected cache (V8 version or flags differ,
 * which cannot happen within one process) only costs the compile, and is counted.
 *
 * Threading: main thread of the mptest process; LOADER_SOURCE runs on each new worker thread.
 */

import { readFileSync } from "node:fs";
import { Worker, type WorkerOptions } from "node:worker_threads";
import { bundledCjs } from "./bundle.js";
import { LOADED_BUNDLE_KEY } from "./loaded-bundle.js";

/** What the loader receives as workerData. */
interface LoaderData {
  filename: string;
  /** The wrapped bundle, one byte per character (ASCII), in shared memory. */
  source: Uint8Array;
  /** A code cache of `source`, in shared memory. */
  codeCache: Uint8Array | undefined;
}

// The bundle runs as if require()d (`source` is wrapped in CommonJS's module function by the main
// thread, once), with the loader's require: the bundle only requires Node built-ins.
const LOADER_SOURCE = `"use strict";
const { workerData } = require("node:worker_threads");
const { Script } = require("node:vm");
const { dirname } = require("node:path");
const { filename, source, codeCache } = workerData;
const text = Buffer.from(source.buffer, source.byteOffset, source.byteLength).toString("latin1");
const script = new Script(text, { filename, cachedData: codeCache });
globalThis[Symbol.for(${JSON.stringify(LOADED_BUNDLE_KEY)})] = {
  codeCache: codeCache === undefined ? "none" : script.cachedDataRejected ? "rejected" : "accepted",
  createCachedData: () => script.createCachedData(),
};
const mod = { exports: {} };
script.runInThisContext()(mod.exports, require, mod, filename, dirname(filename));
`;

/** A copy of `bytes` in a SharedArrayBuffer: posted to a worker without being copied again. */
function shared(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  out.set(bytes);
  return out;
}

/**
 * `js` with every non-ASCII character written as a \u escape. esbuild already writes them so in
 * strings, regular expressions and identifiers (its default ASCII charset), where the escape means
 * the same; what is left is in comments. A one-byte string is half the memory of a two-byte one, and
 * a thread makes it from shared bytes with one copy (latin1).
 */
function asciiSource(js: string): string {
  return js.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export class CodeCachedBundle {
  readonly filename: string;
  readonly #source: Uint8Array;
  #codeCache: Uint8Array | undefined;

  /**
   * Builds (once per process, bundle.ts) and reads the CommonJS bundle of `entry`, wrapped in
   * CommonJS's module function here, so that a worker thread compiles the string it makes from the
   * shared bytes as is (one copy of the ~600 KB source on the thread).
   */
  constructor(entry: URL) {
    this.filename = bundledCjs(entry);
    const js = asciiSource(`(function (exports, require, module, __filename, __dirname) {${readFileSync(this.filename, "utf8")}\n})`);
    this.#source = shared(Buffer.from(js, "latin1"));
  }

  /** Whether workers started from now on get a code cache. */
  get hasCodeCache(): boolean {
    return this.#codeCache !== undefined;
  }

  /** Size in bytes of the code cache the next workers get (0 without one). */
  get codeCacheBytes(): number {
    return this.#codeCache?.byteLength ?? 0;
  }

  /**
   * Keeps `data`, a code cache a worker started by {@link start} produced (LoadedBundle
   * .createCachedData), for the workers started after this. The first one is kept.
   */
  adoptCodeCache(data: Uint8Array): void {
    if (!(data instanceof Uint8Array) || data.byteLength === 0) throw new TypeError("CodeCachedBundle: a code cache is a non-empty Uint8Array");
    this.#codeCache ??= shared(data);
  }

  /** A new worker thread running the bundle (`options` without eval and workerData). */
  start(options: Omit<WorkerOptions, "eval" | "workerData"> = {}): Worker {
    const workerData: LoaderData = { filename: this.filename, source: this.#source, codeCache: this.#codeCache };
    return new Worker(LOADER_SOURCE, { ...options, eval: true, workerData });
  }
}
