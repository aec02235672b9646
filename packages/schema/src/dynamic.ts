/**
 * Schema-driven conversion between plain objects and struct values (message.ts trees): the
 * compiler writes the CodeGeneratorRequest this way (driven by the layouts of schema.capnp) and
 * encodes struct and list constants this way (driven by the user's own layouts). Runs at build time.
 *
 * Objects use the schema's field names; a union member is selected by its key being present; Void
 * is `null`; 64-bit integers are bigints; AnyPointer fields hold raw `Ptr` trees. Like capnp's
 * DynamicStruct, data fields are stored XOR their declared default.
 *
 * @module
 */
import type { ListVal, Ptr, StructVal } from "./message.js";

export type Obj = Record<string, unknown>;
/** Node objects (schema.capnp `Node` shape) by id. */
export interface Layouts { get(id: bigint): Obj | undefined }

export class DynamicError extends Error {
  override name = "DynamicError";
}

const DATA_BITS: Record<string, number> = {
  bool: 1, int8: 8, uint8: 8, int16: 16, uint16: 16, enum: 16, int32: 32, uint32: 32, float32: 32,
  int64: 64, uint64: 64, float64: 64,
};
const SIZE_CODE: Record<number, number> = { 1: 1, 8: 2, 16: 3, 32: 4, 64: 5 };

/** The active union member's name of a union-shaped object (Type, Value, …). */
export function which(o: Obj): string {
  const k = Object.keys(o)[0];
  if (k === undefined) throw new DynamicError("empty union object");
  return k;
}

function structOf(L: Layouts, id: bigint): Obj {
  const n = L.get(id);
  const s = n?.["struct"] as Obj | undefined;
  if (s === undefined) throw new DynamicError(`no struct layout for @0x${id.toString(16)}`);
  return s;
}

/** Raw bits of a scalar as a bigint (two's complement, IEEE for floats). */
function toBits(kind: string, v: unknown): bigint {
  const dv = new DataView(new ArrayBuffer(8));
  switch (kind) {
    case "bool": return v === true ? 1n : 0n;
    case "float32": dv.setFloat32(0, Number(v), true); return BigInt(dv.getUint32(0, true));
    case "float64": dv.setFloat64(0, Number(v), true); return dv.getBigUint64(0, true);
    default: return BigInt.asUintN(DATA_BITS[kind]!, BigInt(v as number | bigint));
  }
}

function fromBits(kind: string, b: bigint): unknown {
  const dv = new DataView(new ArrayBuffer(8));
  switch (kind) {
    case "bool": return b !== 0n;
    case "float32": dv.setUint32(0, Number(b), true); return dv.getFloat32(0, true);
    case "float64": dv.setBigUint64(0, b, true); return dv.getFloat64(0, true);
    case "int64": return BigInt.asIntN(64, b);
    case "uint64": return b;
    case "int8": case "int16": case "int32": return Number(BigInt.asIntN(DATA_BITS[kind]!, b));
    default: return Number(b);
  }
}

function writeBits(data: Uint8Array, bitOffset: number, bits: number, v: bigint): void {
  if (bits === 1) {
    const byte = bitOffset >> 3;
    if (byte >= data.length) return;
    if (v & 1n) data[byte]! |= 1 << (bitOffset & 7);
    else data[byte]! &= ~(1 << (bitOffset & 7));
    return;
  }
  const start = bitOffset / 8;
  for (let i = 0; i < bits / 8; i++) data[start + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

function readBits(data: Uint8Array, bitOffset: number, bits: number): bigint {
  if (bits === 1) return BigInt(((data[bitOffset >> 3] ?? 0) >> (bitOffset & 7)) & 1);
  let v = 0n;
  const start = bitOffset / 8;
  for (let i = bits / 8 - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[start + i] ?? 0);
  return v;
}

function defaultBits(kind: string, dflt: Obj | undefined): bigint {
  if (dflt === undefined) return 0n;
  const v = dflt[kind];
  return v === undefined || v === null ? 0n : toBits(kind, v);
}

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

export function textPtr(s: string): ListVal {
  const b = utf8.encode(s);
  const data = new Uint8Array(b.length + 1);
  data.set(b);
  return { k: "l", size: 2, count: data.length, data };
}

/** Encodes `v` (a value of `type`) as a pointer. */
export function encodePointer(L: Layouts, type: Obj, v: unknown): Ptr {
  if (v === null || v === undefined) return null;
  const kind = which(type);
  switch (kind) {
    case "text": return textPtr(v as string);
    case "data": { const d = v as Uint8Array; return { k: "l", size: 2, count: d.length, data: d }; }
    case "struct": return encodeStruct(L, (type["struct"] as Obj)["typeId"] as bigint, v as Obj);
    case "list": return encodeList(L, (type["list"] as Obj)["elementType"] as Obj, v as unknown[]);
    case "anyPointer": return v as Ptr;
    case "interface": return v as Ptr;
    default: throw new DynamicError(`not a pointer type: ${kind}`);
  }
}

export function encodeList(L: Layouts, elem: Obj, items: readonly unknown[]): ListVal {
  const kind = which(elem);
  const bits = DATA_BITS[kind];
  if (kind === "void") return { k: "l", size: 0, count: items.length };
  if (bits !== undefined) {
    const data = new Uint8Array(Math.ceil((bits * items.length) / 64) * 8);
    items.forEach((x, i) => writeBits(data, i * bits, bits, toBits(kind, x)));
    return { k: "l", size: SIZE_CODE[bits]!, count: items.length, data };
  }
  if (kind === "struct") {
    const id = (elem["struct"] as Obj)["typeId"] as bigint;
    const s = structOf(L, id);
    const elems = items.map((x) => encodeStruct(L, id, x as Obj));
    return { k: "l", size: 7, count: items.length, elems, dataWords: s["dataWordCount"] as number, ptrCount: s["pointerCount"] as number };
  }
  return { k: "l", size: 6, count: items.length, ptrs: items.map((x) => encodePointer(L, elem, x)) };
}

export function encodeStruct(L: Layouts, id: bigint, obj: Obj): StructVal {
  const s = structOf(L, id);
  const out: StructVal = {
    k: "s", data: new Uint8Array((s["dataWordCount"] as number) * 8),
    ptrs: new Array<Ptr>(s["pointerCount"] as number).fill(null),
  };
  fillStruct(L, id, obj, out);
  return out;
}

function fillStruct(L: Layouts, id: bigint, obj: Obj, out: StructVal): void {
  const s = structOf(L, id);
  for (const f of (s["fields"] as Obj[] | undefined) ?? []) {
    const name = f["name"] as string;
    if (!(name in obj)) continue;
    const v = obj[name];
    const disc = (f["discriminantValue"] as number | undefined) ?? 0xffff;
    if (disc !== 0xffff) writeBits(out.data, (s["discriminantOffset"] as number) * 16, 16, BigInt(disc));
    if (f["group"] !== undefined) {
      fillStruct(L, (f["group"] as Obj)["typeId"] as bigint, v as Obj, out);
      continue;
    }
    const slot = f["slot"] as Obj;
    const type = slot["type"] as Obj;
    const kind = which(type);
    const offset = slot["offset"] as number;
    const bits = DATA_BITS[kind];
    if (kind === "void") continue;
    if (bits !== undefined) {
      const raw = toBits(kind, v) ^ defaultBits(kind, slot["defaultValue"] as Obj | undefined);
      writeBits(out.data, offset * bits, bits, raw);
    } else {
      out.ptrs[offset] = encodePointer(L, type, v);
    }
  }
}

/** Decodes a pointer of `type`; AnyPointer and interface values come back as raw `Ptr`s. */
export function decodePointer(L: Layouts, type: Obj, p: Ptr): unknown {
  const kind = which(type);
  if (kind === "anyPointer" || kind === "interface") return p;
  if (p === null) return null;
  if (p.k !== "l" && kind !== "struct") throw new DynamicError(`expected a list for ${kind}`);
  switch (kind) {
    case "text": { const d = (p as ListVal).data ?? new Uint8Array(0); return utf8d.decode(d.subarray(0, Math.max(0, d.length - 1))); }
    case "data": return (p as ListVal).data ?? new Uint8Array(0);
    case "struct":
      if (p.k !== "s") throw new DynamicError("expected a struct");
      return decodeStruct(L, (type["struct"] as Obj)["typeId"] as bigint, p);
    case "list": return decodeList(L, (type["list"] as Obj)["elementType"] as Obj, p as ListVal);
    default: throw new DynamicError(`not a pointer type: ${kind}`);
  }
}

export function decodeList(L: Layouts, elem: Obj, l: ListVal): unknown[] {
  const kind = which(elem);
  const bits = DATA_BITS[kind];
  const out: unknown[] = [];
  if (kind === "void") return new Array<null>(l.count).fill(null);
  if (bits !== undefined) {
    for (let i = 0; i < l.count; i++) out.push(fromBits(kind, readBits(l.data ?? new Uint8Array(0), i * bits, bits)));
    return out;
  }
  if (kind === "struct") {
    const id = (elem["struct"] as Obj)["typeId"] as bigint;
    for (const e of l.elems ?? []) out.push(decodeStruct(L, id, e));
    return out;
  }
  for (const p of l.ptrs ?? []) out.push(decodePointer(L, elem, p));
  return out;
}

export function decodeStruct(L: Layouts, id: bigint, sv: StructVal): Obj {
  const s = structOf(L, id);
  const out: Obj = {};
  const disc = (s["discriminantCount"] as number) > 0 ? Number(readBits(sv.data, (s["discriminantOffset"] as number) * 16, 16)) : -1;
  for (const f of (s["fields"] as Obj[] | undefined) ?? []) {
    const d = (f["discriminantValue"] as number | undefined) ?? 0xffff;
    if (d !== 0xffff && d !== disc) continue;
    const name = f["name"] as string;
    if (f["group"] !== undefined) { out[name] = decodeStruct(L, (f["group"] as Obj)["typeId"] as bigint, sv); continue; }
    const slot = f["slot"] as Obj;
    const type = slot["type"] as Obj;
    const kind = which(type);
    const bits = DATA_BITS[kind];
    if (kind === "void") out[name] = null;
    else if (bits !== undefined) {
      const raw = readBits(sv.data, (slot["offset"] as number) * bits, bits) ^ defaultBits(kind, slot["defaultValue"] as Obj | undefined);
      out[name] = fromBits(kind, raw);
    } else out[name] = decodePointer(L, type, sv.ptrs[slot["offset"] as number] ?? null);
  }
  return out;
}
