/**
 * The parsed form of a schema file: declarations and expressions, mirroring capnp's grammar.capnp.
 * Produced by parser.ts, consumed by the compiler. Runs at build time.
 *
 * @module
 */

export type Expr =
  | { k: "int"; v: bigint; pos: number }
  | { k: "neg"; v: bigint; pos: number }
  | { k: "float"; v: number; pos: number }
  | { k: "string"; v: string; pos: number }
  | { k: "binary"; v: Uint8Array; pos: number }
  | { k: "list"; items: Expr[]; pos: number }
  | { k: "tuple"; items: Param[]; pos: number }
  | { k: "import"; path: string; pos: number }
  | { k: "embed"; path: string; pos: number }
  | { k: "abs"; name: string; pos: number }
  | { k: "rel"; name: string; pos: number }
  | { k: "member"; parent: Expr; name: string; pos: number }
  | { k: "app"; fn: Expr; params: Param[]; pos: number };

/** A tuple element or generic argument: `name = value` or just `value`. */
export interface Param { name?: string; value: Expr }

export interface AnnotationApp { name: Expr; value?: Expr; pos: number }

export type DeclKind =
  | "file" | "using" | "const" | "enum" | "enumerant" | "struct" | "field" | "union" | "group"
  | "interface" | "method" | "annotation";

export interface MethodParam { name: string; type: Expr; dflt?: Expr; annotations: AnnotationApp[]; pos: number }
export type ParamList =
  | { k: "named"; params: MethodParam[]; pos: number }
  | { k: "type"; expr: Expr; pos: number }
  | { k: "stream"; pos: number };

export interface Decl {
  kind: DeclKind;
  name: string;
  pos: number;
  /** `@0x…` on nodes. */
  uid?: bigint;
  /** `@N` on members. */
  ordinal?: { value: number; pos: number };
  /** Generic parameter names (or a method's implicit parameters). */
  params: string[];
  annotations: AnnotationApp[];
  doc?: string;
  nested: Decl[];
  /** const / field / annotation type; using target. */
  type?: Expr;
  /** const value; field default. */
  value?: Expr;
  superclasses?: Expr[];
  methodParams?: ParamList;
  methodResults?: ParamList;
  targets?: Set<string>;
}
