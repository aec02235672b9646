/**
 * Counts how often the runtime disposes an implementation object, whatever its shape: the runtime
 * disposes with `[Symbol.asyncDispose]`, else `[Symbol.dispose]`, else `close()` (runtime
 * `disposeObject`), so the first of those the object has is wrapped in a counting own property.
 * An object with none of them gets a counting `[Symbol.dispose]`, which the runtime then calls.
 *
 * Threading: loop thread (the wrapper runs wherever the runtime disposes the object).
 */

export interface DisposalCounter {
  readonly count: number;
}

type Disposer = (this: unknown) => unknown;

/**
 * Returns a new counter of `obj`'s disposals from now on. The counting wrapper is installed once
 * per object; every counter made for the object (one per setup serving it) sees each disposal.
 */
export function countDisposals(obj: unknown): DisposalCounter {
  const counter = { count: 0 };
  if (obj === null || (typeof obj !== "object" && typeof obj !== "function")) return counter;
  let set = counters.get(obj);
  if (set === undefined) {
    const all = new Set<{ count: number }>();
    counters.set(obj, (set = all));
    wrap(obj, () => all.forEach((c) => void c.count++));
  }
  set.add(counter);
  return counter;
}

/** Wraps the first disposer `obj` has (or adds a `[Symbol.dispose]`) so it calls `onDispose`. */
function wrap(obj: object, onDispose: () => void): void {
  const o = obj as Record<PropertyKey, unknown>;
  const key = ([Symbol.asyncDispose, Symbol.dispose, "close"] as const).find((k) => typeof o[k] === "function");
  if (key === undefined) {
    Object.defineProperty(obj, Symbol.dispose, { configurable: true, value: onDispose });
    return;
  }
  const original = o[key] as Disposer;
  Object.defineProperty(obj, key, {
    configurable: true,
    writable: true,
    value: function (this: unknown) {
      onDispose();
      return original.call(this);
    },
  });
}

const counters = new WeakMap<object, Set<{ count: number }>>();
