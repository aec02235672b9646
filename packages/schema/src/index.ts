/**
 * @multiprocess-ts/schema: a Cap'n Proto schema compiler in TypeScript. `compile()` turns .capnp
 * files into the same CodeGeneratorRequest `capnp compile -o-` (0.9.2) writes, with no native
 * code: the standard schemas (`/capnp/*.capnp`) ship in this package. Runs at build time.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Compiler } from "./compiler.js";
import { encodeStruct, type Obj } from "./dynamic.js";
import { writeMessage } from "./message.js";

export { SchemaError } from "./lexer.js";
export { readMessage, writeMessage, canonicalPtr, MessageError, type Ptr, type StructVal, type ListVal } from "./message.js";
export { decodeStruct, encodeStruct, type Obj, type Layouts } from "./dynamic.js";

/** The directory holding `capnp/*.capnp` (the standard schemas bundled with this package). */
export const STANDARD_IMPORT_DIR = fileURLToPath(new URL("..", import.meta.url));

export const CODE_GENERATOR_REQUEST_ID = 0xbfc546f6210ad7cen;

export interface CompileOptions {
  /** Schema files to compile (the requested files). */
  files: readonly string[];
  /** `-I` directories, searched in order for `/absolute/imports.capnp`. */
  importPaths?: readonly string[];
  /** Prefixes stripped from requested files' names (capnp's `--src-prefix`). */
  srcPrefixes?: readonly string[];
  /** Searched after `importPaths`; default: this package's bundled standard schemas. */
  standardImportPaths?: readonly string[];
}

function requestedName(file: string, prefixes: readonly string[]): { dir: string; rel: string } {
  const abs = path.resolve(file);
  let best: string | undefined;
  for (const p of prefixes) {
    const d = path.resolve(p);
    if (abs.startsWith(d + path.sep) && (best === undefined || d.length > best.length)) best = d;
  }
  if (best !== undefined) return { dir: best, rel: path.relative(best, abs).split(path.sep).join("/") };
  if (path.isAbsolute(file)) return { dir: path.parse(abs).root, rel: abs.slice(path.parse(abs).root.length).split(path.sep).join("/") };
  return { dir: process.cwd(), rel: path.normalize(file).split(path.sep).join("/") };
}

/** The CodeGeneratorRequest as a plain object (schema.capnp field names; see dynamic.ts). */
export function compileToObject(opts: CompileOptions): Obj {
  const c = new Compiler({
    importPaths: opts.importPaths ?? [],
    standardImportPaths: opts.standardImportPaths ?? [STANDARD_IMPORT_DIR],
  });
  const roots = opts.files.map((f) => {
    const { dir, rel } = requestedName(f, opts.srcPrefixes ?? []);
    return c.loadRequested(f, dir, rel);
  });
  const { nodes, sourceInfo } = c.collect(roots);
  const requestedFiles = roots.map((r) => ({ id: r.id, filename: r.module.name, imports: c.imports(r) }));
  return { nodes, requestedFiles, capnpVersion: { major: 0, minor: 9, micro: 2 }, sourceInfo };
}

let schemaLayouts: Map<bigint, Obj> | undefined;

/** Layouts of schema.capnp's nodes, compiled (once) from the bundled schema.capnp by this compiler. */
export function schemaCapnpLayouts(): Map<bigint, Obj> {
  if (schemaLayouts === undefined) {
    const file = path.join(STANDARD_IMPORT_DIR, "capnp/schema.capnp");
    if (!fs.existsSync(file)) throw new Error(`@multiprocess-ts/schema: missing bundled ${file}`);
    const req = compileToObject({ files: [file], srcPrefixes: [STANDARD_IMPORT_DIR] });
    schemaLayouts = new Map((req["nodes"] as Obj[]).map((n) => [n["id"] as bigint, n]));
  }
  return schemaLayouts;
}

/** Compiles `files` to a framed CodeGeneratorRequest message, as `capnp compile -o-` writes it. */
export function compile(opts: CompileOptions): Uint8Array {
  const req = compileToObject(opts);
  return writeMessage(encodeStruct(schemaCapnpLayouts(), CODE_GENERATOR_REQUEST_ID, req));
}
