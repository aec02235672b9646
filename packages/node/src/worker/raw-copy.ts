/**
 * The fast path of the bridge's struct copy (copy.ts): the same deep copy, done on the raw words
 * of the segments instead of through capnp-ts Pointer objects, for the shapes every call has.
 *
 * - {@link packRaw}: the struct a pointer points at, from a message whose content it reaches lies
 *   in one segment (no far pointers), into a new standalone single-segment buffer laid out as
 *   packStruct's (root pointer, a one-pointer Holder, then the content), exactly as long as
 *   needed. Capability indices are renumbered through `onCap` as packStruct does.
 * - {@link unpackBlock}: a packed buffer with no capability in it, over a struct of an engine
 *   message: the content is one block of words whose pointers are all relative to each other, so
 *   it is copied as one block and only the root pointer is written (on the raw words too when
 *   the old struct holds no pointer and its segment has room: a relayed call's params).
 * - {@link structFieldView}, {@link pointerFieldNull}, {@link eraseCapFieldRaw}: a relayed call's
 *   Context found, read and edited on the raw words instead of through capnp-ts Pointer objects.
 *
 * Anything else (a far pointer, an offset out of bounds, nesting deeper than the limit) returns
 * `undefined` and the caller takes copy.ts's general path, which also gives the errors.
 *
 * Owns: one scratch buffer per thread for packing. Threading: any thread (loop and worker alike).
 */
import type * as capnp from "capnp-ts";
import { ObjectSize } from "capnp-ts";
import { fastpath } from "@multiprocess-ts/capnp";
import { erase, initPointer, setStructPointer } from "capnp-ts/src/serialization/pointers/pointer.js";

/** Nesting limit of the raw walk (capnp-ts's default depth limit); deeper goes the general way. */
const MAX_DEPTH = 64;
/** Element sizes in bytes by ListElementSize (VOID, BIT (special), BYTE, TWO, FOUR, EIGHT). */
const ELEMENT_BYTES = [0, 0, 1, 2, 4, 8];

/** The growable output of {@link packRaw}: reused across calls (each result is a right-sized copy). */
let scratch = new ArrayBuffer(1024);
let out = new DataView(scratch);
let outBytes = new Uint8Array(scratch);
let used = 0;

/** Bytes of the last {@link packRaw} output (content plus `extra`). */
export function packedBytes(): number {
  return used;
}

/** Allocates `bytes` (a multiple of 8) of zeroed output; returns its byte offset. */
function alloc(bytes: number): number {
  const at = used;
  const end = at + bytes;
  if (end > scratch.byteLength) {
    let size = scratch.byteLength * 2;
    while (size < end) size *= 2;
    const next = new ArrayBuffer(size);
    new Uint8Array(next).set(outBytes.subarray(0, at));
    scratch = next;
    out = new DataView(next);
    outBytes = new Uint8Array(next);
  }
  outBytes.fill(0, at, end);
  used = end;
  return at;
}

/** Thrown inside the walk when the shape needs the general path; never escapes this module. */
const FALLBACK = Symbol("raw-copy fallback");

/**
 * Copies the object the pointer word at `src` (byte offset in `dv`, a segment of `limit` used
 * bytes) points to into the output, writing the new pointer word at output offset `dst`.
 */
function copy(dv: DataView, limit: number, src: number, dst: number, depth: number, onCap: (i: number) => number): void {
  const lo = dv.getUint32(src, true);
  const hi = dv.getUint32(src + 4, true);
  if (lo === 0 && hi === 0) return;
  const kind = lo & 3;
  if (kind === 3) {
    if (lo !== 3) throw FALLBACK; // not a capability pointer
    out.setUint32(dst, 3, true);
    out.setUint32(dst + 4, onCap(hi), true);
    return;
  }
  if (kind === 2 || depth <= 0) throw FALLBACK;
  const target = src + 8 + ((lo | 0) >> 2) * 8;
  if (kind === 0) {
    const dataWords = hi & 0xffff;
    const ptrWords = hi >>> 16;
    const bytes = (dataWords + ptrWords) * 8;
    if (target < 0 || target + bytes > limit) throw FALLBACK;
    if (bytes === 0) {
      out.setUint32(dst, 0xfffffffc, true); // an empty struct: offset -1, so the pointer is not null
      return;
    }
    const at = alloc(bytes);
    outBytes.set(new Uint8Array(dv.buffer, target, dataWords * 8), at);
    for (let i = 0; i < ptrWords; i++) {
      const off = dataWords * 8 + i * 8;
      copy(dv, limit, target + off, at + off, depth - 1, onCap);
    }
    out.setUint32(dst, (((at - dst - 8) / 8) << 2) | 0, true);
    out.setUint32(dst + 4, hi, true);
    return;
  }
  const size = hi & 7;
  const count = hi >>> 3;
  let at: number;
  if (size === 7) {
    // Composite: `count` words of elements after a tag word (element count, element size).
    if (target < 0 || target + 8 + count * 8 > limit) throw FALLBACK;
    const tagLo = dv.getUint32(target, true);
    const tagHi = dv.getUint32(target + 4, true);
    if ((tagLo & 3) !== 0) throw FALLBACK;
    const n = tagLo >>> 2;
    const dataWords = tagHi & 0xffff;
    const ptrWords = tagHi >>> 16;
    const stride = (dataWords + ptrWords) * 8;
    if (n * stride > count * 8) throw FALLBACK;
    // Tag word and elements verbatim (as the general path), then each pointer rewritten.
    at = alloc(8 + count * 8);
    outBytes.set(new Uint8Array(dv.buffer, target, 8 + count * 8), at);
    if (ptrWords > 0) {
      for (let e = 0; e < n; e++) {
        for (let j = 0; j < ptrWords; j++) {
          const off = 8 + e * stride + (dataWords + j) * 8;
          out.setUint32(at + off, 0, true); // the source's pointer, until copy writes ours
          out.setUint32(at + off + 4, 0, true);
          copy(dv, limit, target + off, at + off, depth - 1, onCap);
        }
      }
    }
  } else if (size === 6) {
    if (target < 0 || target + count * 8 > limit) throw FALLBACK;
    at = alloc(count * 8);
    for (let i = 0; i < count; i++) copy(dv, limit, target + i * 8, at + i * 8, depth - 1, onCap);
  } else {
    const bytes = size === 1 ? (count + 7) >>> 3 : ELEMENT_BYTES[size]! * count;
    const padded = (bytes + 7) & ~7;
    if (target < 0 || target + padded > limit) throw FALLBACK;
    at = alloc(padded);
    if (bytes > 0) outBytes.set(new Uint8Array(dv.buffer, target, bytes), at);
  }
  out.setUint32(dst, (((at - dst - 8) / 8) << 2) | 1, true);
  out.setUint32(dst + 4, hi, true);
}

/**
 * True when what the pointer word at `src` reaches holds no capability pointer, lies in `limit`
 * bytes and nests at most `depth` deep (false otherwise): a block of it can be copied as is.
 */
function plain(dv: DataView, limit: number, src: number, depth: number): boolean {
  const lo = dv.getUint32(src, true);
  const hi = dv.getUint32(src + 4, true);
  if (lo === 0 && hi === 0) return true;
  const kind = lo & 3;
  if (kind >= 2 || depth <= 0) return false;
  const target = src + 8 + ((lo | 0) >> 2) * 8;
  if (kind === 0) {
    const dataWords = hi & 0xffff;
    const ptrWords = hi >>> 16;
    if (target < 0 || target + (dataWords + ptrWords) * 8 > limit) return false;
    for (let i = 0; i < ptrWords; i++) if (!plain(dv, limit, target + (dataWords + i) * 8, depth - 1)) return false;
    return true;
  }
  const size = hi & 7;
  const count = hi >>> 3;
  if (size === 7) {
    if (target < 0 || target + 8 + count * 8 > limit) return false;
    const tagHi = dv.getUint32(target + 4, true);
    const n = dv.getUint32(target, true) >>> 2;
    const dataWords = tagHi & 0xffff;
    const ptrWords = tagHi >>> 16;
    const stride = (dataWords + ptrWords) * 8;
    if (n * stride > count * 8) return false;
    if (ptrWords === 0) return true;
    for (let e = 0; e < n; e++) {
      for (let j = 0; j < ptrWords; j++) if (!plain(dv, limit, target + 8 + e * stride + (dataWords + j) * 8, depth - 1)) return false;
    }
    return true;
  }
  if (size === 6) {
    if (target < 0 || target + count * 8 > limit) return false;
    for (let i = 0; i < count; i++) if (!plain(dv, limit, target + i * 8, depth - 1)) return false;
    return true;
  }
  const bytes = size === 1 ? (count + 7) >>> 3 : ELEMENT_BYTES[size]! * count;
  return target >= 0 && target + ((bytes + 7) & ~7) <= limit;
}

/**
 * packStruct's result, made on the raw words: a new single-segment buffer holding a copy of what
 * `s` points at; capability indices renumbered 0, 1, 2... in order of appearance, each first seen
 * passed to `onCap`. Undefined when the content needs the general path (nothing was passed to
 * `onCap` then). `extra` (a multiple of 8) zeroed bytes follow the content in the buffer: room for
 * a frame trailer (protocol.ts), which the content's pointers never reach. `into`: a buffer to
 * reuse instead of a new one when it is large enough (at least the content plus `extra`): the
 * content goes at its start and every byte after it is zeroed.
 */
export function packRaw(s: capnp.Pointer, onCap: (srcIndex: number) => void, extra = 0, into?: ArrayBuffer): ArrayBuffer | undefined {
  const seg = s.segment;
  const dv = new DataView(seg.buffer);
  used = 0;
  alloc(16);
  out.setUint32(0, 0, true); // root: struct pointer to the Holder at word 1 (0 data, 1 pointer)
  out.setUint32(4, 1 << 16, true);
  const seen: number[] = [];
  try {
    copy(dv, seg.byteLength, s.byteOffset, 8, MAX_DEPTH, (i) => {
      let j = seen.indexOf(i);
      if (j < 0) j = seen.push(i) - 1;
      return j;
    });
  } catch (e) {
    if (e === FALLBACK) return undefined;
    throw e;
  }
  if (extra > 0) alloc(extra);
  const buf = into !== undefined && into.byteLength >= used ? fill(into, used - extra) : scratch.slice(0, used);
  for (const i of seen) onCap(i);
  return buf;
}

/** Copies the output's first `content` bytes to the start of `into` and zeroes the rest of it. */
function fill(into: ArrayBuffer, content: number): ArrayBuffer {
  const dst = new Uint8Array(into);
  dst.set(outBytes.subarray(0, content));
  dst.fill(0, content);
  return into;
}

/**
 * Copies the struct of a packed buffer (`buf` from packRaw or packStruct) over `dst`, a struct
 * pointer of an engine message, as one block, when nothing in it is a capability (checked) and
 * its root is a struct pointer after the Holder. Undefined otherwise: the general path decides.
 * `size`: the content's bytes at the start of `buf` (less than its length when a frame trailer
 * follows).
 */
export function unpackBlock(buf: ArrayBuffer, dst: capnp.Pointer, size = buf.byteLength): true | undefined {
  if (size < 16 || size % 8 !== 0 || size > buf.byteLength) return undefined;
  const dv = new DataView(buf, 0, size);
  const lo = dv.getUint32(8, true);
  const hi = dv.getUint32(12, true);
  if ((lo & 3) !== 0 || (lo === 0 && hi === 0)) return undefined;
  const rootAt = 16 + ((lo | 0) >> 2) * 8;
  const bytes = size - 16;
  if (rootAt < 16 || !plain(dv, size, 8, MAX_DEPTH)) return undefined;
  if (placeNear(buf, bytes, rootAt, hi, dst)) return true;
  erase(dst);
  const content = dst.segment.allocate(bytes);
  new Uint8Array(content.segment.buffer, content.byteOffset, bytes).set(new Uint8Array(buf, 16, bytes));
  const res = initPointer(content.segment, content.byteOffset + (rootAt - 16), dst);
  setStructPointer(res.offsetWords, new ObjectSize((hi & 0xffff) * 8, hi >>> 16), res.pointer);
  return true;
}


/**
 * {@link unpackBlock}'s common case on the raw words, without capnp-ts's Pointer objects: `dst`
 * is null or points at a struct in its own segment whose pointers are all null (a request's
 * freshly made params: the Holder `newCall` allocated), and the segment has room for the block.
 * Does what `erase` + `allocate` + `initPointer` + `setStructPointer` do there: the old struct's
 * words are zeroed, the block goes at the segment's end, `dst` becomes a near struct pointer to
 * its root (`rootAt`, `hi`: the packed root pointer's target offset and size word). False, with
 * nothing changed, for any other shape (the general path handles it).
 */
function placeNear(buf: ArrayBuffer, bytes: number, rootAt: number, hi: number, dst: capnp.Pointer): boolean {
  const seg = dst.segment;
  const at = dst.byteOffset;
  const limit = seg.byteLength;
  if (at < 0 || at + 8 > limit || !seg.hasCapacity(bytes)) return false;
  const dv = fastpath.dataViewOf(seg);
  const lo = dv.getUint32(at, true);
  const oldHi = dv.getUint32(at + 4, true);
  let oldAt = 0;
  let oldBytes = 0;
  if (lo !== 0 || oldHi !== 0) {
    if ((lo & 3) !== 0) return false;
    oldAt = at + 8 + ((lo | 0) >> 2) * 8;
    const dataBytes = (oldHi & 0xffff) * 8;
    oldBytes = dataBytes + (oldHi >>> 16) * 8;
    if (oldAt < 0 || oldAt + oldBytes > limit) return false;
    for (let p = oldAt + dataBytes; p < oldAt + oldBytes; p += 4) if (dv.getUint32(p, true) !== 0) return false;
  }
  const content = limit;
  seg.byteLength = limit + bytes;
  if (oldBytes > 0) new Uint8Array(seg.buffer, oldAt, oldBytes).fill(0);
  new Uint8Array(seg.buffer, content, bytes).set(new Uint8Array(buf, 16, bytes));
  dv.setUint32(at, (((content + rootAt - 16 - at - 8) / 8) << 2) | 0, true);
  dv.setUint32(at + 4, hi, true);
  return true;
}

/**
 * Zeroes capability field `field` of the struct in pointer field `index` of the struct `s` points
 * at (the Context's callbackThread in a call's params), on the raw words. False, with nothing
 * changed, when the shape needs the general path (a far pointer, a field that is not a capability).
 */
export function eraseCapFieldRaw(s: capnp.Pointer, index: number, field: number): boolean {
  const seg = s.segment;
  const dv = new DataView(seg.buffer);
  const limit = seg.byteLength;
  const outer = structAt(dv, limit, s.byteOffset);
  if (outer === undefined) return false;
  if (outer === null || index >= outer.ptrWords) return true;
  const inner = structAt(dv, limit, outer.at + (outer.dataWords + index) * 8);
  if (inner === undefined) return false;
  if (inner === null || field >= inner.ptrWords) return true;
  const p = inner.at + (inner.dataWords + field) * 8;
  const lo = dv.getUint32(p, true);
  if (lo !== 3 && (lo !== 0 || dv.getUint32(p + 4, true) !== 0)) return false;
  dv.setUint32(p, 0, true);
  dv.setUint32(p + 4, 0, true);
  return true;
}

/**
 * True when pointer field `index` of the struct `s` points at is null (or absent), read on the raw
 * words; false when it is set or the shape needs the general path (a far pointer).
 */
export function pointerFieldNull(s: capnp.Pointer, index: number): boolean {
  const seg = s.segment;
  const dv = fastpath.dataViewOf(seg);
  const st = structAt(dv, seg.byteLength, s.byteOffset);
  if (st === undefined) return false;
  if (st === null || index >= st.ptrWords) return true;
  const p = st.at + (st.dataWords + index) * 8;
  return dv.getUint32(p, true) === 0 && dv.getUint32(p + 4, true) === 0;
}

/**
 * `Struct.getStruct(index, ctor, s)` made on the raw words, for a field that holds a near struct
 * pointer in `s`'s segment to a struct at least as large as `ctor`'s (a relayed call's Context,
 * as the worker sent it): a view of class `ctor` at that pointer word, without capnp-ts's pointer
 * objects and checks. Undefined for any other shape (null, far, smaller, past the pointer
 * section): the caller takes capnp-ts's way, which also initializes a null field.
 */
export function structFieldView<T extends capnp.Struct>(ctor: capnp.StructCtor<T>, s: capnp.Struct, index: number): T | undefined {
  const seg = s.segment;
  const dv = fastpath.dataViewOf(seg);
  const limit = seg.byteLength;
  const outer = structAt(dv, limit, s.byteOffset);
  if (outer === undefined || outer === null || index >= outer.ptrWords) return undefined;
  const at = outer.at + (outer.dataWords + index) * 8;
  const inner = structAt(dv, limit, at);
  const size = ctor._capnp.size;
  const depth = s._capnp.depthLimit - 1;
  if (inner === undefined || inner === null || depth < 1) return undefined;
  if (inner.dataWords * 8 < size.dataByteLength || inner.ptrWords < size.pointerLength) return undefined;
  return fastpath.pointerAt(ctor, seg, at, depth);
}

/** The struct the pointer word at `p` points to: null for a null pointer, undefined when odd. */
function structAt(dv: DataView, limit: number, p: number): { at: number; dataWords: number; ptrWords: number } | null | undefined {
  const lo = dv.getUint32(p, true);
  const hi = dv.getUint32(p + 4, true);
  if (lo === 0 && hi === 0) return null;
  if ((lo & 3) !== 0) return undefined;
  const at = p + 8 + ((lo | 0) >> 2) * 8;
  const dataWords = hi & 0xffff;
  const ptrWords = hi >>> 16;
  if (at < 0 || at + (dataWords + ptrWords) * 8 > limit) return undefined;
  return { at, dataWords, ptrWords };
}
