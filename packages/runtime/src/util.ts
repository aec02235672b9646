/**
 * Small value helpers shared by the runtime: {@link errorText} (an unknown thrown value as a log
 * line) and {@link isThenable}. A leaf module (no runtime imports), so every other file may use it
 * without creating an import cycle.
 *
 * Owns: nothing (pure functions). Threading: any thread.
 */

/** Text for an unknown thrown value, for log lines (`Name: message`). */
export function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/** True for a native Promise or any object with a `then` method (generated `invoke` uses it). */
export function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  if (v instanceof Promise) return true;
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof (v as { then?: unknown }).then === "function";
}
