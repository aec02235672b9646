/**
 * Schema values as TS expressions: defaults of pointer fields (Data, List, struct) read back when
 * the pointer is null, and the values of `const` declarations. Structs become object literals of
 * their TS-native type (the active union member as `which` plus its value), `List(Pair)` maps
 * become `new Map(...)`, Data a fresh `Uint8Array`.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { MpgenError } from "../annotations.js";
import type { DecodedStruct, DecodedValue, TypeInfo } from "../schema.js";
import { EMPTY_ENV, type Env, type FileContext } from "./context.js";
import { nativeFields } from "./fields.js";

function numberLiteral(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "Infinity";
  if (v === -Infinity) return "-Infinity";
  return Object.is(v, -0) ? "-0" : String(v);
}

function isStruct(d: DecodedValue): d is DecodedStruct {
  return typeof d === "object" && d !== null && !Array.isArray(d) && !(d instanceof Uint8Array);
}

/** TS expression for the schema value `d` of (resolved) type `t`. */
export function literal(ctx: FileContext, d: DecodedValue, t: TypeInfo): string {
  switch (t.kind) {
    case "bool": return String(d === true);
    case "int64": case "uint64": return `${typeof d === "bigint" ? d : 0n}n`;
    case "int8": case "int16": case "int32": case "uint8": case "uint16": case "uint32": case "float32": case "float64":
      return numberLiteral(typeof d === "number" ? d : 0);
    case "enum": {
      const e = ctx.node(t.typeId).enumerants?.[typeof d === "number" ? d : 0];
      const name = ctx.nativeName(t.typeId);
      if (e === undefined) return `(${String(d)} as ${name})`;
      return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(e.name) ? `${name}.${e.name}` : `${name}[${JSON.stringify(e.name)}]`;
    }
    case "text": return JSON.stringify(typeof d === "string" ? d : "");
    case "data": return d instanceof Uint8Array ? `new Uint8Array([${[...d].join(", ")}])` : "new Uint8Array(0)";
    case "list": return listLiteral(ctx, Array.isArray(d) ? d : [], t);
    case "struct": return structLiteral(ctx, d, t);
    case "interface": return "null";
    default: throw new MpgenError(`mpgen: cannot map a schema value of type ${t.kind} to a TS literal`);
  }
}

function listLiteral(ctx: FileContext, items: DecodedValue[], t: TypeInfo & { kind: "list" }): string {
  const me = ctx.mapEntry(t);
  if (me !== undefined && t.element.kind === "struct") {
    const n = ctx.node(t.element.typeId);
    const fields = n.struct!.fields;
    const first = fields.find((f) => f.name === "first")!, second = fields.find((f) => f.name === "second")!;
    const entries = items.map((x) => {
      const s = isStruct(x) ? x : undefined;
      return `[${literal(ctx, s?.fields.get(first.name) ?? null, me[0])}, ${literal(ctx, s?.fields.get(second.name) ?? null, me[1])}]`;
    });
    return `new Map<${ctx.tsType(me[0])}, ${ctx.tsType(me[1])}>([${entries.join(", ")}])`;
  }
  return `[${items.map((x) => literal(ctx, x, t.element)).join(", ")}]`;
}

function structLiteral(ctx: FileContext, d: DecodedValue, t: TypeInfo & { kind: "struct" }): string {
  const env = ctx.envOf(t.brand, EMPTY_ENV);
  return structNodeLiteral(ctx, isStruct(d) ? d : { struct: t.typeId, fields: new Map() }, t.typeId, env);
}

function structNodeLiteral(ctx: FileContext, s: DecodedStruct, id: bigint, env: Env): string {
  const parts: string[] = [];
  let member: string[] = [];
  for (const nf of nativeFields(ctx, ctx.node(id))) {
    const f = nf.field;
    if (nf.union && s.which !== f.name) continue;
    const v = s.fields.get(f.name) ?? null;
    let expr: string;
    if (f.groupId !== undefined) expr = structNodeLiteral(ctx, isStruct(v) ? v : { struct: f.groupId, fields: new Map() }, f.groupId, env);
    else if (f.slot!.type.kind === "void") expr = "";
    else if (nf.has !== undefined && s.fields.get(nf.has.name) !== true) expr = "undefined";
    else expr = literal(ctx, v, ctx.resolve(f.slot!.type, env));
    if (nf.union) {
      member = [`which: ${JSON.stringify(nf.tsName)} as const`];
      if (expr !== "") member.push(`${nf.tsName}: ${expr}`);
    } else {
      parts.push(`${nf.tsName}: ${expr}`);
    }
  }
  const all = [...parts, ...member];
  return all.length === 0 ? "{}" : `{ ${all.join(", ")} }`;
}
