/**
 * Node translation: one declaration (file, struct, enum, interface, const, annotation) to its
 * schema `Node` object, its auxiliary nodes (groups, method `$Params`/`$Results`) and its source
 * info. Values of pointer type are queued and compiled in a second pass (`finish`), as capnp does,
 * so struct defaults can use layouts that are still being computed. Runs at build time.
 *
 * Reference: capnproto c++/src/capnp/compiler/node-translator.c++ (NodeTranslator).
 *
 * @module
 */
import type { AnnotationApp, Decl, Expr, ParamList } from "./ast.js";
import type { Obj } from "./dynamic.js";
import { methodParamsId } from "./ids.js";
import type { CNode, Ctx } from "./model.js";
import { BrandScope, NO_IMPLICIT, compileAsType, exprString, type BrandedDecl, type ImplicitParams } from "./resolve.js";
import { StructTranslator, defaultDefault, type StructHost } from "./struct.js";
import { ValueCompiler } from "./values.js";

const STREAM_RESULT_ID = 0x995f9a3377c0b16en;
const POINTER_KINDS = new Set(["list", "struct", "interface", "anyPointer"]);

class NodeTranslator implements StructHost {
  readonly brand: BrandScope;
  readonly groups: [Obj, Obj][] = [];
  readonly paramStructs: [Obj, Obj][] = [];
  readonly sourceInfo: Obj = {};
  readonly values: ValueCompiler;

  constructor(readonly ctx: Ctx, readonly node: CNode) {
    this.brand = BrandScope.starting(node);
    this.values = new ValueCompiler(ctx, node);
  }

  fail(pos: number, msg: string): never { throw this.ctx.error(this.node, pos, msg); }

  resolve(e: Expr, implicit: ImplicitParams): BrandedDecl {
    return this.brand.compileDeclExpression(this.ctx, e, this.node, implicit);
  }

  compileType(e: Expr, implicit: ImplicitParams): Obj {
    return compileAsType(this.ctx, this.resolve(e, implicit), this.node, e.pos);
  }

  /** capnp's compileBootstrapValue: scalars now, pointer values in the finishing pass. */
  compileDefault(e: Expr, type: Obj, target: Obj): void {
    const kind = Object.keys(type)[0]!;
    const run = (): void => { this.values.fill(e, type, target); };
    if (POINTER_KINDS.has(kind)) this.node.unfinished.push(run); else run();
  }

  addGroup(node: Obj, sourceInfo: Obj): void { this.groups.push([node, sourceInfo]); }

  compileAnnotations(anns: AnnotationApp[], flag: string): Obj[] | undefined {
    if (anns.length === 0) return undefined;
    return anns.map((a) => {
      const out: Obj = { value: { void: null } };
      const d = this.resolve(a.name, NO_IMPLICIT);
      const target = "decl" in d.body ? d.body.decl.node : undefined;
      if (target === undefined || target.kind !== "annotation") this.fail(a.pos, `'${exprString(a.name)}' is not an annotation.`);
      out["id"] = target.id;
      // capnp reads the brand back through a builder, which allocates it even when empty.
      out["brand"] = d.brand!.compile(this.ctx) ?? {};
      const ann = this.ctx.bootstrap(target)["annotation"] as Obj;
      if (ann[flag] !== true) this.fail(a.pos, `'${exprString(a.name)}' cannot be applied to this kind of declaration.`);
      const type = ann["type"] as Obj;
      if (a.value === undefined) {
        if (!("void" in type)) this.fail(a.pos, `'${exprString(a.name)}' requires a value.`);
      } else {
        out["value"] = defaultDefault(type);
        this.compileDefault(a.value, type, out["value"] as Obj);
      }
      return out;
    });
  }

  header(): Obj {
    const n = this.node;
    const dn = n.displayName;
    const prefix = Math.max(dn.lastIndexOf(".") + 1, dn.lastIndexOf(":") + 1);
    const out: Obj = {
      id: n.id, displayName: dn, displayNamePrefixLength: prefix, scopeId: n.parent?.id ?? 0n,
      nestedNodes: n.ordered.map((c) => ({ name: c.decl.name, id: c.id })),
      isGeneric: this.brand.isGeneric(),
    };
    if (n.decl.params.length > 0) out["parameters"] = n.decl.params.map((name) => ({ name }));
    return out;
  }

  translate(): Obj {
    const d = this.node.decl;
    const out = this.header();
    let flag: string;
    switch (d.kind) {
      case "file": out["file"] = null; flag = "targetsFile"; break;
      case "const": out["const"] = this.constNode(d); flag = "targetsConst"; break;
      case "annotation": out["annotation"] = this.annotationNode(d); flag = "targetsAnnotation"; break;
      case "enum": out["enum"] = this.enumNode(); flag = "targetsEnum"; break;
      case "struct": this.structNode(d, out); flag = "targetsStruct"; break;
      case "interface": out["interface"] = this.interfaceNode(d); flag = "targetsInterface"; break;
      default: return this.fail(d.pos, "This Declaration is not a node.");
    }
    const anns = this.compileAnnotations(d.annotations, flag);
    if (anns !== undefined) out["annotations"] = anns;
    this.sourceInfo["id"] = this.node.id;
    if (d.doc !== undefined) this.sourceInfo["docComment"] = d.doc;
    return out;
  }

  constNode(d: Decl): Obj {
    const type = this.compileType(d.type!, NO_IMPLICIT);
    const value = defaultDefault(type);
    const kind = Object.keys(type)[0]!;
    const run = (): void => { this.node.constJs = this.values.fill(d.value!, type, value); };
    if (POINTER_KINDS.has(kind)) this.node.unfinished.push(run); else run();
    return { type, value };
  }

  annotationNode(d: Decl): Obj {
    const out: Obj = { type: this.compileType(d.type!, NO_IMPLICIT) };
    for (const t of ["file", "const", "enum", "enumerant", "struct", "field", "union", "group", "interface", "method", "param", "annotation"]) {
      out[`targets${t[0]!.toUpperCase()}${t.slice(1)}`] = d.targets!.has(t);
    }
    return out;
  }

  /** Members sorted by ordinal (stable), checking that ordinals are sequential. */
  private byOrdinal(kind: string): [number, Decl][] {
    const list = this.node.decl.nested.filter((m) => m.kind === kind).map((m, i) => [i, m] as [number, Decl]);
    list.sort((a, b) => a[1].ordinal!.value - b[1].ordinal!.value || a[0] - b[0]);
    let expected = 0;
    for (const [, m] of list) {
      const o = m.ordinal!;
      if (o.value < expected) this.fail(o.pos, "Duplicate ordinal number.");
      if (o.value > expected) this.fail(o.pos, `Skipped ordinal @${expected}.  Ordinals must be sequential with no holes.`);
      expected++;
    }
    return list;
  }

  enumNode(): Obj {
    const list = this.byOrdinal("enumerant");
    const members: Obj[] = [];
    const enumerants = list.map(([codeOrder, m]) => {
      members.push(m.doc === undefined ? {} : { docComment: m.doc });
      const e: Obj = { name: m.name, codeOrder };
      const anns = this.compileAnnotations(m.annotations, "targetsEnumerant");
      if (anns !== undefined) e["annotations"] = anns;
      return e;
    });
    this.sourceInfo["members"] = members;
    return { enumerants };
  }

  structNode(d: Decl, out: Obj): void {
    out["struct"] = { isGroup: false, discriminantCount: 0, discriminantOffset: 0 };
    new StructTranslator(this, NO_IMPLICIT).translate(d.nested, out, this.sourceInfo);
    const st = out["struct"] as Obj;
    for (const [g] of this.groups) {
      const gs = g["struct"] as Obj;
      gs["dataWordCount"] = st["dataWordCount"];
      gs["pointerCount"] = st["pointerCount"];
      gs["preferredListEncoding"] = st["preferredListEncoding"];
    }
  }

  interfaceNode(d: Decl): Obj {
    const superclasses = (d.superclasses ?? []).map((e) => {
      const b = this.resolve(e, NO_IMPLICIT);
      if (!("decl" in b.body)) return this.fail(e.pos, `'${exprString(e)}' is an unbound generic parameter. Currently we don't support extending these.`);
      if (b.body.decl.kind !== "interface") this.fail(e.pos, `'${exprString(e)}' is not an interface.`);
      const brand = b.brand!.compile(this.ctx);
      return brand === undefined ? { id: b.body.decl.id } : { id: b.body.decl.id, brand };
    });
    const members: Obj[] = [];
    const methods = this.byOrdinal("method").map(([codeOrder, m]) => {
      members.push(m.doc === undefined ? {} : { docComment: m.doc });
      const ordinal = m.ordinal!.value;
      const out: Obj = { name: m.name, codeOrder, implicitParameters: m.params.map((name) => ({ name })) };
      if (m.methodParams!.k === "stream") this.fail(m.methodParams!.pos, "'stream' can only appear after '->', not before.");
      this.paramList(m, ordinal, false, m.methodParams!, out);
      const results: ParamList = m.methodResults ?? { k: "named", params: [], pos: m.pos };
      this.paramList(m, ordinal, true, results, out);
      const anns = this.compileAnnotations(m.annotations, "targetsMethod");
      if (anns !== undefined) out["annotations"] = anns;
      return out;
    });
    this.sourceInfo["members"] = members;
    return { methods, superclasses };
  }

  private paramList(m: Decl, ordinal: number, isResults: boolean, list: ParamList, out: Obj): void {
    const typeKey = isResults ? "resultStructType" : "paramStructType";
    const brandKey = isResults ? "resultBrand" : "paramBrand";
    if (list.k === "stream") {
      this.ctx.importFile(this.node, "/capnp/stream.capnp", list.pos);
      out[typeKey] = STREAM_RESULT_ID;
      return;
    }
    if (list.k === "type") {
      const b = this.resolve(list.expr, { scopeId: 0n, names: m.params });
      if (!("decl" in b.body)) this.fail(list.pos, "Cannot use generic parameter as whole input or output of a method. Instead, use a parameter/result list containing a field with this type.");
      if (b.body.decl.kind !== "struct") this.fail(list.pos, `'${exprString(list.expr)}' is not a struct type.`);
      out[typeKey] = b.body.decl.id;
      const brand = b.brand!.compile(this.ctx);
      if (brand !== undefined) out[brandKey] = brand;
      return;
    }
    const parent = this.node;
    const typeName = `${m.name}${isResults ? "$Results" : "$Params"}`;
    const id = methodParamsId(parent.id, ordinal, isResults);
    const displayName = `${parent.displayName}.${typeName}`;
    const node: Obj = {
      id, displayName, displayNamePrefixLength: displayName.length - typeName.length,
      isGeneric: this.brand.isGeneric() || m.params.length > 0, scopeId: 0n,
      struct: { isGroup: false, discriminantCount: 0, discriminantOffset: 0 },
    };
    const si: Obj = {};
    new StructTranslator(this, { scopeId: id, names: m.params }).translateParams(list.params, node, si);
    this.paramStructs.push([node, si]);
    // capnp 0.9.2 computes a brand binding the implicit parameters but drops it (setParams'
    // result is unused), so the method's brand only carries the interface's own scopes.
    const brand = this.brand.push(id, m.params.length);
    if (m.params.length > 0) node["parameters"] = m.params.map((name) => ({ name }));
    out[typeKey] = id;
    const b = brand.compile(this.ctx);
    if (b !== undefined) out[brandKey] = b;
  }
}

/** Translates `node` (bootstrap pass): sets its schema, auxiliary nodes, source info and queued values. */
export function translateNode(ctx: Ctx, node: CNode): void {
  const t = new NodeTranslator(ctx, node);
  node.schema = t.translate();
  const aux = node.kind === "interface" ? t.paramStructs : t.groups;
  node.aux = aux.map(([n]) => n);
  node.sourceInfo = [t.sourceInfo, ...t.groups.map(([, s]) => s), ...t.paramStructs.map(([, s]) => s)];
}
