/**
 * A plain, immutable view of a Cap'n Proto `CodeGeneratorRequest`: the emitters work on these
 * objects rather than on capnp-ts readers, so they never touch the message buffer and tests can
 * build small models by hand.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import * as $ from "capnp-ts";
import * as S from "capnp-ts/src/std/schema.capnp.js";
import { flattenMessage } from "./flatten.js";
import { decodePointer } from "./values.js";

export type PrimitiveKind =
  | "void" | "bool" | "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32" | "uint64"
  | "float32" | "float64" | "text" | "data";

/** A Cap'n Proto type, as written in a field slot. */
export type TypeInfo =
  | { kind: PrimitiveKind }
  | { kind: "list"; element: TypeInfo }
  | { kind: "enum"; typeId: bigint; brand: BrandInfo }
  | { kind: "struct"; typeId: bigint; brand: BrandInfo }
  | { kind: "interface"; typeId: bigint; brand: BrandInfo }
  | { kind: "anyPointer"; param?: { scopeId: bigint; index: number }; implicit?: number };

export interface BrandScope { scopeId: bigint; bind?: (TypeInfo | null)[]; inherit?: boolean }
export interface BrandInfo { scopes: BrandScope[] }

/** A default or annotation value; pointers other than Text are kept as `undefined`. */
export type ValueInfo =
  | { kind: "void" | "bool" | "int8" | "int16" | "int32" | "uint8" | "uint16" | "uint32" | "float32" | "float64" | "enum"; value: number | boolean | null }
  | { kind: "int64" | "uint64"; value: bigint }
  | { kind: "text"; value: string }
  | { kind: "pointer"; value: undefined; decoded?: DecodedValue };

/**
 * A pointer value decoded for emitting (values.ts): Text, Data, lists, structs (each with its
 * struct node id, its fields by capnp name, and the active union member's name); `null` for
 * capabilities and AnyPointer.
 */
export type DecodedValue = null | boolean | number | bigint | string | Uint8Array | DecodedValue[] | DecodedStruct;
export interface DecodedStruct { struct: bigint; fields: Map<string, DecodedValue>; which?: string }

export interface AnnotationInfo { id: bigint; value: ValueInfo }

export interface FieldInfo {
  name: string;
  index: number;
  codeOrder: number;
  annotations: AnnotationInfo[];
  /** 0xffff when the field is not a union member. */
  discriminantValue: number;
  doc?: string;
  slot?: { offset: number; type: TypeInfo; defaultValue: ValueInfo; hadExplicitDefault: boolean };
  groupId?: bigint;
}

export interface MethodInfo {
  name: string;
  /** The method ID on the wire (its ordinal). */
  id: number;
  codeOrder: number;
  paramStructType: bigint;
  paramBrand: BrandInfo;
  resultStructType: bigint;
  resultBrand: BrandInfo;
  annotations: AnnotationInfo[];
  doc?: string;
}

export interface EnumerantInfo { name: string; value: number; codeOrder: number; doc?: string }

export interface NodeInfo {
  id: bigint;
  displayName: string;
  /** The name within its parent scope, e.g. `FooStruct` or `add$Params`. */
  shortName: string;
  scopeId: bigint;
  parameters: string[];
  isGeneric: boolean;
  nestedNodes: { name: string; id: bigint }[];
  annotations: AnnotationInfo[];
  doc?: string;
  kind: "file" | "struct" | "enum" | "interface" | "const" | "annotation";
  struct?: {
    dataWordCount: number;
    pointerCount: number;
    isGroup: boolean;
    discriminantCount: number;
    discriminantOffset: number;
    fields: FieldInfo[];
  };
  enumerants?: EnumerantInfo[];
  interface?: { methods: MethodInfo[]; superclasses: { id: bigint; brand: BrandInfo }[] };
  /** A `const` declaration: its type and value (pointer values decoded). */
  constValue?: { type: TypeInfo; value: ValueInfo };
}

export interface RequestedFile { id: bigint; filename: string; imports: { id: bigint; name: string }[] }

export interface SchemaModel {
  nodes: Map<bigint, NodeInfo>;
  requestedFiles: RequestedFile[];
  capnpVersion?: { major: number; minor: number; micro: number };
}

function doc(s: string | undefined): string | undefined {
  if (s === undefined) return undefined;
  const t = s.replace(/\s+$/, "");
  return t === "" ? undefined : t;
}

function loadBrand(b: S.Brand): BrandInfo {
  return {
    scopes: b.scopes.toArray().map((s): BrandScope => {
      if (s.isInherit()) return { scopeId: s.scopeId, inherit: true };
      return { scopeId: s.scopeId, bind: s.bind.toArray().map((x) => (x.isType() ? loadType(x.type) : null)) };
    }),
  };
}

const PRIMS: Partial<Record<S.Type_Which, PrimitiveKind>> = {
  [S.Type_Which.VOID]: "void", [S.Type_Which.BOOL]: "bool",
  [S.Type_Which.INT8]: "int8", [S.Type_Which.INT16]: "int16", [S.Type_Which.INT32]: "int32", [S.Type_Which.INT64]: "int64",
  [S.Type_Which.UINT8]: "uint8", [S.Type_Which.UINT16]: "uint16", [S.Type_Which.UINT32]: "uint32", [S.Type_Which.UINT64]: "uint64",
  [S.Type_Which.FLOAT32]: "float32", [S.Type_Which.FLOAT64]: "float64",
  [S.Type_Which.TEXT]: "text", [S.Type_Which.DATA]: "data",
};

export function loadType(t: S.Type): TypeInfo {
  const w = t.which();
  const prim = PRIMS[w];
  if (prim !== undefined) return { kind: prim };
  switch (w) {
    case S.Type_Which.LIST: return { kind: "list", element: loadType(t.list.elementType) };
    case S.Type_Which.ENUM: return { kind: "enum", typeId: t.enum.typeId, brand: loadBrand(t.enum.brand) };
    case S.Type_Which.STRUCT: return { kind: "struct", typeId: t.struct.typeId, brand: loadBrand(t.struct.brand) };
    case S.Type_Which.INTERFACE: return { kind: "interface", typeId: t.interface.typeId, brand: loadBrand(t.interface.brand) };
    default: {
      const ap = t.anyPointer;
      if (ap.isParameter()) return { kind: "anyPointer", param: { scopeId: ap.parameter.scopeId, index: ap.parameter.parameterIndex } };
      if (ap.isImplicitMethodParameter()) return { kind: "anyPointer", implicit: ap.implicitMethodParameter.parameterIndex };
      return { kind: "anyPointer" };
    }
  }
}

function loadValue(v: S.Value): ValueInfo {
  switch (v.which()) {
    case S.Value_Which.VOID: return { kind: "void", value: null };
    case S.Value_Which.BOOL: return { kind: "bool", value: v.bool };
    case S.Value_Which.INT8: return { kind: "int8", value: v.int8 };
    case S.Value_Which.INT16: return { kind: "int16", value: v.int16 };
    case S.Value_Which.INT32: return { kind: "int32", value: v.int32 };
    case S.Value_Which.INT64: return { kind: "int64", value: v.int64 };
    case S.Value_Which.UINT8: return { kind: "uint8", value: v.uint8 };
    case S.Value_Which.UINT16: return { kind: "uint16", value: v.uint16 };
    case S.Value_Which.UINT32: return { kind: "uint32", value: v.uint32 };
    case S.Value_Which.UINT64: return { kind: "uint64", value: v.uint64 };
    case S.Value_Which.FLOAT32: return { kind: "float32", value: v.float32 };
    case S.Value_Which.FLOAT64: return { kind: "float64", value: v.float64 };
    case S.Value_Which.TEXT: return { kind: "text", value: v.text };
    case S.Value_Which.ENUM: return { kind: "enum", value: v.enum };
    default: return { kind: "pointer", value: undefined };
  }
}

function decodeRaw(nodes: Map<bigint, NodeInfo>, v: S.Value, t: TypeInfo): DecodedValue {
  switch (v.which()) {
    case S.Value_Which.DATA: return v.data.toUint8Array().slice();
    case S.Value_Which.LIST: return decodePointer(nodes, v.list, t);
    case S.Value_Which.STRUCT: return decodePointer(nodes, v.struct, t);
    default: return null;
  }
}

function loadAnnotations(l: $.List<S.Annotation>): AnnotationInfo[] {
  return l.toArray().map((a) => ({ id: a.id, value: loadValue(a.value) }));
}

/** Parses a framed (unpacked) CodeGeneratorRequest as written by `capnp compile -o-`. */
export function parseRequest(bytes: Uint8Array): SchemaModel {
  const flat = flattenMessage(bytes);
  const msg = new $.Message(flat, false);
  return loadRequest(msg.getRoot(S.CodeGeneratorRequest));
}

/**
 * `Node.SourceInfo` as capnp 0.9 writes it (id, docComment, members). capnp-ts 0.9.3's generated
 * `Node_SourceInfo` declares a newer, larger layout and mis-reads elements of this list
 * (CAPNP-TS024), so mpgen reads it with its own accessor classes.
 */
class SourceInfoMember extends $.Struct {
  static readonly _capnp = { displayName: "Member", id: "c2ba9038898e1fa2", size: new $.ObjectSize(0, 1) };
  get docComment(): string { return $.Struct.getText(0, this); }
}
const SourceInfoMemberList = $.CompositeList(SourceInfoMember);
class SourceInfo extends $.Struct {
  static readonly _capnp = { displayName: "SourceInfo", id: "f38e1de3041357ae", size: new $.ObjectSize(8, 2) };
  get id(): bigint { return $.Struct.getUint64(0, this); }
  get docComment(): string { return $.Struct.getText(0, this); }
  get members(): $.List<SourceInfoMember> { return $.Struct.getList(1, SourceInfoMemberList, this); }
}
const SourceInfoList = $.CompositeList(SourceInfo);

/** A pointer value to decode once every node is loaded. */
interface PendingValue { raw: S.Value; type: TypeInfo; into: ValueInfo & { kind: "pointer" } }

function loadStruct(s: S.Node_Struct, member: (i: number) => string | undefined, pending: PendingValue[]): NonNullable<NodeInfo["struct"]> {
  return {
    dataWordCount: s.dataWordCount,
    pointerCount: s.pointerCount,
    isGroup: s.isGroup,
    discriminantCount: s.discriminantCount,
    discriminantOffset: s.discriminantOffset,
    fields: s.fields.toArray().map((f, index): FieldInfo => {
      const field: FieldInfo = {
        name: f.name, index, codeOrder: f.codeOrder, annotations: loadAnnotations(f.annotations),
        discriminantValue: f.discriminantValue,
      };
      const d = member(index);
      if (d !== undefined) field.doc = d;
      if (f.isSlot()) {
        const sl = f.slot;
        const type = loadType(sl.type);
        const defaultValue = loadValue(sl.defaultValue);
        field.slot = { offset: sl.offset, type, defaultValue, hadExplicitDefault: sl.hadExplicitDefault };
        if (defaultValue.kind === "pointer" && sl.hadExplicitDefault) pending.push({ raw: sl.defaultValue, type, into: defaultValue });
      } else {
        field.groupId = f.group.typeId;
      }
      return field;
    }),
  };
}

/** Converts a capnp-ts CodeGeneratorRequest reader into a {@link SchemaModel}. */
export function loadRequest(req: S.CodeGeneratorRequest): SchemaModel {
  const docs = new Map<bigint, { doc?: string; members: (string | undefined)[] }>();
  for (const si of $.Struct.getList(3, SourceInfoList, req).toArray()) {
    docs.set(si.id, { doc: doc(si.docComment), members: si.members.toArray().map((m) => doc(m.docComment)) });
  }
  const nodes = new Map<bigint, NodeInfo>();
  // Pointer values are decoded once every struct node is known (a value may hold any struct).
  const pending: PendingValue[] = [];
  for (const n of req.nodes.toArray()) {
    const info = docs.get(n.id);
    const displayName = n.displayName;
    const node: NodeInfo = {
      id: n.id,
      displayName,
      shortName: displayName.slice(n.displayNamePrefixLength),
      scopeId: n.scopeId,
      parameters: n.parameters.toArray().map((p) => p.name),
      isGeneric: n.isGeneric,
      nestedNodes: n.nestedNodes.toArray().map((x) => ({ name: x.name, id: x.id })),
      annotations: loadAnnotations(n.annotations),
      kind: "file",
    };
    if (info?.doc !== undefined) node.doc = info.doc;
    const member = (i: number): string | undefined => info?.members[i];
    switch (n.which()) {
      case S.Node_Which.FILE: node.kind = "file"; break;
      case S.Node_Which.STRUCT:
        node.kind = "struct";
        node.struct = loadStruct(n.struct, member, pending);
        break;
      case S.Node_Which.ENUM:
        node.kind = "enum";
        node.enumerants = n.enum.enumerants.toArray().map((e, i) => {
          const x: EnumerantInfo = { name: e.name, value: i, codeOrder: e.codeOrder };
          const d = member(i);
          if (d !== undefined) x.doc = d;
          return x;
        });
        break;
      case S.Node_Which.INTERFACE: {
        node.kind = "interface";
        const it = n.interface;
        node.interface = {
          methods: it.methods.toArray().map((m, i): MethodInfo => {
            const x: MethodInfo = {
              name: m.name, id: i, codeOrder: m.codeOrder,
              paramStructType: m.paramStructType, paramBrand: loadBrand(m.paramBrand),
              resultStructType: m.resultStructType, resultBrand: loadBrand(m.resultBrand),
              annotations: loadAnnotations(m.annotations),
            };
            const d = member(i);
            if (d !== undefined) x.doc = d;
            return x;
          }),
          superclasses: it.superclasses.toArray().map((s) => ({ id: s.id, brand: loadBrand(s.brand) })),
        };
        break;
      }
      case S.Node_Which.CONST: {
        node.kind = "const";
        const type = loadType(n.const.type);
        const value = loadValue(n.const.value);
        node.constValue = { type, value };
        if (value.kind === "pointer") pending.push({ raw: n.const.value, type, into: value });
        break;
      }
      default: node.kind = "annotation"; break;
    }
    nodes.set(n.id, node);
  }
  // Decoded on first use: a struct value reads other fields' defaults, which may not be decoded yet.
  for (const x of pending) {
    let memo: DecodedValue | undefined;
    Object.defineProperty(x.into, "decoded", { enumerable: true, get: () => (memo ??= decodeRaw(nodes, x.raw, x.type)) });
  }
  const requestedFiles = req.requestedFiles.toArray().map((f): RequestedFile => ({
    id: f.id, filename: f.filename, imports: f.imports.toArray().map((i) => ({ id: i.id, name: i.name })),
  }));
  const v = req.capnpVersion;
  return { nodes, requestedFiles, capnpVersion: { major: v.major, minor: v.minor, micro: v.micro } };
}
