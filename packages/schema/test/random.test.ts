/**
 * Randomly generated schemas (seeded; the seed is printed, rerun one with SCHEMA_SEED=<seed>)
 * compiled by capnp and by us must give the same CodeGeneratorRequest, node for node.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { oracle } from "./oracle.js";
import { randomSchema } from "./random.js";

const SEED = Number(process.env["SCHEMA_SEED"] ?? Date.now() % 2 ** 31);
const COUNT = Number(process.env["SCHEMA_RANDOM_COUNT"] ?? 30);

describe("random schemas match capnp", () => {
  it(`${COUNT} schemas from seed ${SEED}`, () => {
    console.log(`random schemas: seed ${SEED} (rerun with SCHEMA_SEED=${SEED})`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "schema-random-"));
    let nodes = 0;
    for (let i = 0; i < COUNT; i++) {
      const seed = SEED + i;
      const file = path.join(dir, `r${seed}.capnp`);
      fs.writeFileSync(file, randomSchema(seed));
      const r = oracle({ files: [file], srcPrefixes: [dir] });
      if (r.diffs.length > 0) {
        console.error(`schema seed ${seed} (${file}) differs from capnp:\n${r.diffs.join("\n")}\n--- schema ---\n${fs.readFileSync(file, "utf8")}`);
      }
      expect(r.diffs, `seed ${seed}`).toEqual([]);
      nodes += r.nodes;
    }
    console.log(`random schemas: ${COUNT} files, ${nodes} nodes, all equal to capnp's`);
    fs.rmSync(dir, { recursive: true });
  });
});
