/**
 * Declaration naming rules capnp enforces before compiling: no duplicate names in a scope (an
 * unnamed union's members share their parent's scope), type names capitalised, other names
 * lower-case, no underscores, and declarations only where they belong. Runs at build time.
 *
 * Reference: capnproto c++/src/capnp/compiler/node-translator.c++ (DuplicateNameDetector).
 *
 * @module
 */
import type { Decl, Expr } from "./ast.js";
import type { Source } from "./lexer.js";

const TYPE_KINDS = new Set(["enum", "struct", "interface"]);
const VALUE_KINDS = new Set(["const", "annotation", "enumerant", "method", "field", "union", "group"]);
const NODE_KINDS = new Set(["using", "const", "enum", "struct", "interface", "annotation"]);
const MEMBER_KINDS = new Set(["field", "union", "group"]);

function targetName(e: Expr): string {
  switch (e.k) {
    case "abs": case "rel": return e.name;
    case "member": return e.name;
    case "app": return targetName(e.fn);
    default: return "";
  }
}

function check(src: Source, nested: Decl[], parentKind: string, names: Map<string, Decl>): void {
  for (const d of nested) {
    const prev = names.get(d.name);
    if (prev !== undefined) {
      throw src.error(d.pos, d.name === "" ? "An unnamed union is already defined in this scope." : `'${d.name}' is already defined in this scope.`);
    }
    names.set(d.name, d);
    const first = d.name[0] ?? "";
    const lower = first >= "a" && first <= "z";
    const upper = first >= "A" && first <= "Z";
    if (d.kind === "using") {
      const t = targetName(d.type!);
      const targetLower = t[0] !== undefined && t[0] >= "a" && t[0] <= "z";
      if (targetLower && d.name !== "" && !lower) throw src.error(d.pos, "Non-type names must begin with a lower-case letter.");
      if (!targetLower && d.name !== "" && !upper) throw src.error(d.pos, "Type names must begin with a capital letter.");
    } else if (TYPE_KINDS.has(d.kind) && d.name !== "" && !upper) {
      throw src.error(d.pos, "Type names must begin with a capital letter.");
    } else if (VALUE_KINDS.has(d.kind) && d.name !== "" && !lower) {
      throw src.error(d.pos, "Non-type names must begin with a lower-case letter.");
    }
    if (d.name.includes("_")) {
      throw src.error(d.pos, "Cap'n Proto declaration names should use camelCase and must not contain underscores. (Code generators may convert names to the appropriate style for the target language.)");
    }
    if (NODE_KINDS.has(d.kind) && !["file", "struct", "interface"].includes(parentKind)) {
      throw src.error(d.pos, "This kind of declaration doesn't belong here.");
    }
    if (MEMBER_KINDS.has(d.kind)) {
      if (!["struct", "union", "group"].includes(parentKind)) throw src.error(d.pos, "This declaration can only appear in structs.");
      check(src, d.nested, d.kind, d.name === "" ? names : new Map());
    } else if (NODE_KINDS.has(d.kind)) {
      check(src, d.nested, d.kind, new Map());
    }
  }
}

/** Throws a SchemaError for the first naming rule `file` breaks. */
export function checkNames(src: Source, file: Decl): void {
  check(src, file.nested, "file", new Map());
}
