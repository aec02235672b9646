/**
 * Which schema fields of a struct (or group) appear in its TS-native types, and how: `hasX`
 * companions, union members, and fields with explicit defaults (optional in writer inputs).
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { MpgenError } from "../annotations.js";
import { capitalize } from "../names.js";
import type { FieldInfo, NodeInfo } from "../schema.js";
import type { FileContext } from "./context.js";

export const NO_DISCRIMINANT = 0xffff;

export interface NativeField {
  field: FieldInfo;
  tsName: string;
  /** The `hasX` companion making this field optional. */
  has?: FieldInfo;
  /** A member of the struct's (unnamed) union: one alternative of the discriminated union. */
  union: boolean;
}

/** Fields that appear in the TS-native types of struct `n`, with optional companions resolved. */
export function nativeFields(ctx: FileContext, n: NodeInfo): NativeField[] {
  const fields = n.struct!.fields;
  const byName = new Map(fields.map((f) => [f.name, f]));
  const companions = new Set<string>();
  const out: NativeField[] = [];
  for (const f of fields) {
    const has = byName.get(`has${capitalize(f.name)}`);
    if (has?.slot?.type.kind === "bool" && f.discriminantValue === NO_DISCRIMINANT) companions.add(has.name);
  }
  for (const f of fields) {
    // A Void union member stays visible (an alternative `{ which: "x" }`) so the TS side can select it.
    const unionVoid = f.discriminantValue !== NO_DISCRIMINANT && f.slot?.type.kind === "void";
    if (companions.has(f.name) || (ctx.isHidden(f) && !unionVoid)) continue;
    const nf: NativeField = { field: f, tsName: ctx.fieldTsName(f), union: f.discriminantValue !== NO_DISCRIMINANT };
    const has = byName.get(`has${capitalize(f.name)}`);
    if (has !== undefined && companions.has(has.name)) nf.has = has;
    out.push(nf);
  }
  // The discriminated union's tag is the property `which`: no field may take that name.
  if (out.some((x) => x.union) && out.some((x) => x.tsName === "which")) {
    throw new MpgenError(`mpgen: cannot map field \`which\` of ${n.displayName.slice(n.displayName.indexOf(":") + 1)}: the struct has a union, whose TS tag is the property \`which\` (rename the field or give it $Proxy.name)`);
  }
  return out;
}

/**
 * A field a writer may leave out: it has an explicit schema default (`= value`), is not a union
 * member and has no `hasX` companion. Left out, it is not written, so the reader sees the default.
 */
export function isDefaulted(nf: NativeField): boolean {
  return !nf.union && nf.has === undefined && nf.field.slot?.hadExplicitDefault === true;
}

/** The `which` tag of union member `nf`. */
export function whichTag(nf: NativeField): string {
  return JSON.stringify(nf.tsName);
}
