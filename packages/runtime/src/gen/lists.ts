/**
 * List readers for generated code (mpgen output): each turns a capnp-ts list of a validated
 * message into its TS-native array in one pass over the list's bytes, instead of capnp-ts's
 * per-element accessors (which build a Pointer object for every element). Decoding then costs
 * about what the validator charged for the list (docs/rpc.md "Cost model"): a few nanoseconds
 * per Bool/number element, one shared empty array per null Data entry.
 *
 * Input: lists of incoming messages that passed `validateMessage` (bounds are not re-checked).
 * Threading: pure functions, any thread.
 */

import type * as $ from "capnp-ts";
import { getContent, getTargetListLength } from "capnp-ts/src/serialization/pointers/pointer.js";

/** True on little-endian hosts, where typed arrays read Cap'n Proto's byte order directly. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Shared value of a null or empty Data entry: it has no bytes, so sharing it is safe. */
const EMPTY_DATA = Object.freeze(new Uint8Array(0)) as Uint8Array;

const UTF8 = new TextDecoder("utf-8");

interface ListBytes {
  buffer: ArrayBuffer;
  /** Byte offset of the first element in `buffer`. */
  offset: number;
  length: number;
}

/** Where the elements of `l` are; null for an empty or null list. */
function bytesOf(l: $.List<unknown>): ListBytes | null {
  const length = getTargetListLength(l);
  if (length === 0) return null;
  const c = getContent(l);
  return { buffer: c.segment.buffer, offset: c.byteOffset, length };
}

/** `List(Bool)` → `boolean[]`. */
export function readBoolList(l: $.List<boolean>): boolean[] {
  const b = bytesOf(l);
  if (b === null) return [];
  const bytes = new Uint8Array(b.buffer, b.offset, (b.length + 7) >>> 3);
  const out = new Array<boolean>(b.length);
  for (let i = 0; i < b.length; i++) out[i] = (bytes[i >>> 3]! & (1 << (i & 7))) !== 0;
  return out;
}

/** Element kinds of {@link readNumberList}. */
export type NumberKind = "int8" | "uint8" | "int16" | "uint16" | "int32" | "uint32" | "float32" | "float64";

const VIEWS = {
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
} as const;

const DV_GET: Record<NumberKind, (dv: DataView, o: number) => number> = {
  int8: (dv, o) => dv.getInt8(o),
  uint8: (dv, o) => dv.getUint8(o),
  int16: (dv, o) => dv.getInt16(o, true),
  uint16: (dv, o) => dv.getUint16(o, true),
  int32: (dv, o) => dv.getInt32(o, true),
  uint32: (dv, o) => dv.getUint32(o, true),
  float32: (dv, o) => dv.getFloat32(o, true),
  float64: (dv, o) => dv.getFloat64(o, true),
};

/** A list of 8..64-bit numbers (and enums, as `uint16`) → `number[]`. */
export function readNumberList(l: $.List<number>, kind: NumberKind): number[] {
  const b = bytesOf(l);
  if (b === null) return [];
  const View = VIEWS[kind];
  const out = new Array<number>(b.length);
  if (LITTLE_ENDIAN) {
    // Offsets are word-aligned inside a segment, and segments start at offset 0 of their buffer.
    const v = new View(b.buffer, b.offset, b.length);
    for (let i = 0; i < b.length; i++) out[i] = v[i]!;
  } else {
    const dv = new DataView(b.buffer, b.offset, b.length * View.BYTES_PER_ELEMENT);
    const get = DV_GET[kind];
    for (let i = 0; i < b.length; i++) out[i] = get(dv, i * View.BYTES_PER_ELEMENT);
  }
  return out;
}

/** `List(Int64)` / `List(UInt64)` → `bigint[]`. */
export function readBigIntList(l: $.List<bigint>, signed: boolean): bigint[] {
  const b = bytesOf(l);
  if (b === null) return [];
  const dv = new DataView(b.buffer, b.offset, b.length * 8);
  const out = new Array<bigint>(b.length);
  for (let i = 0; i < b.length; i++) out[i] = signed ? dv.getBigInt64(i * 8, true) : dv.getBigUint64(i * 8, true);
  return out;
}

/**
 * Each element of a pointer list that is a plain byte list in the same segment (the usual
 * encoding): `fast(buffer, byteOffset, byteLength)`; null entries: `nul()`; anything else (far
 * pointers): `slow(i)` through capnp-ts.
 */
function mapByteLists<T>(
  l: $.List<unknown>,
  nul: () => T,
  fast: (buffer: ArrayBuffer, offset: number, length: number) => T,
  slow: (i: number) => T,
): T[] {
  const b = bytesOf(l);
  if (b === null) return [];
  const dv = new DataView(b.buffer);
  const out = new Array<T>(b.length);
  for (let i = 0; i < b.length; i++) {
    const at = b.offset + i * 8;
    const lo = dv.getUint32(at, true);
    const hi = dv.getUint32(at + 4, true);
    if (lo === 0 && hi === 0) out[i] = nul();
    else if ((lo & 3) === 1 && (hi & 7) === 2) out[i] = fast(b.buffer, at + 8 + (lo >> 2) * 8, hi >>> 3);
    else out[i] = slow(i);
  }
  return out;
}

/** `List(Data)` → `Uint8Array[]`: copies (one shared empty array for null/empty entries). */
export function readDataList(l: $.List<$.Data>): Uint8Array[] {
  return mapByteLists(
    l,
    () => EMPTY_DATA,
    (buf, off, len) => (len === 0 ? EMPTY_DATA : new Uint8Array(buf.slice(off, off + len))),
    (i) => {
      const d = l.get(i);
      return d.getLength() === 0 ? EMPTY_DATA : new Uint8Array(d.toArrayBuffer());
    },
  );
}

/** `List(Text)` → `string[]` (null entries read as ""). */
export function readTextList(l: $.List<string>): string[] {
  return mapByteLists(
    l,
    () => "",
    (buf, off, len) => (len <= 1 ? "" : UTF8.decode(new Uint8Array(buf, off, len - 1))),
    (i) => l.get(i),
  );
}
