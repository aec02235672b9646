/**
 * Enum emitter: a numeric TS `enum` whose members keep the schema's enumerant names and ordinals.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { jsdoc } from "../names.js";
import type { NodeInfo } from "../schema.js";
import type { FileContext } from "./context.js";

export function emitEnum(ctx: FileContext, n: NodeInfo): string {
  const lines = (n.enumerants ?? []).map((e) => `${jsdoc(e.doc, "  ")}  ${/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(e.name) ? e.name : JSON.stringify(e.name)} = ${e.value},`);
  return `${jsdoc(n.doc ?? `Enum \`${n.shortName}\` (UInt16 on the wire).`)}export enum ${ctx.baseName(n.id)} {\n${lines.join("\n")}\n}\n`;
}
