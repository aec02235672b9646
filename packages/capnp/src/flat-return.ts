/**
 * Flat Returns (issue 13, twelfth session): the Return of a results struct of data words only (no
 * pointer: no capability, no Text / Data / list / struct field; `add`'s, a void method's) written
 * in one per-thread buffer that stays a Return between calls, instead of a pooled message with
 * its capnp-ts shell (arena, Message, record, segments array, Segment, cap table array) per call.
 * The counterpart of flat-call.ts for the server side. Byte for byte what fastpath.ts
 * `newReturnMessage` + `setReturnHeader` produce (`packages/capnp/test/flat-return.test.ts`
 * compares the two); docs/rpc.md "Envelope fast path".
 *
 * The buffer holds one call's results at a time: {@link takeFlatResults} hands out a results
 * struct over it (or null: a struct with pointers, too large, or the buffer taken by a call still
 * running, e.g. an async method's), {@link sendFlatReturn} writes the header and hands the bytes to
 * a copying transport, {@link releaseFlatResults} gives the buffer back and detaches the struct
 * (its segment becomes an empty one, as a recycled pooled message's: a results builder kept past
 * its Return cannot write into a later one), {@link copyFlatResults} moves the results into an
 * ordinary Return message for every other way a result goes (a local caller, `yourself`, a traced
 * connection, a transport that does not copy).
 *
 * State: one buffer and its message shell per thread (module state; each worker thread has its
 * own module instance). Threading: the thread that loaded it.
 */

import * as capnp from "capnp-ts";
import { DEFAULT_TRAVERSE_LIMIT, MAX_DEPTH } from "capnp-ts/src/constants.js";
import { MSG_RETURN, RET, messageOver, pointerAt } from "./fastpath.js";

/** Largest data section written flat (bytes); larger results take the general builder. */
export const FLAT_RETURN_MAX_DATA = 256;
const BYTES = RET.envelopeBytes + FLAT_RETURN_MAX_DATA;
/** Data sections up to this many bytes are zeroed word by word, larger ones by `fill`. */
const FILL_MIN = 64;

type Seg = capnp.Message["_capnp"]["segments"][number];

function ptrHi(dataWords: number, ptrs: number): number {
  return (dataWords | (ptrs << 16)) >>> 0;
}

/** The thread's flat Return: its buffer, message shell, and the view last handed to a transport. */
interface Flat {
  u8: Uint8Array;
  dv: DataView;
  msg: capnp.Message;
  seg: Seg;
  busy: boolean;
  /** The one-element array last handed to `sendCopy` (kept while the length is the same). */
  segs: Uint8Array[];
}

let flat: Flat | null = null;

function newFlat(): Flat {
  const u8 = new Uint8Array(BYTES);
  const dv = new DataView(u8.buffer);
  const msg = messageOver([u8.buffer as ArrayBuffer], RET.envelopeBytes, dv);
  // The envelope newReturnMessage writes; answerId and flags are written per Return.
  dv.setUint32(4, ptrHi(1, 1), true); // root → Message at word 1
  dv.setUint16(8, MSG_RETURN, true);
  dv.setUint32(20, ptrHi(2, 1), true); // → Return (2 data, 1 ptr) at word 3
  dv.setUint32(44, ptrHi(0, 2), true); // results → Payload (0 data, 2 ptrs) at word 6
  return { u8, dv, msg, seg: msg._capnp.segments[0]!, busy: false, segs: [u8.subarray(0, 0)] };
}

/** A segment over no bytes: the segment of a flat results struct after its Return. */
const DETACHED: Seg = messageOver([new ArrayBuffer(0)])._capnp.segments[0]!;

/**
 * A results struct of `ctor` in the thread's flat Return, zeroed, or null when `ctor` has a
 * pointer section, a data section over {@link FLAT_RETURN_MAX_DATA}, or the buffer is taken.
 */
export function takeFlatResults<R extends capnp.Struct>(ctor: capnp.StructCtor<R>): R | null {
  const size = ctor._capnp.size;
  const data = (size.dataByteLength + 7) & ~7;
  if (size.pointerLength !== 0 || data > FLAT_RETURN_MAX_DATA) return null;
  const f = (flat ??= newFlat());
  if (f.busy) return null;
  f.busy = true;
  const at = RET.envelopeBytes;
  const dv = f.dv;
  if (data <= FILL_MIN) {
    // A few words: zeroed one by one (TypedArray `fill` is a builtin call that costs more than
    // the stores for a small range: bench/README "Server flat call (fourteenth session)").
    for (let i = at, end = at + data; i < end; i += 8) {
      dv.setUint32(i, 0, true);
      dv.setUint32(i + 4, 0, true);
    }
  } else f.u8.fill(0, at, at + data);
  dv.setUint32(RET.contentPtr, 1 << 2, true); // content → word 8 (offset 1)
  dv.setUint32(RET.contentPtr + 4, ptrHi(data >>> 3, 0), true);
  f.seg.byteLength = at + data;
  f.msg._capnp.traversalLimit = DEFAULT_TRAVERSE_LIMIT; // a new message's, each call
  return pointerAt(ctor, f.seg, RET.contentPtr, MAX_DEPTH);
}

/** Whether `results` is a struct {@link takeFlatResults} handed out (and not yet released). */
export function isFlatResults(results: capnp.Pointer | null): boolean {
  return results !== null && flat !== null && results.segment === flat.seg;
}

/** The message shell of the thread's flat Return (for identity checks: never send or recycle it). */
export function flatReturnMessage(): capnp.Message | null {
  return flat === null ? null : flat.msg;
}

/** `results` (from {@link takeFlatResults}) is done with: detached, the buffer free again. */
export function releaseFlatResults(results: capnp.Pointer): void {
  const f = flat;
  const seg = results.segment;
  (results as { segment: Seg }).segment = DETACHED;
  if (f !== null && seg === f.seg) f.busy = false; // else the buffer went to a transport (sendFlatReturn)
}

/**
 * The flat results `results` copied into a new Return message (fastpath.ts newReturnMessage of
 * `ctor`), for the general path; releases the flat one. Returns the new message and struct.
 */
export function copyFlatResults<R extends capnp.Struct>(
  results: R,
  newMessage: (ctor: capnp.StructCtor<R>) => { msg: capnp.Message; results: R | null },
  ctor: capnp.StructCtor<R>,
): { msg: capnp.Message; results: R } {
  const f = flat!;
  const out = newMessage(ctor);
  const at = RET.envelopeBytes;
  const end = f.seg.byteLength;
  const seg = out.msg._capnp.segments[0]!;
  new Uint8Array(seg.buffer, 0, seg.buffer.byteLength).set(f.u8.subarray(at, end), at);
  releaseFlatResults(results);
  return { msg: out.msg, results: out.results! };
}

/**
 * The flat Return's header (answer `answerId`, releaseParamCaps false, `noFinishNeeded`) written
 * and its bytes handed to `sendCopy` (a copying transport: Transport.sendCopy). If the transport
 * kept the view instead of copying it, the thread's buffer is its now: a new one is made for the
 * next call. The caller releases the results afterwards ({@link releaseFlatResults}).
 */
export function sendFlatReturn(answerId: number, noFinishNeeded: boolean, t: { sendCopy?(segs: Uint8Array[]): boolean }): void {
  const f = flat!;
  const dv = f.dv;
  dv.setUint32(RET.answerId, answerId, true);
  // releaseParamCaps defaults to true: stored XOR-ed (bit 0); noFinishNeeded is bit 1.
  f.u8[RET.flags] = noFinishNeeded ? 3 : 1;
  const len = f.seg.byteLength;
  let segs = f.segs;
  if (segs[0]!.byteLength !== len) f.segs = segs = [f.u8.subarray(0, len)];
  if (!t.sendCopy!(segs)) {
    // Kept by the transport: the old shell stays busy forever with it; the thread gets a new one.
    flat = null;
  }
}
