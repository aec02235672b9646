/**
 * The generated code committed under proto/src must be exactly what `pnpm gen` produces from the
 * schemas under proto/ (same command line as the root package.json script). Fails on any
 * difference, a missing file, or a stale generated file. Fix: `pnpm gen` and commit.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, PROTO, PROTO_SCHEMAS, ROOT, tmpDir } from "./helpers.js";

function capnpTs(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...capnpTs(p, base));
    else if (e.name.endsWith(".capnp.ts")) out.push(path.relative(base, p));
  }
  return out.sort();
}

describe("proto/src is up to date", () => {
  it("matches a fresh `pnpm gen`", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
    for (const s of PROTO_SCHEMAS) expect(pkg.scripts["gen"]).toContain(s);
    const out = tmpDir("regen");
    const r = spawnSync(process.execPath, [CLI, "-I", "proto", "-o", out, ...PROTO_SCHEMAS], { cwd: ROOT, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const fresh = capnpTs(out);
    expect(fresh).toEqual(["example/calculator.capnp.ts", "example/init.capnp.ts", "example/printer.capnp.ts", "mp/proxy.capnp.ts", "test/fixtures.capnp.ts", "test/foo.capnp.ts"]);
    expect(capnpTs(path.join(PROTO, "src"))).toEqual(fresh);
    for (const f of fresh) {
      const committed = fs.readFileSync(path.join(PROTO, "src", f), "utf8");
      expect(committed, `proto/src/${f} is stale: run pnpm gen`).toBe(fs.readFileSync(path.join(out, f), "utf8"));
    }
  });
});
