/**
 * Randomly generated schemas (seeded; the seed is printed, rerun one with SCHEMA_SEED=<seed>)
 * compiled by capnp and by us must give the same CodeGeneratorRequest, node for node. The seed is
 * new on every local run; under CI=true it is fixed (see schemaSeed) so a CI result can be rerun.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { SchemaError, compile } from "../dist/index.js";
import { SCHEMA_DIR, capnp, oracle, type Comparison } from "./oracle.js";
import { randomSchema, rng, schemaSeed } from "./random.js";

const SEED = schemaSeed();
const COUNT = Number(process.env["SCHEMA_RANDOM_COUNT"] ?? 30);

describe("random schemas match capnp", () => {
  it(`${COUNT} schemas from seed ${SEED}`, () => {
    console.log(`random schemas: seed ${SEED} (rerun with SCHEMA_SEED=${SEED})`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "schema-random-"));
    let nodes = 0;
    let rejected = 0;
    for (let i = 0; i < COUNT; i++) {
      const seed = SEED + i;
      const file = path.join(dir, `r${seed}.capnp`);
      fs.writeFileSync(file, randomSchema(seed));
      let r: Comparison;
      try {
        r = oracle({ files: [file], srcPrefixes: [dir] });
      } catch (e) {
        // capnp refuses a few layouts (capnproto issue 344); we must refuse them too.
        expect(String(e), `seed ${seed}`).toMatch(/capnp compile .* failed[\s\S]*issues\/344/);
        expect(() => compile({ files: [file], srcPrefixes: [dir] }), `seed ${seed}`).toThrow(SchemaError);
        expect(() => compile({ files: [file], srcPrefixes: [dir] }), `seed ${seed}`).toThrow(/issues\/344/);
        rejected++;
        continue;
      }
      if (r.diffs.length > 0) {
        console.error(`schema seed ${seed} (${file}) differs from capnp:\n${r.diffs.join("\n")}\n--- schema ---\n${fs.readFileSync(file, "utf8")}`);
      }
      expect(r.diffs, `seed ${seed}`).toEqual([]);
      nodes += r.nodes;
    }
    console.log(`random schemas: ${COUNT} files, ${nodes} nodes, all equal to capnp's; ${rejected} rejected by both (issue 344)`);
    fs.rmSync(dir, { recursive: true });
  }, Math.max(60_000, COUNT * 500));
});

describe("damaged schemas: rejected exactly when capnp rejects them", () => {
  it(`60 damaged copies of edge.capnp from seed ${SEED}`, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "schema-damaged-"));
    const own = path.join(SCHEMA_DIR, "test/schemas");
    fs.copyFileSync(path.join(own, "imported.capnp"), path.join(dir, "imported.capnp"));
    const text = fs.readFileSync(path.join(own, "edge.capnp"), "utf8");
    const r = rng(SEED);
    const counts = { accepted: 0, rejected: 0 };
    for (let i = 0; i < 60; i++) {
      const at = Math.floor(r() * text.length);
      const junk = ["", "{", "}", ";", "(", ")", "@", "$", ":", "=", "\"", "#", "x", "0", "[", "union", "Int32", "A", "1"][Math.floor(r() * 19)]!;
      const file = path.join(dir, `d${i}.capnp`);
      fs.writeFileSync(file, text.slice(0, at) + junk + text.slice(at + Math.floor(r() * 6)));
      let capnpOk = true;
      try { capnp(["compile", "-o-", `--src-prefix=${dir}`, file]); } catch { capnpOk = false; }
      if (capnpOk) {
        expect(oracle({ files: [file], srcPrefixes: [dir] }).diffs, `seed ${SEED} case ${i}`).toEqual([]);
        counts.accepted++;
      } else {
        expect(() => compile({ files: [file], srcPrefixes: [dir] }), `seed ${SEED} case ${i}: capnp rejects it`).toThrow(SchemaError);
        counts.rejected++;
      }
    }
    console.log(`damaged schemas: ${counts.accepted} accepted by both and equal, ${counts.rejected} rejected by both`);
    fs.rmSync(dir, { recursive: true });
  });
});
