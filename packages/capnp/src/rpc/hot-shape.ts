/**
 * The validation fast path of the connection's dispatcher (dispatch.ts): one straight-line check
 * that proves an incoming message of the hot shapes passes validate.ts (`validateRpcMessageNear`:
 * the pointer walk of walk.ts and the envelope check of envelope-check.ts) without running them.
 * The hot shapes are what a call of scalar arguments exchanges: a one-segment Call to an imported
 * capability whose params content is a struct with no non-null pointer and no cap table, the
 * Return of such results, and Finish / Release. Anything else (a far pointer, a list, a
 * capability, a cap table, an exception, a promisedAnswer target, extra non-null pointers, limits
 * too small to be sure without counting) returns false and takes the full validation, so what is
 * accepted or refused, and with which error, does not change: `hotShape` is only ever a sufficient
 * condition for the full check to pass (packages/capnp/test/hot-shape.test.ts compares both on
 * every message of a call and on mutated ones).
 *
 * Why: in V8's unoptimised tiers (the first thousand or so calls of a fresh process: bench/README
 * "Cold start") every bytecode of the per-call path costs several times what it costs optimised,
 * and the general walk (a work stack, per-pointer calls, the envelope checker's records) was the
 * largest single item of an incoming message's handling.
 *
 * What the walk would do on such a message, and so what is checked here: the segment is whole
 * words and within `maxMessageBytes` (segment table included); every pointer followed is a near
 * struct pointer whose target lies inside the segment; every other pointer of every struct
 * visited is null; nesting: the deepest struct (a Payload's content) sits 4 pointers down
 * (`nestingLimit >= 4`); traversal: the words of the structs visited (a struct reached by two
 * pointers counted twice, as the walk does) within `traversalLimitWords`; decode units (those
 * words plus `STRUCT_UNITS` per struct, the content counted even when null) within
 * `decodeUnitLimit` and `DECODE_BASE_UNITS`, so below any message's decode budget (limits.ts
 * `decodeBudget`).
 *
 * Threading: synchronous, any thread (module state: three scratch numbers of the last pointer
 * read, used only within one call).
 */

import { DECODE_BASE_UNITS, STRUCT_UNITS, type ReaderLimits } from "../limits.js";

/** Pointer-walk result of the last {@link structAt}: target word, data words, pointer count. */
let sT = 0;
let sDw = 0;
let sPc = 0;

function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/**
 * The non-null near struct pointer at word `w` of a segment of `words` words, its target inside
 * the segment: sets sT/sDw/sPc and returns true; false for anything else.
 */
function structAt(b: Uint8Array, words: number, w: number): boolean {
  const lo = u32(b, w * 8);
  const hi = u32(b, w * 8 + 4);
  if ((lo & 3) !== 0 || (lo === 0 && hi === 0)) return false;
  const t = w + 1 + ((lo | 0) >> 2);
  const dw = hi & 0xffff;
  const pc = hi >>> 16;
  if (t < 0 || t + dw + pc > words) return false;
  sT = t;
  sDw = dw;
  sPc = pc;
  return true;
}

/** Whether the pointers `from` .. `pc - 1` of the struct whose pointer section starts at word `p` are all null. */
function nullsFrom(b: Uint8Array, p: number, from: number, pc: number): boolean {
  for (let i = from; i < pc; i++) {
    const o = (p + i) * 8;
    if ((b[o]! | b[o + 1]! | b[o + 2]! | b[o + 3]! | b[o + 4]! | b[o + 5]! | b[o + 6]! | b[o + 7]!) !== 0) return false;
  }
  return true;
}

/**
 * Whether the Payload at word `p` (`dw` data words, `pc` pointers) has no cap table and a null
 * or pointer-free struct content; returns the words of the structs visited below it, or -1.
 */
function payloadWords(b: Uint8Array, words: number, p: number, dw: number, pc: number): number {
  if (pc < 1 || !nullsFrom(b, p + dw, 1, pc)) return -1;
  const cw = p + dw; // content pointer
  if (u32(b, cw * 8) === 0 && u32(b, cw * 8 + 4) === 0) return 0;
  if (!structAt(b, words, cw) || !nullsFrom(b, sT + sDw, 0, sPc)) return -1;
  return sDw + sPc;
}

/**
 * True when the one-segment message `s` is of a hot shape (see the module comment) and so passes
 * `validateRpcMessageNear(…, lim)` with no far pointer; false means "not proven": validate it.
 */
export function hotShape(s: Uint8Array, lim: ReaderLimits): boolean {
  const len = s.byteLength;
  if ((len & 7) !== 0 || len < 16 || len + 8 > lim.maxMessageBytes || lim.nestingLimit < 4 || lim.maxSegments < 1) return false;
  const words = len >>> 3;
  // root → Message: which in its first data word, one pointer (the body).
  if (!structAt(s, words, 0) || sDw < 1 || sPc < 1) return false;
  const m = sT;
  const mPtrs = m + sDw;
  if (!nullsFrom(s, mPtrs, 1, sPc)) return false;
  let total = sDw + sPc;
  let structs = 2; // Message and its body
  const which = s[m * 8]! | (s[m * 8 + 1]! << 8);
  if (!structAt(s, words, mPtrs)) return false;
  const body = sT;
  const bDw = sDw;
  const bPc = sPc;
  total += bDw + bPc;
  const bPtrs = body + bDw;
  switch (which) {
    case 2: {
      // Call: pointers target, params, then sendResultsTo.thirdParty (null here).
      if (bPc < 2 || !nullsFrom(s, bPtrs, 2, bPc)) return false;
      // MessageTarget with no non-null pointer (importedCap; a promisedAnswer would have one).
      if (!structAt(s, words, bPtrs) || !nullsFrom(s, sT + sDw, 0, sPc)) return false;
      total += sDw + sPc;
      if (!structAt(s, words, bPtrs + 1)) return false;
      total += sDw + sPc;
      const c = payloadWords(s, words, sT, sDw, sPc);
      if (c < 0) return false;
      total += c;
      structs = 5; // Message, Call, MessageTarget, Payload, content (counted even when null: an upper bound)
      break;
    }
    case 3: {
      // Return: results (which = 0) only; pointer 0 is the results Payload.
      if (bDw < 1 || bPc < 1 || (s[body * 8 + 6]! | (s[body * 8 + 7]! << 8)) !== 0 || !nullsFrom(s, bPtrs, 1, bPc)) return false;
      if (!structAt(s, words, bPtrs)) return false;
      total += sDw + sPc;
      const c = payloadWords(s, words, sT, sDw, sPc);
      if (c < 0) return false;
      total += c;
      structs = 4; // Message, Return, Payload, content (as above)
      break;
    }
    case 4: // Finish
    case 6: // Release
      if (!nullsFrom(s, bPtrs, 0, bPc)) return false;
      break;
    default:
      return false;
  }
  const units = total + structs * STRUCT_UNITS;
  return total <= lim.traversalLimitWords && units <= lim.decodeUnitLimit && units <= DECODE_BASE_UNITS;
}
