/**
 * Seeded, reproducible randomness for scenarios (mulberry32: small, fast, good enough for scheduling).
 *
 * Threading: pure functions and per-call generator state; any thread (used on the mptest
 * process's main thread).
 */

export interface Rng {
  /** Uniform float in [0, 1). */
  (): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** True with probability `p` (default 0.5). */
  bool(p?: number): boolean;
  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T;
  /** A new array with the items shuffled. */
  shuffle<T>(items: readonly T[]): T[];
}

export function createRng(seed: number): Rng {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng = next as Rng;
  rng.int = (n) => Math.floor(next() * n);
  rng.bool = (p = 0.5) => next() < p;
  rng.pick = (items) => {
    if (items.length === 0) throw new RangeError("pick from an empty array");
    return items[Math.floor(next() * items.length)]!;
  };
  rng.shuffle = (items) => {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  };
  return rng;
}

/** 32-bit finaliser (murmur3 fmix32). */
function mix32(x: number): number {
  x = x >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * Seed of iteration `i` of a run started with `base`. Iteration 0 uses `base` itself, so a
 * failing iteration is replayed by `--seed <its seed> --repeat 1` whatever its index was.
 */
export function iterationSeed(base: number, i: number): number {
  return i === 0 ? base >>> 0 : mix32((base >>> 0) + Math.imul(i, 0x9e3779b9));
}

/** Parses `--seed`: decimal or 0x-hex uint32. */
export function parseSeed(text: string): number {
  const t = text.trim();
  const n = /^0x[0-9a-f]+$/i.test(t) ? Number.parseInt(t.slice(2), 16) : /^\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`bad seed '${text}': want a uint32`);
  return n;
}

export function randomSeed(): number {
  return mix32(Date.now() ^ (process.pid << 16) ^ Math.floor(Math.random() * 0x100000000));
}
