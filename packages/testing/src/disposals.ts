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

/** Installs the counting wrapper on `obj` (once per object) and returns its counter. */
export function countDisposals(obj: unknown): DisposalCounter {
  const counter = { count: 0 };
  if (obj === null || (typeof obj !== "object" && typeof obj !== "function")) return counter;
  const existing = counters.get(obj);
  if (existing !== undefined) return existing;
  counters.set(obj, counter);
  const o = obj as Record<PropertyKey, unknown>;
  const key = ([Symbol.asyncDispose, Symbol.dispose, "close"] as const).find((k) => typeof o[k] === "function");
  if (key === undefined) {
    Object.defineProperty(obj, Symbol.dispose, { configurable: true, value: () => void counter.count++ });
    return counter;
  }
  const original = o[key] as Disposer;
  Object.defineProperty(obj, key, {
    configurable: true,
    writable: true,
    value: function (this: unknown) {
      counter.count++;
      return original.call(this);
    },
  });
  return counter;
}

const counters = new WeakMap<object, { count: number }>();
