/**
 * Reader limits: how much an incoming message may claim before we refuse to read it. They bound
 * memory and CPU per message, like capnp's `ReaderOptions` (traversalLimitInWords, nestingLimit)
 * plus the stream-framing checks of `kj::readMessage`, and the decode budget of the cost model
 * (docs/rpc.md "Cost model": `decodeBudget`, `STRUCT_UNITS`).
 *
 * Threading: constants and pure functions, any thread.
 */

/** Limits applied to every incoming message (framing and pointer validation). */
export interface ReaderLimits {
  /** Most segments in one message (segment table entries). */
  maxSegments: number;
  /** Most bytes in one framed message, segment table included. */
  maxMessageBytes: number;
  /** Most words read while walking the pointer tree (each visit of an object counts its words). */
  traversalLimitWords: number;
  /** Deepest chain of struct/list pointers from the root. */
  nestingLimit: number;
  /**
   * Most decode units one message may cost, whatever its size (docs/rpc.md "Cost model"): the
   * per-message budget is `min(decodeUnitLimit, 64 units per word + 64 Ki units)`.
   */
  decodeUnitLimit: number;
  /**
   * Decode units a message may cost per word of its size (`k` of the budget above; default 64,
   * the densest legitimate packing: a List(Bool) has 64 elements per word). `Infinity` leaves
   * only `decodeUnitLimit`.
   */
  decodeAmplification: number;
}

/**
 * 512 segments, 64 MiB per message, 8 Mi words (64 MiB) traversal, 64 levels of nesting, 16 Mi
 * decode units (about 16 M materialised values, 1 M structs), 64 decode units per word.
 */
export const DEFAULT_LIMITS: Readonly<ReaderLimits> = Object.freeze({
  maxSegments: 512,
  maxMessageBytes: 64 * 1024 * 1024,
  traversalLimitWords: 8 * 1024 * 1024,
  nestingLimit: 64,
  decodeUnitLimit: 16 * 1024 * 1024,
  decodeAmplification: 64,
});

const KEYS = ["maxSegments", "maxMessageBytes", "traversalLimitWords", "nestingLimit", "decodeUnitLimit", "decodeAmplification"] as const;

/**
 * Fill in defaults and check a partial limits object. Throws a `RangeError` (a configuration
 * bug, not bad input) when a given limit is not a positive integer (or `Infinity`).
 */
export function resolveLimits(limits?: Partial<ReaderLimits>): ReaderLimits {
  if (limits === undefined) return { ...DEFAULT_LIMITS };
  const out = { ...DEFAULT_LIMITS };
  for (const k of KEYS) {
    const v = limits[k];
    if (v === undefined) continue;
    if (typeof v !== "number" || !(v === Infinity || (Number.isInteger(v) && v > 0))) {
      throw new RangeError(`ReaderLimits.${k} must be a positive integer, got ${String(v)}`);
    }
    out[k] = v;
  }
  return out;
}

/**
 * Default decode units a message may cost per word of its size (`decodeAmplification`). 64 is
 * the densest packing a message can legitimately have (a List(Bool) carries 64 elements per
 * word), so a message without shared pointers or zero-sized elements always fits; what does not
 * fit is amplification.
 */
export const DECODE_AMPLIFICATION = 64;
/** Decode units every message may spend on top (small messages with a few Void/empty elements). */
export const DECODE_BASE_UNITS = 64 * 1024;
/**
 * Units charged per struct visited (a struct pointer followed, or one element of a composite
 * list) on top of its words: a generated reader builds a capnp-ts accessor and a native object
 * for each, about 16x the work of one list element.
 */
export const STRUCT_UNITS = 16;

/** The decode budget of a message of `bytes` bytes (segment table included) under `lim` (docs/rpc.md "Cost model"). */
export function decodeBudget(bytes: number, lim: Partial<ReaderLimits> = DEFAULT_LIMITS): number {
  const max = lim.decodeUnitLimit ?? DEFAULT_LIMITS.decodeUnitLimit;
  const k = lim.decodeAmplification ?? DEFAULT_LIMITS.decodeAmplification;
  return Math.min(max, k * Math.ceil(bytes / 8) + DECODE_BASE_UNITS);
}
