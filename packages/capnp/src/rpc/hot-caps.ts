/**
 * A second validation fast path of the connection's dispatcher (dispatch.ts), beside hot-shape.ts:
 * one straight-line check that proves an incoming Call which carries a small cap table passes
 * validate.ts (`validateRpcMessageNear`: the pointer walk of walk.ts and the envelope check of
 * envelope-check.ts) with no far pointer, and that reads its envelope as fastpath.ts
 * decodeEnvelope would. The shape is what a call with a `Proxy.Context` sends (bench P4's
 * `callbackSaved` and the callback it makes back: docs/threading.md), and any Call like it: a
 * one-segment Call to an imported capability whose params Payload has
 *
 * - a content that is null or a struct whose pointers are each null, a capability, or a struct
 *   whose own pointers are each null or a capability (the Context: its `thread` and
 *   `callbackThread`), at most {@link MAX_PTRS} pointers per struct;
 * - a non-null cap table: an inline composite list of 1 to {@link MAX_CAPS} CapDescriptors of at
 *   least the schema's size (1 data word, 1 pointer), each of kind none, senderHosted,
 *   senderPromise or receiverHosted, with null pointers (what answers.ts `capTableIn` reads in
 *   place; a receiverAnswer or thirdPartyHosted descriptor has a pointer and is not taken here).
 *
 * Anything else (a far pointer, another list, deeper structs, a promisedAnswer target, other
 * non-null pointers, limits too small to be sure without counting) returns false and takes the
 * full validation and decode, so what is accepted or refused, and with which error, does not
 * change: {@link hotCapsCall} is only ever a sufficient condition for the full check to pass
 * (packages/capnp/test/hot-caps.test.ts compares both on real messages, at and below the limits
 * they need, and on seeded mutations of them).
 *
 * What the walk does on such a message, and so what is checked here: the segment is whole words
 * and within `maxMessageBytes` (segment table included); every struct or list pointer followed is
 * near, its target inside the segment; a capability pointer's first word is exactly 3 (walk.ts
 * refuses other "other" pointers); the cap table's tag is a struct pointer and its elements fit
 * its word count; nesting: the deepest struct followed (a struct in the content) sits 4 pointers
 * below the root's (`nestingLimit >= 5`); traversal: the words of every struct visited (a struct
 * reached twice counted twice, as the walk does) plus the list's words and tag; decode units
 * (those words plus `STRUCT_UNITS` per struct and per list element) within `decodeUnitLimit` and
 * `DECODE_BASE_UNITS`, so below any message's decode budget (limits.ts `decodeBudget`). The
 * envelope check asks for nothing more of this shape: the Call, its target and params are
 * structs, the cap table a struct list of at least 1/1 words per element, whose descriptors of
 * these kinds have no pointer it reads.
 *
 * Why: such a Call otherwise took the general walk with its work stack, the envelope checker's
 * records, then decodeEnvelope's second pass: 0.4-0.5 µs of CPU per Call more than this pass
 * (bench caps-check-micro.js; bench/README "P4 (thirteenth session)").
 *
 * Threading: synchronous, any thread (module state: scratch numbers of the last pointer read,
 * here and hot-shape.ts `structAt`'s, used only within one call).
 */

import { DECODE_BASE_UNITS, STRUCT_UNITS, type ReaderLimits } from "../limits.js";
import { type Envelope, MSG_CALL, viewOf } from "../fastpath.js";
import { readCallHeader } from "../call-header.js";
import { nullsFrom, sDw, sPc, sT, structAt } from "./hot-shape.js";

/** Most pointers of a struct this check looks through (larger ones take the full walk). */
const MAX_PTRS = 16;
/** Most descriptors of a cap table this check reads. */
const MAX_CAPS = 16;
/** CapDescriptor kinds read here: none, senderHosted, senderPromise, receiverHosted. */
const LAST_PLAIN_DESCRIPTOR = 3;

/** Set by {@link contentWords}: the content struct's data section (byte offset; -1: null) and its words. */
let cData = -1;
let cDw = 0;
/** Set by {@link contentWords}: structs visited in the content. */
let cStructs = 0;
/** Set by {@link capTableWords}: descriptors in the cap table. */
let nCaps = 0;

/** Whether the `pc` pointers from word `p` are each null or a capability. */
function capsOrNulls(dv: DataView, b: number, p: number, pc: number): boolean {
  if (pc > MAX_PTRS) return false;
  for (let i = 0; i < pc; i++) {
    const o = b + (p + i) * 8;
    const lo = dv.getUint32(o, true);
    if (lo !== 3 && (lo | dv.getUint32(o + 4, true)) !== 0) return false;
  }
  return true;
}

/**
 * The params content pointer at word `w`: null, or a struct of the shape in the module comment.
 * Returns the words of the structs visited (sets cData/cDw/cStructs), or -1.
 */
function contentWords(dv: DataView, b: number, words: number, w: number): number {
  if ((dv.getUint32(b + w * 8, true) | dv.getUint32(b + w * 8 + 4, true)) === 0) {
    cData = -1;
    cDw = 0;
    cStructs = 0;
    return 0;
  }
  if (!structAt(dv, b, words, w)) return -1;
  const t = sT;
  const dw = sDw;
  const pc = sPc;
  if (pc > MAX_PTRS) return -1;
  let total = dw + pc;
  let structs = 1;
  for (let i = 0; i < pc; i++) {
    const q = t + dw + i;
    const lo = dv.getUint32(b + q * 8, true);
    if (lo === 3 || (lo | dv.getUint32(b + q * 8 + 4, true)) === 0) continue; // a capability, or null
    if (!structAt(dv, b, words, q) || !capsOrNulls(dv, b, sT + sDw, sPc)) return -1;
    total += sDw + sPc;
    structs++;
  }
  cData = b + t * 8;
  cDw = dw;
  cStructs = structs;
  return total;
}

/**
 * The cap table list pointer at word `w`: a composite list of the shape in the module comment.
 * Returns the words the walk charges for it (its elements and tag; sets nCaps), or -1.
 */
function capTableWords(dv: DataView, b: number, words: number, w: number): number {
  const lo = dv.getUint32(b + w * 8, true);
  const hi = dv.getUint32(b + w * 8 + 4, true);
  if ((lo & 3) !== 1 || (hi & 7) !== 7) return -1;
  const t = w + 1 + ((lo | 0) >> 2);
  const count = hi >>> 3;
  if (t < 0 || t + 1 + count > words) return -1;
  const tlo = dv.getUint32(b + t * 8, true);
  const thi = dv.getUint32(b + t * 8 + 4, true);
  const n = tlo >>> 2;
  const dw = thi & 0xffff;
  const pc = thi >>> 16;
  const stride = dw + pc;
  if ((tlo & 3) !== 0 || n < 1 || n > MAX_CAPS || dw < 1 || pc < 1 || n * stride > count) return -1;
  for (let k = 0, e = t + 1; k < n; k++, e += stride) {
    if (dv.getUint16(b + e * 8, true) > LAST_PLAIN_DESCRIPTOR || !nullsFrom(dv, b, e + dw, 0, pc)) return -1;
  }
  nCaps = n;
  return count + 1;
}

/**
 * True when the one-segment message `s` is a Call of the shape in the module comment, and so
 * passes `validateRpcMessageNear(…, lim)` with no far pointer; it then fills `env` as
 * decodeEnvelope would, except `content` and `capTableAt`: `contentAt` and `capTableAt` are the
 * byte offsets of the params' content and cap table pointers from the start of `s` (the caller
 * makes the reader's message, then the content pointer, and adds the segment's byte offset to
 * `capTableAt`); `dataAt` / `dataWords` locate the content struct's data section in
 * `viewOf(s.buffer)` (-1: null content). False: not proven, `env` may be half-written (the
 * caller resets it for the full decode).
 */
export function hotCapsCall(s: Uint8Array, lim: ReaderLimits, env: Envelope): boolean {
  const len = s.byteLength;
  if ((len & 7) !== 0 || len < 16 || len + 8 > lim.maxMessageBytes || lim.nestingLimit < 5 || lim.maxSegments < 1) return false;
  const words = len >>> 3;
  const dv = viewOf(s.buffer);
  const b = s.byteOffset;
  // root → Message: a Call, one non-null pointer (the Call).
  if (!structAt(dv, b, words, 0) || sDw < 1 || sPc < 1 || dv.getUint16(b + sT * 8, true) !== MSG_CALL) return false;
  const mPtrs = sT + sDw;
  if (!nullsFrom(dv, b, mPtrs, 1, sPc)) return false;
  let total = sDw + sPc;
  // Call: pointers target, params, then sendResultsTo.thirdParty (null here).
  if (!structAt(dv, b, words, mPtrs) || sDw < 3 || sPc < 2) return false;
  const body = b + sT * 8;
  const cPtrs = sT + sDw;
  if (!nullsFrom(dv, b, cPtrs, 2, sPc)) return false;
  total += sDw + sPc;
  // MessageTarget with no non-null pointer (importedCap; a promisedAnswer would have one).
  if (!structAt(dv, b, words, cPtrs) || sDw < 1 || !nullsFrom(dv, b, sT + sDw, 0, sPc)) return false;
  const target = b + sT * 8;
  total += sDw + sPc;
  // Payload: content, cap table, nothing else.
  if (!structAt(dv, b, words, cPtrs + 1) || sPc < 2 || !nullsFrom(dv, b, sT + sDw, 2, sPc)) return false;
  total += sDw + sPc;
  const pPtrs = sT + sDw;
  const list = capTableWords(dv, b, words, pPtrs + 1);
  if (list < 0) return false;
  const content = contentWords(dv, b, words, pPtrs);
  if (content < 0) return false;
  total += list + content;
  // Message, Call, MessageTarget, Payload, the content's structs, one per descriptor.
  const units = total + (4 + cStructs + nCaps) * STRUCT_UNITS;
  if (total > lim.traversalLimitWords || units > lim.decodeUnitLimit || units > DECODE_BASE_UNITS) return false;
  readCallHeader(dv, env, body, target);
  env.which = MSG_CALL;
  env.content = null;
  env.hasCapTable = true;
  env.contentAt = pPtrs * 8;
  env.capTableAt = (pPtrs + 1) * 8;
  env.dataAt = cData;
  env.dataWords = cDw;
  return true;
}
