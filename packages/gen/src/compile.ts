/**
 * Obtains a CodeGeneratorRequest for mpgen. By default with @multiprocess-ts/schema (the schema
 * compiler in TypeScript, no native code); with `capnp` set (CLI `--capnp`, or `$MPGEN_CAPNP`) by
 * running `capnp compile -o-`. Both produce the same request. I/O lives here and in cli.ts only;
 * `generate()` stays pure. Runs at build time.
 *
 * @module
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { SchemaError, STANDARD_IMPORT_DIR, compile } from "@multiprocess-ts/schema";
import { MpgenError } from "./annotations.js";

/**
 * The folder shipped in this package that holds `mp/proxy.capnp` (libmultiprocess' annotations
 * and Context/ThreadMap/Thread). mpgen always adds it to the import path, so a schema's
 * `using import "/mp/proxy.capnp"` resolves from the installed package without `-I`. For plugin
 * mode pass it to capnp yourself: `capnp compile -I "$(mpgen --print-include)" ...`.
 */
export const SCHEMA_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../schema");

export interface CompileOptions {
  /** Schema files to compile. */
  files: readonly string[];
  /**
   * `-I` import directories (the standard /usr/include, /usr/local/include are searched too, and
   * {@link SCHEMA_DIR} last).
   */
  importPaths?: readonly string[];
  /**
   * Compile with this `capnp` binary instead of the built-in compiler. Default: `$MPGEN_CAPNP` when
   * set, else the built-in compiler; `true` means `capnp` from PATH.
   */
  capnp?: string | true;
}

/**
 * Output names are relative to the import directory that contains each file (capnp's
 * `--src-prefix`), so `-I proto proto/test/foo.capnp` becomes `test/foo.capnp` and imports between
 * generated files resolve the same way as `/mp/proxy.capnp` imports do.
 */
export function srcPrefixes(files: readonly string[], importPaths: readonly string[]): string[] {
  const out = new Set<string>();
  for (const f of files) {
    const abs = path.resolve(f);
    let best: string | undefined;
    for (const dir of importPaths) {
      const d = path.resolve(dir);
      if (abs.startsWith(d + path.sep) && (best === undefined || d.length > path.resolve(best).length)) best = dir;
    }
    if (best !== undefined) out.add(best);
  }
  return [...out];
}

/** Resolves with the binary CodeGeneratorRequest; rejects with an MpgenError on any failure. */
export function compileSchemas(opts: CompileOptions): Promise<Uint8Array> {
  const capnp = opts.capnp ?? process.env["MPGEN_CAPNP"];
  if (capnp !== undefined) return compileWithCapnp(opts, capnp === true ? "capnp" : capnp);
  const imports = [...(opts.importPaths ?? []), SCHEMA_DIR];
  try {
    return Promise.resolve(compile({
      files: opts.files, importPaths: imports, srcPrefixes: srcPrefixes(opts.files, imports),
      standardImportPaths: [STANDARD_IMPORT_DIR],
    }));
  } catch (e) {
    if (e instanceof SchemaError) return Promise.reject(new MpgenError(`mpgen: capnp compile failed (schema error):\n${e.message}`));
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
}

function compileWithCapnp(opts: CompileOptions, capnp: string): Promise<Uint8Array> {
  const imports = [...(opts.importPaths ?? []), SCHEMA_DIR];
  const args = ["compile", "-o-"];
  for (const i of imports) args.push(`-I${i}`);
  for (const p of srcPrefixes(opts.files, imports)) args.push(`--src-prefix=${p}`);
  args.push(...opts.files);
  return new Promise((resolve, reject) => {
    const child = spawn(capnp, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") reject(new MpgenError(`capnp compiler not found: install capnproto (looked for "${capnp}")`));
      else reject(new MpgenError(`mpgen: cannot run ${capnp}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      if (code === 0) {
        const buf = Buffer.concat(out);
        resolve(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
        return;
      }
      const stderr = Buffer.concat(err).toString("utf8").trim();
      reject(new MpgenError(`mpgen: capnp compile failed (${signal ?? `exit code ${code}`}):\n${stderr}`));
    });
  });
}
