/**
 * The mpgen CLI (dist/cli.js) in both modes: direct (`mpgen -I … -o … files`, compiling with
 * @multiprocess-ts/schema, or with `capnp` under `--capnp`) and as a Cap'n Proto plugin
 * (`capnp compile -o bin/capnpc-mpgen:outdir`).
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, FIXTURES, GEN_DIR, PROTO, PROTO_SCHEMAS, PROXY_SCHEMA, ROOT, tmpDir } from "./helpers.js";

/** An environment whose PATH holds only `node` (so no `capnp`). */
function nodeOnlyEnv(): NodeJS.ProcessEnv {
  const bin = tmpDir("nodeonly");
  fs.symlinkSync(fs.realpathSync(process.execPath), path.join(bin, "node"));
  return { PATH: bin, HOME: process.env["HOME"] ?? "/" };
}

describe("mpgen CLI", () => {
  it("direct mode writes <outdir>/<schema>.ts relative to the import root; /mp/proxy.capnp resolves without -I", () => {
    const out = tmpDir("cli");
    const r = spawnSync(process.execPath, [CLI, "-I", FIXTURES, "-o", out, path.join(FIXTURES, "features.capnp")], { encoding: "utf8" });
    expect(r.stderr).toContain("wrote");
    expect(r.status).toBe(0);
    const src = fs.readFileSync(path.join(out, "features.capnp.ts"), "utf8");
    expect(src).toBe(fs.readFileSync(path.join(FIXTURES, "expected/features.capnp.ts"), "utf8"));
    // A second run leaves the file alone.
    const again = spawnSync(process.execPath, [CLI, `-I${PROTO}`, `-I${FIXTURES}`, `-o${out}`, path.join(FIXTURES, "features.capnp")], { encoding: "utf8" });
    expect(again.status).toBe(0);
    expect(again.stderr).toContain("unchanged");
  });

  it("--print-include names the shipped folder holding mp/proxy.capnp", () => {
    const r = spawnSync(process.execPath, [CLI, "--print-include"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(path.join(GEN_DIR, "schema"));
    expect(fs.existsSync(path.join(r.stdout.trim(), "mp/proxy.capnp"))).toBe(true);
  });

  it("plugin mode: capnp compile -I $(mpgen --print-include) -o bin/capnpc-mpgen:outdir", () => {
    const out = tmpDir("plugin");
    const include = execFileSync(process.execPath, [CLI, "--print-include"], { encoding: "utf8" }).trim();
    execFileSync("capnp", ["compile", `-I${include}`, `--src-prefix=${FIXTURES}`, `-o${path.join(GEN_DIR, "bin/capnpc-mpgen")}:${out}`, path.join(FIXTURES, "features.capnp")], { stdio: "pipe" });
    const src = fs.readFileSync(path.join(out, "features.capnp.ts"), "utf8");
    expect(src).toBe(fs.readFileSync(path.join(FIXTURES, "expected/features.capnp.ts"), "utf8"));
  });

  it("default mode needs no capnp: proto/src regenerated with only node on PATH is unchanged", () => {
    const out = tmpDir("nocapnp-regen");
    const env = nodeOnlyEnv();
    const outProxy = tmpDir("nocapnp-regen-proxy");
    const rp = spawnSync(process.execPath, [CLI, "-o", outProxy, PROXY_SCHEMA], { cwd: ROOT, encoding: "utf8", env });
    expect(rp.status, rp.stderr).toBe(0);
    const r = spawnSync(process.execPath, [CLI, "-I", "proto", "-o", out, ...PROTO_SCHEMAS], { cwd: ROOT, encoding: "utf8", env });
    expect(r.status, r.stderr).toBe(0);
    expect(spawnSync("capnp", ["--version"], { env }).error).toBeDefined();
    expect(fs.readFileSync(path.join(outProxy, "mp/proxy.capnp.ts"), "utf8")).toBe(
      fs.readFileSync(path.join(ROOT, "packages/runtime/src/mp/proxy.capnp.ts"), "utf8"),
    );
    for (const f of ["test/foo.capnp.ts", "test/fixtures.capnp.ts", "example/init.capnp.ts", "example/calculator.capnp.ts", "example/printer.capnp.ts", "test/mappings.capnp.ts"]) {
      expect(fs.readFileSync(path.join(out, f), "utf8"), f).toBe(fs.readFileSync(path.join(PROTO, "src", f), "utf8"));
    }
  });

  it("--capnp compiles with the native capnp and writes the same code", () => {
    const out = tmpDir("capnp-flag");
    const r = spawnSync(process.execPath, [CLI, "--capnp", "-I", PROTO, "-I", FIXTURES, "-o", out, path.join(FIXTURES, "features.capnp")], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readFileSync(path.join(out, "features.capnp.ts"), "utf8")).toBe(fs.readFileSync(path.join(FIXTURES, "expected/features.capnp.ts"), "utf8"));
    const missing = spawnSync(process.execPath, [CLI, "--capnp", "-I", PROTO, "-o", out, path.join(FIXTURES, "features.capnp")], { encoding: "utf8", env: nodeOnlyEnv() });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^capnp compiler not found: install capnproto/);
  });

  it("a schema error: exit code 1 and file:line:col from the built-in compiler", () => {
    const dir = tmpDir("schema-error");
    const f = path.join(dir, "bad.capnp");
    fs.writeFileSync(f, "@0xd6b1fe6f1a3c5d11;\nstruct X {\n  a @0 :NoSuchType;\n}\n");
    const r = spawnSync(process.execPath, [CLI, "-I", dir, "-o", dir, f], { encoding: "utf8", env: nodeOnlyEnv() });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("bad.capnp:3:9: error: Not defined: NoSuchType");
  });

  it("missing compiler: exit code 1 and a clear message", () => {
    const r = spawnSync(process.execPath, [CLI, "-o", tmpDir("nocapnp"), path.join(FIXTURES, "features.capnp")], {
      encoding: "utf8", env: { ...process.env, MPGEN_CAPNP: "/nonexistent/capnp" },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^capnp compiler not found: install capnproto/);
  });

  it("unmappable annotation: exit code 1 and the mpgen message", () => {
    const r = spawnSync(process.execPath, [CLI, "-I", PROTO, "-I", FIXTURES, "-o", tmpDir("bad"), path.join(FIXTURES, "bad-count.capnp")], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe("mpgen: cannot map $Proxy.count(2) on field s: a TS proxy maps each field to exactly one value");
  });

  it("unknown option: usage and exit code 1", () => {
    const r = spawnSync(process.execPath, [CLI, "--frobnicate"], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("usage: mpgen");
  });
});
