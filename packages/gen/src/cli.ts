#!/usr/bin/env node
/**
 * mpgen command line.
 *
 *   mpgen [-I dir]... [-o outdir] [--maps-as-arrays] [--capnp] file.capnp...
 *       compiles the schemas with @multiprocess-ts/schema (no native code; with `--capnp`, runs
 *       `capnp compile -o-` instead) and writes `<outdir>/<file>.capnp.ts` for each file.
 *   mpgen --print-include
 *       prints the folder holding the shipped mp/proxy.capnp (for `capnp compile -I` in plugin mode).
 *   mpgen --plugin [-o outdir] [--maps-as-arrays]
 *       Cap'n Proto plugin mode: reads a CodeGeneratorRequest on stdin (what
 *       `capnp compile -o<plugin>` sends; see bin/capnpc-mpgen) and writes into outdir (default: cwd).
 *
 * Only I/O lives here; `generate()` does the work. Runs at build time.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { MpgenError } from "./annotations.js";
import { SCHEMA_DIR, compileSchemas } from "./compile.js";
import { generate, type GenerateOptions } from "./index.js";

const USAGE = `usage: mpgen [-I dir]... [-o outdir] [--maps-as-arrays] [--capnp] file.capnp...
       mpgen --plugin [-o outdir] [--maps-as-arrays]   (CodeGeneratorRequest on stdin)
       mpgen --print-include   (the folder of the shipped mp/proxy.capnp, for capnp -I)`;

interface Args { imports: string[]; outDir: string; files: string[]; plugin: boolean; capnp: boolean; options: GenerateOptions }

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { imports: [], outDir: ".", files: [], plugin: false, capnp: false, options: {} };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    const value = (flag: string): string => {
      if (x.length > flag.length) return x.slice(flag.length).replace(/^=/, "");
      const v = argv[++i];
      if (v === undefined) throw new MpgenError(`mpgen: ${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (x === "-h" || x === "--help") { process.stdout.write(USAGE + "\n"); process.exit(0); }
    else if (x.startsWith("-I")) a.imports.push(value("-I"));
    else if (x.startsWith("--import-path")) a.imports.push(value("--import-path"));
    else if (x === "-o" || x.startsWith("--output")) a.outDir = value(x === "-o" ? "-o" : "--output");
    else if (x.startsWith("-o")) a.outDir = x.slice(2);
    else if (x === "--plugin") a.plugin = true;
    else if (x === "--capnp") a.capnp = true;
    else if (x === "--print-include") { process.stdout.write(SCHEMA_DIR + "\n"); process.exit(0); }
    else if (x === "--maps-as-arrays") a.options.mapsAsArrays = true;
    else if (x.startsWith("-")) throw new MpgenError(`mpgen: unknown option ${x}\n${USAGE}`);
    else a.files.push(x);
  }
  return a;
}

function readStdin(): Uint8Array {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EAGAIN") continue;
      if ((e as NodeJS.ErrnoException).code === "EOF") break;
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  const all = Buffer.concat(chunks);
  return new Uint8Array(all.buffer, all.byteOffset, all.byteLength);
}

function writeOutputs(outDir: string, files: Map<string, string>): void {
  for (const [rel, src] of files) {
    const target = path.join(outDir, rel);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    let old: string | undefined;
    try { old = fs.readFileSync(target, "utf8"); } catch { old = undefined; }
    if (old !== src) fs.writeFileSync(target, src);
    process.stderr.write(`mpgen: ${old === src ? "unchanged" : "wrote"} ${target}\n`);
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv);
  let request: Uint8Array;
  if (args.plugin || args.files.length === 0) {
    if (!args.plugin && process.stdin.isTTY) { process.stderr.write(USAGE + "\n"); return 2; }
    request = readStdin();
  } else {
    request = await compileSchemas({ files: args.files, importPaths: args.imports, ...(args.capnp ? { capnp: process.env["MPGEN_CAPNP"] ?? true } : {}) });
  }
  writeOutputs(args.outDir, generate(request, args.options));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    process.stderr.write(`${e instanceof MpgenError ? e.message : e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
