/**
 * The pointer walk behind `validateMessage` (validate.ts): from the root, like a reader touching
 * every field would, it checks bounds and pointer kinds and charges the three per-message
 * budgets — traversal words (C++ `traversalLimitInWords` semantics: every object visit counts
 * its words, zero-sized list elements one word each), nesting depth, and decode units (the
 * cost model of docs/rpc.md: every struct visit `STRUCT_UNITS` + its words, every Void/Bool
 * element one unit, every list pointer one unit, other lists their words).
 *
 * Cost: no allocation per message or pointer (a reused walker, result record and explicit work
 * stack); words are read straight from the segments' bytes ({@link u32le}), every read inside a
 * range checked first.
 * Threading: synchronous and not re-entrant; any thread (each thread has its own module state).
 */

import { LimitError, ProtocolError } from "./errors.js";
import { decodeBudget, DEFAULT_LIMITS, STRUCT_UNITS, type ReaderLimits } from "./limits.js";

// Work stack: entries of 6 int32s describing a run of pointers to check:
// [segment, first pointer word, pointers per element, element count, element stride, nesting left]
const ENTRY = 6;
let stack = new Int32Array(ENTRY * 64);

function grow(need: number): void {
  if (need <= stack.length) return;
  let n = stack.length * 2;
  while (n < need) n *= 2;
  const s = new Int32Array(n);
  s.set(stack);
  stack = s;
}

/** Bits per element for list element size codes 0..6 (7 = composite). */
const ELEMENT_BITS = [0, 1, 8, 16, 32, 64, 64, 0];

/**
 * What a walk found: words traversed, decode units charged. The object is reused by the next
 * walk (no allocation per message): read it before walking again.
 */
export interface WalkResult {
  traversed: number;
  units: number;
  /** Whether a far pointer was followed (a reader must then resolve segment-absolute offsets). */
  far: boolean;
}

/** The little-endian uint32 at byte `o` of `b` (the caller checked that `o + 4 <= b.byteLength`). */
export function u32le(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

// Reused from walk to walk (synchronous, not re-entrant): the segments and their word counts,
// the result record, and the walker itself.
const segBytes: Uint8Array[] = [];
const segWords: number[] = [];
const result: WalkResult = { traversed: 0, units: 0, far: false };

/** Segment count/size checks and the root pointer kind; fills segBytes/segWords, returns the bytes. */
function checkSegments(segments: readonly Uint8Array[], lim: ReaderLimits): number {
  const nseg = segments.length;
  if (nseg === 0) throw new ProtocolError("message has no segments");
  if (nseg > lim.maxSegments) {
    throw new LimitError(`message has ${nseg} segments, more than the limit maxSegments = ${lim.maxSegments}`);
  }
  const views = segBytes;
  const words = segWords;
  if (views.length !== nseg) {
    views.length = nseg;
    words.length = nseg;
  }
  let bytes = ((nseg + 2) >>> 1) * 8;
  for (let i = 0; i < nseg; i++) {
    const s = segments[i]!;
    if ((s.byteLength & 7) !== 0) throw new ProtocolError(`segment ${i} is not a whole number of words`);
    bytes += s.byteLength;
    views[i] = s;
    words[i] = s.byteLength >>> 3;
  }
  if (bytes > lim.maxMessageBytes) {
    throw new LimitError(`message is ${bytes} bytes, more than the limit maxMessageBytes = ${lim.maxMessageBytes}`);
  }
  if (words[0]! < 1) throw new ProtocolError("message has no root pointer (first segment is empty)");
  // The root must be a struct (or null), possibly behind a far pointer: readers (C++
  // getRoot<T>, capnp-ts getRoot) take it as a struct; capnp-ts crashes on anything else.
  const lo = u32le(views[0]!, 0);
  const hi = u32le(views[0]!, 4);
  let kind = lo & 3;
  if (kind === 2 && hi < nseg && (lo >>> 3) + ((lo & 4) !== 0 ? 2 : 1) <= words[hi]!) {
    const pv = views[hi]!;
    const pad = lo >>> 3;
    kind = (lo & 4) !== 0 ? u32le(pv, pad * 8 + 8) & 3 : u32le(pv, pad * 8) & 3;
  }
  if (kind === 1 || kind === 3) throw new ProtocolError("message root is not a struct pointer");
  return bytes;
}

/**
 * Walk `segments` under `lim`. The pointer at word `skipWord` of segment `skipSeg` (when >= 0)
 * is treated as null (validate.ts checks a Call's envelope without its params this way).
 * The result is reused by the next walk (see {@link WalkResult}).
 */
export function walkMessage(segments: readonly Uint8Array[], lim: ReaderLimits, skipSeg: number, skipWord: number): WalkResult {
  const bytes = checkSegments(segments, lim);
  const w = walker;
  w.reset(lim, decodeBudget(bytes, lim), bytes, skipSeg, skipWord);
  try {
    w.run();
  } finally {
    w.lim = DEFAULT_LIMITS; // keep no reference to the caller's limits
  }
  result.traversed = lim.traversalLimitWords - w.budget;
  result.units = w.unitBudget - w.units;
  result.far = w.farSeen;
  return result;
}

const NO_BYTES = new Uint8Array(0);

/** Drop the segments of the last walk (so a big message's buffer is not kept until the next one). */
export function releaseWalk(): void {
  for (let i = 0; i < segBytes.length; i++) segBytes[i] = NO_BYTES;
}

class Walker {
  /** Traversal words left. */
  budget = 0;
  /** Decode units left. */
  units = 0;
  unitBudget = 0;
  lim: ReaderLimits = DEFAULT_LIMITS;
  /** A far pointer was followed in this walk. */
  farSeen = false;
  private bytes = 0;
  private skipSeg = -1;
  private skipWord = -1;
  private readonly views = segBytes;
  private readonly words = segWords;
  private sp = 0;
  // Result of far(): the resolved pointer.
  private fSeg = 0;
  private fTarget = 0;
  private fLo = 0;
  private fHi = 0;

  reset(lim: ReaderLimits, unitBudget: number, bytes: number, skipSeg: number, skipWord: number): void {
    this.lim = lim;
    this.unitBudget = unitBudget;
    this.bytes = bytes;
    this.skipSeg = skipSeg;
    this.skipWord = skipWord;
    this.budget = lim.traversalLimitWords;
    this.units = unitBudget;
    this.farSeen = false;
  }

  run(): void {
    this.sp = 0;
    this.push(0, 0, 1, 1, 0, Math.min(this.lim.nestingLimit, 0x7fffffff)); // the root pointer
    while (this.sp > 0) {
      this.sp -= ENTRY;
      const sp = this.sp;
      const eseg = stack[sp]!;
      const efirst = stack[sp + 1]!;
      const eper = stack[sp + 2]!;
      const ecount = stack[sp + 3]!;
      const estride = stack[sp + 4]!;
      const depth = stack[sp + 5]!;
      for (let el = 0; el < ecount; el++) {
        const base = efirst + el * estride;
        for (let k = 0; k < eper; k++) this.pointer(eseg, base + k, depth);
      }
    }
  }

  /** Check and charge the pointer at word `pw` of segment `eseg`; queue what it points to. */
  private pointer(eseg: number, pw: number, depth: number): void {
    const ev = this.views[eseg]!;
    let lo = u32le(ev, pw * 8);
    let hi = u32le(ev, pw * 8 + 4);
    if (lo === 0 && hi === 0) return; // null
    if (pw === this.skipWord && eseg === this.skipSeg) return;
    let kind = lo & 3;
    if (kind === 3) {
      if (lo !== 3) throw new ProtocolError("unknown 'other' pointer type (not a capability)");
      return; // capability: index checked by the reader against the cap table
    }
    let seg = eseg;
    let target: number;
    if (kind === 2) {
      if (!this.far(lo, hi)) return; // null landing pad reads as null
      seg = this.fSeg;
      target = this.fTarget;
      lo = this.fLo;
      hi = this.fHi;
      kind = lo & 3;
    } else target = pw + 1 + ((lo | 0) >> 2);
    if (depth <= 0) tooDeep(this.lim);
    if (kind === 0) this.struct(seg, target, hi, depth);
    else this.list(seg, target, hi, depth);
  }

  /** Resolve a far pointer into fSeg/fTarget/fLo/fHi (the word carrying the type); false for a null pad. */
  private far(lo: number, hi: number): boolean {
    this.farSeen = true;
    const double = (lo & 4) !== 0;
    const pad = lo >>> 3;
    const padSeg = hi;
    if (padSeg >= this.views.length) throw new ProtocolError(`far pointer to unknown segment ${padSeg}`);
    const pv = this.views[padSeg]!;
    if (pad + (double ? 2 : 1) > this.words[padSeg]!) throw new ProtocolError("far pointer landing pad out of bounds");
    const plo = u32le(pv, pad * 8);
    const phi = u32le(pv, pad * 8 + 4);
    if (!double) {
      const kind = plo & 3;
      if (kind === 2) throw new ProtocolError("far pointer landing pad is another far pointer");
      if (kind === 3) throw new ProtocolError("far pointer to a capability pointer");
      if (plo === 0 && phi === 0) return false;
      this.fSeg = padSeg;
      this.fTarget = pad + 1 + ((plo | 0) >> 2);
      this.fLo = plo;
      this.fHi = phi;
      return true;
    }
    if ((plo & 7) !== 2) throw new ProtocolError("double-far landing pad is not a single far pointer");
    if (phi >= this.views.length) throw new ProtocolError(`double-far pointer to unknown segment ${phi}`);
    this.fSeg = phi;
    this.fTarget = plo >>> 3;
    this.fLo = u32le(pv, pad * 8 + 8);
    this.fHi = u32le(pv, pad * 8 + 12);
    const kind = this.fLo & 3;
    if (kind === 2 || kind === 3) throw new ProtocolError("double-far tag is not a struct or list pointer");
    return true;
  }

  private charge(words: number, units: number): void {
    this.budget -= words;
    if (this.budget < 0) overBudget(this.lim);
    this.units -= units;
    if (this.units < 0) overDecodeBudget(this.lim, this.unitBudget, this.bytes);
  }

  private struct(seg: number, target: number, hi: number, depth: number): void {
    const dw = hi & 0xffff;
    const pc = hi >>> 16;
    const size = dw + pc;
    if (target < 0 || target + size > this.words[seg]!) throw new ProtocolError("struct pointer out of bounds");
    this.charge(size, size + STRUCT_UNITS);
    if (pc > 0) this.push(seg, target + dw, pc, 1, 0, depth - 1);
  }

  private list(seg: number, target: number, hi: number, depth: number): void {
    const es = hi & 7;
    const count = hi >>> 3;
    const segWords = this.words[seg]!;
    if (es === 7) {
      // Composite: `count` is the word count of the elements; a tag word precedes them.
      if (target < 0 || target + 1 + count > segWords) throw new ProtocolError("composite list out of bounds");
      const sv = this.views[seg]!;
      const tlo = u32le(sv, target * 8);
      const thi = u32le(sv, target * 8 + 4);
      if ((tlo & 3) !== 0) throw new ProtocolError("composite list tag is not a struct pointer");
      const n = tlo >>> 2;
      const dw = thi & 0xffff;
      const pc = thi >>> 16;
      const stride = dw + pc;
      if (n * stride > count) throw new ProtocolError("composite list elements overrun the list");
      this.charge(stride === 0 ? Math.max(n, count) + 1 : count + 1, count + 1 + n * STRUCT_UNITS);
      if (pc > 0 && n > 0) this.push(seg, target + 1 + dw, pc, n, stride, depth - 1);
      return;
    }
    const listWords = Math.ceil((count * ELEMENT_BITS[es]!) / 64);
    if (target < 0 || target + listWords > segWords) throw new ProtocolError("list pointer out of bounds");
    // Void and Bool lists: one unit per element (a reader makes one JS value each);
    // wider elements: their words (at most 8 elements per word, read by bulk copies).
    this.charge(es === 0 ? count : listWords, 1 + (es <= 1 ? count : listWords));
    if (es === 6 && count > 0) this.push(seg, target, count, 1, 0, depth - 1);
  }

  private push(seg: number, first: number, per: number, count: number, stride: number, depth: number): void {
    const sp = this.sp;
    grow(sp + ENTRY);
    stack[sp] = seg;
    stack[sp + 1] = first;
    stack[sp + 2] = per;
    stack[sp + 3] = count;
    stack[sp + 4] = stride;
    stack[sp + 5] = depth;
    this.sp = sp + ENTRY;
  }
}

function overBudget(lim: ReaderLimits): never {
  throw new LimitError(
    `message exceeds the limit traversalLimitWords = ${lim.traversalLimitWords} ` +
      `(too large, or pointers to the same data repeated)`,
  );
}

function overDecodeBudget(lim: ReaderLimits, budget: number, bytes: number): never {
  throw new LimitError(
    `message of ${bytes} bytes costs more than its decode budget of ${budget} units ` +
      `(decodeAmplification = ${lim.decodeAmplification} per word + 65536, at most decodeUnitLimit = ${lim.decodeUnitLimit}): ` +
      `repeated pointers, zero-sized or bit-sized elements`,
  );
}

function tooDeep(lim: ReaderLimits): never {
  throw new LimitError(`message nesting exceeds the limit nestingLimit = ${lim.nestingLimit} (or it contains cycles)`);
}

const walker = new Walker();
