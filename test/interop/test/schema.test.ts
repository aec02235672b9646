// The hand-written structs in src/schema.ts must match schema/conformance.capnp: ids, data and
// pointer section sizes, interface ids and method ordinals, as `capnp compile -o-` reports them.
// Also builds the C++ peer (fails loudly when capnp, g++ or pkg-config is missing).
import { execFile, execFileSync } from "node:child_process";
import { join } from "node:path";
import * as capnp from "capnp-ts";
import { CodeGeneratorRequest } from "capnp-ts/src/std/schema.capnp.js";
import { describe, expect, it } from "vitest";
import { buildPeer, INTEROP_ROOT, SCHEMA_PATH, schema } from "@multiprocess-ts/test-interop";

function compiledNodes() {
  const out = execFileSync("capnp", ["compile", "-o-", SCHEMA_PATH]);
  const msg = new capnp.Message(new Uint8Array(out), false);
  const req = msg.getRoot(CodeGeneratorRequest);
  return req.getNodes().toArray();
}

describe("conformance schema", () => {
  it("hand-written struct ids and sizes match capnp compile", () => {
    const nodes = new Map(compiledNodes().map((n) => [n.getId(), n]));
    const seen = new Set<bigint>();
    for (const { ctor, alsoIds } of schema.STRUCTS) {
      for (const id of [BigInt("0x" + ctor._capnp.id), ...(alsoIds ?? [])]) {
        const node = nodes.get(id);
        expect(node, `struct id ${id.toString(16)}`).toBeDefined();
        expect(node!.isStruct()).toBe(true);
        const st = node!.getStruct();
        expect({ id: id.toString(16), data: st.getDataWordCount() * 8, ptrs: st.getPointerCount() })
          .toEqual({ id: id.toString(16), data: ctor._capnp.size.dataByteLength, ptrs: ctor._capnp.size.pointerLength });
        seen.add(id);
      }
    }
    // Every struct of the schema is covered.
    const all = [...nodes.values()].filter((n) => n.isStruct()).map((n) => n.getDisplayName());
    const missing = [...nodes.values()].filter((n) => n.isStruct() && !seen.has(n.getId())).map((n) => n.getDisplayName());
    expect(missing, `of ${all.length}`).toEqual([]);
  });

  it("interface ids and method ordinals match capnp compile", () => {
    const byName = new Map(compiledNodes().filter((n) => n.isInterface()).map((n) => [n.getDisplayName().split(":")[1], n]));
    const check = (name: string, id: bigint, methods: Record<string, number>) => {
      const node = byName.get(name);
      expect(node?.getId()).toBe(id);
      const actual = Object.fromEntries(node!.getInterface().getMethods().toArray().map((m, i) => [m.getName(), i]));
      expect(actual).toEqual(methods);
    };
    check("Callback", schema.CALLBACK_ID, schema.CallbackMethod);
    check("Counter", schema.COUNTER_ID, schema.CounterMethod);
    check("Calc", schema.CALC_ID, schema.CalcMethod);
  });

  it("the C++ peer builds against libcapnp-rpc", async () => {
    const bin = await buildPeer();
    expect(bin).toMatch(/peer-[0-9a-f]{16}$/);
  });

  it("building the peer without the tools fails loudly, naming the missing tool", async () => {
    const entry = join(INTEROP_ROOT, "dist", "index.js");
    const script = `import(${JSON.stringify(entry)}).then((m) => m.buildPeer()).then(() => process.exit(0), (e) => { console.error(e.message); process.exit(3); });`;
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, ["-e", script], { env: { PATH: "/nonexistent" } }, (err, _out, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stderr }));
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/required tool "capnp" is not installed/);
  });
});
