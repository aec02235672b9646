/**
 * {@link SlotMap}: a `Map` for per-call tables that usually hold zero or one entry (a worker
 * bridge's questions and answers, a server Thread's borrowed request Thread), without V8's
 * per-call cost of a long-lived `Map` going from one entry to none.
 *
 * Why: when a `Map` (or `Set`) that has been promoted to V8's old space goes between one entry
 * and none, `delete` shrinks its hash table and the next `set` makes a new one, so each pair
 * allocates backing stores an old object points at. Measured on Node 20 (bench/README.md "Where the time goes",
 * ninth session): `set` + `delete` of one key on such a `Map` 0.5-1.9 µs, against ~0.03 µs for
 * two property writes; inside a server's Context call the one `delete` of its borrowed request
 * Thread measured 1.1-1.5 µs. Here the first entry lives in two fields (the slot) while the
 * `Map` behind it is empty, so a table used by one call at a time never touches the `Map`.
 *
 * Semantics are a `Map`'s, iteration order (insertion order) included: the slot is only filled
 * while the `Map` is empty, so the slot's entry is always older than every entry in the `Map`.
 *
 * Owns: its entries. Threading: any thread (each instance used on one thread only).
 */

const EMPTY: unique symbol = Symbol("SlotMap.empty");

/** A `Map`'s key equality (SameValueZero): `===`, except that NaN equals NaN. */
function same(a: unknown, b: unknown): boolean {
  return a === b || (a !== a && b !== b);
}

/** See the module comment. */
export class SlotMap<K, V> implements Map<K, V> {
  #key: K | typeof EMPTY = EMPTY;
  #value: V | undefined = undefined;
  #rest: Map<K, V> | undefined = undefined;

  get size(): number {
    return (this.#key === EMPTY ? 0 : 1) + (this.#rest?.size ?? 0);
  }

  get [Symbol.toStringTag](): string {
    return "SlotMap";
  }

  get(key: K): V | undefined {
    if (same(this.#key, key)) return this.#value;
    return this.#rest === undefined || this.#rest.size === 0 ? undefined : this.#rest.get(key);
  }

  has(key: K): boolean {
    if (same(this.#key, key)) return true;
    return this.#rest !== undefined && this.#rest.size !== 0 && this.#rest.has(key);
  }

  set(key: K, value: V): this {
    if (same(this.#key, key)) {
      this.#value = value;
      return this;
    }
    const rest = this.#rest;
    if (this.#key === EMPTY && (rest === undefined || rest.size === 0)) {
      // -0 and 0 are one key in a Map (SameValueZero), and NaN equals NaN: normalize as a Map would.
      this.#key = (typeof key === "number" && key === 0 ? 0 : key) as K;
      this.#value = value;
      return this;
    }
    (rest ?? (this.#rest = new Map())).set(key, value);
    return this;
  }

  delete(key: K): boolean {
    if (same(this.#key, key)) {
      this.#key = EMPTY;
      this.#value = undefined;
      return true;
    }
    return this.#rest !== undefined && this.#rest.size !== 0 && this.#rest.delete(key);
  }

  clear(): void {
    this.#key = EMPTY;
    this.#value = undefined;
    this.#rest?.clear();
  }

  *entries(): MapIterator<[K, V]> {
    if (this.#key !== EMPTY) yield [this.#key, this.#value as V];
    if (this.#rest !== undefined) yield* this.#rest.entries();
  }

  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: K, map: Map<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }
}
