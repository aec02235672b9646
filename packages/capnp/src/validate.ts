/**
 * Structural validation of an incoming message before anything decodes it (the walk itself is
 * walk.ts). It walks the whole pointer tree from the root, like a reader touching every field
 * would, and checks:
 *
 * - every pointer's target lies inside its segment (struct, list, composite-list tag and
 *   elements, far and double-far landing pads, the segments they name);
 * - pointer kinds are ones Cap'n Proto defines (capability pointers are accepted; their index
 *   is the engine's business, checked against the cap table when read);
 * - the traversal limit: every object visited counts its words (lists of zero-sized elements
 *   count one word per element, as C++ `amplifiedRead` does), so repeated pointers to one big
 *   object cannot amplify work;
 * - the nesting limit: each struct or list pointer followed uses one level (a composite list
 *   and its elements share one level, as in C++);
 * - the decode budget (docs/rpc.md "Cost model"): the work decoding the message can cause, in
 *   units of about one materialised JS value, is at most `decodeAmplification` units per word
 *   on the wire plus `DECODE_BASE_UNITS`, and never more than `decodeUnitLimit`. Every pointer
 *   visit (a DAG's shared object counts each time), every struct (also a composite list's
 *   elements, zero-sized ones included) and every element of a Void or Bool list is charged.
 *
 * After it passes, capnp-ts can read any pointer of the message without going out of bounds.
 * Errors: `LimitError` for the limits, `ProtocolError` for everything malformed.
 *
 * `validateRpcMessage` adds the rpc.capnp envelope check and attributes a limit exceeded inside
 * a Call's params to that call ({@link CallLimitError}).
 *
 * Threading: synchronous, any thread.
 */

import * as capnp from "capnp-ts";
// Not exported from capnp-ts's index; needed to read segments without re-framing them.
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import { preallocateSegments } from "capnp-ts/src/serialization/message.js";
import { LimitError, ProtocolError } from "./errors.js";
import { resolveLimits, type ReaderLimits } from "./limits.js";
import { releaseWalk, walkMessage, type WalkResult } from "./walk.js";

export { DECODE_AMPLIFICATION, DECODE_BASE_UNITS, STRUCT_UNITS, decodeBudget } from "./limits.js";

const cachedLimits = new WeakMap<object, ReaderLimits>();

const DEFAULTS = resolveLimits();

function limitsOf(limits: Partial<ReaderLimits> | undefined): ReaderLimits {
  if (limits === undefined) return DEFAULTS;
  let r = cachedLimits.get(limits);
  if (r === undefined) {
    r = resolveLimits(limits);
    cachedLimits.set(limits, r);
  }
  return r;
}

/**
 * Validate `segments` (as produced by `FrameDecoder`) against `limits`. Throws `LimitError` or
 * `ProtocolError`; returns normally when every pointer reachable from the root is sound.
 * Returns the number of words traversed.
 */
export function validateMessage(segments: readonly Uint8Array[], limits?: Partial<ReaderLimits>): number {
  try {
    return walkMessage(segments, limitsOf(limits), -1, -1).traversed;
  } finally {
    releaseWalk();
  }
}

/** Decode units {@link validateMessage} charges for `segments` (throws like it when over a limit). */
export function decodeCost(segments: readonly Uint8Array[], limits?: Partial<ReaderLimits>): number {
  try {
    return walkMessage(segments, limitsOf(limits), -1, -1).units;
  } finally {
    releaseWalk();
  }
}

/**
 * A capnp-ts `Message` over `segments` for reading, after {@link validateMessage}. Segments that
 * are exactly a whole `ArrayBuffer` are used as they are; views into larger buffers (the usual
 * case with `FrameDecoder` output) are copied, because capnp-ts segments must start at offset 0
 * of their buffer. capnp-ts's own traversal limit is lifted: validation already enforced ours.
 */
export function readMessage(segments: readonly Uint8Array[], limits?: Partial<ReaderLimits>): capnp.Message {
  validateMessage(segments, limits);
  return messageFromSegments(segments);
}

/**
 * The segment as a whole `ArrayBuffer`: itself when it spans its buffer, else a copy of exactly
 * its bytes. Not `s.slice()`: on a Node `Buffer` (a pooled socket chunk) that is a view of the
 * same pool, whose `.buffer` starts with bytes that were never validated.
 */
function ownBuffer(s: Uint8Array): ArrayBuffer {
  const b = s.buffer;
  if (b instanceof ArrayBuffer) {
    return s.byteOffset === 0 && s.byteLength === b.byteLength ? b : b.slice(s.byteOffset, s.byteOffset + s.byteLength);
  }
  const copy = new Uint8Array(s.byteLength);
  copy.set(s);
  return copy.buffer;
}

/** A capnp-ts `Message` over `segments` without validating them (see {@link readMessage}). */
export function messageFromSegments(segments: readonly Uint8Array[]): capnp.Message {
  const buffers = segments.map(ownBuffer);
  const m = new capnp.Message(new MultiSegmentArena(buffers), false);
  preallocateSegments(m); // what capnp-ts does for a framed buffer: segments span their buffers
  m._capnp.traversalLimit = Infinity;
  return m;
}

// ---------------------------------------------------------------------------------------------
// rpc.capnp envelope check

/** A struct located in a message (word indices). */
interface SRef {
  seg: number;
  data: number;
  dw: number;
  pc: number;
}

/**
 * Checks the pointer kinds of the rpc.capnp envelope of a message that passed
 * {@link validateMessage}. capnp-ts does not check what kind of pointer it reads: a list where a
 * struct is expected (or a capability where a list is expected) makes it read with sizes taken
 * from the wrong bits, and composite lists whose elements are smaller than the schema's make it
 * "upgrade" the list by copying inside the message (buggy: it can overrun). This walks the
 * fields an RPC engine reads (Message union, Call, Return, Resolve, Disembargo, MessageTarget,
 * PromisedAnswer and its transform, Payload cap table, CapDescriptor, Exception texts) and
 * requires: struct fields are struct pointers, struct lists are composite lists whose elements
 * are at least the schema's size, Text is a byte list ending in NUL. `Payload.content` and other
 * AnyPointer fields are not checked (their schema is the application's).
 */
class RpcEnvelope {
  private readonly views: DataView[];
  constructor(
    private readonly segs: readonly Uint8Array[],
    views: DataView[],
  ) {
    this.views = views;
  }

  /** Resolve the pointer at (seg, word): kind, and target (after far pointers), or null. */
  private resolve(seg: number, w: number): { kind: number; seg: number; target: number; hi: number } | null {
    const v = this.views[seg]!;
    let lo = v.getUint32(w * 8, true);
    let hi = v.getUint32(w * 8 + 4, true);
    if (lo === 0 && hi === 0) return null;
    if ((lo & 3) === 2) {
      const double = (lo & 4) !== 0;
      const pad = lo >>> 3;
      const pv = this.views[hi]!;
      const padSeg = hi;
      lo = pv.getUint32(pad * 8, true);
      hi = pv.getUint32(pad * 8 + 4, true);
      if (!double) {
        if (lo === 0 && hi === 0) return null;
        return { kind: lo & 3, seg: padSeg, target: pad + 1 + ((lo | 0) >> 2), hi };
      }
      const target = lo >>> 3;
      const contentSeg = hi;
      const tlo = pv.getUint32(pad * 8 + 8, true);
      const thi = pv.getUint32(pad * 8 + 12, true);
      return { kind: tlo & 3, seg: contentSeg, target, hi: thi };
    }
    return { kind: lo & 3, seg, target: w + 1 + ((lo | 0) >> 2), hi };
  }

  private u16(s: SRef, byte: number): number {
    if (byte + 2 > s.dw * 8) return 0;
    return this.views[s.seg]!.getUint16(s.data * 8 + byte, true);
  }

  /** Struct field `i` of `s` (null when absent or null). */
  struct(s: SRef | null, i: number, what: string): SRef | null {
    if (s === null || i >= s.pc) return null;
    const p = this.resolve(s.seg, s.data + s.dw + i);
    if (p === null) return null;
    if (p.kind !== 0) throw new ProtocolError(`${what} is not a struct pointer`);
    return { seg: p.seg, data: p.target, dw: p.hi & 0xffff, pc: p.hi >>> 16 };
  }

  /** Struct-list field `i` of `s`: its elements, each at least `minDw` data words and `minPc` pointers. */
  structList(s: SRef | null, i: number, minDw: number, minPc: number, what: string): SRef[] {
    if (s === null || i >= s.pc) return [];
    const p = this.resolve(s.seg, s.data + s.dw + i);
    if (p === null) return [];
    if (p.kind !== 1 || (p.hi & 7) !== 7) throw new ProtocolError(`${what} is not a list of structs`);
    const v = this.views[p.seg]!;
    const tlo = v.getUint32(p.target * 8, true);
    const thi = v.getUint32(p.target * 8 + 4, true);
    const n = tlo >>> 2;
    const dw = thi & 0xffff;
    const pc = thi >>> 16;
    if (n > 0 && (dw < minDw || pc < minPc)) {
      throw new ProtocolError(`${what} elements are smaller than the schema's (${dw}/${pc} words, need ${minDw}/${minPc})`);
    }
    const out = new Array<SRef>(n);
    for (let k = 0; k < n; k++) out[k] = { seg: p.seg, data: p.target + 1 + k * (dw + pc), dw, pc };
    return out;
  }

  /** Text field `i` of `s`: null, or a byte list ending in NUL. */
  text(s: SRef | null, i: number, what: string): void {
    if (s === null || i >= s.pc) return;
    const p = this.resolve(s.seg, s.data + s.dw + i);
    if (p === null) return;
    const count = p.hi >>> 3;
    if (p.kind !== 1 || (p.hi & 7) !== 2) throw new ProtocolError(`${what} is not Text (a byte list)`);
    if (count === 0 || this.segs[p.seg]![p.target * 8 + count - 1] !== 0) {
      throw new ProtocolError(`${what} is Text that is not NUL-terminated`);
    }
  }

  message(m: SRef | null, depth: number): void {
    if (m === null) return;
    switch (this.u16(m, 0)) {
      case 0: // unimplemented: the message we sent, echoed
        if (depth < 2) this.message(this.struct(m, 0, "Message.unimplemented"), depth + 1);
        return;
      case 1:
        return this.exception(this.struct(m, 0, "Message.abort"), "Message.abort");
      case 2: {
        const c = this.struct(m, 0, "Message.call");
        this.target(this.struct(c, 0, "Call.target"), "Call.target");
        this.payload(this.struct(c, 1, "Call.params"), "Call.params");
        return;
      }
      case 3: {
        const r = this.struct(m, 0, "Message.return");
        if (r === null) return;
        const w = this.u16(r, 6);
        if (w === 0) this.payload(this.struct(r, 0, "Return.results"), "Return.results");
        else if (w === 1) this.exception(this.struct(r, 0, "Return.exception"), "Return.exception");
        return;
      }
      case 4: // finish
      case 6: // release
        this.struct(m, 0, "Message body");
        return;
      case 5: {
        const r = this.struct(m, 0, "Message.resolve");
        if (r === null) return;
        const w = this.u16(r, 4);
        if (w === 0) this.capDescriptor(this.struct(r, 0, "Resolve.cap"), "Resolve.cap");
        else if (w === 1) this.exception(this.struct(r, 0, "Resolve.exception"), "Resolve.exception");
        return;
      }
      case 8: // bootstrap
        this.struct(m, 0, "Message.bootstrap");
        return;
      case 13: {
        const d = this.struct(m, 0, "Message.disembargo");
        this.target(this.struct(d, 0, "Disembargo.target"), "Disembargo.target");
        return;
      }
      case 10: // provide
      case 12: // join
        this.target(this.struct(this.struct(m, 0, "Message body"), 0, "target"), "target");
        return;
      case 11: // accept
        this.struct(m, 0, "Message.accept");
        return;
      default: // obsoleteSave/obsoleteDelete (AnyPointer) or unknown: the engine answers Unimplemented
    }
  }

  private target(t: SRef | null, what: string): void {
    if (t === null) return;
    if (this.u16(t, 4) === 1) this.promisedAnswer(this.struct(t, 0, `${what}.promisedAnswer`), `${what}.promisedAnswer`);
  }

  private promisedAnswer(p: SRef | null, what: string): void {
    this.structList(p, 0, 1, 0, `${what}.transform`);
  }

  private payload(p: SRef | null, what: string): void {
    for (const d of this.structList(p, 1, 1, 1, `${what}.capTable`)) this.capDescriptor(d, `${what}.capTable[]`);
  }

  private capDescriptor(d: SRef | null, what: string): void {
    if (d === null) return;
    const w = this.u16(d, 0);
    if (w === 4) this.promisedAnswer(this.struct(d, 0, `${what}.receiverAnswer`), `${what}.receiverAnswer`);
    else if (w === 5) this.struct(d, 0, `${what}.thirdPartyHosted`);
  }

  private exception(e: SRef | null, what: string): void {
    this.text(e, 0, `${what}.reason`);
    this.text(e, 1, `${what}.trace`);
  }

  root(): SRef | null {
    return this.struct({ seg: 0, data: 0, dw: 0, pc: 1 }, 0, "message root");
  }
}

/**
 * {@link validateMessage}, then the rpc.capnp envelope check described at {@link RpcEnvelope}:
 * after this, capnp-ts can read every field of the rpc.capnp `Message` an engine reads without
 * misinterpreting a pointer. Throws `LimitError`/`ProtocolError`; returns the words traversed.
 */
export function validateRpcMessage(segments: readonly Uint8Array[], limits?: Partial<ReaderLimits>): number {
  const lim = limitsOf(limits);
  let walk: WalkResult;
  try {
    walk = walkMessage(segments, lim, -1, -1);
  } catch (e) {
    releaseWalk();
    if (e instanceof LimitError) throw attributeLimit(segments, lim, e);
    throw e;
  }
  try {
    const env = new RpcEnvelope(segments, walk.views);
    env.message(env.root(), 0);
    return walk.traversed;
  } finally {
    releaseWalk();
  }
}

/**
 * A limit exceeded inside the params of an incoming Call, whose envelope is sound: the engine
 * answers that one call with this error (an exception Return) and the connection carries on.
 */
export class CallLimitError extends LimitError {
  constructor(
    message: string,
    /** The Call's question ID (our answer ID). */
    readonly questionId: number,
  ) {
    super(message);
  }
}

/**
 * `err` came from the whole message: if it is a Call whose envelope (everything but the params
 * content: target, cap table) passes validation on its own, the error is the call's
 * ({@link CallLimitError}); otherwise it is the connection's, unchanged.
 */
function attributeLimit(segments: readonly Uint8Array[], lim: ReaderLimits, err: LimitError): LimitError {
  const loc = locateCallContent(segments);
  if (loc === null) return err;
  try {
    const walk = walkMessage(segments, lim, loc.seg, loc.word);
    const env = new RpcEnvelope(segments, walk.views);
    env.message(env.root(), 0);
  } catch {
    return err;
  } finally {
    releaseWalk();
  }
  return new CallLimitError(`call params: ${err.message}`, loc.questionId);
}

/** Bounds-checked struct lookup for {@link locateCallContent}: (seg, data word, dw, pc) or null. */
function structAt(views: DataView[], seg: number, w: number): SRef | null {
  let v = views[seg]!;
  if ((w + 1) * 8 > v.byteLength) return null;
  let lo = v.getUint32(w * 8, true);
  let hi = v.getUint32(w * 8 + 4, true);
  let target: number;
  if ((lo & 7) === 2) {
    // A single far pointer (the envelope never needs double-far ones).
    if (hi >= views.length) return null;
    seg = hi;
    v = views[seg]!;
    const pad = lo >>> 3;
    if ((pad + 1) * 8 > v.byteLength) return null;
    lo = v.getUint32(pad * 8, true);
    hi = v.getUint32(pad * 8 + 4, true);
    target = pad + 1 + ((lo | 0) >> 2);
  } else target = w + 1 + ((lo | 0) >> 2);
  if ((lo & 3) !== 0 || (lo === 0 && hi === 0)) return null;
  const dw = hi & 0xffff;
  const pc = hi >>> 16;
  if (target < 0 || (target + dw + pc) * 8 > v.byteLength) return null;
  return { seg, data: target, dw, pc };
}

/** Where the params content pointer of a Call message is, and its question ID; null if not a Call. */
function locateCallContent(segments: readonly Uint8Array[]): { seg: number; word: number; questionId: number } | null {
  if (segments.length === 0) return null;
  const views = segments.map((s) => new DataView(s.buffer, s.byteOffset, s.byteLength & ~7));
  const m = structAt(views, 0, 0);
  if (m === null || m.dw < 1 || m.pc < 1 || views[m.seg]!.getUint16(m.data * 8, true) !== 2) return null;
  const call = structAt(views, m.seg, m.data + m.dw);
  if (call === null || call.dw < 1 || call.pc < 2) return null;
  const questionId = views[call.seg]!.getUint32(call.data * 8, true);
  const params = structAt(views, call.seg, call.data + call.dw + 1);
  if (params === null || params.pc < 1) return null;
  return { seg: params.seg, word: params.data + params.dw, questionId };
}
