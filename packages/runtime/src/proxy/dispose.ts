/**
 * Disposing server implementations exactly once: {@link disposeObject} (asyncDispose, dispose or
 * close) and the owner count shared by every server that wraps the same impl object.
 *
 * Owns: the module-wide owner counts (`implOwners`) and the set of disposed impls, both weak
 * (keyed by the impl objects). Threading: loop thread only.
 */

/** How many live owning servers wrap each impl object: it is disposed when the count reaches 0. */
export const implOwners = new WeakMap<object, number>();
/** Impl objects already disposed: a later export of the same object is never disposed again. */
export const disposedImpls = new WeakSet<object>();

/**
 * Disposes `obj` with `[Symbol.asyncDispose]`, else `[Symbol.dispose]`, else `close()`, whichever
 * exists first. Errors propagate (callers log them).
 */
export async function disposeObject(obj: unknown): Promise<void> {
  await disposeObjectNow(obj);
}

/**
 * {@link disposeObject} without a promise when nothing is to be waited for: returns what
 * `[Symbol.asyncDispose]` or `close()` returned (a promise, usually), or undefined when the object
 * has only `[Symbol.dispose]` or none of the three. Throws what they throw.
 */
export function disposeObjectNow(obj: unknown): unknown {
  if (obj === null || (typeof obj !== "object" && typeof obj !== "function")) return undefined;
  const o = obj as { [Symbol.asyncDispose]?: () => unknown; [Symbol.dispose]?: () => unknown; close?: () => unknown };
  if (typeof o[Symbol.asyncDispose] === "function") return o[Symbol.asyncDispose]!();
  if (typeof o[Symbol.dispose] === "function") o[Symbol.dispose]!();
  else if (typeof o.close === "function") return o.close();
  return undefined;
}

/** True for an object or function (something that can be an impl with an owner count). */
export function isObject(v: unknown): v is object {
  return (typeof v === "object" && v !== null) || typeof v === "function";
}

export function decrementOwner(impl: object): number {
  const n = (implOwners.get(impl) ?? 1) - 1;
  if (n <= 0) implOwners.delete(impl);
  else implOwners.set(impl, n);
  return Math.max(n, 0);
}
