/**
 * Value compilation: default values, const values and annotation values, from expressions to the
 * schema's `Value` objects, with struct and list values encoded as capnp does (full struct layout,
 * data fields XOR their defaults). Consts may name other consts and enumerants. Runs at build time.
 *
 * Reference: capnproto c++/src/capnp/compiler/node-translator.c++ (ValueTranslator).
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Expr, Param } from "./ast.js";
import { DynamicError, decodePointer, encodeList, encodePointer, encodeStruct, which, type Layouts, type Obj } from "./dynamic.js";
import { MessageError, readMessage, type Ptr } from "./message.js";
import type { CNode, Ctx } from "./model.js";
import { BrandScope, NO_IMPLICIT, exprString } from "./resolve.js";

const INT_RANGE: Record<string, [bigint, bigint]> = {
  int8: [-128n, 127n], int16: [-32768n, 32767n], int32: [-(2n ** 31n), 2n ** 31n - 1n], int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint8: [0n, 255n], uint16: [0n, 65535n], uint32: [0n, 2n ** 32n - 1n], uint64: [0n, 2n ** 64n - 1n],
};

export class ValueCompiler {
  constructor(private readonly ctx: Ctx, private readonly at: CNode) {}

  private fail(pos: number, msg: string): never { throw this.ctx.error(this.at, pos, msg); }

  private layouts(): Layouts {
    const ctx = this.ctx;
    return { get: (id: bigint) => ctx.layout(id) };
  }

  /** Replaces `target`'s contents with `e` compiled as a value of `type`. */
  fill(e: Expr, type: Obj, target: Obj): unknown {
    const js = this.compile(e, type);
    for (const k of Object.keys(target)) delete target[k];
    const kind = which(type);
    if (kind === "struct") target["struct"] = encodeStruct(this.layouts(), (type["struct"] as Obj)["typeId"] as bigint, js as Obj);
    else if (kind === "list") target["list"] = encodeList(this.layouts(), (type["list"] as Obj)["elementType"] as Obj, js as unknown[]);
    else if (kind === "anyPointer") target["anyPointer"] = js;
    else target[kind] = js;
    return js;
  }

  /** `e` as a plain value of `type` (dynamic.ts shape). */
  compile(e: Expr, type: Obj): unknown {
    const kind = which(type);
    if (kind === "anyPointer") {
      const ap = type["anyPointer"] as Obj;
      if (!("unconstrained" in ap)) this.fail(e.pos, "Cannot interpret value because the type is a generic type parameter which is not yet bound. We don't know what type to expect here.");
    }
    switch (e.k) {
      case "rel": return this.relName(e, type, kind);
      case "abs": case "import": case "app": case "member": return this.constant(e, type);
      case "int": case "neg": return this.integer(e.k === "neg" ? -e.v : e.v, e.pos, kind);
      case "float":
        if (kind !== "float32" && kind !== "float64") this.mismatch(e.pos, type);
        return kind === "float32" ? Math.fround(e.v) : e.v;
      case "string":
        if (kind === "data") return new TextEncoder().encode(e.v);
        if (kind !== "text") this.mismatch(e.pos, type);
        return e.v;
      case "binary":
        if (kind !== "data") this.mismatch(e.pos, type);
        return e.v;
      case "list": {
        if (kind !== "list") this.mismatch(e.pos, type);
        const elem = (type["list"] as Obj)["elementType"] as Obj;
        return e.items.map((x) => this.compile(x, elem));
      }
      case "tuple":
        if (kind !== "struct") this.mismatch(e.pos, type);
        return this.structValue(e.items, type["struct"] as Obj, e.pos);
      case "embed": return this.embed(e.path, e.pos, type);
    }
  }

  private mismatch(pos: number, type: Obj): never {
    return this.fail(pos, `Type mismatch; expected ${typeName(this.ctx, type)}.`);
  }

  private integer(v: bigint, pos: number, kind: string): unknown {
    if (kind === "float32") return Math.fround(Number(v));
    if (kind === "float64") return Number(v);
    const r = INT_RANGE[kind];
    if (r === undefined) return this.fail(pos, `Type mismatch; expected ${kind}.`);
    if (v < r[0] || v > r[1]) this.fail(pos, "Integer value out of range.");
    return kind === "int64" || kind === "uint64" ? v : Number(v);
  }

  private relName(e: Expr & { k: "rel" }, type: Obj, kind: string): unknown {
    if (kind === "enum") {
      const node = this.ctx.nodeById((type["enum"] as Obj)["typeId"] as bigint);
      const en = node?.decl.nested.find((d) => d.kind === "enumerant" && d.name === e.name);
      if (en !== undefined) return en.ordinal!.value;
    } else {
      switch (e.name) {
        case "void": if (kind !== "void") this.mismatch(e.pos, type); return null;
        case "true": case "false": if (kind !== "bool") this.mismatch(e.pos, type); return e.name === "true";
        case "nan": case "inf":
          if (kind !== "float32" && kind !== "float64") this.mismatch(e.pos, type);
          return e.name === "nan" ? NaN : Infinity;
      }
    }
    return this.constant(e, type);
  }

  private constant(e: Expr, type: Obj): unknown {
    const d = BrandScope.starting(this.at).compileDeclExpression(this.ctx, e, this.at, NO_IMPLICIT);
    const node = "decl" in d.body ? d.body.decl.node : undefined;
    if (node === undefined || node.kind !== "const") return this.fail(e.pos, `'${exprString(e)}' does not refer to a constant.`);
    const schema = this.ctx.finish(node);
    const ctype = (schema["const"] as Obj)["type"] as Obj;
    const want = which(type);
    const have = which(ctype);
    const num = (k: string): boolean => k in INT_RANGE || k === "float32" || k === "float64";
    if (num(want) && num(have)) {
      const v = node.constJs;
      if (want === "float32" || want === "float64") return Number(v);
      if (have === "float32" || have === "float64") this.mismatch(e.pos, type);
      return this.integer(BigInt(v as number | bigint), e.pos, want);
    }
    if (want !== have && want !== "anyPointer") this.mismatch(e.pos, type);
    if (want === "struct" || want === "enum") {
      if ((type[want] as Obj)["typeId"] !== (ctype[want] as Obj)["typeId"]) this.mismatch(e.pos, type);
    }
    return node.constJs;
  }

  private structValue(items: Param[], st: Obj, pos: number): Obj {
    const typeId = st["typeId"] as bigint;
    const layout = this.ctx.layout(typeId);
    if (layout === undefined) return this.fail(pos, "unknown struct type");
    return this.fillStruct(items, layout, st["brand"] as Obj | undefined);
  }

  private fillStruct(items: Param[], layout: Obj, brand: Obj | undefined): Obj {
    const out: Obj = {};
    const fields = ((layout["struct"] as Obj)["fields"] as Obj[] | undefined) ?? [];
    for (const it of items) {
      if (it.name === undefined) this.fail(it.value.pos, "Missing field name.");
      const f = fields.find((x) => x["name"] === it.name);
      if (f === undefined) this.fail(it.value.pos, `Struct has no field named '${it.name}'.`);
      if (f["group"] !== undefined) {
        if (it.value.k !== "tuple") this.fail(it.value.pos, "Type mismatch; expected group.");
        const g = this.ctx.layout((f["group"] as Obj)["typeId"] as bigint)!;
        out[it.name] = this.fillStruct(it.value.items, g, brand);
      } else {
        const declared = (f["slot"] as Obj)["type"] as Obj;
        const bound = bindType(declared, brand);
        const js = this.compile(it.value, bound);
        // A generic field holds a raw pointer in the struct's own layout.
        out[it.name] = bound === declared ? js : encodePointer(this.layouts(), bound, js);
      }
    }
    return out;
  }

  /**
   * `embed "file"`: Text and Data take the file's bytes; a struct takes the root of the
   * (unpacked, framed) Cap'n Proto message the file holds, as capnp does (it reads the file with a
   * FlatArrayMessageReader), here re-encoded with the schema's layout.
   */
  private embed(file: string, pos: number, type: Obj): unknown {
    const kind = which(type);
    const base = file.startsWith("/") ? undefined : path.dirname(this.at.module.path);
    const p = base === undefined ? undefined : path.resolve(base, file);
    if (p === undefined || !fs.existsSync(p)) return this.fail(pos, `Couldn't read file for embed: ${file}`);
    const data = new Uint8Array(fs.readFileSync(p));
    if (kind === "data") return data;
    if (kind === "text") return new TextDecoder().decode(data);
    if (kind !== "struct") return this.fail(pos, "Embeds can only be used when Text, Data, or a struct is expected.");
    let root: Ptr;
    try {
      if (data.length % 8 !== 0) throw new MessageError("not a whole number of words");
      root = readMessage(data);
    } catch (e) {
      if (e instanceof MessageError || e instanceof RangeError) return this.fail(pos, "Embedded file is not a valid Cap'n Proto message.");
      throw e;
    }
    try {
      return decodePointer(this.layouts(), type, root);
    } catch (e) {
      if (e instanceof DynamicError) return this.fail(pos, `Embedded message does not match the expected type: ${e.message}`);
      throw e;
    }
  }
}

/** A field type seen through the brand of the struct value being written. */
function bindType(t: Obj, brand: Obj | undefined): Obj {
  const ap = t["anyPointer"] as Obj | undefined;
  const p = ap?.["parameter"] as Obj | undefined;
  if (p === undefined || brand === undefined) return t;
  for (const s of (brand["scopes"] as Obj[] | undefined) ?? []) {
    if (s["scopeId"] !== p["scopeId"] || !("bind" in s)) continue;
    const b = (s["bind"] as Obj[])[p["parameterIndex"] as number];
    if (b !== undefined && "type" in b) return b["type"] as Obj;
  }
  return t;
}

export function typeName(ctx: Ctx, t: Obj): string {
  const k = which(t);
  const NAMES: Record<string, string> = {
    void: "Void", bool: "Bool", int8: "Int8", int16: "Int16", int32: "Int32", int64: "Int64", uint8: "UInt8",
    uint16: "UInt16", uint32: "UInt32", uint64: "UInt64", float32: "Float32", float64: "Float64", text: "Text",
    data: "Data", anyPointer: "AnyPointer",
  };
  if (k in NAMES) return NAMES[k]!;
  if (k === "list") return `List(${typeName(ctx, (t["list"] as Obj)["elementType"] as Obj)})`;
  const node = ctx.nodeById((t[k] as Obj)["typeId"] as bigint);
  return node === undefined ? k : node.displayName.slice(Math.max(node.displayName.lastIndexOf("."), node.displayName.lastIndexOf(":")) + 1);
}
