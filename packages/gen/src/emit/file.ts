/**
 * File emitter: walks one requested schema file and assembles the generated module from the
 * per-node emitters (enum, struct, interface).
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { checkAnnotations } from "../annotations.js";
import type { NodeInfo, SchemaModel } from "../schema.js";
import { FileContext, RUNTIME_CAPNP, RUNTIME_GEN, type GenerateOptions } from "./context.js";
import { emitEnum } from "./enum.js";
import { ancestors, emitErrorClasses, emitInterface, type MethodPlan } from "./interface.js";
import { emitConsts } from "./const.js";
import { emitConverters, emitNativeTypes } from "./native.js";
import { collectGroups, emitStructClass } from "./struct.js";

const NON_NULL = `/** Proxies map capabilities to non-null TS values; an unset capability is a peer error. */
function $nonNull<T>(v: T | null, what: string): T {
  if (v === null) throw new TypeError(\`mpgen: null capability received for \${what}\`);
  return v;
}
`;

const DATA_VIEW = `/**
 * Data read from a message: a view of the message's own segment (no copy). A received message's
 * segments belong to it alone and are never written again, so the view stays valid and keeps only
 * that segment alive.
 */
function $dataView(d: $.Data): Uint8Array {
  return d.getLength() === 0 ? new Uint8Array(0) : d.toUint8Array();
}
`;

const CHECK_INT64 = `/** Int64 range check (capnp-ts would store an out-of-range bigint modulo 2^64). */
function $checkInt64(v: bigint): bigint {
  if (BigInt.asIntN(64, v) !== v) throw new RangeError(\`value \${v} out of range for Int64\`);
  return v;
}
`;

const CHECK_UINT64 = `/** UInt64 range check (capnp-ts would store an out-of-range bigint modulo 2^64). */
function $checkUint64(v: bigint): bigint {
  if (BigInt.asUintN(64, v) !== v) throw new RangeError(\`value \${v} out of range for UInt64\`);
  return v;
}
`;

interface Found { structs: bigint[]; enums: NodeInfo[]; ifaces: NodeInfo[]; consts: NodeInfo[] }

function walk(ctx: FileContext, id: bigint, out: Found): void {
  for (const nn of ctx.node(id).nestedNodes) {
    const n = ctx.model.nodes.get(nn.id);
    if (n === undefined) continue;
    if (n.kind === "struct") collectGroups(ctx, n.id, out.structs);
    else if (n.kind === "enum") out.enums.push(n);
    else if (n.kind === "interface") out.ifaces.push(n);
    else if (n.kind === "const") out.consts.push(n);
    walk(ctx, n.id, out);
  }
}

/** Generates the TS module for file node `fileId`; returns its source. */
export function emitFile(model: SchemaModel, fileId: bigint, options: GenerateOptions): string {
  const fileNode = model.nodes.get(fileId)!;
  const ctx = new FileContext(model, fileId, fileNode.displayName, options);
  checkAnnotations(fileNode.annotations, model.nodes, `file ${fileNode.displayName}`);
  const found: Found = { structs: [], enums: [], ifaces: [], consts: [] };
  walk(ctx, fileId, found);
  // Interfaces in inheritance order, so `extends` and `...Parent.methods` see defined classes.
  const ordered: NodeInfo[] = [];
  const visit = (n: NodeInfo): void => {
    if (ordered.includes(n)) return;
    for (const a of ancestors(ctx, n)) if (found.ifaces.includes(a)) visit(a);
    ordered.push(n);
  };
  found.ifaces.forEach(visit);
  const implicit: bigint[] = [];
  for (const i of ordered) {
    for (const m of i.interface!.methods) {
      for (const sid of [m.paramStructType, m.resultStructType]) {
        if (ctx.isImplicitStruct(sid) && ctx.fileOf(sid).id === fileId && !implicit.includes(sid)) collectGroups(ctx, sid, implicit);
      }
    }
  }

  const parts: string[] = [];
  for (const e of found.enums) parts.push(emitEnum(ctx, e));
  for (const id of found.structs) {
    const n = ctx.node(id);
    checkAnnotations(n.annotations, model.nodes, `struct ${n.shortName}`);
    for (const f of n.struct!.fields) checkAnnotations(f.annotations, model.nodes, `field ${n.shortName}.${f.name}`);
    parts.push(emitStructClass(ctx, n));
  }
  for (const id of implicit) parts.push(emitStructClass(ctx, ctx.node(id)));
  for (const id of found.structs) {
    const n = ctx.node(id);
    parts.push(emitNativeTypes(ctx, n));
    const conv = emitConverters(ctx, n);
    if (conv !== "") parts.push(conv);
  }
  const ifaceSrc: string[] = [];
  const plans: MethodPlan[] = [];
  for (const i of ordered) {
    const r = emitInterface(ctx, i);
    ifaceSrc.push(r.src);
    plans.push(...r.plans);
  }
  const errors = emitErrorClasses(ctx, plans);
  if (errors !== "") parts.push(errors.trimEnd() + "\n");
  parts.push(...ifaceSrc);
  const consts = emitConsts(ctx, found.consts);
  if (consts !== "") parts.push(consts);
  if (ctx.trailer.size > 0) parts.push([...ctx.trailer.values()].join("\n") + "\n");
  if (ctx.usesNonNull) parts.push(NON_NULL);
  if (ctx.usesDataView) parts.push(DATA_VIEW);
  if (ctx.uses64.has("int64")) parts.push(CHECK_INT64);
  if (ctx.uses64.has("uint64")) parts.push(CHECK_UINT64);

  const body = parts.join("\n");
  const head: string[] = [`// Generated by mpgen from ${fileNode.displayName}. Do not edit.`];
  const fileDoc = model.nodes.get(fileId)?.doc;
  if (fileDoc !== undefined) head.push("", ...fileDoc.split("\n").map((l) => `// ${l}`.trimEnd()));
  head.push("");
  if (/(^|[^A-Za-z0-9_$])\$\./m.test(body)) head.push(`import * as $ from "${RUNTIME_CAPNP}";`);
  if (/\$mp\./.test(body)) head.push(`import * as $mp from "${RUNTIME_GEN}";`);
  for (const [path, alias] of [...ctx.imports.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
    head.push(`import * as ${alias} from ${JSON.stringify(path)};`);
  }
  if (found.structs.length === 0 && found.enums.length === 0 && ordered.length === 0 && consts === "") head.push("", "export {};");
  return `${head.join("\n")}\n\n${body}`;
}
