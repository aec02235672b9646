/**
 * Message helpers of the RPC engine: allocating, copying and slicing capnp-ts messages, copying
 * an {@link Outcome}, and reading a received struct tolerantly (schema evolution).
 * Stateless functions.
 *
 * Threading: any thread (pure functions; their results belong to the caller's thread).
 */

import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import {
  getTargetPointerType,
  getTargetStructSize,
  setInterfacePointer,
  getCapabilityId,
} from "capnp-ts/src/serialization/pointers/pointer.js";
import { PointerType } from "capnp-ts/src/serialization/pointers/pointer-type.js";
import { getDataSection } from "capnp-ts/src/serialization/pointers/struct.js";
import { dataViewOf, messageOver, pointerAt } from "../fastpath.js";
import { errOutcome } from "./hook.js";
import type { Outcome } from "./hook.js";
import type { Struct, StructCtor } from "./types.js";

/**
 * A new message whose first segment is `bytes` long (capnp-ts's default is 4 KiB, zero-filled
 * for every message: too much for Finish/Release-sized messages). An allocation that does not
 * fit goes to a new segment (no grow-and-copy of the first one).
 */
export function newMessage(bytes: number): capnp.Message {
  return new capnp.Message(new MultiSegmentArena([new ArrayBuffer(bytes)]), false);
}

/** Copy a message's segments (byte copy) into a new message. */
export function cloneMessage(msg: capnp.Message): capnp.Message {
  const segs = msg._capnp.segments;
  const bufs: ArrayBuffer[] = new Array(segs.length);
  for (let i = 0; i < segs.length; i++) bufs[i] = segs[i]!.buffer.slice(segs[i]!.byteOffset, segs[i]!.byteLength);
  return messageOver(bufs);
}

/** A copy of an outcome whose results message was a Return (ours or the peer's): new message, new refs. */
export function cloneOutcome(o: Outcome): Outcome {
  if (o.err !== null) return errOutcome(o.err);
  const caps = o.caps.map((h) => (h === null ? null : h.addRef()));
  if (o.msg === null || o.content === null) return { err: null, msg: null, content: null, caps, ret: false };
  const m = cloneMessage(o.msg);
  m._capnp.capTable = caps as never;
  const root = new rpc.Message(m.getSegment(0), 0);
  const ret = root.getReturn();
  return { err: null, msg: m, content: capnp.Struct.getPointer(0, ret.getResults()), caps, ret: false };
}

/** Segments of an outgoing message (views; no copy). */
export function segmentsOf(msg: capnp.Message): Uint8Array[] {
  const segs = msg._capnp.segments;
  // Pushed, not `new Array(n)` (holey): a packed array, the shape of the hot paths' `[view]`, so
  // the transport's send sees one array map (a warm process's Bootstrap keeps it optimised).
  const out: Uint8Array[] = [];
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!;
    out.push(new Uint8Array(seg.buffer, seg.byteOffset, seg.byteLength - seg.byteOffset));
  }
  return out;
}

/** Segments of an outgoing message as copies (when we keep reading the original). */
export function segmentCopiesOf(msg: capnp.Message): Uint8Array[] {
  const segs = msg._capnp.segments;
  const out: Uint8Array[] = []; // packed, as segmentsOf
  for (let i = 0; i < segs.length; i++) out.push(new Uint8Array(segs[i]!.buffer.slice(segs[i]!.byteOffset, segs[i]!.byteLength)));
  return out;
}

/**
 * A reader for the struct at `p` as `ctor`. capnp-ts throws when a field lies beyond the struct
 * it received (Cap'n Proto says: read the default), which breaks schema evolution (a peer with
 * an older schema sends smaller structs). When the received struct is smaller than `ctor`'s, we
 * read a copy widened to `ctor`'s size (its caps keep their indices into the same cap table).
 * Nested structs are not widened; if the copy is impossible (a capability nested below the top
 * level), the original struct is returned.
 */
export function readStruct<T extends Struct>(p: capnp.Pointer, ctor: StructCtor<T>): T {
  const s = pointerAt(ctor, p.segment, p.byteOffset, p._capnp.depthLimit);
  const want = ctor._capnp.size;
  // Fast check of a near struct pointer that is big enough (the common case).
  const dv = dataViewOf(p.segment);
  const lo = dv.getUint32(p.byteOffset, true);
  if ((lo & 3) === 0) {
    const hi = dv.getUint32(p.byteOffset + 4, true);
    if ((hi & 0xffff) * 8 >= want.dataByteLength && hi >>> 16 >= want.pointerLength) return s;
  }
  try {
    if (getTargetPointerType(p) !== PointerType.STRUCT) return s;
    const have = getTargetStructSize(p);
    if (have.dataByteLength >= want.dataByteLength && have.pointerLength >= want.pointerLength) return s;
    // The copy keeps every section the sender wrote: each section is the larger of the two sizes.
    const size = new capnp.ObjectSize(
      Math.max(have.dataByteLength, want.dataByteLength),
      Math.max(have.pointerLength, want.pointerLength),
    );
    const m = newMessage(64 + size.dataByteLength + size.pointerLength * 8);
    m._capnp.capTable = p.segment.message._capnp.capTable;
    const dst = new ctor(m.getSegment(0), 0);
    capnp.Struct.initStruct(size, dst);
    const src = getDataSection(s);
    const out = getDataSection(dst);
    for (let i = 0; i < have.dataByteLength; i++) {
      out.segment.setUint8(out.byteOffset + i, src.segment.getUint8(src.byteOffset + i));
    }
    for (let i = 0; i < have.pointerLength; i++) {
      const sp = capnp.Struct.getPointer(i, s);
      if (capnp.Pointer.isNull(sp)) continue;
      const dp = capnp.Struct.getPointer(i, dst);
      if (getTargetPointerType(sp) === PointerType.OTHER) setInterfacePointer(getCapabilityId(sp), dp);
      else capnp.Pointer.copyFrom(sp, dp);
    }
    return dst;
  } catch {
    return s;
  }
}

export function emptyStruct<T extends Struct>(ctor: StructCtor<T>): T {
  const m = newMessage(64);
  return m.initRoot(ctor);
}
