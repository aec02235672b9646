/**
 * The mpgen CLI (dist/cli.js) in both modes: direct (`mpgen -I … -o … files`, runs capnp itself)
 * and as a Cap'n Proto plugin (`capnp compile -o bin/capnpc-mpgen:outdir`).
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, FIXTURES, GEN_DIR, PROTO, tmpDir } from "./helpers.js";

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
