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
 * {@link hotEnvelope} is the same check, and it also fills the connection's {@link Envelope} with
 * what fastpath.ts's decodeEnvelope / decodeControl would read from the message (the pointers it
 * follows are the ones just checked): one pass over the envelope instead of a validation walk and
 * then a decode, and a Finish or Release handled with no further look at its bytes. It reads
 * through a DataView of the message's buffer (the one its in-place reader shares, fastpath.ts
 * `viewOf`), one load per 32-bit word instead of four byte loads. It accepts a little less than
 * the check alone (the envelope structs must be at least as large as decodeEnvelope reads, which
 * every sender's are); what it does not accept takes the full validation and decode as before.
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
 * read and a scratch envelope for {@link hotShape}, used only within one call).
 */

import { DECODE_BASE_UNITS, STRUCT_UNITS, type ReaderLimits } from "../limits.js";
import { Envelope, MSG_CALL, MSG_FINISH, MSG_RELEASE, MSG_RETURN, viewOf } from "../fastpath.js";
import { readCallHeader } from "../call-header.js";

/** Pointer-walk result of the last {@link structAt}: target word, data words, pointer count (hot-caps.ts reads them too). */
export let sT = 0;
export let sDw = 0;
export let sPc = 0;

/** Set by the last {@link payloadWords}: its content struct's data section (byte offset in the view; -1: null content) and data words. */
let pData = -1;
let pDw = 0;

/**
 * The non-null near struct pointer at word `w` of a segment of `words` words starting at byte
 * `b` of `dv`, its target inside the segment: sets sT/sDw/sPc and returns true; false for anything else.
 */
export function structAt(dv: DataView, b: number, words: number, w: number): boolean {
  const lo = dv.getUint32(b + w * 8, true);
  const hi = dv.getUint32(b + w * 8 + 4, true);
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
export function nullsFrom(dv: DataView, b: number, p: number, from: number, pc: number): boolean {
  for (let i = from; i < pc; i++) {
    const o = b + (p + i) * 8;
    if ((dv.getUint32(o, true) | dv.getUint32(o + 4, true)) !== 0) return false;
  }
  return true;
}

/**
 * Whether the Payload at word `p` (`dw` data words, `pc` pointers) has no cap table and a null
 * or pointer-free struct content; returns the words of the structs visited below it, or -1.
 */
function payloadWords(dv: DataView, b: number, words: number, p: number, dw: number, pc: number): number {
  if (pc < 1 || !nullsFrom(dv, b, p + dw, 1, pc)) return -1;
  const cw = b + (p + dw) * 8; // content pointer
  if (dv.getUint32(cw, true) === 0 && dv.getUint32(cw + 4, true) === 0) {
    pData = -1;
    pDw = 0;
    return 0;
  }
  if (!structAt(dv, b, words, p + dw) || !nullsFrom(dv, b, sT + sDw, 0, sPc)) return -1;
  pData = b + sT * 8;
  pDw = sDw;
  return sDw + sPc;
}

/**
 * True when the one-segment message `s` is of a hot shape (see the module comment) and so passes
 * `validateRpcMessageNear(…, lim)` with no far pointer; false means "not proven": validate it.
 */
export function hotShape(s: Uint8Array, lim: ReaderLimits): boolean {
  return hotEnvelope(s, lim, scratch);
}

const scratch = new Envelope();

/**
 * {@link hotShape} that also fills `env` as decodeEnvelope (Call, Return) or decodeControl
 * (Finish, Release) would, except `content`: for a Call or Return, `contentAt` is the byte offset
 * of the payload's content pointer from the start of `s` (the caller makes the reader's message
 * and the pointer) and `dataAt` / `dataWords` locate the content struct's data section in
 * `viewOf(s.buffer)` (-1: null content); -1 for Finish and Release. False: not proven, `env` is left half-written
 * (the caller resets it for the full decode).
 */
export function hotEnvelope(s: Uint8Array, lim: ReaderLimits, env: Envelope): boolean {
  const len = s.byteLength;
  if ((len & 7) !== 0 || len < 16 || len + 8 > lim.maxMessageBytes || lim.nestingLimit < 4 || lim.maxSegments < 1) return false;
  const words = len >>> 3;
  const dv = viewOf(s.buffer);
  const b = s.byteOffset;
  // root → Message: which in its first data word, one pointer (the body).
  if (!structAt(dv, b, words, 0) || sDw < 1 || sPc < 1) return false;
  const m = sT;
  const mPtrs = m + sDw;
  if (!nullsFrom(dv, b, mPtrs, 1, sPc)) return false;
  let total = sDw + sPc;
  let structs = 2; // Message and its body
  const which = dv.getUint16(b + m * 8, true);
  if (!structAt(dv, b, words, mPtrs)) return false;
  const body = b + sT * 8; // byte offset of the body's data section
  const bDw = sDw;
  const bPc = sPc;
  total += bDw + bPc;
  const bPtrs = sT + bDw;
  // Finish and Release are read by a constant chosen here and called below from one call site
  // that every hot message passes (Call and Return by a reader that does nothing): a warm server
  // of `noFinishNeeded` calls sees no Finish but a new connection's Bootstrap's, and a case of its
  // own would have no type feedback there (dispatch.ts `hotMessage`).
  let control = noControl;
  switch (which) {
    case MSG_CALL: {
      // Call: pointers target, params, then sendResultsTo.thirdParty (null here).
      if (bDw < 3 || bPc < 2 || !nullsFrom(dv, b, bPtrs, 2, bPc)) return false;
      // MessageTarget with no non-null pointer (importedCap; a promisedAnswer would have one).
      if (!structAt(dv, b, words, bPtrs) || sDw < 1 || !nullsFrom(dv, b, sT + sDw, 0, sPc)) return false;
      const target = b + sT * 8;
      total += sDw + sPc;
      if (!structAt(dv, b, words, bPtrs + 1)) return false;
      total += sDw + sPc;
      const contentAt = (sT + sDw) * 8;
      const c = payloadWords(dv, b, words, sT, sDw, sPc);
      if (c < 0) return false;
      total += c;
      structs = 5; // Message, Call, MessageTarget, Payload, content (counted even when null: an upper bound)
      readCallHeader(dv, env, body, target);
      env.contentAt = contentAt;
      env.dataAt = pData;
      env.dataWords = pDw;
      break;
    }
    case MSG_RETURN: {
      // Return: results (which = 0) only; pointer 0 is the results Payload.
      if (bDw < 2 || bPc < 1 || dv.getUint16(body + 6, true) !== 0 || !nullsFrom(dv, b, bPtrs, 1, bPc)) return false;
      if (!structAt(dv, b, words, bPtrs)) return false;
      total += sDw + sPc;
      const contentAt = (sT + sDw) * 8;
      const c = payloadWords(dv, b, words, sT, sDw, sPc);
      if (c < 0) return false;
      total += c;
      structs = 4; // Message, Return, Payload, content (as above)
      const flags = dv.getUint8(body + 4);
      env.id = dv.getUint32(body, true);
      env.releaseParamCaps = (flags & 1) === 0;
      env.noFinishNeeded = (flags & 2) !== 0;
      env.retWhich = 0;
      env.takeFromOtherQuestion = dv.getUint32(body + 8, true);
      env.contentAt = contentAt;
      env.dataAt = pData;
      env.dataWords = pDw;
      break;
    }
    case MSG_FINISH:
    case MSG_RELEASE:
      control = readControl;
      break;
    default:
      return false;
  }
  if (!control(dv, b, body, bPtrs, bDw, bPc, which, env)) return false;
  const units = total + structs * STRUCT_UNITS;
  if (total > lim.traversalLimitWords || units > lim.decodeUnitLimit || units > DECODE_BASE_UNITS) return false;
  env.which = which;
  env.content = null;
  env.hasCapTable = false;
  env.capTableAt = -1;
  return true;
}

/** The reader of a Finish or Release body (see hotEnvelope): false when not proven. */
type ControlReader = (dv: DataView, b: number, body: number, bPtrs: number, bDw: number, bPc: number, which: number, env: Envelope) => boolean;
const noControl: ControlReader = () => true;
const readControl: ControlReader = (dv, b, body, bPtrs, bDw, bPc, which, env) => {
  if (bDw < 1 || !nullsFrom(dv, b, bPtrs, 0, bPc)) return false;
  env.id = dv.getUint32(body, true);
  if (which === MSG_FINISH) env.releaseResultCaps = (dv.getUint8(body + 4) & 1) === 0;
  else env.referenceCount = dv.getUint32(body + 4, true);
  env.contentAt = -1;
  env.dataAt = -1;
  return true;
};
