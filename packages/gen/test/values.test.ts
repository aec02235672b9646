/**
 * mpgen's value mappings at the generator level: proto/test/mappings.capnp and the fixture
 * fixtures/values.capnp generate code that type-checks under strict + noUnusedParameters +
 * noUnusedLocals + exactOptionalPropertyTypes + noUncheckedIndexedAccess (generic structs with an
 * unused parameter, two parameters, a union, a union of a generic group); the built-in and the
 * native compiler give the same code; consts and defaults that need special spelling (infinities,
 * NaN, -0, reserved words, maps, nested lists, generic struct values) load with the right values;
 * structs nested in a generic struct see its parameter.
 * The `--capnp` comparison needs `capnp` on PATH (fails loudly otherwise).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as $ from "capnp-ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, FIXTURES, PROTO, ROOT, tmpDir, typecheck } from "./helpers.js";

const MAPPINGS = "proto/test/mappings.capnp";

function gen(args: string[]): string {
  const out = tmpDir("values");
  const r = spawnSync(process.execPath, [CLI, ...args.slice(0, -1), "-o", out, args[args.length - 1]!], { cwd: ROOT, encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return out;
}

describe("value mappings: generated code", () => {
  it("mappings.capnp: the native capnp and the built-in compiler give the committed code", () => {
    const committed = fs.readFileSync(path.join(PROTO, "src/test/mappings.capnp.ts"), "utf8");
    expect(fs.readFileSync(path.join(gen(["-I", "proto", MAPPINGS]), "test/mappings.capnp.ts"), "utf8")).toBe(committed);
    expect(fs.readFileSync(path.join(gen(["--capnp", "-I", "proto", MAPPINGS]), "test/mappings.capnp.ts"), "utf8")).toBe(committed);
  });

  it("mappings.capnp and values.capnp type-check under strict, noUnused*, exactOptionalPropertyTypes, noUncheckedIndexedAccess", () => {
    const dir = tmpDir("values-tsc");
    fs.copyFileSync(path.join(PROTO, "src/test/mappings.capnp.ts"), path.join(dir, "mappings.capnp.ts"));
    fs.copyFileSync(path.join(gen(["-I", FIXTURES, path.join(FIXTURES, "values.capnp")]), "values.capnp.ts"), path.join(dir, "values.capnp.ts"));
    // Uses of the generic types, as an application writes them.
    fs.writeFileSync(path.join(dir, "use.ts"), [
      `import type { Expected, Pair, Result, ResultVoid } from "./mappings.capnp.js";`,
      `import type { Box, BoxInit } from "./values.capnp.js";`,
      `export const r: Result<number> = { value: 1, error: "" };`,
      `export const v: ResultVoid<number> = { error: "" };`,
      `export const p: Pair<string, bigint> = { key: "k", value: 1n };`,
      `export const e: Expected<number, string> = { which: "error", error: "x" };`,
      `export const b: BoxInit<string> = { which: "some", some: { value: "v" } };`,
      `export function get(x: Box<string>): string { return x.which === "some" ? x.some.value : x.label; }`,
      "",
    ].join("\n"));
    expect(typecheck(dir)).toBe("");
  });
});

describe("value mappings: values.capnp loaded", () => {
  let dir: string;
  let V: any;

  beforeAll(async () => {
    dir = gen(["-I", FIXTURES, path.join(FIXTURES, "values.capnp")]);
    fs.symlinkSync(path.join(PROTO, "node_modules"), path.join(dir, "node_modules"), "dir");
    V = await import(path.join(dir, "values.capnp.ts"));
  });

  afterAll(() => {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("consts: infinities, NaN, -0, a reserved word, maps, nested lists, structs holding generic structs", () => {
    expect([V.inf, V.negInf, V.notANumber, Object.is(V.negZero, -0), V.delete_]).toEqual([Infinity, -Infinity, NaN, true, 5]);
    expect(V.table).toEqual(new Map([["a", 1], ["b", 2]]));
    expect(V.nested).toEqual([["a"], [], ["b", "c"]]);
    expect(V.boxed).toEqual({ label: "b", which: "some", some: { value: "v", count: 1 } });
    const emptyHolder = {
      box: { label: "box", which: "some", some: { value: "", count: 1 } }, floats: { a: Infinity, b: NaN },
      entries: new Map([["x", 9]]), kind: { which: "one", one: -1 },
    };
    expect(V.empty).toEqual(emptyHolder);
    // A zeroed struct reads the same defaults as the const of an empty value.
    expect(V.readHolder(new $.Message().initRoot(V.Holder$Struct))).toEqual(emptyHolder);
  });

  it("partial writer inputs read back complete, inside generic structs and named unions too", () => {
    const s = new $.Message().initRoot(V.Holder$Struct);
    V.writeHolder(s, { box: { which: "none" }, floats: { b: 1 }, kind: { which: "two", two: "2" } });
    expect(V.readHolder(s)).toEqual({
      box: { label: "box", which: "none" }, floats: { a: Infinity, b: 1 }, entries: new Map([["x", 9]]), kind: { which: "two", two: "2" },
    });
    // A struct nested in a generic struct, bound through its parent (`Outer(Data).Inner`) or used inside it.
    const u = new $.Message().initRoot(V.UsesOuter$Struct);
    V.writeUsesOuter(u, { outer: { inner: { item: "i" }, items: [{ item: "a", n: 1 }] }, direct: { item: new Uint8Array([7]) } });
    expect(V.readUsesOuter(u)).toEqual({
      outer: { inner: { item: "i", n: 3 }, items: [{ item: "a", n: 1 }] }, direct: { item: new Uint8Array([7]), n: 3 },
    });
  });
});
