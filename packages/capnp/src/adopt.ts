/**
 * Large Data written without a copy: {@link writeData} (the generated writers' Data field setter)
 * and {@link writeDataElement} (their List(Data) element setter) make the caller's own buffer a segment of the outgoing message ("adoption") instead of
 * allocating a segment and copying the bytes into it, when the bytes would have gone into a
 * segment of their own anyway. The wire bytes are the same either way: capnp-ts gives a Data of
 * at least `DEFAULT_BUFFER_SIZE` (4 KiB) that does not fit the struct's segment a new segment of
 * exactly its size, reached through a double-far pointer whose landing pad is in the struct's
 * segment; adoption builds that same layout through the same capnp-ts functions, in the same
 * order, with the caller's buffer as the new segment's buffer.
 *
 * Lifetime rule (docs/rpc.md "Large Data is sent from your buffer"): an adopted buffer is written
 * to the transport from the caller's memory, so it must not be modified (nor transferred) while
 * the message may still be written: for call params until the call settles; for results returned
 * by a server method, not at all afterwards. Only whole, word-sized `ArrayBuffer`s are adopted (a
 * `Uint8Array` with byteOffset 0 over its entire buffer, a multiple of 8 bytes long, at least
 * 4 KiB); anything else is copied as before.
 *
 * What receives an adopted segment never aliases it into values a user holds: a stream transport
 * writes it (the peer gets its own bytes); {@link isAdoptedBuffer} tells the in-process paths
 * that would otherwise keep or transfer a segment's buffer (a memory transport's receiver, a
 * MessagePort transport, a call to a server in the same vat: see {@link unadoptMessage}) to copy
 * it instead.
 *
 * Threading: any thread; the registry of adopted buffers is per thread (module state, weak).
 */

import * as capnp from "capnp-ts";
import { ArenaKind } from "capnp-ts/src/serialization/arena/arena-kind.js";
import { Segment } from "capnp-ts/src/serialization/segment.js";
import { ListElementSize } from "capnp-ts/src/serialization/list-element-size.js";
import { erase, initPointer, setListPointer } from "capnp-ts/src/serialization/pointers/pointer.js";
import { DEFAULT_BUFFER_SIZE } from "capnp-ts/src/constants.js";

/** Smallest Data adopted: below it capnp-ts's own segment would have room for a landing pad. */
export const ADOPT_MIN_BYTES = DEFAULT_BUFFER_SIZE;

/** Buffers adopted as segments of outgoing messages (weak: a buffer nobody holds is forgotten). */
const adoptedBuffers = new WeakSet<ArrayBuffer>();
/** Messages with at least one adopted segment. */
const adoptedMessages = new WeakSet<capnp.Message>();
/** Adoptions so far on this thread: while 0, the checks below cost one comparison. */
let adoptions = 0;

type MultiArena = { kind: ArenaKind; buffers: ArrayBuffer[] };

/**
 * Sets Data field `index` (pointer slot) of struct `s` to the bytes of `v`: adopts `v`'s buffer
 * as a segment when it can (see the module comment), else copies as capnp-ts's
 * `Struct.initData(index, v.byteLength, s).copyBuffer(v)` does.
 */
export function writeData(index: number, v: Uint8Array, s: capnp.Struct): void {
  const len = v.byteLength;
  if (len >= ADOPT_MIN_BYTES && (len & 7) === 0 && v.byteOffset === 0) {
    const p = capnp.Struct.getPointer(index, s);
    if (adopt(p, v)) return;
  }
  capnp.Struct.initData(index, len, s).copyBuffer(v);
}

/**
 * Sets element `index` of List(Data) `l` (initialised, the element still null) to the bytes of
 * `v`: adopts `v`'s buffer as a segment under the same conditions and lifetime rule as
 * {@link writeData}, else copies as capnp-ts's `List.initList(BYTE, …)` + `copyBuffer` do (the
 * generated writers' List(Data) elements).
 */
export function writeDataElement(l: capnp.List<capnp.Data>, index: number, v: Uint8Array): void {
  const d = l.get(index);
  const len = v.byteLength;
  if (len >= ADOPT_MIN_BYTES && (len & 7) === 0 && v.byteOffset === 0 && adopt(d, v)) return;
  capnp.List.initList(ListElementSize.BYTE, len, d);
  d.copyBuffer(v);
}

function adopt(p: capnp.Pointer, v: Uint8Array): boolean {
  const b = v.buffer;
  const seg = p.segment;
  const m = seg.message;
  const arena = m._capnp.arena as unknown as MultiArena;
  if (!(b instanceof ArrayBuffer) || b.byteLength !== v.byteLength || arena.kind !== ArenaKind.MULTI_SEGMENT) return false;
  // capnp-ts would put the bytes in the struct's own segment when they fit there.
  if (seg.hasCapacity(v.byteLength)) return false;
  erase(p);
  // As Message.allocateSegment + MultiSegmentArena.allocate (a buffer of exactly the Data's size,
  // as capnp-ts makes for one of at least DEFAULT_BUFFER_SIZE bytes), with the caller's buffer.
  const segments = m._capnp.segments;
  arena.buffers.push(b);
  const dataSeg = new Segment(segments.length, m, b, b.byteLength);
  segments.push(dataSeg);
  // As List.initList(BYTE, ...): the new segment has no room for a landing pad, so initPointer
  // writes a double-far pointer with its pad in p's segment (or a new segment after this one).
  const res = initPointer(dataSeg, 0, p);
  setListPointer(res.offsetWords, ListElementSize.BYTE, v.byteLength, res.pointer);
  adoptedBuffers.add(b);
  adoptedMessages.add(m);
  adoptions++;
  return true;
}

/** True when `b` was adopted as a segment of an outgoing message (its owner may write it again). */
export function isAdoptedBuffer(b: ArrayBufferLike): boolean {
  return adoptions !== 0 && adoptedBuffers.has(b as ArrayBuffer);
}

/**
 * Gives `m` its own copy of every adopted segment, so that its readers (a server in the same
 * vat reading params, a caller in the same vat reading results) never see later writes to the
 * buffers it was built from. Cheap (one comparison) when nothing was ever adopted.
 */
export function unadoptMessage(m: capnp.Message | null): void {
  if (adoptions === 0 || m === null || !adoptedMessages.has(m)) return;
  adoptedMessages.delete(m);
  const arena = m._capnp.arena as unknown as MultiArena;
  const segments = m._capnp.segments;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]! as unknown as { buffer: ArrayBuffer; _dv: DataView };
    if (!adoptedBuffers.has(s.buffer)) continue;
    const copy = s.buffer.slice(0);
    if (arena.buffers[i] === s.buffer) arena.buffers[i] = copy;
    s.buffer = copy;
    s._dv = new DataView(copy);
  }
}
