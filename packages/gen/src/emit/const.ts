/**
 * Const emitter: each `const` declaration becomes an exported TS constant of its native type.
 * Primitives, Text and enums are plain literals; lists are frozen arrays (`readonly T[]`), structs
 * frozen objects (`Readonly<T>`), `List(Pair)` maps `ReadonlyMap`s; Data is a `Uint8Array` (typed
 * arrays cannot be frozen: copy it before handing it to code that writes). Void, AnyPointer and
 * capability consts have no TS value and are left out.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { jsdoc, localName } from "../names.js";
import type { NodeInfo } from "../schema.js";
import type { FileContext } from "./context.js";
import { literal } from "./literal.js";

function emitConst(ctx: FileContext, n: NodeInfo): string {
  const c = n.constValue;
  if (c === undefined) return "";
  const t = c.type;
  if (t.kind === "void" || t.kind === "anyPointer" || t.kind === "interface") return "";
  const v = c.value;
  const value = v.kind === "pointer" ? (v.decoded ?? null) : v.value;
  const lit = literal(ctx, value, t);
  const ts = ctx.tsType(t);
  let decl: string;
  if (t.kind === "list" && ctx.mapEntry(t) !== undefined) decl = `: ReadonlyMap${ts.slice("Map".length)} = ${lit}`;
  else if (t.kind === "list") decl = `: readonly ${ts} = Object.freeze(${lit})`;
  else if (t.kind === "struct") decl = `: Readonly<${ts}> = Object.freeze<${ts}>(${lit})`;
  else decl = `: ${ts} = ${lit}`;
  const head = jsdoc(n.doc ?? `\`const ${n.displayName.slice(n.displayName.indexOf(":") + 1)}\` of the schema.`);
  return `${head}export const ${localName(ctx.baseName(n.id))}${decl};\n`;
}

/** Exported constants for the file's `const` declarations, in schema order. */
export function emitConsts(ctx: FileContext, consts: readonly NodeInfo[]): string {
  return consts.map((n) => emitConst(ctx, n)).filter((x) => x !== "").join("\n");
}
