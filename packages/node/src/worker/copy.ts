/**
 * Moving Cap'n Proto content between threads: a struct (with the capabilities inside it) becomes
 * an ArrayBuffer plus a list of capability descriptors, and back.
 *
 * Capabilities inside a message live in the message's cap table (`_capnp.capTable`, filled by the
 * engine's `writeCap`); a capability pointer holds an index into it. Crossing a thread, each index
 * is renumbered: the sender maps its table entries to descriptors (`CapDesc`), the receiver maps
 * descriptors to capabilities in its own destination message. capnp-ts's own deep copy refuses
 * capability pointers, so the copy below is ours.
 *
 * Only the engine's public `readCap`/`writeCap` touch table entries; we move entries between
 * tables through a one-pointer scratch struct and never look inside them.
 *
 * The common shapes (content in one segment; no capability on the way in) take the raw-word fast
 * path of raw-copy.ts; the general copy below handles the rest and gives the errors.
 *
 * Owns: nothing (pure functions over messages). Threading: any thread (loop and worker alike).
 */
import * as capnp from "capnp-ts";
import { readCap, writeCap, type Capability } from "@multiprocess-ts/capnp";
import {
  erase,
  getCapabilityId,
  getContent,
  getListElementByteLength,
  getTargetCompositeListSize,
  getTargetListElementSize,
  getTargetListLength,
  getTargetPointerType,
  getTargetStructSize,
  initPointer,
  isNull,
  setInterfacePointer,
  setListPointer,
  setStructPointer,
  followFars,
} from "capnp-ts/src/serialization/pointers/pointer.js";
import { PointerType } from "capnp-ts/src/serialization/pointers/pointer-type.js";
import { ListElementSize } from "capnp-ts/src/serialization/list-element-size.js";
import type { Segment } from "capnp-ts/src/serialization/segment.js";
import { SingleSegmentArena } from "capnp-ts/src/serialization/arena/single-segment-arena.js";
import { getByteLength, getDataWordLength, getWordLength, padToWord } from "capnp-ts/src/serialization/object-size.js";
import { packRaw, unpackBlock } from "./raw-copy.js";

/** A struct with one pointer field: the wrapper for content sent across threads, and scratch. */
export class Holder extends capnp.Struct {
  static readonly _capnp = { displayName: "WorkerBridgeHolder", id: "0", size: new capnp.ObjectSize(0, 1) };
}

type CapTable = unknown[];

function tableOf(m: capnp.Message): CapTable {
  const mm = m as unknown as { _capnp: { capTable?: CapTable } };
  return (mm._capnp.capTable ??= []);
}

/** A new handle for entry `id` of `m`'s cap table (null for a null entry). */
export function capFromTable(m: capnp.Message, id: number): Capability | null {
  const table = tableOf(m);
  if (id < 0 || id >= table.length) throw new RangeError(`capability index ${id} is not in the cap table`);
  const scratch = new capnp.Message();
  const sm = scratch as unknown as { _capnp: { capTable?: CapTable } };
  sm._capnp.capTable = [table[id]];
  const h = scratch.initRoot(Holder);
  setInterfacePointer(0, capnp.Struct.getPointer(0, h));
  try {
    return readCap(h, 0); // takes its own reference
  } finally {
    sm._capnp.capTable = []; // borrowed entry: drop without releasing
  }
}

/** Appends a reference to `cap` to `m`'s cap table (the table owns it); returns its index. */
export function capIntoTable(m: capnp.Message, cap: Capability): number {
  const scratch = new capnp.Message();
  const sm = scratch as unknown as { _capnp: { capTable?: CapTable } };
  sm._capnp.capTable = [];
  const h = scratch.initRoot(Holder);
  writeCap(h, 0, cap); // the scratch table holds the new reference
  const entry = sm._capnp.capTable[0];
  sm._capnp.capTable = [];
  const table = tableOf(m);
  table.push(entry); // moved, not copied: the reference now belongs to m
  return table.length - 1;
}

/**
 * Replaces `dst` with a deep copy of what `src` points to. Capability pointers are renumbered by
 * `mapCap(srcIndex)`: it returns the index to write in the destination, or null for a null
 * pointer. Far pointers are followed; the copy is compact (no far pointers unless segments fill).
 */
export function copyPointer(src: capnp.Pointer, dst: capnp.Pointer, mapCap: (srcIndex: number) => number | null): void {
  erase(dst);
  if (isNull(src)) return;
  switch (getTargetPointerType(src)) {
    case PointerType.STRUCT:
      copyStruct(src, dst, mapCap);
      return;
    case PointerType.LIST:
      copyList(src, dst, mapCap);
      return;
    case PointerType.OTHER: {
      const id = mapCap(getCapabilityId(followFars(src)));
      if (id !== null) setInterfacePointer(id, dst);
      return;
    }
    default:
      throw new Error("copyPointer: unknown pointer type");
  }
}

function child(seg: Segment, byteOffset: number, depth: number): capnp.Pointer {
  return new capnp.Pointer(seg, byteOffset, depth);
}

function copyStruct(src: capnp.Pointer, dst: capnp.Pointer, mapCap: (i: number) => number | null): void {
  if (dst._capnp.depthLimit <= 0) throw new Error("copyPointer: nesting limit exceeded");
  const srcContent = getContent(src);
  const size = getTargetStructSize(src);
  const dstContent = dst.segment.allocate(getByteLength(size));
  dstContent.segment.copyWords(dstContent.byteOffset, srcContent.segment, srcContent.byteOffset, getDataWordLength(size));
  for (let i = 0; i < size.pointerLength; i++) {
    const off = size.dataByteLength + i * 8;
    copyPointer(
      child(srcContent.segment, srcContent.byteOffset + off, src._capnp.depthLimit - 1),
      child(dstContent.segment, dstContent.byteOffset + off, dst._capnp.depthLimit - 1),
      mapCap,
    );
  }
  const res = initPointer(dstContent.segment, dstContent.byteOffset, dst);
  setStructPointer(res.offsetWords, size, res.pointer);
}

function copyList(src: capnp.Pointer, dst: capnp.Pointer, mapCap: (i: number) => number | null): void {
  if (dst._capnp.depthLimit <= 0) throw new Error("copyPointer: nesting limit exceeded");
  const srcContent = getContent(src);
  const elementSize = getTargetListElementSize(src);
  const length = getTargetListLength(src);
  let dstContent: capnp.Pointer;
  let compositeSize: capnp.ObjectSize | undefined;
  if (elementSize === ListElementSize.POINTER) {
    dstContent = dst.segment.allocate(length << 3);
    for (let i = 0; i < length; i++) {
      copyPointer(
        child(srcContent.segment, srcContent.byteOffset + (i << 3), src._capnp.depthLimit - 1),
        child(dstContent.segment, dstContent.byteOffset + (i << 3), dst._capnp.depthLimit - 1),
        mapCap,
      );
    }
  } else if (elementSize === ListElementSize.COMPOSITE) {
    compositeSize = padToWord(getTargetCompositeListSize(src));
    const elementBytes = getByteLength(compositeSize);
    dstContent = dst.segment.allocate(elementBytes * length + 8);
    // Tag word, then data sections verbatim; pointer sections are rewritten below.
    dstContent.segment.copyWord(dstContent.byteOffset, srcContent.segment, srcContent.byteOffset - 8);
    if (length > 0) {
      dstContent.segment.copyWords(dstContent.byteOffset + 8, srcContent.segment, srcContent.byteOffset, getWordLength(compositeSize) * length);
    }
    for (let i = 0; i < length; i++) {
      for (let j = 0; j < compositeSize.pointerLength; j++) {
        const off = i * elementBytes + compositeSize.dataByteLength + (j << 3);
        const d = child(dstContent.segment, dstContent.byteOffset + 8 + off, dst._capnp.depthLimit - 1);
        d.segment.setWordZero(d.byteOffset); // the verbatim copy left the source's pointer here
        copyPointer(child(srcContent.segment, srcContent.byteOffset + off, src._capnp.depthLimit - 1), d, mapCap);
      }
    }
  } else {
    const bytes =
      elementSize === ListElementSize.BIT ? (length + 7) >>> 3 : getListElementByteLength(elementSize) * length;
    const padded = (bytes + 7) & ~7;
    dstContent = dst.segment.allocate(padded);
    if (padded > 0) dstContent.segment.copyWords(dstContent.byteOffset, srcContent.segment, srcContent.byteOffset, padded >>> 3);
  }
  const res = initPointer(dstContent.segment, dstContent.byteOffset, dst);
  setListPointer(res.offsetWords, elementSize, length, res.pointer, compositeSize);
}

/**
 * Serializes the struct `s` points at (a Struct object is its own pointer word) into a
 * standalone single-segment message; each capability index found is passed to `onCap` in order of appearance
 * and renumbered 0, 1, 2... in the copy. Returns the message bytes.
 */
export function packStruct(s: capnp.Pointer, onCap: (srcIndex: number) => void): ArrayBuffer {
  return packRaw(s, onCap) ?? packStructGeneral(s, onCap);
}

/** {@link packStruct} through capnp-ts Pointers, for every shape (tests compare both). */
export function packStructGeneral(s: capnp.Pointer, onCap: (srcIndex: number) => void): ArrayBuffer {
  // One segment, no stream framing: the arena's buffer is sent as is (transferred, never copied
  // again) and read back with `new Message(buf, false, true)`. It starts small (a call's params
  // are usually a few words) and the arena grows it when needed.
  const out = new capnp.Message(new SingleSegmentArena(new ArrayBuffer(PACK_START_BYTES)));
  const root = out.initRoot(Holder);
  let next = 0;
  const seen = new Map<number, number>();
  copyPointer(s, capnp.Struct.getPointer(0, root), (i) => {
    let j = seen.get(i);
    if (j === undefined) {
      j = next++;
      seen.set(i, j);
      onCap(i);
    }
    return j;
  });
  return out.getSegment(0).buffer;
}

/** First buffer size of {@link packStruct}'s arena. */
const PACK_START_BYTES = 256;

/**
 * Copies the struct held in `buf` (from {@link packStruct}) over `dst`, a struct in a message the
 * engine owns (request params, call results). Capability `k` of the packed message becomes
 * `caps[k]`, appended to dst's table. Takes ownership of `caps` (also when it throws); a null
 * entry becomes a null pointer. `size`: the content's bytes (a frame's trailer follows them).
 */
export function unpackStructInto(buf: ArrayBuffer, dst: capnp.Struct, caps: readonly (Capability | null)[], size = buf.byteLength): void {
  try {
    if (caps.length === 0 && unpackBlock(buf, dst, size) !== undefined) return;
    unpackGeneral(buf, dst, caps);
  } finally {
    // capIntoTable took its own references; ours go now (unused ones too, and on failure).
    for (const c of caps) c?.close();
  }
}

/** {@link unpackStructInto} through capnp-ts Pointers (borrows `caps`; tests compare both). */
export function unpackGeneral(buf: ArrayBuffer, dst: capnp.Struct, caps: readonly (Capability | null)[]): void {
  const msg = new capnp.Message(buf, false, true);
  const root = msg.getRoot(Holder);
  const dstMsg = dst.segment.message;
  const mapped = new Map<number, number | null>();
  copyPointer(capnp.Struct.getPointer(0, root), dst, (k) => {
    if (mapped.has(k)) return mapped.get(k)!;
    const cap = caps[k];
    if (cap === undefined) throw new RangeError(`capability index ${k} has no descriptor`);
    const id = cap === null ? null : capIntoTable(dstMsg, cap);
    mapped.set(k, id);
    return id;
  });
}

/** Erases pointer field `index` of the struct `s` points at (no-op when null or absent). */
export function erasePointerField(s: capnp.Pointer, index: number): void {
  if (isNull(s) || getTargetPointerType(s) !== PointerType.STRUCT) return;
  const size = getTargetStructSize(s);
  if (index >= size.pointerLength) return;
  const content = getContent(s);
  erase(child(content.segment, content.byteOffset + size.dataByteLength + index * 8, s._capnp.depthLimit - 1));
}

/** Pointer field `index` of struct `s` (null pointer view when absent). */
export function pointerField(s: capnp.Struct, index: number): capnp.Pointer | null {
  if (isNull(s) || getTargetPointerType(s) !== PointerType.STRUCT) return null;
  const size = getTargetStructSize(s);
  if (index >= size.pointerLength) return null;
  return capnp.Struct.getPointer(index, s);
}

/**
 * Maps descriptors to capabilities with `fn` (each result a new reference); if one throws, the
 * ones already made are closed before rethrowing, so the caller owns all or nothing.
 */
export function mapCaps<D>(descs: readonly D[], fn: (d: D) => Capability | null): (Capability | null)[] {
  const out: (Capability | null)[] = [];
  try {
    for (const d of descs) out.push(fn(d));
  } catch (e) {
    for (const c of out) c?.close();
    throw e;
  }
  return out;
}
