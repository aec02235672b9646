/**
 * Decodes pointer-typed schema values (Data, List and struct defaults of fields and params, and
 * the values of `const` declarations) from the CodeGeneratorRequest into plain JS values, so the
 * emitters can write them as TS literals. Struct values are read with the layout of their struct
 * node: data fields XOR their own defaults, null pointers read as the field's default (or the
 * type's empty value), and only the active union member is kept, as a capnp reader sees them.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import * as $ from "capnp-ts";
import { MpgenError } from "./annotations.js";
import type { DecodedStruct, DecodedValue, FieldInfo, NodeInfo, TypeInfo, ValueInfo } from "./schema.js";

const MAX_DEPTH = 64;
const NO_DISCRIMINANT = 0xffff;

type Nodes = ReadonlyMap<bigint, NodeInfo>;
/** Generic bindings in scope: brand scope id → bound types. */
type Bindings = ReadonlyMap<bigint, readonly (TypeInfo | null)[]>;
const NONE: Bindings = new Map();

/** `t` with generic parameters replaced by their bindings (unbound ones stay AnyPointer). */
function bind(t: TypeInfo, b: Bindings): TypeInfo {
  if (t.kind === "anyPointer" && t.param !== undefined) return b.get(t.param.scopeId)?.[t.param.index] ?? t;
  if (t.kind === "list") return { kind: "list", element: bind(t.element, b) };
  if (t.kind === "struct") {
    return { ...t, brand: { scopes: t.brand.scopes.map((sc) => (sc.bind !== undefined ? { scopeId: sc.scopeId, bind: sc.bind.map((x) => (x === null ? null : bind(x, b))) } : sc)) } };
  }
  return t;
}

/** The bindings a (resolved) struct type brings into scope. */
function bindingsOf(t: TypeInfo & { kind: "struct" }, outer: Bindings): Bindings {
  const out = new Map(outer);
  for (const sc of t.brand.scopes) if (sc.bind !== undefined) out.set(sc.scopeId, sc.bind);
  return out;
}

/** A struct class for reading elements of a struct list whose layout comes from the schema. */
class AnyStruct extends $.Struct {
  static override readonly _capnp = { displayName: "AnyStruct", id: "0", size: new $.ObjectSize(0, 0) };
}

const DATA_READ: Partial<Record<TypeInfo["kind"], [(o: number, s: $.Struct, m?: DataView) => number | bigint, number, (v: never) => DataView]>> = {
  int8: [$.Struct.getInt8, 1, $.getInt8Mask as (v: never) => DataView],
  int16: [$.Struct.getInt16, 2, $.getInt16Mask as (v: never) => DataView],
  int32: [$.Struct.getInt32, 4, $.getInt32Mask as (v: never) => DataView],
  int64: [$.Struct.getInt64, 8, $.getInt64Mask as (v: never) => DataView],
  uint8: [$.Struct.getUint8, 1, $.getUint8Mask as (v: never) => DataView],
  uint16: [$.Struct.getUint16, 2, $.getUint16Mask as (v: never) => DataView],
  enum: [$.Struct.getUint16, 2, $.getUint16Mask as (v: never) => DataView],
  uint32: [$.Struct.getUint32, 4, $.getUint32Mask as (v: never) => DataView],
  uint64: [$.Struct.getUint64, 8, $.getUint64Mask as (v: never) => DataView],
  float32: [$.Struct.getFloat32, 4, $.getFloat32Mask as (v: never) => DataView],
  float64: [$.Struct.getFloat64, 8, $.getFloat64Mask as (v: never) => DataView],
};

const LIST_READ: Partial<Record<TypeInfo["kind"], new (seg: $.Pointer["segment"], off: number) => $.List<unknown>>> = {
  bool: $.BoolList, int8: $.Int8List, int16: $.Int16List, int32: $.Int32List, int64: $.Int64List,
  uint8: $.Uint8List, uint16: $.Uint16List, enum: $.Uint16List, uint32: $.Uint32List, uint64: $.Uint64List,
  float32: $.Float32List, float64: $.Float64List, text: $.TextList,
};

/** The value a field of type `t` has when its pointer is null and it has no explicit default. */
function emptyValue(nodes: Nodes, t: TypeInfo, depth: number, b: Bindings = NONE): DecodedValue {
  switch (t.kind) {
    case "text": return "";
    case "data": return new Uint8Array(0);
    case "list": return [];
    case "struct": return decodeStruct(nodes, null, t.typeId, depth + 1, bindingsOf(t, b));
    default: return null;
  }
}

/** The default of a data field (a scalar {@link ValueInfo}) as a JS value. */
function scalarDefault(v: ValueInfo): number | bigint | boolean | null {
  return v.kind === "text" || v.kind === "pointer" ? null : v.value;
}

function decodeField(nodes: Nodes, s: $.Struct | null, f: FieldInfo, depth: number, b: Bindings): DecodedValue {
  if (f.groupId !== undefined) return decodeStruct(nodes, s, f.groupId, depth + 1, b);
  const slot = f.slot!;
  const t = bind(slot.type, b);
  if (t.kind === "void") return null;
  if (t.kind === "bool") {
    const def = slot.defaultValue.value === true;
    if (s === null) return def;
    return $.Struct.getBit(slot.offset, s, def ? $.getBitMask(true, slot.offset % 8) : undefined);
  }
  const data = DATA_READ[t.kind];
  if (data !== undefined) {
    const def = scalarDefault(slot.defaultValue);
    if (s === null) return def ?? (t.kind === "int64" || t.kind === "uint64" ? 0n : 0);
    const [read, bytes, mask] = data;
    const m = def === null || def === 0 || def === 0n ? undefined : mask(def as never);
    return read(slot.offset * bytes, s, m);
  }
  const p = s === null ? null : $.Struct.getPointer(slot.offset, s);
  if (p === null || $.Pointer.isNull(p)) return pointerDefault(nodes, f, t, depth, b);
  return decodePointer(nodes, p, t, depth + 1, b);
}

/** What a null pointer field reads as: its explicit default, else the empty value of its type. */
function pointerDefault(nodes: Nodes, f: FieldInfo, t: TypeInfo, depth: number, b: Bindings): DecodedValue {
  const d = f.slot!.defaultValue;
  if (d.kind === "text" && t.kind === "text") return d.value;
  if (d.kind === "pointer" && d.decoded !== undefined && d.decoded !== null) return d.decoded;
  return emptyValue(nodes, t, depth, b);
}

/** Decodes struct node `id` read through `s` (null: every field at its default). */
export function decodeStruct(nodes: Nodes, s: $.Struct | null, id: bigint, depth = 0, b: Bindings = NONE): DecodedStruct {
  if (depth > MAX_DEPTH) throw new MpgenError("mpgen: cannot map a schema value that nests more than 64 structs deep (a recursive struct type?)");
  const n = nodes.get(id);
  if (n?.struct === undefined) throw new MpgenError(`mpgen: struct node 0x${id.toString(16)} is missing from the request`);
  const st = n.struct;
  const which = st.discriminantCount > 0 && s !== null ? $.Struct.getUint16(st.discriminantOffset * 2, s) : 0;
  const out: DecodedStruct = { struct: id, fields: new Map() };
  for (const f of st.fields) {
    if (f.discriminantValue !== NO_DISCRIMINANT) {
      if (f.discriminantValue !== which) continue;
      out.which = f.name;
    }
    out.fields.set(f.name, decodeField(nodes, s, f, depth, b));
  }
  return out;
}

function decodeList(nodes: Nodes, p: $.Pointer, el: TypeInfo, depth: number, b: Bindings): DecodedValue[] {
  const prim = LIST_READ[el.kind];
  if (prim !== undefined) return new prim(p.segment, p.byteOffset).toArray() as DecodedValue[];
  switch (el.kind) {
    case "void": return Array.from({ length: new $.VoidList(p.segment, p.byteOffset).getLength() }, () => null);
    case "data": return new $.DataList(p.segment, p.byteOffset).toArray().map((d) => d.toUint8Array().slice());
    case "struct": {
      const l = new ($.CompositeList(AnyStruct))(p.segment, p.byteOffset);
      return l.toArray().map((s) => decodeStruct(nodes, s, el.typeId, depth + 1, bindingsOf(el, b)));
    }
    case "list": {
      const l = new $.AnyPointerList(p.segment, p.byteOffset);
      return l.toArray().map((x) => ($.Pointer.isNull(x) ? [] : decodePointer(nodes, x, el, depth + 1, b)));
    }
    default: return new $.AnyPointerList(p.segment, p.byteOffset).toArray().map(() => null);
  }
}

/** Decodes the non-null pointer `p` as a value of type `t`. */
export function decodePointer(nodes: Nodes, p: $.Pointer, t: TypeInfo, depth = 0, b: Bindings = NONE): DecodedValue {
  if ($.Pointer.isNull(p)) return emptyValue(nodes, t, depth, b);
  switch (t.kind) {
    case "text": return new $.Text(p.segment, p.byteOffset).get(0);
    case "data": return new $.Data(p.segment, p.byteOffset).toUint8Array().slice();
    case "list": return decodeList(nodes, p, t.element, depth, b);
    case "struct": return decodeStruct(nodes, new $.Struct(p.segment, p.byteOffset), t.typeId, depth, bindingsOf(t, b));
    default: return null;
  }
}
