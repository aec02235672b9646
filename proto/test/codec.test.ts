/**
 * Wire compatibility of the generated struct classes and converters with the C++ Cap'n Proto
 * implementation: values written by TS are decoded by `capnp decode`, and messages produced by
 * `capnp encode` are read by TS. Covers foo.capnp's FooStruct (lists, optional, map) and the mpgen
 * golden fixture (defaults XOR-masks, every scalar type, groups, unions, generic map entries).
 * Needs `capnp` on PATH (fails loudly otherwise).
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as $ from "capnp-ts";
import { describe, expect, it } from "vitest";
import { FooStruct$Struct, readFooStruct, writeFooStruct, type FooStruct } from "@multiprocess-ts/proto/test/foo.capnp.js";

const PROTO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const FIXTURES = path.resolve(PROTO, "../packages/gen/test/fixtures");

function decode(schema: string, type: string, bytes: ArrayBuffer, imports: string[] = [PROTO]): string {
  return execFileSync("capnp", ["decode", "--short", ...imports.map((i) => `-I${i}`), schema, type], { input: new Uint8Array(bytes), encoding: "utf8" }).trim();
}

function encode(schema: string, type: string, text: string, imports: string[] = [PROTO]): Uint8Array {
  return new Uint8Array(execFileSync("capnp", ["encode", ...imports.map((i) => `-I${i}`), schema, type], { input: text }));
}

describe("struct codec ↔ capnp (C++)", () => {
  const fooSchema = path.join(PROTO, "test/foo.capnp");

  it("FooStruct written by TS decodes with capnp decode", () => {
    const msg = new $.Message();
    const s = msg.initRoot(FooStruct$Struct);
    writeFooStruct(s, {
      name: "héllo", setInt: [3, -1], vectorBool: [true, false, true], optionalInt: 7, unorderedSetInt: [],
      mapStringInt: new Map([["a", 1], ["b", 2]]),
    });
    expect(decode(fooSchema, "FooStruct", msg.toArrayBuffer())).toBe(
      '(name = "héllo", setInt = [3, -1], vectorBool = [true, false, true], optionalInt = 7, hasOptionalInt = true, ' +
        'unorderedSetInt = [], mapStringInt = [(first = "a", second = 1), (first = "b", second = 2)])',
    );
  });

  it("FooStruct encoded by capnp encode reads in TS", () => {
    const bytes = encode(fooSchema, "FooStruct", '(name = "x", setInt = [5], mapStringInt = [(first = "k", second = -9)])');
    const s = new $.Message(bytes, false).getRoot(FooStruct$Struct);
    const v: FooStruct = readFooStruct(s);
    expect(v).toEqual({ name: "x", setInt: [5], vectorBool: [], optionalInt: undefined, unorderedSetInt: [], mapStringInt: new Map([["k", -9]]) });
  });

  it("golden fixture: defaults, scalars, groups, unions and generic entries round-trip with C++", async () => {
    // Load the golden output (packages/gen/test/fixtures/expected) in a temp dir whose node_modules
    // points at proto's, so its runtime imports (including mp/proxy.capnp) resolve.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mpgen-codec-"));
    fs.copyFileSync(path.join(FIXTURES, "expected/features.capnp.ts"), path.join(dir, "features.capnp.ts"));
    fs.symlinkSync(path.join(PROTO, "node_modules"), path.join(dir, "node_modules"), "dir");
    const F: any = await import(path.join(dir, "features.capnp.ts"));
    const schema = path.join(FIXTURES, "features.capnp");
    const imports = [PROTO, FIXTURES];

    // A zeroed struct reads the schema defaults (XOR masks).
    const empty = new $.Message().initRoot(F.Scalars$Struct);
    const d = F.readScalars(empty);
    expect([d.i8, d.i32, d.i64, d.u64, d.f32, d.flag, d.color, d.text]).toEqual([-3, 42, -5n, 7n, 1.5, true, F.Color.green, "hi"]);
    expect(decode(schema, "Scalars", (empty.segment.message as $.Message).toArrayBuffer(), imports)).toBe(
      '(i8 = -3, i16 = 0, i32 = 42, i64 = -5, u8 = 0, u16 = 0, u32 = 0, u64 = 7, f32 = 1.5, f64 = 0, flag = true, color = green, text = "hi", data = "", nested = [], colors = [], texts = [], cppName = 0, hidden = 0)',
    );

    const msg = new $.Message();
    const s = msg.initRoot(F.Scalars$Struct);
    F.writeScalars(s, {
      i8: -128, i16: 300, i32: 0, i64: -(2n ** 63n), u8: 255, u16: 65535, u32: 4294967295, u64: 2n ** 64n - 1n,
      f32: 0, f64: -2.5, flag: false, color: F.Color.blue, text: "", data: new Uint8Array([1, 2]),
      nested: [[1], [], [2, 3]], colors: [F.Color.red, F.Color.green], texts: ["a", "b"], renamedField: 9,
    });
    expect(decode(schema, "Scalars", msg.toArrayBuffer(), imports)).toBe(
      '(i8 = -128, i16 = 300, i32 = 0, i64 = -9223372036854775808, u8 = 255, u16 = 65535, u32 = 4294967295, ' +
        'u64 = 18446744073709551615, f32 = 0, f64 = -2.5, flag = false, color = blue, text = "", data = "\\001\\002", ' +
        'nested = [[1], [], [2, 3]], colors = [red, green], texts = ["a", "b"], cppName = 9, hidden = 0)',
    );
    // Out-of-range values are refused on write.
    expect(() => F.writeScalars(new $.Message().initRoot(F.Scalars$Struct), { ...F.readScalars(s), u8: 256 })).toThrow(RangeError);
    expect(() => F.writeScalars(new $.Message().initRoot(F.Scalars$Struct), { ...F.readScalars(s), i64: 2n ** 63n })).toThrow(RangeError);
    expect(() => F.writeScalars(new $.Message().initRoot(F.Scalars$Struct), { ...F.readScalars(s), u64: -1n })).toThrow(RangeError);

    const shapeBytes = encode(schema, "Shape", '(name = "c", origin = (x = 1, y = 2), square = 4)', imports);
    const shape = F.readShape(new $.Message(shapeBytes, false).getRoot(F.Shape$Struct));
    expect(shape).toEqual({ name: "c", origin: { x: 1, y: 2 }, which: "square", square: 4 });
    const sm = new $.Message();
    F.writeShape(sm.initRoot(F.Shape$Struct), { name: "r", origin: { x: -1, y: 0.5 }, which: "circle", circle: 3 });
    expect(decode(schema, "Shape", sm.toArrayBuffer(), imports)).toBe('(name = "r", origin = (x = -1, y = 0.5), circle = 3)');
    // A Void union member is selected by its tag alone.
    const vm = new $.Message();
    F.writeShape(vm.initRoot(F.Shape$Struct), { name: "v", origin: { x: 0, y: 0 }, which: "none" });
    expect(decode(schema, "Shape", vm.toArrayBuffer(), imports)).toBe('(name = "v", origin = (x = 0, y = 0), none = void)');
    expect(F.readShape(new $.Message(encode(schema, "Shape", "(none = void)", imports), false).getRoot(F.Shape$Struct)).which).toBe("none");
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
