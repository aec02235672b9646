/**
 * What the bundle loader (bundle-loader.ts) leaves for the bundle it ran on a worker thread: whether
 * V8 compiled the bundle from the code cache it was given, and a way to produce a code cache of the
 * bundle as compiled so far on this thread (its top level plus every function that has run), for
 * the worker threads started after it. Kept in the global symbol registry under LOADED_BUNDLE_KEY
 * (the loader is an eval'd script: it cannot import this module, it uses the same key).
 *
 * Threading: worker thread (the one the loader ran on).
 */

/** `Symbol.for` key of the loader's record on the worker thread's global object. */
export const LOADED_BUNDLE_KEY = "@multiprocess-ts/mptest:loaded-bundle";

/** "none": started without a code cache; "accepted"/"rejected": V8's verdict on the one given. */
export type CodeCacheUse = "none" | "accepted" | "rejected";

export interface LoadedBundle {
  readonly codeCache: CodeCacheUse;
  /** V8's code cache for the bundle's script (vm.Script.createCachedData). */
  createCachedData(): Uint8Array;
}

/** The loader's record, or undefined when this thread's code was not started by the loader. */
export function loadedBundle(): LoadedBundle | undefined {
  return (globalThis as Record<symbol, LoadedBundle | undefined>)[Symbol.for(LOADED_BUNDLE_KEY)];
}
