/**
 * TS-native types and converters of structs and groups: the read type `Foo` (every field present,
 * defaults filled in; a struct with a union is a discriminated union on `which`), the writer
 * input type `FooInit` when some field may be left out (explicit defaults, also nested), and the
 * converters `readFoo` / `writeFoo` (generic structs get inline converters at each use instead).
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { jsdoc } from "../names.js";
import type { NodeInfo } from "../schema.js";
import { displayPath, readParts, unionSwitch, writeBody } from "./codec.js";
import { EMPTY_ENV, type FileContext } from "./context.js";
import { isDefaulted, nativeFields, whichTag } from "./fields.js";

/**
 * The alternative every union gets: a member this schema does not know (a newer peer's), as the
 * raw discriminant, like capnp's C++ `which()`. Writers refuse it (UnknownUnionMemberError).
 */
const UNKNOWN_ALTERNATIVE = `  /** A member unknown to this schema (a newer peer's): its discriminant. Writing it back throws UnknownUnionMemberError. */
  | { which: number }`;

/** Generic parameters in scope of struct or group `n` (its own, and those of enclosing structs). */
function scopeParams(ctx: FileContext, n: NodeInfo): { key: string; name: string }[] {
  return ctx.genericScopes(n.id).flatMap((sc) => sc.parameters.map((name, i) => ({ key: `${sc.id}:${i}`, name })));
}

/** The declaration of the read type (`input` false) or the writer input type of struct `n`. */
function typeDecl(ctx: FileContext, n: NodeInfo, input: boolean): string {
  const params = scopeParams(ctx, n);
  const typeParams = new Map(params.map((p) => [p.key, p.name]));
  const used = new Set<string>();
  const opts = { typeParams, used, nullableCaps: true, input };
  const groupType = (id: bigint): string => {
    const gp = scopeParams(ctx, ctx.node(id));
    gp.forEach((p) => used.add(p.name));
    const name = `${ctx.nativeName(id)}${input && ctx.needsInit(id) ? "Init" : ""}`;
    return gp.length > 0 ? `${name}<${gp.map((p) => p.name).join(", ")}>` : name;
  };
  const common: string[] = [];
  const alternatives: string[] = [];
  for (const nf of nativeFields(ctx, n)) {
    const f = nf.field;
    const d = jsdoc(f.doc, "  ").trimEnd();
    if (nf.union) {
      let entry = "";
      if (f.groupId !== undefined) entry = `; ${nf.tsName}: ${groupType(f.groupId)}`;
      else if (f.slot!.type.kind !== "void") entry = `; ${nf.tsName}: ${ctx.tsType(f.slot!.type, opts)}`;
      if (d !== "") alternatives.push(d);
      alternatives.push(`  | { which: ${whichTag(nf)}${entry} }`);
      continue;
    }
    if (d !== "") common.push(d);
    const t = f.groupId !== undefined ? groupType(f.groupId) : ctx.tsType(f.slot!.type, opts);
    const opt = nf.has !== undefined || (input && isDefaulted(nf));
    common.push(`  ${nf.tsName}${opt ? "?" : ""}: ${t}${opt ? " | undefined" : ""};`);
  }
  const name = `${ctx.baseName(n.id)}${input ? "Init" : ""}`;
  const decl = params.length > 0 ? `<${params.map((p) => (used.has(p.name) ? p.name : `_${p.name}`)).join(", ")}>` : "";
  const path = displayPath(n);
  const head = input
    ? jsdoc(`Writer input for {@link ${ctx.baseName(n.id)}}: fields with a schema default may be left out (the default applies).`)
    : jsdoc(n.doc ?? `TS-native value of \`${path}\`.`);
  const body = `{\n${common.join("\n")}${common.length > 0 ? "\n" : ""}}`;
  if (alternatives.length === 0) return `${head}export interface ${name}${decl} ${body}\n`;
  alternatives.push(UNKNOWN_ALTERNATIVE);
  const union = alternatives.join("\n");
  if (common.length === 0) return `${head}export type ${name}${decl} =\n${union};\n`;
  return `${head}export type ${name}${decl} = ${body} & (\n${union}\n);\n`;
}

/** The read type of struct (or group) `n`, and its writer input type when it has one. */
export function emitNativeTypes(ctx: FileContext, n: NodeInfo): string {
  const read = typeDecl(ctx, n, false);
  return ctx.needsInit(n.id) ? `${read}\n${typeDecl(ctx, n, true)}` : read;
}

/** `readFoo` / `writeFoo` converters for non-generic struct (or group) `n`. */
export function emitConverters(ctx: FileContext, n: NodeInfo): string {
  if (n.isGeneric) return "";
  ctx.resetTemps();
  const name = ctx.baseName(n.id);
  const cls = ctx.structClassLocal(n.id);
  const ioParam = ctx.structNeedsIo(n.id) ? ", io: $mp.ClientIO" : "";
  const parts = readParts(ctx, n, EMPTY_ENV, "s", "io");
  ctx.resetTemps();
  const writes = writeBody(ctx, n, EMPTY_ENV, "s", "v", "io");
  const fields = parts.common.length + parts.members.length > 0;
  let readBody: string;
  if (parts.members.length > 0) readBody = unionSwitch("s", parts, false).map((x) => `  ${x}`).join("\n");
  else if (fields) readBody = `  return {\n${parts.common.map((x) => `    ${x},`).join("\n")}\n  };`;
  else readBody = "  return {};";
  const sName = fields ? "s" : "_s";
  const vName = writes.length > 0 ? "v" : "_v";
  const input = ctx.needsInit(n.id) ? `${name}Init` : name;
  const readFn = `/** Reads a {@link ${name}} out of its capnp-ts struct. */\nexport function read${name}(${sName}: ${cls}${ioParam}): ${name} {\n${readBody}\n}\n`;
  const writeFn = `/** Writes a {@link ${name}} into an initialised capnp-ts struct. */\nexport function write${name}(${sName}: ${cls}, ${vName}: ${input}${ioParam}): void {\n${writes.map((x) => `  ${x}`).join("\n")}\n}\n`;
  return `${readFn}\n${writeFn}`;
}
