/**
 * Helpers shared by the scenarios.
 *
 * Threading: loop thread (the runner's main thread).
 */

import { deferred } from "@multiprocess-ts/capnp";
import { createFooSetup, type FooSetup, type TestSetupOptions } from "@multiprocess-ts/testing";
import type { ScenarioContext } from "../scenario.js";

export const CALLED_AFTER_DISCONNECT = "IPC client method called after disconnect.";
export const INTERRUPTED_BY_DISCONNECT = "IPC client method call interrupted by disconnect.";

/** Throws `Error(msg)` unless `cond`. */
export function check(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

export function checkEq<T>(actual: T, expected: T, what: string): void {
  if (!Object.is(actual, expected)) {
    throw new Error(`check failed: ${what}: expected ${String(expected)}, got ${String(actual)}`);
  }
}

/** Structural equality for plain data (arrays, objects, Maps, Sets, typed arrays, primitives). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  }
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !deepEqual(v, b.get(k))) return false;
    return true;
  }
  if (a instanceof Set && b instanceof Set) {
    if (a.size !== b.size) return false;
    for (const v of a) if (!b.has(v)) return false;
    return true;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/**
 * Runs `fn` on a fresh TestSetup and always disposes it; the dispose's leak check is part of the
 * scenario. A failure in `fn` wins over a secondary failure in dispose (which is logged).
 * Half of the seeds turn on delivery jitter (messages released in random batches on later turns),
 * so repeated runs explore different interleavings of the two directions.
 */
export async function withSetup(
  ctx: ScenarioContext,
  opts: TestSetupOptions,
  fn: (s: FooSetup) => Promise<void>,
): Promise<void> {
  const jitter = opts.jitter ?? (ctx.rng.bool() ? ctx.rng : undefined);
  ctx.log(`delivery jitter: ${jitter === undefined ? "off" : "on"}`);
  const s = await createFooSetup({ name: "mptest", ...opts, ...(jitter ? { jitter } : {}), log: (l) => ctx.log(l) });
  let first: unknown;
  let failed = false;
  try {
    await fn(s);
  } catch (e) {
    failed = true;
    first = e;
  }
  try {
    await s.dispose();
  } catch (e) {
    if (!failed) throw e;
    ctx.log(`secondary failure while disposing: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (failed) throw first;
}

/** A counter that resolves waiters when it reaches a value (replaces polling loops). */
export class Counter {
  #n = 0;
  #waiters: { n: number; resolve: () => void }[] = [];
  get value(): number {
    return this.#n;
  }
  inc(): void {
    this.#n++;
    this.#waiters = this.#waiters.filter((w) => {
      if (this.#n >= w.n) w.resolve();
      return this.#n < w.n;
    });
  }
  /** Resolves once the counter is at least `n`. */
  atLeast(n: number): Promise<void> {
    if (this.#n >= n) return Promise.resolve();
    const d = deferred<void>();
    this.#waiters.push({ n, resolve: () => d.resolve() });
    return d.promise;
  }
}
