/**
 * Shared helpers for the mpgen tests: paths, compiling fixtures with the real `capnp` (tests that
 * need it fail loudly when it is missing), and type-checking generated code with `tsc --noEmit`
 * under the repository's strict settings.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export const GEN_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = path.resolve(GEN_DIR, "../..");
export const PROTO = path.join(ROOT, "proto");
export const FIXTURES = path.join(GEN_DIR, "test/fixtures");
export const CLI = path.join(GEN_DIR, "dist/cli.js");

/** The shipped mp/proxy.capnp (`pnpm gen` writes its TS into packages/runtime/src). */
export const PROXY_SCHEMA = "packages/gen/schema/mp/proxy.capnp";
/** The schema files `pnpm gen` compiles into proto/src (root package.json). */
export const PROTO_SCHEMAS = [
  "proto/test/foo.capnp",
  "proto/test/fixtures.capnp",
  "proto/example/init.capnp",
  "proto/example/calculator.capnp",
  "proto/example/printer.capnp",
  "proto/test/mappings.capnp",
];

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `mpgen-${prefix}-`));
}

/** Writes generated sources under `dir` (creating folders). */
export function writeTree(dir: string, files: ReadonlyMap<string, string>): void {
  for (const [rel, src] of files) {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, src);
  }
}

/**
 * Type-checks every .ts file under `dir` with the strict set an application may use (those of
 * tsconfig.base.json plus noImplicitOverride, exactOptionalPropertyTypes, noUncheckedIndexedAccess,
 * noEmit); the `@multiprocess-ts/runtime` subpaths resolve to this checkout's built copies.
 * Returns tsc's output; throws with it when tsc fails.
 */
export function typecheck(dir: string): string {
  const require = createRequire(import.meta.url);
  const tsc = require.resolve("typescript/bin/tsc");
  const config = {
    compilerOptions: {
      target: "ES2022", lib: ["ES2022", "esnext.disposable"], module: "NodeNext", moduleResolution: "NodeNext",
      strict: true, noImplicitReturns: true, noUnusedLocals: true, noUnusedParameters: true,
      noFallthroughCasesInSwitch: true, isolatedModules: true, noEmit: true, skipLibCheck: true, types: [],
      noImplicitOverride: true, exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true,
      paths: {
        "@multiprocess-ts/runtime/gen": [path.join(ROOT, "packages/runtime/dist/gen/index.d.ts")],
        "@multiprocess-ts/runtime/gen/capnp": [path.join(ROOT, "packages/runtime/dist/gen/capnp.d.ts")],
        "@multiprocess-ts/runtime/mp/proxy.capnp": [path.join(ROOT, "packages/runtime/dist/mp/proxy.capnp.d.ts")],
      },
    },
    include: ["**/*.ts"],
  };
  fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify(config, null, 2));
  try {
    return execFileSync(process.execPath, [tsc, "-p", path.join(dir, "tsconfig.json")], { encoding: "utf8" });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    throw new Error(`tsc failed:\n${err.stdout ?? ""}${err.stderr ?? ""}`);
  }
}
