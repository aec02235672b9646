/**
 * Name resolution and generics: scoped lookup (nested declarations, aliases, generic parameters,
 * builtins), imports, member access, generic application, and the brand scopes that turn a
 * resolved declaration into a `Type` with its `Brand` exactly as capnp writes it. Runs at build time.
 *
 * Reference: capnproto c++/src/capnp/compiler/generics.c++ (BrandScope, BrandedDecl).
 *
 * @module
 */
import type { Expr } from "./ast.js";
import type { Obj } from "./dynamic.js";
import type { CNode, Ctx, ResolveResult, ResolvedDecl } from "./model.js";

const PRIM: Record<string, string> = {
  Void: "void", Bool: "bool", Int8: "int8", Int16: "int16", Int32: "int32", Int64: "int64",
  UInt8: "uint8", UInt16: "uint16", UInt32: "uint32", UInt64: "uint64", Float32: "float32",
  Float64: "float64", Text: "text", Data: "data",
};
const ANY: Record<string, string> = { AnyPointer: "anyKind", AnyStruct: "struct", AnyList: "list", Capability: "capability" };
const BUILTIN_NAMES = [...Object.keys(PRIM), ...Object.keys(ANY), "List"];

export function builtin(name: string): ResolvedDecl | undefined {
  const i = BUILTIN_NAMES.indexOf(name);
  if (i < 0) return undefined;
  return { id: BigInt(1000 + i), genericParamCount: name === "List" ? 1 : 0, scopeId: 0n, kind: "builtin", builtin: name };
}

function declOf(node: CNode, scopeId: bigint): ResolvedDecl {
  return { id: node.id, genericParamCount: node.genericParamCount, scopeId, kind: node.kind, node };
}

/** A name in `node`'s own members (nested declarations and aliases). */
export function resolveMember(ctx: Ctx, node: CNode, name: string): ResolveResult | undefined {
  const n = node.nested.get(name);
  if (n !== undefined) return { decl: declOf(n, node.id) };
  const a = node.aliases.get(name);
  if (a === undefined) return undefined;
  if (a.result === undefined) {
    if (a.busy === true) throw ctx.error(a.parent, a.pos, "Declaration recursively depends on itself.");
    a.busy = true;
    const scope = BrandScope.starting(a.parent);
    const d = scope.compileDeclExpression(ctx, a.target, a.parent, NO_IMPLICIT);
    if ("param" in d.body) a.result = { param: d.body.param };
    else {
      const brand = d.brand!.compile(ctx);
      a.result = { decl: { ...d.body.decl, scopeId: a.parent.id, ...(brand === undefined ? {} : { brand }) } };
    }
    a.busy = false;
  }
  return a.result;
}

/** A name as seen from inside `node`: members, generic parameters, then enclosing scopes, then builtins. */
export function resolveName(ctx: Ctx, node: CNode, name: string): ResolveResult | undefined {
  for (let n: CNode | undefined = node; n !== undefined; n = n.parent) {
    const m = resolveMember(ctx, n, name);
    if (m !== undefined) return m;
    const i = n.decl.params.indexOf(name);
    if (i >= 0) return { param: { id: n.id, index: i } };
  }
  const b = builtin(name);
  return b === undefined ? undefined : { decl: b };
}

export interface ImplicitParams { scopeId: bigint; names: readonly string[] }
export const NO_IMPLICIT: ImplicitParams = { scopeId: 0n, names: [] };

export type Body = { decl: ResolvedDecl } | { param: { id: bigint; index: number } };
export interface BrandedDecl { body: Body; brand?: BrandScope; source?: Expr }

function parentOf(d: ResolvedDecl): ResolvedDecl | undefined {
  const p = d.node?.parent;
  return p === undefined ? undefined : declOf(p, p.parent?.id ?? 0n);
}

export class BrandScope {
  parent: BrandScope | undefined;
  params: BrandedDecl[] = [];
  constructor(public leafId: bigint, public leafParamCount: number, public inherited: boolean) {}

  /** The scope of a declaration as seen from inside itself: every level inherits. */
  static starting(node: CNode): BrandScope {
    const s = new BrandScope(node.id, node.genericParamCount, true);
    if (node.parent !== undefined) s.parent = BrandScope.starting(node.parent);
    return s;
  }

  isGeneric(): boolean {
    return this.leafParamCount > 0 || (this.parent?.isGeneric() ?? false);
  }

  push(typeId: bigint, paramCount: number): BrandScope {
    const s = new BrandScope(typeId, paramCount, false);
    s.parent = this;
    return s;
  }

  pop(newLeafId: bigint): BrandScope {
    if (this.leafId === newLeafId) return this;
    if (this.parent !== undefined) return this.parent.pop(newLeafId);
    return new BrandScope(newLeafId, 0, false);
  }

  setParams(ctx: Ctx, at: CNode, pos: number, params: BrandedDecl[], kind: string): BrandScope {
    if (this.params.length !== 0) throw ctx.error(at, pos, "Double-application of generic parameters.");
    if (params.length > this.leafParamCount) throw ctx.error(at, pos, this.leafParamCount === 0 ? "Declaration does not accept generic parameters." : "Too many generic parameters.");
    if (params.length < this.leafParamCount) throw ctx.error(at, pos, "Not enough generic parameters.");
    if (kind !== "List") {
      for (const p of params) {
        if ("decl" in p.body) {
          const d = p.body.decl;
          const ok = d.kind === "struct" || d.kind === "interface" || ["List", "Text", "Data", "AnyPointer"].includes(d.builtin ?? "");
          if (!ok) throw ctx.error(at, p.source?.pos ?? pos, "Sorry, only pointer types can be used as generic parameters.");
        }
      }
    }
    const s = new BrandScope(this.leafId, this.leafParamCount, false);
    s.parent = this.parent;
    s.params = params;
    return s;
  }

  lookupParameter(scopeId: bigint, index: number): BrandedDecl | undefined {
    if (scopeId === this.leafId) {
      if (index < this.params.length) return this.params[index];
      if (this.inherited) return undefined;
      return anyPointer();
    }
    if (this.parent !== undefined) return this.parent.lookupParameter(scopeId, index);
    return undefined;
  }

  getParams(scopeId: bigint): BrandedDecl[] | undefined {
    if (scopeId === this.leafId) return this.inherited ? undefined : this.params;
    return this.parent?.getParams(scopeId);
  }

  interpretResolve(ctx: Ctx, r: ResolveResult, source: Expr | undefined): BrandedDecl {
    if ("decl" in r) {
      const d = r.decl;
      let scope = this.pop(d.scopeId);
      scope = d.brand !== undefined ? scope.evaluateBrand(ctx, d, (d.brand["scopes"] as Obj[] | undefined) ?? [], 0) : scope.push(d.id, d.genericParamCount);
      return { body: { decl: d }, brand: scope, ...(source ? { source } : {}) };
    }
    const p = this.lookupParameter(r.param.id, r.param.index);
    return p ?? { body: { param: r.param }, ...(source ? { source } : {}) };
  }

  evaluateBrand(ctx: Ctx, d: ResolvedDecl, scopes: Obj[], index: number): BrandScope {
    const result = new BrandScope(d.id, d.genericParamCount, false);
    const next = scopes[index];
    if (next !== undefined && next["scopeId"] === d.id) {
      if ("bind" in next) {
        result.params = (next["bind"] as Obj[]).map((b) => ("type" in b ? this.decompileType(ctx, b["type"] as Obj) : anyPointer()));
      } else {
        const p = this.getParams(d.id);
        if (p !== undefined) result.params = [...p]; else result.inherited = true;
      }
      index++;
    }
    const parent = parentOf(d);
    if (parent !== undefined) result.parent = this.evaluateBrand(ctx, parent, scopes, index);
    return result;
  }

  decompileType(ctx: Ctx, t: Obj): BrandedDecl {
    const k = Object.keys(t)[0]!;
    for (const [name, key] of Object.entries(PRIM)) if (key === k) return { body: { decl: builtin(name)! }, brand: new BrandScope(0n, 0, false) };
    if (k === "enum" || k === "struct" || k === "interface") {
      const g = t[k] as Obj;
      const node = ctx.nodeById(g["typeId"] as bigint)!;
      const d = declOf(node, node.parent?.id ?? 0n);
      const scopes = ((g["brand"] as Obj | undefined)?.["scopes"] as Obj[] | undefined) ?? [];
      return { body: { decl: d }, brand: this.evaluateBrand(ctx, d, scopes, 0) };
    }
    if (k === "list") {
      const elem = this.decompileType(ctx, (t["list"] as Obj)["elementType"] as Obj);
      const s = new BrandScope(builtin("List")!.id, 1, false);
      s.params = [elem];
      return { body: { decl: builtin("List")! }, brand: s };
    }
    const ap = t["anyPointer"] as Obj;
    if ("parameter" in ap) {
      const p = ap["parameter"] as Obj;
      const id = p["scopeId"] as bigint;
      const index = p["parameterIndex"] as number;
      return this.lookupParameter(id, index) ?? { body: { param: { id, index } } };
    }
    return anyPointer();
  }

  /** Resolves a type or declaration expression as seen from `at`. */
  compileDeclExpression(ctx: Ctx, e: Expr, at: CNode, implicit: ImplicitParams): BrandedDecl {
    switch (e.k) {
      case "rel": {
        const i = implicit.names.indexOf(e.name);
        if (i >= 0) return { body: { param: { id: implicit.scopeId, index: i } }, source: e };
        const r = resolveName(ctx, at, e.name);
        if (r === undefined) throw ctx.error(at, e.pos, `Not defined: ${e.name}`);
        return this.interpretResolve(ctx, r, e);
      }
      case "abs": {
        const r = resolveMember(ctx, at.module.root, e.name);
        if (r === undefined) throw ctx.error(at, e.pos, `Not defined: ${e.name}`);
        return this.interpretResolve(ctx, r, e);
      }
      case "import": {
        const root = ctx.importFile(at, e.path, e.pos);
        return { body: { decl: declOf(root, 0n) }, brand: BrandScope.starting(root), source: e };
      }
      case "app": {
        const d = this.compileDeclExpression(ctx, e.fn, at, implicit);
        const params = e.params.map((p) => {
          if (p.name !== undefined) throw ctx.error(at, p.value.pos, "Named parameter not allowed here.");
          return this.compileDeclExpression(ctx, p.value, at, implicit);
        });
        if ("param" in d.body) throw ctx.error(at, e.pos, "Generic parameters cannot be applied to a generic parameter.");
        return { body: d.body, brand: d.brand!.setParams(ctx, at, e.pos, params, d.body.decl.builtin ?? d.body.decl.kind), source: e };
      }
      case "member": {
        const d = this.compileDeclExpression(ctx, e.parent, at, implicit);
        const node = "decl" in d.body ? d.body.decl.node : undefined;
        const r = node === undefined ? undefined : resolveMember(ctx, node, e.name);
        if (r === undefined) throw ctx.error(at, e.pos, `'${exprString(e.parent)}' has no member named '${e.name}'`);
        return d.brand!.interpretResolve(ctx, r, e);
      }
      default:
        throw ctx.error(at, e.pos, "Expected name.");
    }
  }

  /** The `Brand` for a reference through this scope, or undefined when nothing is bound. */
  compile(ctx: Ctx): Obj | undefined {
    const levels: BrandScope[] = [];
    for (let p: BrandScope | undefined = this; p !== undefined; p = p.parent) {
      if (p.params.length > 0 || (p.inherited && p.leafParamCount > 0)) levels.push(p);
    }
    if (levels.length === 0) return undefined;
    return {
      scopes: levels.map((l) => (l.inherited
        ? { scopeId: l.leafId, inherit: null }
        : { scopeId: l.leafId, bind: l.params.map((p) => ({ type: compileAsType(ctx, p, undefined, 0) })) })),
    };
  }
}

function anyPointer(): BrandedDecl {
  return { body: { decl: builtin("AnyPointer")! }, brand: new BrandScope(0n, 0, false) };
}

function withBrand(ctx: Ctx, d: BrandedDecl, typeId: bigint): Obj {
  const brand = d.brand!.compile(ctx);
  return brand === undefined ? { typeId } : { typeId, brand };
}

/** A resolved declaration as a schema `Type`. */
export function compileAsType(ctx: Ctx, d: BrandedDecl, at: CNode | undefined, pos: number): Obj {
  const fail = (msg: string): never => { throw at === undefined ? new Error(msg) : ctx.error(at, d.source?.pos ?? pos, msg); };
  if ("param" in d.body) {
    const p = d.body.param;
    if (p.id === 0n) return { anyPointer: { implicitMethodParameter: { parameterIndex: p.index } } };
    return { anyPointer: { parameter: { scopeId: p.id, parameterIndex: p.index } } };
  }
  const decl = d.body.decl;
  if (decl.kind === "enum" || decl.kind === "struct" || decl.kind === "interface") return { [decl.kind]: withBrand(ctx, d, decl.id) };
  const b = decl.builtin;
  if (b === undefined) return fail(`'${d.source ? exprString(d.source) : decl.kind}' is not a type.`);
  if (b in PRIM) return { [PRIM[b]!]: null };
  if (b in ANY) return { anyPointer: { unconstrained: { [ANY[b]!]: null } } };
  const params = d.brand!.getParams(decl.id);
  if (params === undefined || params.length !== 1) return fail("'List' requires exactly one parameter.");
  const elem = compileAsType(ctx, params[0]!, at, pos);
  const ap = elem["anyPointer"] as Obj | undefined;
  // capnp 0.9.2 reads `unconstrained` without checking the union, so for a generic parameter it
  // sees the parameter's index (same 16 bits): index 0 reads as AnyPointer, 1 as AnyStruct.
  const param = (ap?.["parameter"] ?? ap?.["implicitMethodParameter"]) as Obj | undefined;
  const kind = param !== undefined ? ["anyKind", "struct"][param["parameterIndex"] as number]
    : Object.keys((ap?.["unconstrained"] as Obj | undefined) ?? {})[0];
  if (kind === "anyKind") fail("'List(AnyPointer)' is not supported.");
  if (kind === "struct") fail("'List(AnyStruct)' is not supported.");
  return { list: { elementType: elem } };
}

export function exprString(e: Expr): string {
  switch (e.k) {
    case "rel": return e.name;
    case "abs": return "." + e.name;
    case "member": return `${exprString(e.parent)}.${e.name}`;
    case "import": return `import ${JSON.stringify(e.path)}`;
    case "app": return `${exprString(e.fn)}(${e.params.map((p) => (p.name ? `${p.name} = ` : "") + exprString(p.value)).join(", ")})`;
    case "int": return e.v.toString();
    case "neg": return "-" + e.v.toString();
    case "float": return String(e.v);
    case "string": return JSON.stringify(e.v);
    default: return e.k;
  }
}
