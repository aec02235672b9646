/**
 * Shared shapes of the compiler: declaration nodes (one per struct, enum, interface, const,
 * annotation and file), what a name resolves to, and the context the resolver and translators use
 * to reach the rest of the compiler. Types only. Runs at build time.
 *
 * @module
 */
import type { Decl, Expr } from "./ast.js";
import type { Obj } from "./dynamic.js";
import type { SchemaError, Source } from "./lexer.js";

export interface Module {
  /** Display name, e.g. `mp/proxy.capnp`. */
  name: string;
  /** Absolute path on disk. */
  path: string;
  src: Source;
  root: CNode;
  /** The search directory the file was found in, for relative imports. */
  dir: string;
  /** Path relative to `dir`. */
  rel: string;
}

export interface Alias { parent: CNode; target: Expr; pos: number; result?: ResolveResult; busy?: boolean }

export interface CNode {
  id: bigint;
  displayName: string;
  kind: Decl["kind"];
  decl: Decl;
  parent: CNode | undefined;
  module: Module;
  genericParamCount: number;
  nested: Map<string, CNode>;
  ordered: CNode[];
  aliases: Map<string, Alias>;
  /** 0 stub, 1 translating, 2 bootstrap schema ready, 3 finishing values, 4 finished. */
  state: number;
  schema?: Obj;
  /** Groups (structs) or `$Params`/`$Results` structs (interfaces). */
  aux: Obj[];
  sourceInfo: Obj[];
  unfinished: (() => void)[];
  /** A const's value as a plain object (dynamic.ts shape), for consts used in other values. */
  constJs?: unknown;
}

export interface ResolvedDecl {
  id: bigint;
  genericParamCount: number;
  /** The scope the name was found in (its parent's id; for aliases, the alias's scope). */
  scopeId: bigint;
  kind: string;
  node?: CNode;
  /** A builtin type's name (`Text`, `List`, …). */
  builtin?: string;
  /** Brand carried by an alias target. */
  brand?: Obj;
}

export type ResolveResult = { decl: ResolvedDecl } | { param: { id: bigint; index: number } };

/** What resolve.ts and the translators need from the compiler. */
export interface Ctx {
  nodeById(id: bigint): CNode | undefined;
  importFile(from: CNode, path: string, pos: number): CNode;
  error(node: CNode, pos: number, msg: string): SchemaError;
  /** Ensures the node's bootstrap schema (layouts, types) exists and returns it. */
  bootstrap(node: CNode): Obj;
  /** Ensures the node's values (defaults, consts, annotations) are compiled too. */
  finish(node: CNode): Obj;
  /** Any node object by id, including groups and param structs (for value encoding). */
  layout(id: bigint): Obj | undefined;
}
