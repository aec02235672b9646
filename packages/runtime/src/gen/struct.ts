/**
 * The `Struct` base class generated struct classes extend (through `gen/capnp.ts`): capnp-ts's
 * `Struct`, with its primitive field accessors (`Struct.getInt32(byteOffset, s)`,
 * `Struct.setFloat64(...)`, `getBit`/`setBit`, ...) replaced by ones that read the struct
 * pointer and write the data section straight through the segment's DataView.
 *
 * capnp-ts allocates several objects per field access (a Pointer for the data section, another
 * and an ObjectSize for the bounds check, debug trace arguments): a sequential `add` call read
 * and wrote six fields through it and spent a tenth of its allocations there. Semantics are
 * capnp-ts's: the fast path only takes a near struct pointer (not a composite-list element) whose
 * data section holds the field and no default mask; anything else (far pointers, list elements,
 * fields beyond a smaller struct, defaults) goes to capnp-ts's own function, errors included.
 * Bounds: the same as capnp-ts's (the DataView's), and incoming messages are validated first.
 * The accessors are written out one per type on purpose: each calls one DataView method directly,
 * so every call site stays monomorphic; a factory keyed by method name would share one
 * megamorphic closure across the types on the hottest path of a call.
 *
 * Threading: any thread (stateless functions).
 */

import * as capnp from "capnp-ts";

type S = capnp.Struct;

/** Byte offset of `len` bytes at `off` in the data section of `s`, or -1 (take capnp-ts's path). */
function dataAt(s: S, off: number, len: number): number {
  if (s._capnp.compositeIndex !== undefined) return -1;
  const dv = (s.segment as unknown as { _dv: DataView })._dv;
  const p = s.byteOffset;
  const lo = dv.getUint32(p, true);
  if ((lo & 3) !== 0) return -1;
  if (off + len > (dv.getUint16(p + 4, true) << 3)) return -1;
  return p + 8 + ((lo | 0) >> 2) * 8 + off;
}

function dvOf(s: S): DataView {
  return (s.segment as unknown as { _dv: DataView })._dv;
}

const C = capnp.Struct;

/** capnp-ts's Struct with the fast primitive accessors (see the file comment). */
export class Struct extends capnp.Struct {}

// One function per type (not one closure factory): each call site stays monomorphic.
// The statics are assigned on our subclass; capnp-ts's own functions stay the fallback.
const F = Struct as unknown as Record<string, unknown>;

F["getInt8"] = (off: number, s: S, mask?: DataView): number => {
  const at = mask === undefined ? dataAt(s, off, 1) : -1;
  return at >= 0 ? dvOf(s).getInt8(at) : C.getInt8(off, s, mask);
};
F["setInt8"] = (off: number, v: number, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 1) : -1;
  if (at >= 0) dvOf(s).setInt8(at, v);
  else C.setInt8(off, v, s, mask);
};
F["getUint8"] = (off: number, s: S, mask?: DataView): number => {
  const at = mask === undefined ? dataAt(s, off, 1) : -1;
  return at >= 0 ? dvOf(s).getUint8(at) : C.getUint8(off, s, mask);
};
F["setUint8"] = (off: number, v: number, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 1) : -1;
  if (at >= 0) dvOf(s).setUint8(at, v);
  else C.setUint8(off, v, s, mask);
};
F["getInt16"] = (off: number, s: S, mask?: DataView): number => {
  const at = mask === undefined ? dataAt(s, off, 2) : -1;
  return at >= 0 ? dvOf(s).getInt16(at, true) : C.getInt16(off, s, mask);
};
F["setInt16"] = (off: number, v: number, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 2) : -1;
  if (at >= 0) dvOf(s).setInt16(at, v, true);
  else C.setInt16(off, v, s, mask);
};
F["getUint16"] = (off: number, s: S, mask?: DataView): number => {
  const at = mask === undefined ? dataAt(s, off, 2) : -1;
  return at >= 0 ? dvOf(s).getUint16(at, true) : C.getUint16(off, s, mask);
};
F["setUint16"] = (off: number, v: number, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 2) : -1;
  if (at >= 0) dvOf(s).setUint16(at, v, true);
  else C.setUint16(off, v, s, mask);
};
F["getInt32"] = (off: number, s: S, mask?: DataView): number => {
  const at = mask === undefined ? dataAt(s, off, 4) : -1;
  return at >= 0 ? dvOf(s).getInt32(at, true) : C.getInt32(off, s, mask);
};
F["setInt32"] = (off: number, v: number, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 4) : -1;
  if (at >= 0) dvOf(s).setInt32(at, v, true);
  else C.setInt32(off, v, s, mask);
};
F["getUint32"] = (off: number, s: S, mask?: DataView): number => {
  const at = mask === undefined ? dataAt(s, off, 4) : -1;
  return at >= 0 ? dvOf(s).getUint32(at, true) : C.getUint32(off, s, mask);
};
F["setUint32"] = (off: number, v: number, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 4) : -1;
  if (at >= 0) dvOf(s).setUint32(at, v, true);
  else C.setUint32(off, v, s, mask);
};
F["getFloat32"] = (off: number, s: S, mask?: DataView): number => {
  const at = mask === undefined ? dataAt(s, off, 4) : -1;
  return at >= 0 ? dvOf(s).getFloat32(at, true) : C.getFloat32(off, s, mask);
};
F["setFloat32"] = (off: number, v: number, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 4) : -1;
  if (at >= 0) dvOf(s).setFloat32(at, v, true);
  else C.setFloat32(off, v, s, mask);
};
F["getFloat64"] = (off: number, s: S, mask?: DataView): number => {
  const at = mask === undefined ? dataAt(s, off, 8) : -1;
  return at >= 0 ? dvOf(s).getFloat64(at, true) : C.getFloat64(off, s, mask);
};
F["setFloat64"] = (off: number, v: number, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 8) : -1;
  if (at >= 0) dvOf(s).setFloat64(at, v, true);
  else C.setFloat64(off, v, s, mask);
};
F["getInt64"] = (off: number, s: S, mask?: DataView): bigint => {
  const at = mask === undefined ? dataAt(s, off, 8) : -1;
  return at >= 0 ? dvOf(s).getBigInt64(at, true) : C.getInt64(off, s, mask);
};
F["setInt64"] = (off: number, v: bigint, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 8) : -1;
  if (at >= 0) dvOf(s).setBigInt64(at, v, true);
  else C.setInt64(off, v, s, mask);
};
F["getUint64"] = (off: number, s: S, mask?: DataView): bigint => {
  const at = mask === undefined ? dataAt(s, off, 8) : -1;
  return at >= 0 ? dvOf(s).getBigUint64(at, true) : C.getUint64(off, s, mask);
};
F["setUint64"] = (off: number, v: bigint, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, off, 8) : -1;
  if (at >= 0) dvOf(s).setBigUint64(at, v, true);
  else C.setUint64(off, v, s, mask);
};
F["getBit"] = (bit: number, s: S, mask?: DataView): boolean => {
  const at = mask === undefined ? dataAt(s, bit >>> 3, 1) : -1;
  return at >= 0 ? (dvOf(s).getUint8(at) & (1 << (bit & 7))) !== 0 : C.getBit(bit, s, mask);
};
F["setBit"] = (bit: number, v: boolean, s: S, mask?: DataView): void => {
  const at = mask === undefined ? dataAt(s, bit >>> 3, 1) : -1;
  if (at < 0) {
    C.setBit(bit, v, s, mask);
    return;
  }
  const dv = dvOf(s);
  const m = 1 << (bit & 7);
  const b = dv.getUint8(at);
  dv.setUint8(at, v ? b | m : b & ~m);
};
