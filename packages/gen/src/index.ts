/**
 * mpgen: generates TypeScript proxies and capnp-ts struct classes from Cap'n Proto schemas with
 * libmultiprocess annotations (`mp/proxy.capnp`). This module is pure: it maps a
 * CodeGeneratorRequest to generated sources and does no I/O (see `cli.ts` for that).
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import type * as S from "capnp-ts/src/std/schema.capnp.js";
import { emitFile } from "./emit/file.js";
import type { GenerateOptions } from "./emit/context.js";
import { loadRequest, parseRequest, type SchemaModel } from "./schema.js";

export type { GenerateOptions } from "./emit/context.js";
export { MpgenError } from "./annotations.js";
export { parseRequest, loadRequest } from "./schema.js";
export type { SchemaModel, NodeInfo, FieldInfo, MethodInfo, TypeInfo } from "./schema.js";
export { flattenMessage } from "./flatten.js";

/**
 * Generates one TS module per requested schema file.
 *
 * @param request a framed CodeGeneratorRequest (`capnp compile -o-` output), a capnp-ts
 *   `CodeGeneratorRequest` reader, or an already parsed {@link SchemaModel}.
 * @returns output path (the schema path relative to its import root, plus `.ts`, e.g.
 *   `test/foo.capnp.ts`) → source text.
 * @throws MpgenError for schemas or annotations mpgen cannot map.
 */
export function generate(request: Uint8Array | S.CodeGeneratorRequest | SchemaModel, options: GenerateOptions = {}): Map<string, string> {
  const model = request instanceof Uint8Array ? parseRequest(request) : "requestedFiles" in request && Array.isArray(request.requestedFiles) ? request as SchemaModel : loadRequest(request as S.CodeGeneratorRequest);
  const out = new Map<string, string>();
  for (const f of model.requestedFiles) {
    const node = model.nodes.get(f.id);
    const name = node?.displayName ?? f.filename;
    out.set(`${name}.ts`, emitFile(model, f.id, options));
  }
  return out;
}
