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
 * `validateRpcMessage` adds the rpc.capnp envelope check (envelope-check.ts) and attributes a limit exceeded inside
 * a Call's params to that call ({@link CallLimitError}).
 *
 * Threading: synchronous, any thread.
 */

import * as capnp from "capnp-ts";
// Not exported from capnp-ts's index; needed to read segments without re-framing them.
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import { preallocateSegments } from "capnp-ts/src/serialization/message.js";
import { LimitError } from "./errors.js";
import { resolveLimits, type ReaderLimits } from "./limits.js";
import { releaseWalk, walkMessage, type WalkResult } from "./walk.js";
import { checkRpcEnvelope } from "./envelope-check.js";

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
 * {@link validateMessage}, then the rpc.capnp envelope check (envelope-check.ts):
 * after this, capnp-ts can read every field of the rpc.capnp `Message` an engine reads without
 * misinterpreting a pointer. Throws `LimitError`/`ProtocolError`; returns the words traversed.
 */
export function validateRpcMessage(segments: readonly Uint8Array[], limits?: Partial<ReaderLimits>): number {
  return validateRpc(segments, limitsOf(limits)).traversed;
}

/**
 * {@link validateRpcMessage} for the engine's dispatcher: returns whether the message has no far
 * pointer, so a reader may take segment 0 where it lies inside a larger buffer (pointers are then
 * all relative; see fastpath.ts `messageInPlace`).
 */
export function validateRpcMessageNear(segments: readonly Uint8Array[], limits: ReaderLimits): boolean {
  return !validateRpc(segments, limits).far;
}

function validateRpc(segments: readonly Uint8Array[], lim: ReaderLimits): WalkResult {
  let walk: WalkResult;
  try {
    walk = walkMessage(segments, lim, -1, -1);
  } catch (e) {
    releaseWalk();
    if (e instanceof LimitError) throw attributeLimit(segments, lim, e);
    throw e;
  }
  try {
    checkRpcEnvelope(segments);
    return walk;
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
    walkMessage(segments, lim, loc.seg, loc.word);
    checkRpcEnvelope(segments);
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
