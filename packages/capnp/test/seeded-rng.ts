// A seeded xorshift32 generator for the tests that draw random message shapes (fastpath.test.ts,
// flat-call.test.ts): the same seed gives the same sequence on every run. Test code, any thread.

/** Numbers in [0, 1) from a xorshift32 state seeded with `seed` (0 is replaced by 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}
