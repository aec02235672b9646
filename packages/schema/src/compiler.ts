/**
 * The compiler driver: loads and parses files (requested files, `-I` search paths, the bundled
 * standard schemas), creates a node per declaration with capnp's ids and display names, compiles
 * nodes on demand (bootstrap pass, then values), and walks the requested files the way
 * `capnp compile` does to decide which nodes and source infos go into the request. Runs at build time.
 *
 * Reference: capnproto c++/src/capnp/compiler/compiler.c++ and module-loader.c++.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Decl, Expr, ParamList } from "./ast.js";
import type { Obj } from "./dynamic.js";
import { childId } from "./ids.js";
import { SchemaError, Source } from "./lexer.js";
import type { CNode, Ctx, Module } from "./model.js";
import { checkNames } from "./names.js";
import { parseFile } from "./parser.js";
import { resolveMember } from "./resolve.js";
import { translateNode } from "./translate.js";

const NODE_KINDS = new Set(["const", "annotation", "enum", "struct", "interface"]);
const NODE = 1;
const PARENTS = 2;
const CHILDREN = 4;
const DEPENDENCIES = 1 << 15;
const DEPENDENCY_PARENTS = PARENTS * DEPENDENCIES;

export interface CompilerOptions {
  /** `-I` directories, searched in order for `/absolute` imports. */
  importPaths?: readonly string[];
  /** Searched after `importPaths` (by default the standard schemas bundled with this package). */
  standardImportPaths?: readonly string[];
}

export class Compiler implements Ctx {
  private readonly modules = new Map<string, Module>();
  private readonly nodes = new Map<bigint, CNode>();
  private readonly aux = new Map<bigint, Obj>();
  private readonly searchPath: string[];

  constructor(opts: CompilerOptions) {
    this.searchPath = [...(opts.importPaths ?? []), ...(opts.standardImportPaths ?? [])];
  }

  error(node: CNode, pos: number, msg: string): SchemaError { return node.module.src.error(pos, msg); }
  nodeById(id: bigint): CNode | undefined { return this.nodes.get(id); }

  /** Loads a file given on the command line; its display name is `rel`. */
  loadRequested(file: string, dir: string, rel: string): CNode {
    return this.load(path.resolve(file), dir, rel);
  }

  private load(abs: string, dir: string, rel: string): CNode {
    let real: string;
    try { real = fs.realpathSync(abs); } catch { real = abs; }
    const have = this.modules.get(real);
    if (have !== undefined) return have.root;
    let text: string;
    try { text = fs.readFileSync(abs, "utf8"); } catch (e) {
      throw new SchemaError(rel, 1, 1, `cannot read ${abs}: ${(e as Error).message}`);
    }
    const src = new Source(rel, text);
    const decl = parseFile(src);
    checkNames(src, decl);
    const mod = { name: rel, path: abs, src, dir, rel } as Module;
    this.modules.set(real, mod);
    mod.root = this.createNode(decl, undefined, mod, decl.uid!, rel);
    return mod.root;
  }

  private createNode(decl: Decl, parent: CNode | undefined, mod: Module, id: bigint, displayName: string): CNode {
    const other = this.nodes.get(id);
    if (other !== undefined) {
      throw mod.src.error(decl.pos, `Duplicate ID @0x${id.toString(16)} (also used by ${other.displayName}).`);
    }
    const node: CNode = {
      id, displayName, kind: decl.kind, decl, parent, module: mod, genericParamCount: decl.params.length,
      nested: new Map(), ordered: [], aliases: new Map(), state: 0, aux: [], sourceInfo: [], unfinished: [],
    };
    if (decl.kind === "method") node.genericParamCount = 0;
    this.nodes.set(id, node);
    for (const d of decl.nested) {
      if (NODE_KINDS.has(d.kind)) {
        const sep = parent === undefined ? ":" : ".";
        if (node.nested.has(d.name) || node.aliases.has(d.name)) throw mod.src.error(d.pos, `'${d.name}' is already defined in this scope.`);
        const child = this.createNode(d, node, mod, d.uid ?? childId(id, d.name), `${displayName}${sep}${d.name}`);
        node.nested.set(d.name, child);
        node.ordered.push(child);
      } else if (d.kind === "using") {
        if (node.nested.has(d.name) || node.aliases.has(d.name)) throw mod.src.error(d.pos, `'${d.name}' is already defined in this scope.`);
        node.aliases.set(d.name, { parent: node, target: d.type!, pos: d.pos });
      }
    }
    return node;
  }

  importFile(from: CNode, p: string, pos: number): CNode {
    if (p.startsWith("/")) {
      const rel = path.posix.normalize(p.slice(1));
      for (const dir of this.searchPath) {
        const abs = path.join(dir, rel);
        if (fs.existsSync(abs)) return this.load(abs, dir, rel);
      }
      throw this.error(from, pos, `Import failed: ${p}`);
    }
    const m = from.module;
    const rel = path.posix.normalize(path.posix.join(path.posix.dirname(m.rel), p));
    const abs = path.join(m.dir, rel);
    if (!fs.existsSync(abs)) throw this.error(from, pos, `Import failed: ${p}`);
    return this.load(abs, m.dir, rel);
  }

  bootstrap(node: CNode): Obj {
    if (node.state >= 2) return node.schema!;
    if (node.state === 1) throw this.error(node, node.decl.pos, "Declaration recursively depends on itself.");
    node.state = 1;
    translateNode(this, node);
    for (const a of node.aux) this.aux.set(a["id"] as bigint, a);
    node.state = 2;
    return node.schema!;
  }

  finish(node: CNode): Obj {
    this.bootstrap(node);
    if (node.state >= 4) return node.schema!;
    if (node.state === 3) throw this.error(node, node.decl.pos, "Declaration recursively depends on itself.");
    node.state = 3;
    for (const f of node.unfinished) f();
    node.unfinished = [];
    node.state = 4;
    return node.schema!;
  }

  layout(id: bigint): Obj | undefined {
    const n = this.nodes.get(id);
    return n !== undefined ? this.bootstrap(n) : this.aux.get(id);
  }

  /** Nodes and source infos `capnp compile` emits for these requested files, in its order. */
  collect(roots: readonly CNode[]): { nodes: Obj[]; sourceInfo: Obj[] } {
    const out: Obj[] = [];
    const infos = new Map<bigint, Obj>();
    for (const root of roots) {
      const seen = new Map<CNode, number>();
      const list: Obj[] = [];
      this.traverse(root, NODE | CHILDREN | DEPENDENCIES | DEPENDENCY_PARENTS, seen, list, out);
      for (const si of list) {
        const id = (si["id"] as bigint | undefined) ?? 0n;
        if (!infos.has(id)) infos.set(id, si);
      }
    }
    return { nodes: out, sourceInfo: [...infos.values()] };
  }

  private readonly emitted = new Set<CNode>();

  private traverse(node: CNode, eager: number, seen: Map<CNode, number>, infos: Obj[], out: Obj[]): void {
    const slot = seen.get(node) ?? 0;
    if ((slot & eager) === eager) return;
    seen.set(node, slot | eager);
    const schema = this.finish(node);
    if (!this.emitted.has(node)) {
      this.emitted.add(node);
      out.push(schema, ...node.aux);
    }
    if (eager >>> 15 !== 0) {
      const e = (eager & ~(DEPENDENCIES - 1)) | (eager >>> 15);
      this.dependencies(schema, e, seen, infos, out);
      for (const a of node.aux) this.dependencies(a, e, seen, infos, out);
    }
    infos.push(...node.sourceInfo);
    if ((eager & PARENTS) !== 0 && node.parent !== undefined) this.traverse(node.parent, eager, seen, infos, out);
    if ((eager & CHILDREN) !== 0) {
      for (const c of node.ordered) this.traverse(c, eager, seen, infos, out);
      for (const name of node.aliases.keys()) resolveMember(this, node, name);
    }
  }

  private dependencies(schema: Obj, e: number, seen: Map<CNode, number>, infos: Obj[], out: Obj[]): void {
    const dep = (id: bigint): void => { const n = this.nodes.get(id); if (n !== undefined) this.traverse(n, e, seen, infos, out); };
    const anns = (list: unknown): void => { for (const a of (list as Obj[] | undefined) ?? []) dep(a["id"] as bigint); };
    const brand = (b: unknown): void => {
      for (const s of ((b as Obj | undefined)?.["scopes"] as Obj[] | undefined) ?? []) {
        for (const x of (s["bind"] as Obj[] | undefined) ?? []) if ("type" in x) type(x["type"] as Obj);
      }
    };
    const type = (t: Obj): void => {
      const k = Object.keys(t)[0]!;
      if (k === "list") return type((t["list"] as Obj)["elementType"] as Obj);
      if (k !== "struct" && k !== "enum" && k !== "interface") return;
      dep((t[k] as Obj)["typeId"] as bigint);
      brand((t[k] as Obj)["brand"]);
    };
    if (schema["struct"] !== undefined) {
      for (const f of ((schema["struct"] as Obj)["fields"] as Obj[] | undefined) ?? []) {
        if (f["slot"] !== undefined) type((f["slot"] as Obj)["type"] as Obj);
        anns(f["annotations"]);
      }
    } else if (schema["enum"] !== undefined) {
      for (const en of (schema["enum"] as Obj)["enumerants"] as Obj[]) anns(en["annotations"]);
    } else if (schema["interface"] !== undefined) {
      const i = schema["interface"] as Obj;
      for (const s of i["superclasses"] as Obj[]) { dep(s["id"] as bigint); brand(s["brand"]); }
      for (const m of i["methods"] as Obj[]) {
        dep(m["paramStructType"] as bigint); brand(m["paramBrand"]);
        dep(m["resultStructType"] as bigint); brand(m["resultBrand"]);
        anns(m["annotations"]);
      }
    } else if (schema["const"] !== undefined) type((schema["const"] as Obj)["type"] as Obj);
    else if (schema["annotation"] !== undefined) type((schema["annotation"] as Obj)["type"] as Obj);
    anns(schema["annotations"]);
  }

  /** `RequestedFile.imports`: every file imported by a type, alias or annotation name, sorted. */
  imports(root: CNode): Obj[] {
    const names = new Set<string>();
    const expr = (e: Expr | undefined): void => {
      if (e === undefined) return;
      if (e.k === "import") names.add(e.path);
      else if (e.k === "list") e.items.forEach(expr);
      else if (e.k === "tuple") e.items.forEach((p) => expr(p.value));
      else if (e.k === "app") { expr(e.fn); e.params.forEach((p) => expr(p.value)); } else if (e.k === "member") expr(e.parent);
    };
    const params = (p: ParamList | undefined): void => {
      if (p?.k === "named") for (const x of p.params) { expr(x.type); x.annotations.forEach((a) => expr(a.name)); }
      else if (p?.k === "type") expr(p.expr);
      else if (p?.k === "stream") names.add("/capnp/stream.capnp");
    };
    const decl = (d: Decl): void => {
      if (d.kind === "using" || d.kind === "const" || d.kind === "field") expr(d.type);
      if (d.kind === "interface") d.superclasses?.forEach(expr);
      if (d.kind === "method") { params(d.methodParams); params(d.methodResults); }
      d.annotations.forEach((a) => expr(a.name));
      d.nested.forEach(decl);
    };
    decl(root.decl);
    const sorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    return sorted.map((name) => ({ id: this.importFile(root, name, 0).id, name }));
  }
}
