/**
 * The oracle: for every schema of the corpus, our CodeGeneratorRequest equals the one
 * `capnp compile -o-` (0.9.2) writes, node for node (ids, names, scopes, nested nodes, layouts,
 * offsets, discriminants, defaults byte for byte, annotations, brands, source info), plus the
 * requested files' import tables and the version. Needs `capnp` on PATH (fails loudly without).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compile } from "../dist/index.js";
import { ROOT, SCHEMA_DIR, capnp, compareRequests, decodeRequest, oracle, type OracleCase } from "./oracle.js";

const PROTO = path.join(ROOT, "proto");
const FIXTURES = path.join(ROOT, "packages/gen/test/fixtures");
const INTEROP = path.join(ROOT, "test/interop/schema");
const OWN = path.join(SCHEMA_DIR, "test/schemas");
const capnpFiles = (dir: string): string[] => fs.readdirSync(dir).filter((f) => f.endsWith(".capnp")).map((f) => path.join(dir, f));

const CASES: [string, OracleCase][] = [
  ...["mp/proxy", "test/foo", "example/init", "example/calculator", "example/printer", "test/mappings"].map((f): [string, OracleCase] => [
    `proto/${f}.capnp`, { files: [path.join(PROTO, `${f}.capnp`)], importPaths: [PROTO], srcPrefixes: [PROTO] },
  ]),
  ["proto (all five, as `pnpm gen`)", {
    files: ["mp/proxy", "test/foo", "example/init", "example/calculator", "example/printer"].map((f) => path.join(PROTO, `${f}.capnp`)),
    importPaths: [PROTO], srcPrefixes: [PROTO],
  }],
  ...capnpFiles(FIXTURES).map((f): [string, OracleCase] => [
    path.relative(ROOT, f), { files: [f], importPaths: [PROTO, FIXTURES], srcPrefixes: [FIXTURES] },
  ]),
  ...capnpFiles(INTEROP).map((f): [string, OracleCase] => [
    path.relative(ROOT, f), { files: [f], importPaths: [PROTO], srcPrefixes: [INTEROP] },
  ]),
  ...["schema", "rpc", "rpc-twoparty", "persistent", "c++", "stream", "compat/json"].map((f): [string, OracleCase] => [
    `/usr/include/capnp/${f}.capnp`, { files: [`/usr/include/capnp/${f}.capnp`], srcPrefixes: ["/usr/include"] },
  ]),
  ...capnpFiles(OWN).map((f): [string, OracleCase] => [path.relative(ROOT, f), { files: [f], srcPrefixes: [OWN] }]),
];

const figures: string[] = [];

describe("oracle: our CodeGeneratorRequest equals capnp compile -o-", () => {
  it("capnp is installed and is 0.9.2", () => {
    expect(capnp(["--version"]).toString().trim()).toBe("Cap'n Proto version 0.9.2");
  });

  for (const [name, c] of CASES) {
    it(name, () => {
      const r = oracle(c);
      figures.push(`${name}: ${r.matched}/${r.nodes} nodes match${r.diffs.length > 0 ? ` (${r.diffs.length} differences)` : ""}`);
      if (r.diffs.length > 0) console.error(`${name}: differences from capnp\n${r.diffs.join("\n")}`);
      expect(r.diffs).toEqual([]);
      expect(r.matched).toBe(r.nodes);
      expect(r.nodes).toBeGreaterThan(0);
    });
  }

  it("the comparison itself reports a changed offset, default, id or doc comment", () => {
    const c = { files: [path.join(OWN, "edge.capnp")], srcPrefixes: [OWN] };
    const ours = decodeRequest(compile(c));
    const theirs = decodeRequest(new Uint8Array(capnp(["compile", "-o-", `--src-prefix=${OWN}`, ...c.files])));
    expect(compareRequests(theirs, ours).diffs).toEqual([]);
    const nodes = ours["nodes"] as Record<string, unknown>[];
    const defaults = nodes.find((n) => n["displayName"] === "edge.capnp:Defaults")!;
    const fields = (defaults["struct"] as { fields: { slot: { offset: number; defaultValue: Record<string, unknown> } }[] }).fields;
    fields[0]!.slot.offset += 1;
    fields[9]!.slot.defaultValue["struct"] = "ptr:(07|)";
    nodes.find((n) => n["displayName"] === "edge.capnp:Color")!["id"] = "0x1";
    (ours["sourceInfo"] as Record<string, unknown>[])[0]!["docComment"] = "changed";
    const r = compareRequests(theirs, ours);
    const text = r.diffs.join("\n");
    expect(text).toMatch(/node edge\.capnp:Defaults .*\n.*\.struct\.fields\.0\.slot\.offset: capnp=0 ours=1/);
    expect(text).toContain(".struct.fields.9.slot.defaultValue.struct: capnp=");
    expect(text).toMatch(/node edge\.capnp:Color \(0x[0-9a-f]+\): missing from ours/);
    expect(text).toContain("not in capnp's output");
    expect(text).toContain("docComment: capnp=");
    expect(r.matched).toBe(r.nodes - 2);
  });

  afterAll(() => { console.log(`schema oracle corpus:\n  ${figures.join("\n  ")}`); });
});
