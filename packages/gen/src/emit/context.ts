/**
 * Per-output-file state: naming of schema nodes, imports of other generated files, brand
 * (generics) resolution, TS-native type names (read types and `FooInit` writer inputs), and the
 * small codec helpers (range checks, list constructors) that codec.ts builds on. Every emitter
 * (struct, enum, interface, const) works through a {@link FileContext}.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { ANN_COUNT, ANN_NAME, CONTEXT_ID, MpgenError, PROXY_FILE_ID, countAnnotation, findAnnotation, isFunctionWrap, textAnnotation } from "../annotations.js";
import { camelCase } from "../names.js";
import type { BrandInfo, FieldInfo, NodeInfo, SchemaModel, TypeInfo } from "../schema.js";
import { isDefaulted, nativeFields } from "./fields.js";

/** Generated code imports only the runtime: its helpers, and capnp-ts re-exported (docs/mpgen.md). */
export const RUNTIME_GEN = "@multiprocess-ts/runtime/gen";
export const RUNTIME_CAPNP = "@multiprocess-ts/runtime/gen/capnp";
/** The generated TS of mp/proxy.capnp ships inside the runtime; imports of that file go there. */
export const RUNTIME_PROXY_CAPNP = "@multiprocess-ts/runtime/mp/proxy.capnp";

export interface GenerateOptions {
  /** Keep `List(Pair)` as arrays of `{ first, second }` objects instead of `Map`. Default false. */
  mapsAsArrays?: boolean;
}

/** Generic parameter bindings in scope: brand scope id → bound types (null = unbound). */
export type Env = ReadonlyMap<bigint, readonly (TypeInfo | null)[]>;
export const EMPTY_ENV: Env = new Map();

const INT_CHECK: Partial<Record<TypeInfo["kind"], string>> = {
  int8: "checkInt8", int16: "checkInt16", int32: "checkInt32",
  uint8: "checkUint8", uint16: "checkUint16", uint32: "checkUint32",
};

const LIST_CTOR: Partial<Record<TypeInfo["kind"], string>> = {
  void: "$.VoidList", bool: "$.BoolList",
  int8: "$.Int8List", int16: "$.Int16List", int32: "$.Int32List", int64: "$.Int64List",
  uint8: "$.Uint8List", uint16: "$.Uint16List", uint32: "$.Uint32List", uint64: "$.Uint64List",
  float32: "$.Float32List", float64: "$.Float64List", text: "$.TextList", data: "$.DataList", enum: "$.Uint16List",
};

export const ELEMENT_SIZE: Partial<Record<TypeInfo["kind"], string>> = {
  void: "VOID", bool: "BIT", int8: "BYTE", uint8: "BYTE", int16: "BYTE_2", uint16: "BYTE_2", enum: "BYTE_2",
  int32: "BYTE_4", uint32: "BYTE_4", float32: "BYTE_4", int64: "BYTE_8", uint64: "BYTE_8", float64: "BYTE_8",
  text: "POINTER", data: "POINTER", list: "POINTER", interface: "POINTER", anyPointer: "POINTER", struct: "COMPOSITE",
};

export const TS_PRIMITIVE: Partial<Record<TypeInfo["kind"], string>> = {
  void: "void", bool: "boolean",
  int8: "number", int16: "number", int32: "number", uint8: "number", uint16: "number", uint32: "number",
  int64: "bigint", uint64: "bigint", float32: "number", float64: "number", text: "string", data: "Uint8Array",
};

export interface TsTypeOptions {
  /** Interfaces become their generated client class (what a client proxy returns). */
  clientResult?: boolean;
  /** Capabilities may be `null` (received params and struct fields). */
  nullableCaps?: boolean;
  /** Names of the unbound generic parameters in scope, by `scopeId:index`. */
  typeParams?: Map<string, string>;
  /** Collects the names of `typeParams` the type uses. */
  used?: Set<string>;
  /** Writer input: structs with defaulted fields become their `FooInit` type. */
  input?: boolean;
}

export function isPointerType(t: TypeInfo): boolean {
  return t.kind === "text" || t.kind === "data" || t.kind === "list" || t.kind === "struct" || t.kind === "interface" || t.kind === "anyPointer";
}

export class FileContext {
  /** Import path (relative, or the runtime's mp/proxy.capnp) → alias. */
  readonly imports = new Map<string, string>();
  /** Module-level constants emitted at the end of the file (list constructors), by name. */
  readonly trailer = new Map<string, string>();
  /** Uses of the local `$nonNull` helper. */
  usesNonNull = false;
  /** Uses of the local `$dataView` helper. */
  usesDataView = false;
  /** Uses of the local 64-bit range-check helpers. */
  readonly uses64 = new Set<"int64" | "uint64">();
  private readonly needsIoMemo = new Map<bigint, boolean>();
  private readonly needsInitMemo = new Map<bigint, boolean>();
  private tmp = 0;

  constructor(
    readonly model: SchemaModel,
    readonly fileId: bigint,
    readonly fileName: string,
    readonly options: GenerateOptions,
  ) {}

  node(id: bigint): NodeInfo {
    const n = this.model.nodes.get(id);
    if (n === undefined) throw new MpgenError(`mpgen: schema node 0x${id.toString(16)} is missing from the request`);
    return n;
  }

  /** The file node that contains `id`. */
  fileOf(id: bigint): NodeInfo {
    let n = this.node(id);
    const seen = new Set<bigint>();
    while (n.kind !== "file") {
      if (seen.has(n.id)) break;
      seen.add(n.id);
      if (n.scopeId === 0n) {
        // Implicit method param/result structs have no scope: find the file by display name.
        const prefix = n.displayName.slice(0, n.displayName.indexOf(":"));
        for (const f of this.model.nodes.values()) if (f.kind === "file" && f.displayName === prefix) return f;
        throw new MpgenError(`mpgen: cannot find the file of ${n.displayName}`);
      }
      n = this.node(n.scopeId);
    }
    return n;
  }

  /** Base TS name of a node: its path inside the file with `.` replaced by `_`. */
  baseName(id: bigint): string {
    const n = this.node(id);
    const colon = n.displayName.indexOf(":");
    return n.displayName.slice(colon + 1).replace(/\./g, "_");
  }

  /** `alias.` for nodes of other files (adding the import), `` for this file. */
  qualifier(id: bigint): string {
    const f = this.fileOf(id);
    if (f.id === this.fileId) return "";
    const rel = f.id === PROXY_FILE_ID ? RUNTIME_PROXY_CAPNP : relativeImport(this.fileName, f.displayName);
    let alias = this.imports.get(rel);
    if (alias === undefined) {
      const base = f.displayName.replace(/^.*\//, "").replace(/\.capnp$/, "").replace(/[^A-Za-z0-9_$]/g, "_");
      alias = `$${base}`;
      const used = new Set(this.imports.values());
      for (let i = 2; used.has(alias) || alias === "$mp"; i++) alias = `$${base}${i}`;
      this.imports.set(rel, alias);
    }
    return `${alias}.`;
  }

  isImplicitStruct(id: bigint): boolean {
    const n = this.node(id);
    return n.scopeId === 0n && /\$(Params|Results)$/.test(n.displayName);
  }

  /** The capnp-ts class for a struct node. */
  structClass(id: bigint): string {
    return this.qualifier(id) + this.structClassLocal(id);
  }
  structClassLocal(id: bigint): string {
    const base = this.baseName(id);
    return this.isImplicitStruct(id) ? base : `${base}$Struct`;
  }
  /** The TS-native type (interface / enum / function type) name of a node. */
  nativeName(id: bigint): string { return this.qualifier(id) + this.baseName(id); }
  clientClass(id: bigint): string { return `${this.qualifier(id)}${this.baseName(id)}Client`; }
  serverClass(id: bigint): string { return `${this.qualifier(id)}${this.baseName(id)}Server`; }
  readFn(id: bigint): string { return `${this.qualifier(id)}read${this.baseName(id)}`; }
  writeFn(id: bigint): string { return `${this.qualifier(id)}write${this.baseName(id)}`; }

  fresh(prefix: string): string { return `${prefix}${this.tmp++}`; }
  resetTemps(): void { this.tmp = 0; }

  // ---- fields -----------------------------------------------------------------------------

  /** TS property / parameter name of a field: camelCase of `$Proxy.name` if present, else the capnp name. */
  fieldTsName(f: FieldInfo): string {
    const n = textAnnotation(f.annotations, ANN_NAME);
    return n !== undefined ? camelCase(n) : f.name;
  }

  /**
   * True when a field has no TS counterpart: `$Proxy.skip`, `$Proxy.count(0)` on the field or on
   * its struct/interface type (mp `Context`, `ThreadMap`), or a Void slot.
   */
  isHidden(f: FieldInfo): boolean {
    const c = countAnnotation(f.annotations);
    if (c === 0) return true;
    if (c !== undefined && c !== 1) {
      throw new MpgenError(`mpgen: cannot map $Proxy.count(${c}) on field ${f.name}: a TS proxy maps each field to exactly one value`);
    }
    if (f.slot === undefined) return false;
    const t = f.slot.type;
    if (t.kind === "void") return true;
    if (t.kind === "struct" || t.kind === "interface") {
      const n = this.model.nodes.get(t.typeId);
      if (n !== undefined) {
        const tc = countAnnotation(n.annotations);
        if (tc === 0) return true;
        if (tc !== undefined && tc !== 1 && findAnnotation(n.annotations, ANN_COUNT) !== undefined) {
          throw new MpgenError(`mpgen: cannot map $Proxy.count(${tc}) on ${n.displayName}`);
        }
      }
    }
    return false;
  }

  isContextField(f: FieldInfo): boolean {
    return f.slot?.type.kind === "struct" && f.slot.type.typeId === CONTEXT_ID;
  }

  // ---- generics ---------------------------------------------------------------------------

  envOf(brand: BrandInfo, outer: Env): Env {
    const env = new Map(outer);
    for (const s of brand.scopes) {
      if (s.bind !== undefined) env.set(s.scopeId, s.bind.map((b) => (b === null ? null : this.resolve(b, outer))));
    }
    return env;
  }

  resolve(t: TypeInfo, env: Env): TypeInfo {
    switch (t.kind) {
      case "anyPointer":
        if (t.param !== undefined) return env.get(t.param.scopeId)?.[t.param.index] ?? t;
        return t;
      case "list": return { kind: "list", element: this.resolve(t.element, env) };
      case "struct": case "interface": case "enum":
        return { ...t, brand: { scopes: t.brand.scopes.map((s) => s.bind !== undefined ? { scopeId: s.scopeId, bind: s.bind.map((b) => (b === null ? null : this.resolve(b, env))) } : (env.has(s.scopeId) ? { scopeId: s.scopeId, bind: [...env.get(s.scopeId)!] } : s)) } };
      default: return t;
    }
  }

  /** `List(S)` where S has exactly the fields `first` and `second` → `[keyType, valueType]`. */
  mapEntry(t: TypeInfo): [TypeInfo, TypeInfo] | undefined {
    if (this.options.mapsAsArrays === true || t.kind !== "list" || t.element.kind !== "struct") return undefined;
    const n = this.node(t.element.typeId);
    const fields = n.struct?.fields ?? [];
    if (fields.length !== 2) return undefined;
    const first = fields.find((f) => f.name === "first"), second = fields.find((f) => f.name === "second");
    if (first?.slot === undefined || second?.slot === undefined) return undefined;
    const env = this.envOf(t.element.brand, EMPTY_ENV);
    return [this.resolve(first.slot.type, env), this.resolve(second.slot.type, env)];
  }

  // ---- TS types ---------------------------------------------------------------------------

  /**
   * TS-native type of a resolved capnp type. `clientResult`: interfaces become their generated
   * client class (what the client proxy actually returns). `typeParams`: names for unbound generic
   * parameters of the struct being declared.
   */
  tsType(t: TypeInfo, opts: TsTypeOptions = {}): string {
    const prim = TS_PRIMITIVE[t.kind];
    if (prim !== undefined) return prim;
    switch (t.kind) {
      case "enum": return this.nativeName(t.typeId);
      case "list": {
        const me = this.mapEntry(t);
        if (me !== undefined) return `Map<${this.tsType(me[0], opts)}, ${this.tsType(me[1], opts)}>`;
        const el = this.tsType(t.element, opts);
        return /[ |&<]/.test(el) && !/^[A-Za-z0-9_$.]+<.*>$/.test(el) ? `(${el})[]` : `${el}[]`;
      }
      case "struct": {
        const n = this.node(t.typeId);
        const name = opts.input === true && this.needsInit(t.typeId) ? `${this.nativeName(t.typeId)}Init` : this.nativeName(t.typeId);
        if (!n.isGeneric) return name;
        // One argument per parameter of the struct and of the structs enclosing it (outermost first).
        const env = this.envOf(t.brand, EMPTY_ENV);
        const args = this.genericScopes(t.typeId).flatMap((sc) => sc.parameters.map((_name, i) => {
          const b = env.get(sc.id)?.[i] ?? null;
          if (b !== null) return this.tsType(b, opts);
          const p = opts.typeParams?.get(`${sc.id}:${i}`);
          if (p !== undefined) opts.used?.add(p);
          return p ?? "unknown";
        }));
        return args.length > 0 ? `${name}<${args.join(", ")}>` : name;
      }
      case "interface": {
        const name = opts.clientResult === true && !isFunctionWrap(this.node(t.typeId)) ? this.clientClass(t.typeId) : this.nativeName(t.typeId);
        return opts.nullableCaps === true ? `${name} | null` : name;
      }
      case "anyPointer":
        if (t.param !== undefined) {
          const p = opts.typeParams?.get(`${t.param.scopeId}:${t.param.index}`);
          if (p !== undefined) {
            opts.used?.add(p);
            return p;
          }
        }
        throw new MpgenError("mpgen: cannot map an unbound AnyPointer to a TS-native type");
      default:
        throw new MpgenError(`mpgen: unsupported type ${t.kind}`);
    }
  }

  /** Struct `id` and the structs enclosing it that declare generic parameters, outermost first. */
  genericScopes(id: bigint): NodeInfo[] {
    const out: NodeInfo[] = [];
    for (let cur = this.model.nodes.get(id); cur?.kind === "struct"; cur = cur.scopeId === 0n ? undefined : this.model.nodes.get(cur.scopeId)) {
      if (cur.parameters.length > 0) out.unshift(cur);
    }
    return out;
  }

  /**
   * Whether struct (or group) `id` has a separate writer input type `FooInit`: some field may be
   * left out (it has an explicit default), directly or in a nested struct, group or list element.
   */
  needsInit(id: bigint, seen: Set<bigint> = new Set()): boolean {
    const memo = this.needsInitMemo.get(id);
    if (memo !== undefined) return memo;
    if (seen.has(id)) return false;
    seen.add(id);
    let r = false;
    for (const nf of nativeFields(this, this.node(id))) {
      const f = nf.field;
      if (isDefaulted(nf)) r = true;
      else if (f.groupId !== undefined) r ||= this.needsInit(f.groupId, seen);
      else if (f.slot !== undefined) r ||= this.typeNeedsInit(f.slot.type, seen);
      if (r) break;
    }
    this.needsInitMemo.set(id, r);
    return r;
  }

  typeNeedsInit(t: TypeInfo, seen: Set<bigint> = new Set()): boolean {
    switch (t.kind) {
      case "list": return this.typeNeedsInit(t.element, seen);
      case "struct": {
        if (this.needsInit(t.typeId, seen)) return true;
        const env = this.envOf(t.brand, EMPTY_ENV);
        return (env.get(t.typeId) ?? []).some((b) => b !== null && this.typeNeedsInit(b, seen));
      }
      default: return false;
    }
  }

  // ---- codec ------------------------------------------------------------------------------

  check(t: TypeInfo, expr: string): string {
    const c = INT_CHECK[t.kind];
    return c === undefined ? expr : `$mp.${c}(${expr})`;
  }

  /**
   * Range check before writing: `$mp.checkInt32` etc. for 8–32 bit integers, the local
   * `$checkInt64` / `$checkUint64` helpers for bigints (capnp-ts would wrap them silently).
   */
  checkWrite(t: TypeInfo, expr: string): string {
    if (t.kind === "int64") { this.uses64.add("int64"); return `$checkInt64(${expr})`; }
    if (t.kind === "uint64") { this.uses64.add("uint64"); return `$checkUint64(${expr})`; }
    return this.check(t, expr);
  }

  /** A capnp-ts `ListCtor` expression for a list whose elements have type `el`. */
  listCtor(el: TypeInfo): string {
    const simple = LIST_CTOR[el.kind];
    if (simple !== undefined) return simple;
    if (el.kind === "struct") {
      const cls = this.structClass(el.typeId);
      const name = `$List_${cls.replace(/\./g, "_")}`;
      this.trailer.set(name, `const ${name} = $.CompositeList(${cls});`);
      return name;
    }
    if (el.kind === "list") {
      const inner = this.listCtor(el.element);
      const name = `$PtrList_${inner.replace(/[^A-Za-z0-9_$]/g, "_")}`;
      this.trailer.set(name, `const ${name} = $.PointerList(${inner});`);
      return name;
    }
    if (el.kind === "interface") return "$.InterfaceList";
    return "$.AnyPointerList";
  }

  /**
   * Whether reading/writing struct `id` (with its converters) needs a `ClientIO` (it holds
   * capabilities, directly or in nested structs).
   */
  structNeedsIo(id: bigint, seen: Set<bigint> = new Set()): boolean {
    const memo = this.needsIoMemo.get(id);
    if (memo !== undefined) return memo;
    if (seen.has(id)) return false;
    seen.add(id);
    const n = this.node(id);
    let r = false;
    for (const f of n.struct?.fields ?? []) {
      if (f.groupId !== undefined) r ||= this.structNeedsIo(f.groupId, seen);
      else if (f.slot !== undefined && !this.isHidden(f)) r ||= this.typeNeedsIo(f.slot.type, seen);
    }
    this.needsIoMemo.set(id, r);
    return r;
  }

  typeNeedsIo(t: TypeInfo, seen: Set<bigint> = new Set()): boolean {
    switch (t.kind) {
      case "interface": return true;
      case "list": return this.typeNeedsIo(t.element, seen);
      case "struct": {
        if (this.structNeedsIo(t.typeId, seen)) return true;
        const env = this.envOf(t.brand, EMPTY_ENV);
        for (const b of env.get(t.typeId) ?? []) if (b !== null && this.typeNeedsIo(b, seen)) return true;
        return false;
      }
      default: return false;
    }
  }

}

/** Relative ESM import path from generated file `from` to the generated module of `to`. */
export function relativeImport(from: string, to: string): string {
  const a = from.split("/").slice(0, -1);
  const b = to.split("/");
  let i = 0;
  while (i < a.length && i < b.length - 1 && a[i] === b[i]) i++;
  const ups = a.length - i;
  const rest = b.slice(i).join("/");
  return `${ups === 0 ? "./" : "../".repeat(ups)}${rest}.js`;
}
