/**
 * A hand-written codec for the rpc.capnp envelope of the hot messages (Call, Return, Finish,
 * Release). capnp-ts stays the general wire format: payload content (params/results structs)
 * is read and written through capnp-ts Structs, and rare messages use the generated rpc.capnp
 * accessors. `packages/capnp/test/fastpath.test.ts` checks this codec byte for byte against capnp-ts.
 *
 * Layouts (word = 8 bytes), identical to what capnp-ts writes for
 * `initRoot(Message).initCall(); initTarget(); initParams(); initStructAt(0, Params, params)`:
 *
 * Call:   0 root ptr → 1 Message{which=2} → 2 ptr → 3..5 Call data, 6 target ptr, 7 params ptr,
 *         8 thirdParty ptr; 9 MessageTarget data, 10 promisedAnswer ptr; 11 content ptr,
 *         12 capTable ptr; 13… content.
 * Return: 0 root ptr → 1 Message{which=3} → 2 ptr → 3..4 Return data, 5 results ptr;
 *         6 content ptr, 7 capTable ptr; 8… content
 *         (`initRoot(Message).initReturn(); initResults(); initStructAt(0, Results, results)`).
 * Finish/Release: 4 words.
 *
 * Outgoing messages use a MultiSegmentArena whose first segment is sized for the envelope plus
 * the expected content: an allocation that does not fit (a big Data/Text) gets its own segment
 * (a far pointer) instead of capnp-ts's grow-and-copy of a single segment. That first buffer
 * comes from buffers.ts, and goes back there once a transport has copied the message.
 * Owns no state: pure encode/decode functions and the {@link Envelope} record type (each
 * connection's dispatcher, rpc/dispatch.ts, owns one).
 * Threading: any thread (no module-level mutable state); an Envelope belongs to its connection's
 * loop thread.
 */

import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import { ArenaKind } from "capnp-ts/src/serialization/arena/arena-kind.js";
import { Segment } from "capnp-ts/src/serialization/segment.js";
import { DEFAULT_TRAVERSE_LIMIT, MAX_DEPTH } from "capnp-ts/src/constants.js";
import { takeView } from "./buffers.js";
import { readCallHeader } from "./call-header.js";

export const MSG_CALL = 2;
export const MSG_RETURN = 3;
export const MSG_FINISH = 4;
export const MSG_RELEASE = 6;

/** Byte offsets inside segment 0 of a message built by {@link newCallMessage}. */
export const CALL = {
  qid: 24,
  methodId: 28,
  sendResultsTo: 30,
  interfaceId: 32,
  /** Pointer to the MessageTarget (for `new rpc.MessageTarget(seg, CALL.targetPtr)`). */
  targetPtr: 48,
  /** Pointer to the params Payload. */
  paramsPtr: 56,
  importedCap: 72,
  targetWhich: 76,
  contentPtr: 88,
  envelopeBytes: 104,
} as const;

/** Byte offsets inside segment 0 of a message built by {@link newReturnMessage}. */
export const RET = {
  answerId: 24,
  flags: 28,
  which: 30,
  resultsPtr: 40,
  contentPtr: 48,
  envelopeBytes: 64,
} as const;

type Seg = capnp.Message["_capnp"]["segments"][number];

export function dataViewOf(seg: Seg): DataView {
  return (seg as unknown as { _dv: DataView })._dv;
}

function ptrHi(dataWords: number, ptrs: number): number {
  return (dataWords | (ptrs << 16)) >>> 0;
}

const MESSAGE_PROTO = capnp.Message.prototype as object;
const ARENA_PROTO = MultiSegmentArena.prototype as object;

/**
 * A capnp-ts Message over `buffers` (a MultiSegmentArena: more segments are added as needed),
 * each segment fully used, except segment 0 when `firstUsed` >= 0. The same object capnp-ts's
 * `new Message(new MultiSegmentArena(buffers), false, false)` + `preallocateSegments` makes,
 * without the constructors' debug tracing; `firstView`: a DataView of all of `buffers[0]` to
 * reuse (else a new one).
 */
export function messageOver(buffers: ArrayBuffer[], firstUsed = -1, firstView: DataView | null = null): capnp.Message {
  const arena = Object.create(ARENA_PROTO) as { kind: ArenaKind; buffers: ArrayBuffer[] };
  arena.kind = ArenaKind.MULTI_SEGMENT;
  arena.buffers = buffers;
  const m = Object.create(MESSAGE_PROTO) as { _capnp: capnp.Message["_capnp"] };
  const segments: Seg[] = new Array(buffers.length);
  m._capnp = { arena: arena as unknown as MultiSegmentArena, segments, traversalLimit: DEFAULT_TRAVERSE_LIMIT, capTable: undefined };
  const msg = m as unknown as capnp.Message;
  for (let i = 0; i < buffers.length; i++) {
    const b = buffers[i]!;
    segments[i] = segmentOver(SEGMENT_PROTO, i, msg, b, i === 0 && firstView !== null ? firstView : new DataView(b), b.byteLength);
  }
  if (firstUsed >= 0) segments[0]!.byteLength = firstUsed;
  return msg;
}

const SEGMENT_PROTO = Segment.prototype as object;

/**
 * A segment with `proto` (Segment's or {@link InPlaceSegment}'s) and exactly the fields capnp-ts's
 * Segment constructor sets, in its order, over `dv` (a view of all of `buffer`: a pooled buffer's,
 * buffers.ts, or the socket slab's) instead of a new DataView.
 */
function segmentOver(proto: object, id: number, msg: capnp.Message, buffer: ArrayBuffer, dv: DataView, byteLength: number): Seg {
  const s = Object.create(proto) as SegmentFields;
  s[Symbol.toStringTag] = "Segment";
  s.id = id;
  s.message = msg;
  s.buffer = buffer;
  s._dv = dv;
  s.byteOffset = 0;
  s.byteLength = byteLength;
  return s as unknown as Seg;
}

interface SegmentFields {
  [Symbol.toStringTag]: string;
  id: number;
  message: capnp.Message;
  buffer: ArrayBuffer;
  _dv: DataView;
  byteOffset: number;
  byteLength: number;
}

/**
 * `new ctor(seg, byteOffset, depthLimit)` for a capnp-ts Pointer or Struct class, without the
 * constructor's per-object work that the engine's hot messages do not need: capnp-ts's debug
 * trace call (an argument array per object) and its traversal accounting (off for validated
 * incoming messages; a bound on reading, not on our own messages). Same fields, same checks.
 */
export function pointerAt<T extends capnp.Pointer>(
  ctor: new (seg: Seg, byteOffset: number, depthLimit?: number) => T,
  seg: Seg,
  byteOffset: number,
  depthLimit: number,
): T {
  if (depthLimit < 1 || byteOffset < 0 || byteOffset > seg.byteLength) return new ctor(seg, byteOffset, depthLimit); // its error
  const p = Object.create(ctor.prototype as object) as { _capnp: object; segment: Seg; byteOffset: number };
  p._capnp = depthLimit === MAX_DEPTH ? OWN_CAPNP : (SHARED_CAPNP[depthLimit] ?? pointerFields(depthLimit));
  p.segment = seg;
  p.byteOffset = byteOffset;
  return p as unknown as T;
}

/** A Pointer's or Struct's `_capnp` record as capnp-ts's constructors make it (not a list element). */
const pointerFields = (depthLimit: number): object => ({ compositeList: false, depthLimit, compositeIndex: undefined });
/**
 * {@link pointerAt}'s objects share one `_capnp` record per depth limit (to 128: incoming limits
 * derive from `nestingLimit`; MAX_DEPTH for our own messages): capnp-ts writes a record only in
 * the constructor of the object that owns it (a list element's Struct makes its own), and this
 * package never writes one, so no object made here needs one of its own.
 */
const SHARED_CAPNP = Array.from({ length: 129 }, (_, d) => pointerFields(d));
const OWN_CAPNP = pointerFields(MAX_DEPTH);

/** Segment 0 of a message read in place (see {@link messageInPlace}): it never grows into its buffer. */
class InPlaceSegment extends Segment {
  override hasCapacity(): boolean {
    return false;
  }
}

/**
 * A capnp-ts Message reading a one-segment message where it lies: `view` may start at a nonzero
 * (word-aligned) offset of its buffer, as a message inside a socket chunk does. capnp-ts wants
 * segments at offset 0 of their buffer, but near pointers are relative, so the segment is the
 * whole buffer, its root pointer at `view.byteOffset` (kept in the segment's `byteOffset`; read
 * the root with `new rpc.Message(seg, seg.byteOffset)`) and `byteLength` the view's end. Only for
 * a message with no far pointer (their landing-pad offsets count from the segment's start:
 * `validateRpcMessageNear` says), validated, that nobody writes into: an allocation goes to a
 * new segment (InPlaceSegment has no spare capacity), never into the bytes after the view.
 */
export function messageInPlace(view: Uint8Array): capnp.Message {
  const buffer = view.buffer as ArrayBuffer;
  const arena = Object.create(ARENA_PROTO) as { kind: ArenaKind; buffers: ArrayBuffer[] };
  arena.kind = ArenaKind.MULTI_SEGMENT;
  arena.buffers = [buffer];
  const m = Object.create(MESSAGE_PROTO) as { _capnp: capnp.Message["_capnp"] };
  const segments: Seg[] = new Array(1);
  m._capnp = { arena: arena as unknown as MultiSegmentArena, segments, traversalLimit: DEFAULT_TRAVERSE_LIMIT, capTable: undefined };
  // Consecutive messages mostly lie in the same socket slab: they share its DataView.
  const dv = viewOf(buffer);
  const seg = segmentOver(IN_PLACE_PROTO, 0, m as unknown as capnp.Message, buffer, dv, view.byteOffset + view.byteLength);
  seg.byteOffset = view.byteOffset;
  segments[0] = seg;
  return m as unknown as capnp.Message;
}

const IN_PLACE_PROTO = InPlaceSegment.prototype as object;
/**
 * DataViews of the last two buffers incoming messages lay in, if at most KEEP_VIEW_BYTES (socket
 * slabs, slabs of copies: they keep no large message alive). Two: messages copied out of a read
 * are checked in its buffer, then read in the slab of copies (one view would be remade per message).
 */
let recentView: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));
let otherView: DataView<ArrayBufferLike> = recentView;
const KEEP_VIEW_BYTES = 64 * 1024;

/** A DataView of all of `buffer`, kept (see recentView) for the hot check and the in-place reader. */
export function viewOf(buffer: ArrayBufferLike): DataView {
  const r = recentView;
  if (r.buffer === buffer) return r;
  let dv = otherView;
  if (dv.buffer !== buffer) {
    dv = new DataView(buffer);
    if (buffer.byteLength > KEEP_VIEW_BYTES) return dv;
  }
  otherView = r;
  recentView = dv;
  return dv;
}

/**
 * A message with one segment of at least `bytes` bytes (a pooled buffer, buffers.ts), `used` of
 * them in use.
 */
function messageWithEnvelope(bytes: number, used: number): { m: capnp.Message; seg: Seg; dv: DataView } {
  const view = takeView(bytes);
  const m = messageOver([view.buffer as ArrayBuffer], used, view);
  const seg = m._capnp.segments[0]!;
  return { m, seg, dv: dataViewOf(seg) };
}

/** Write a struct pointer at `p` to a struct right behind it (offset `offWords`). */
function structPtr(dv: DataView, p: number, offWords: number, size: capnp.ObjectSize): void {
  dv.setUint32(p, offWords << 2, true);
  dv.setUint16(p + 4, roundUp(size.dataByteLength) >>> 3, true);
  dv.setUint16(p + 6, size.pointerLength, true);
}

function roundUp(n: number): number {
  return (n + 7) & ~7;
}

/**
 * A Call message (targetting importedCap 0, questionId 0: set both before sending) with an
 * initialized params struct of `Params`; `extraBytes` is room reserved in the first segment for
 * the content's own allocations (text, data, lists).
 */
export function newCallMessage<P extends capnp.Struct>(
  interfaceId: bigint,
  methodId: number,
  Params: capnp.StructCtor<P>,
  extraBytes = 128,
): { msg: capnp.Message; params: P } {
  const msg = callMessage(interfaceId, methodId, Params._capnp.size, extraBytes);
  return { msg, params: pointerAt(Params, msg._capnp.segments[0]!, CALL.contentPtr, MAX_DEPTH) };
}

/** {@link newCallMessage}'s message alone: its params struct (`size`) is at {@link CALL}.contentPtr. */
export function callMessage(interfaceId: bigint, methodId: number, size: capnp.ObjectSize, extraBytes = 128): capnp.Message {
  const contentBytes = roundUp(size.dataByteLength) + size.pointerLength * 8;
  const used = CALL.envelopeBytes + contentBytes;
  const dv = takeView(roundUp(used + extraBytes));
  const m = messageOver([dv.buffer as ArrayBuffer], used, dv);
  // 0: root → Message (1 data word, 1 ptr) at word 1
  dv.setUint32(4, ptrHi(1, 1), true);
  dv.setUint16(8, MSG_CALL, true);
  // 2: → Call (3 data, 3 ptrs) at word 3
  dv.setUint32(20, ptrHi(3, 3), true);
  dv.setUint16(CALL.methodId, methodId, true);
  dv.setBigUint64(CALL.interfaceId, interfaceId, true);
  // 6: target → word 9 (offset 2), MessageTarget (1 data, 1 ptr)
  dv.setUint32(48, 2 << 2, true);
  dv.setUint32(52, ptrHi(1, 1), true);
  // 7: params → word 11 (offset 3), Payload (0 data, 2 ptrs)
  dv.setUint32(56, 3 << 2, true);
  dv.setUint32(60, ptrHi(0, 2), true);
  // 11: content → word 13 (offset 1)
  structPtr(dv, CALL.contentPtr, 1, size);
  return m;
}

/** A Return with `results` set to an initialized struct of `Results` (answerId 0), or none (chosen as data: docs/rpc.md). */
export function newReturnMessage<R extends capnp.Struct>(
  Results: capnp.StructCtor<R> | null,
  extraBytes = 128,
): { msg: capnp.Message; results: R | null } {
  const size = Results === null ? null : Results._capnp.size;
  const contentBytes = size === null ? 0 : roundUp(size.dataByteLength) + size.pointerLength * 8;
  const { m, seg, dv } = messageWithEnvelope(roundUp(RET.envelopeBytes + contentBytes + extraBytes), RET.envelopeBytes + contentBytes);
  dv.setUint32(4, ptrHi(1, 1), true);
  dv.setUint16(8, MSG_RETURN, true);
  // 2: → Return (2 data, 1 ptr) at word 3
  dv.setUint32(20, ptrHi(2, 1), true);
  // 5: results → word 6 (offset 0), Payload (0 data, 2 ptrs)
  dv.setUint32(44, ptrHi(0, 2), true);
  return { msg: m, results: (Results === null ? noContent : resultsContent)(Results as never, seg, dv, size) as R | null };
}

const noContent = (_R: unknown, _seg: Segment, _dv: DataView, _size: unknown): capnp.Struct | null => null;
const resultsContent = (R: capnp.StructCtor<capnp.Struct> | null, seg: Segment, dv: DataView, size: capnp.ObjectSize | null): capnp.Struct | null =>
  (structPtr(dv, RET.contentPtr, 1, size!), pointerAt(R!, seg, RET.contentPtr, MAX_DEPTH)); // 6: content → word 8 (offset 1)

/** Set answerId, releaseParamCaps, noFinishNeeded (no Finish wanted) of a {@link newReturnMessage}. */
export function setReturnHeader(msg: capnp.Message, answerId: number, releaseParamCaps: boolean, noFinishNeeded = false): void {
  const dv = dataViewOf(msg._capnp.segments[0]!);
  dv.setUint32(RET.answerId, answerId, true);
  // releaseParamCaps defaults to true: stored XOR-ed (bit 0); noFinishNeeded is bit 1.
  dv.setUint8(RET.flags, (dv.getUint8(RET.flags) & ~3) | (releaseParamCaps ? 0 : 1) | (noFinishNeeded ? 2 : 0));
}

/** The 4-word Finish message. */
function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = v >>> 24;
}

// Written byte by byte (no DataView): a small Uint8Array whose .buffer is never touched here
// can stay on the V8 heap.
export function encodeFinish(questionId: number, releaseResultCaps: boolean): Uint8Array {
  const b = new Uint8Array(32);
  b[4] = 1; // root → Message (1 data word, 1 ptr)
  b[6] = 1;
  b[8] = MSG_FINISH;
  b[20] = 1; // → Finish (1 data word)
  put32(b, 24, questionId);
  // releaseResultCaps and requireEarlyCancellationWorkaround default to true (XOR-ed).
  if (!releaseResultCaps) b[28] = 1;
  return b;
}

/** The 4-word Release message. */
export function encodeRelease(id: number, referenceCount: number): Uint8Array {
  const b = new Uint8Array(32);
  b[4] = 1;
  b[6] = 1;
  b[8] = MSG_RELEASE;
  b[20] = 1;
  put32(b, 24, id);
  put32(b, 28, referenceCount);
  return b;
}

// Decoding ------------------------------------------------------------------------------------
/**
 * The fields of an incoming envelope. Filled either by {@link decodeEnvelope} (fast, straight
 * from segment 0) or by {@link decodeEnvelopeSlow} (capnp-ts accessors); both fill the same
 * fields. For anything else (a promisedAnswer target, a cap table, an exception), use `root`.
 */
export class Envelope {
  which = -1;
  /** Call.questionId, Return.answerId, Finish.questionId, Release.id. */
  id = 0;
  interfaceId = 0n;
  /** The halves of `interfaceId` the fast decode last read; `-0`: doubles from the start (docs/rpc.md "A new connection"). */
  iidLo = -0;
  iidHi = -0;
  methodId = 0;
  sendResultsTo = 0;
  targetWhich = 0;
  importedCap = 0;
  retWhich = 0;
  releaseParamCaps = true;
  noFinishNeeded = false;
  takeFromOtherQuestion = 0;
  releaseResultCaps = true;
  referenceCount = 0;
  /** Call.params.content / Return.results.content (Call, Return.results). */
  content: capnp.Pointer | null = null;
  /** The payload has a (non-null) cap table. */
  hasCapTable = false;
  /** Call (fast decode) with a cap table: byte offset of its list pointer in `content.segment`; else -1. */
  capTableAt = -1;
  /** hotEnvelope (rpc/hot-shape.ts): the content pointer's byte offset in the message; -1: Finish/Release. */
  contentAt = -1;
  /** hotEnvelope, Call/Return: the content struct's data section (byte offset in `viewOf(buffer)`; -1: null content) and its words. */
  dataAt = -1;
  dataWords = 0;
  private seg: Seg | null = null;
  private depth = 0;
  private rootReader: rpc.Message | null = null;

  /** Start decoding a new message whose segment 0 is `seg`, root nesting limit `depth`. */
  reset(seg: Seg, depth: number, root: rpc.Message | null = null): void {
    this.seg = seg;
    this.depth = depth;
    this.rootReader = root;
    this.which = -1;
    this.content = null;
    this.hasCapTable = false;
    this.capTableAt = -1;
    this.dataAt = -1;
  }

  /** Attach the message hotEnvelope (rpc/hot-shape.ts) read, keeping the fields it filled. */
  bind(seg: Seg, depth: number): void {
    this.seg = seg;
    this.depth = depth;
    this.rootReader = null;
  }

  /** Drop the references to the last message (an idle connection then keeps none of it). */
  clear(): void {
    this.seg = null;
    this.rootReader = null;
    this.content = null;
  }

  /** The root Message reader (for the rare parts), made on first use. */
  root(): rpc.Message {
    return (this.rootReader ??= new rpc.Message(this.seg!, this.seg!.byteOffset, this.depth));
  }
}

/**
 * A reader of the struct pointer at `p`: target byte offset, or -1 when it is null, not a near
 * struct pointer, or smaller than `minData`/`minPtrs` words (the caller then falls back).
 */
function structAt(dv: DataView, base: number, len: number, p: number, minData: number, minPtrs: number): number {
  const lo = dv.getUint32(p, true);
  const hi = dv.getUint32(p + 4, true);
  if ((lo & 3) !== 0 || (lo === 0 && hi === 0)) return -1;
  const dw = hi & 0xffff;
  const pc = hi >>> 16;
  if (dw < minData || pc < minPtrs) return -1;
  const t = p + 8 + (lo >> 2) * 8;
  if (t < base || t + (dw + pc) * 8 > len) return -1;
  return t;
}

function dataWordsAt(dv: DataView, p: number): number {
  return dv.getUint16(p + 4, true);
}

/**
 * Read the envelope of a validated message straight from segment 0. Returns false when the
 * message is not one of the shapes handled here (the caller uses {@link decodeEnvelopeSlow}).
 * `depth` is the nesting limit of the root.
 */
export function decodeEnvelope(seg: Seg, depth: number, env: Envelope): boolean {
  const dv = dataViewOf(seg);
  const base = seg.byteOffset; // the root pointer (nonzero for a message read in place)
  const len = seg.byteLength;
  if (len - base < 16) return false;
  const mOff = structAt(dv, base, len, base, 1, 1);
  if (mOff < 0) return false;
  const which = dv.getUint16(mOff, true);
  const inner = mOff + dataWordsAt(dv, base) * 8; // the Message's pointer 0
  switch (which) {
    case MSG_CALL: {
      const c = structAt(dv, base, len, inner, 3, 2);
      if (c < 0) return false;
      const cptrs = c + dataWordsAt(dv, inner) * 8;
      const t = structAt(dv, base, len, cptrs, 1, 0);
      if (t < 0) return false;
      const pl = structAt(dv, base, len, cptrs + 8, 0, 1);
      if (pl < 0) return false;
      const plPtrs = pl + dataWordsAt(dv, cptrs + 8) * 8;
      const plPc = dv.getUint16(cptrs + 8 + 6, true);
      env.which = which;
      readCallHeader(dv, env, c, t);
      env.content = pointerAt(capnp.Pointer, seg, plPtrs, depth - 3);
      env.hasCapTable = plPc >= 2 && (dv.getUint32(plPtrs + 8, true) !== 0 || dv.getUint32(plPtrs + 12, true) !== 0);
      env.capTableAt = env.hasCapTable ? plPtrs + 8 : -1;
      return true;
    }
    case MSG_RETURN: {
      const r = structAt(dv, base, len, inner, 2, 1);
      if (r < 0) return false;
      const flags = dv.getUint8(r + 4);
      const rw = dv.getUint16(r + 6, true);
      env.which = which;
      env.id = dv.getUint32(r, true);
      env.releaseParamCaps = (flags & 1) === 0;
      env.noFinishNeeded = (flags & 2) !== 0;
      env.retWhich = rw;
      env.takeFromOtherQuestion = dv.getUint32(r + 8, true);
      env.content = null;
      env.hasCapTable = false;
      if (rw === rpc.Return.RESULTS) {
        const rptrs = r + dataWordsAt(dv, inner) * 8;
        const pl = structAt(dv, base, len, rptrs, 0, 1);
        if (pl < 0) return false;
        const plPtrs = pl + dataWordsAt(dv, rptrs) * 8;
        const plPc = dv.getUint16(rptrs + 6, true);
        env.content = pointerAt(capnp.Pointer, seg, plPtrs, depth - 3);
        env.hasCapTable = plPc >= 2 && (dv.getUint32(plPtrs + 8, true) !== 0 || dv.getUint32(plPtrs + 12, true) !== 0);
      }
      return true;
    }
    case MSG_FINISH: {
      const f = structAt(dv, base, len, inner, 1, 0);
      if (f < 0) return false;
      env.which = which;
      env.id = dv.getUint32(f, true);
      env.releaseResultCaps = (dv.getUint8(f + 4) & 1) === 0;
      return true;
    }
    case MSG_RELEASE: {
      const f = structAt(dv, base, len, inner, 1, 0);
      if (f < 0) return false;
      env.which = which;
      env.id = dv.getUint32(f, true);
      env.referenceCount = dv.getUint32(f + 4, true);
      return true;
    }
    default:
      return false;
  }
}

function u32at(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/**
 * Finish and Release straight from a validated segment 0 given as any Uint8Array view (no copy,
 * no capnp-ts message: they carry no payload). Returns false for anything else.
 */
export function decodeControl(seg: Uint8Array, env: Envelope): boolean {
  const len = seg.byteLength;
  if (len < 32) return false;
  // root → Message: a near struct pointer with >= 1 data word and >= 1 pointer.
  const lo = u32at(seg, 0);
  const hi = u32at(seg, 4);
  if ((lo & 3) !== 0 || (hi & 0xffff) < 1 || hi >>> 16 < 1) return false;
  const m = 8 + (lo >> 2) * 8;
  if (m < 8 || m + ((hi & 0xffff) + (hi >>> 16)) * 8 > len) return false;
  const which = seg[m]! | (seg[m + 1]! << 8);
  if (which !== MSG_FINISH && which !== MSG_RELEASE) return false;
  const p = m + (hi & 0xffff) * 8;
  const plo = u32at(seg, p);
  const phi = u32at(seg, p + 4);
  if ((plo & 3) !== 0 || (phi & 0xffff) < 1) return false;
  const f = p + 8 + (plo >> 2) * 8;
  if (f < 0 || f + ((phi & 0xffff) + (phi >>> 16)) * 8 > len) return false;
  env.which = which;
  env.id = u32at(seg, f);
  env.content = null;
  env.hasCapTable = false;
  if (which === MSG_FINISH) env.releaseResultCaps = (seg[f + 4]! & 1) === 0;
  else env.referenceCount = u32at(seg, f + 4);
  return true;
}

/** The same fields as {@link decodeEnvelope}, through capnp-ts (any valid message). */
export function decodeEnvelopeSlow(root: rpc.Message, env: Envelope): void {
  const which = root.which();
  env.which = which;
  env.content = null;
  env.hasCapTable = false;
  switch (which) {
    case MSG_CALL: {
      const c = root.getCall();
      env.id = c.getQuestionId();
      env.methodId = c.getMethodId();
      env.sendResultsTo = c.getSendResultsTo().which();
      const iid = c.getInterfaceId();
      env.interfaceId = iid;
      env.iidLo = Number(iid & 0xffffffffn); // what the fast decode compares with next
      env.iidHi = Number(iid >> 32n);
      const t = c.getTarget();
      env.targetWhich = t.which();
      env.importedCap = capnp.Struct.getUint32(0, t);
      const pl = c.getParams();
      env.content = capnp.Struct.getPointer(0, pl);
      env.hasCapTable = pl.hasCapTable();
      return;
    }
    case MSG_RETURN: {
      const r = root.getReturn();
      env.id = r.getAnswerId();
      env.releaseParamCaps = r.getReleaseParamCaps();
      env.noFinishNeeded = r.getNoFinishNeeded();
      env.retWhich = r.which();
      env.takeFromOtherQuestion = capnp.Struct.getUint32(8, r);
      if (env.retWhich === rpc.Return.RESULTS) {
        const pl = r.getResults();
        env.content = capnp.Struct.getPointer(0, pl);
        env.hasCapTable = pl.hasCapTable();
      }
      return;
    }
    case MSG_FINISH: {
      const f = root.getFinish();
      env.id = f.getQuestionId();
      env.releaseResultCaps = f.getReleaseResultCaps();
      return;
    }
    case MSG_RELEASE: {
      const r = root.getRelease();
      env.id = r.getId();
      env.referenceCount = r.getReferenceCount();
      return;
    }
    default:
      return;
  }
}
