/**
 * The generated code committed under proto/src and packages/runtime/src/mp must be exactly what
 * `pnpm gen` produces from the schemas under proto/ and packages/gen/schema (same command lines as
 * the root package.json script). Fails on any difference, a missing file, or a stale generated
 * file. Fix: `pnpm gen` and commit.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, PROTO, PROTO_SCHEMAS, PROXY_SCHEMA, ROOT, tmpDir } from "./helpers.js";

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
    expect(pkg.scripts["gen"]).toContain(`-o packages/runtime/src ${PROXY_SCHEMA} `);
    expect(pkg.scripts["gen"]).toContain(`-I proto -o proto/src ${PROTO_SCHEMAS.join(" ")}`);
    const out = tmpDir("regen");
    const r = spawnSync(process.execPath, [CLI, "-I", "proto", "-o", out, ...PROTO_SCHEMAS], { cwd: ROOT, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const fresh = capnpTs(out);
    expect(fresh).toEqual(["example/calculator.capnp.ts", "example/init.capnp.ts", "example/printer.capnp.ts", "test/fixtures.capnp.ts", "test/foo.capnp.ts", "test/mappings.capnp.ts"]);
    expect(capnpTs(path.join(PROTO, "src"))).toEqual(fresh);
    for (const f of fresh) {
      const committed = fs.readFileSync(path.join(PROTO, "src", f), "utf8");
      expect(committed, `proto/src/${f} is stale: run pnpm gen`).toBe(fs.readFileSync(path.join(out, f), "utf8"));
    }
  });

  it("packages/runtime/src/mp/proxy.capnp.ts matches a fresh `pnpm gen` of the shipped mp/proxy.capnp", () => {
    const out = tmpDir("regen-proxy");
    const r = spawnSync(process.execPath, [CLI, "-o", out, PROXY_SCHEMA], { cwd: ROOT, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(capnpTs(out)).toEqual(["mp/proxy.capnp.ts"]);
    const committed = fs.readFileSync(path.join(ROOT, "packages/runtime/src/mp/proxy.capnp.ts"), "utf8");
    expect(committed, "packages/runtime/src/mp/proxy.capnp.ts is stale: run pnpm gen").toBe(fs.readFileSync(path.join(out, "mp/proxy.capnp.ts"), "utf8"));
  });
});
