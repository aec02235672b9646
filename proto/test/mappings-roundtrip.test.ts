/**
 * mpgen's value mappings (docs/mpgen.md "Defaults, unions, consts and generics"), end to end on
 * proto/test/mappings.capnp: defaulted params left out by the client arrive as their defaults at
 * the server; partial struct inputs read back complete; consts equal what `capnp eval` encodes;
 * every union variant (unnamed, named, group member, union inside a group, generic) written and
 * read, with compile-time narrowing (checked by `pnpm typecheck`); generic structs. Wire checks
 * against the C++ implementation use `capnp encode` / `decode` / `eval` (needs `capnp` on PATH,
 * fails loudly otherwise).
 *
 * Threading: loop thread (the test's thread); the client and server run on two event loops of it.
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as $ from "capnp-ts";
import { createTestSetup, type TestSetup } from "@multiprocess-ts/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as M from "@multiprocess-ts/proto/test/mappings.capnp.js";
import type { Expected, Generics, GenericsInit, Inner, Mapper, Options, OptionsInit, Shape } from "@multiprocess-ts/proto/test/mappings.capnp.js";

const PROTO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SCHEMA = path.join(PROTO, "test/mappings.capnp");
const INCLUDES = [`-I${PROTO}`, `-I${path.join(PROTO, "../packages/gen/schema")}`];

function capnp(args: string[], input?: Uint8Array | string): Buffer {
  return execFileSync("capnp", [...args.slice(0, 1), ...INCLUDES, ...args.slice(1)], input === undefined ? {} : { input });
}

/** Every Options field at its schema default (`plain` has none: 0). */
const DEFAULT_OPTIONS: Options = {
  timeout: Number.MAX_VALUE, precious: false, retries: 3, label: "none", level: M.Level.mid, tags: ["x", "y"],
  blob: new Uint8Array([0xaa, 0xbb]), inner: { a: 5, b: "in" }, big: -9000000000n, ratio: 0.5, plain: 0,
};

class MapperImpl implements Mapper {
  readonly sent: unknown[][] = [];
  readonly received: Options[] = [];
  send(data: string, timeout: number, precious: boolean, retries: number, label: string): OptionsInit {
    this.sent.push([data, timeout, precious, retries, label]);
    return { timeout, precious, retries, label, plain: data.length };
  }
  configure(options: Options): OptionsInit {
    this.received.push(options);
    return options;
  }
  middle(a: number, b: number): number { return a * 100 + b; }
  withOptions(options: Options): OptionsInit {
    this.received.push(options);
    return options;
  }
  shape(shape: Shape): Shape { return shape; }
  generics(g: Generics): GenericsInit { return g; }
  expected(e: Expected<Inner, string>): Expected<Inner, string> { return e; }
  blank(): { options: OptionsInit; shape: Shape } {
    return { options: { plain: 0 }, shape: { name: "", style: { which: "solid", solid: 0 }, meta: { id: 0, which: "byName", byName: "" }, which: "circle", circle: 0 } };
  }
}

const SHAPES: Shape[] = [
  { name: "c", style: { which: "solid", solid: 7 }, meta: { id: 1, which: "byName", byName: "x" }, which: "circle", circle: 2.5 },
  { name: "s", style: { which: "dashed" }, meta: { id: 2, which: "byIndex", byIndex: -4 }, which: "square", square: { side: 3, filled: true } },
  { name: "n", style: { which: "dashed" }, meta: { id: 3, which: "byName", byName: "" }, which: "none" },
  { name: "l", style: { which: "solid", solid: 0 }, meta: { id: 4, which: "byIndex", byIndex: 0 }, which: "label", label: "hi" },
  { name: "p", style: { which: "solid", solid: 1 }, meta: { id: 5, which: "byName", byName: "y" }, which: "points", points: [1, -2, 3] },
];

describe("mappings.capnp through a connection (generated proxies, TS ↔ TS)", () => {
  let s: TestSetup<MapperImpl, M.MapperClient>;
  let impl: MapperImpl;
  let client: M.MapperClient;

  beforeEach(async () => {
    s = await createTestSetup({ impl: new MapperImpl(), Server: M.MapperServer, Client: M.MapperClient });
    ({ impl, client } = s);
  });

  // The leak check: RPC tables empty, loops idle, impl disposed once, no error log lines.
  afterEach(() => s.dispose());

  it("defaulted params left out arrive as their defaults (a const-named default included)", async () => {
    expect(await client.send("abc")).toEqual({ ...DEFAULT_OPTIONS, plain: 3 });
    expect(await client.send("de", 1.5, true)).toEqual({ ...DEFAULT_OPTIONS, timeout: 1.5, precious: true, plain: 2 });
    expect(await client.send("f", undefined, undefined, 0, "")).toEqual({ ...DEFAULT_OPTIONS, retries: 0, label: "", plain: 1 });
    expect(impl.sent).toEqual([
      ["abc", M.maxDouble, false, 3, "none"],
      ["de", 1.5, true, 3, "none"],
      ["f", M.maxDouble, false, 0, ""],
    ]);
    // A defaulted param before a required one takes `undefined` for its default.
    expect(await client.middle(undefined, 2)).toBe(702);
    expect(await client.middle(1, 2)).toBe(102);
    // A struct param with a struct default: left out, the server reads the default value; given,
    // its own fields' defaults apply.
    expect(await client.withOptions()).toEqual({ ...DEFAULT_OPTIONS, retries: 9, label: "param" });
    expect(await client.withOptions({ plain: 1, label: "x" })).toEqual({ ...DEFAULT_OPTIONS, plain: 1, label: "x" });
  });

  it("partial structs are completed with their defaults; given values, empty lists included, are kept", async () => {
    expect(await client.configure({ plain: 7 })).toEqual({ ...DEFAULT_OPTIONS, plain: 7 });
    const partial: OptionsInit = { plain: -1, tags: [], inner: { b: "q" }, blob: new Uint8Array(0), precious: true, level: M.Level.low };
    const full = { ...DEFAULT_OPTIONS, plain: -1, tags: [], inner: { a: 1, b: "q" }, blob: new Uint8Array(0), precious: true, level: M.Level.low };
    expect(await client.configure(partial)).toEqual(full);
    expect(impl.received).toEqual([{ ...DEFAULT_OPTIONS, plain: 7 }, full]);
    // Results the server leaves unset read as their defaults.
    expect((await client.blank()).options).toEqual(DEFAULT_OPTIONS);
  });

  it("every union variant round-trips, and narrows on `which`", async () => {
    for (const shape of SHAPES) expect(await client.shape(shape)).toEqual(shape);
    const r = await client.shape(SHAPES[1]!);
    // Compile-time narrowing (pnpm typecheck): after the tag check the member is typed.
    if (r.which !== "square") throw new Error("expected a square");
    const side: number = r.square.side;
    expect(side).toBe(3);
    if (r.meta.which === "byIndex") expect(r.meta.byIndex).toBe(-4);
    // @ts-expect-error `circle` is not a member of the `square` alternative
    const wrong: Shape = { name: "w", style: { which: "dashed" }, meta: { id: 0, which: "byName", byName: "" }, which: "square", circle: 1 };
    // @ts-expect-error `which` is required
    const untagged: Shape = { name: "w", style: { which: "dashed" }, meta: { id: 0, which: "byName", byName: "" }, circle: 1 };
    // A `which` naming no member (possible from JS) is refused with a RangeError, nothing is sent.
    await expect(client.shape({ ...wrong, which: "triangle" } as unknown as Shape)).rejects.toThrow(/triangle is not a union member of Shape/);
    expect(untagged.name).toBe("w");
  });

  it("generic structs (unused parameter, two parameters, a union) round-trip with struct inputs completed", async () => {
    const g: GenericsInit = {
      result: { value: "v", error: "" },
      resultVoid: { error: "e" },
      pair: { key: "k", value: { b: "pv" } },
      expected: { which: "value", value: { a: 2, b: "y" } },
      expectedList: { which: "error", error: { plain: 4 } },
    };
    expect(await client.generics(g)).toEqual({
      ...g, pair: { key: "k", value: { a: 1, b: "pv" } }, expectedList: { which: "error", error: { ...DEFAULT_OPTIONS, plain: 4 } },
    });
    const listed: GenericsInit = { ...g, expectedList: { which: "value", value: [1, 2] } };
    expect((await client.generics(listed)).expectedList).toEqual({ which: "value", value: [1, 2] });
    expect(await client.expected({ which: "error", error: "bad" })).toEqual({ which: "error", error: "bad" });
    const e = await client.expected({ which: "value", value: { b: "z" } });
    if (e.which === "value") expect(e.value.a).toBe(1);
    else throw new Error("expected a value");
  });
});

describe("mappings.capnp on the wire (C++ capnp encode / decode / eval)", () => {
  it("an Options written with every defaulted field left out reads in C++ as the schema defaults", () => {
    const msg = new $.Message();
    M.writeOptions(msg.initRoot(M.Options$Struct), { plain: 2 });
    expect(capnp(["decode", "--short", SCHEMA, "Options"], new Uint8Array(msg.toArrayBuffer())).toString().trim()).toBe(
      // Data fields show their defaults; capnp's text format leaves out null pointers, which C++
      // getters read as the pointer defaults.
      "(timeout = 1.7976931348623157e308, precious = false, retries = 3, level = mid, big = -9000000000, ratio = 0.5, plain = 2)",
    );
    // And a C++ message without those fields reads them back as the defaults (pointer defaults included).
    const bytes = new Uint8Array(capnp(["encode", SCHEMA, "Options"], "(plain = 5)"));
    expect(M.readOptions(new $.Message(bytes, false).getRoot(M.Options$Struct))).toEqual({ ...DEFAULT_OPTIONS, plain: 5 });
  });

  it("consts equal what capnp eval encodes", () => {
    const text = (name: string): string => capnp(["eval", SCHEMA, name]).toString().trim();
    expect(M.maxDouble).toBe(Number(text("maxDouble")));
    expect(M.maxDouble).toBe(Number.MAX_VALUE);
    expect(M.answer).toBe(Number(text("answer")));
    expect(M.minusOne).toBe(Number(text("minusOne")));
    expect(M.bigUnsigned).toBe(BigInt(text("bigUnsigned")));
    expect(M.bigSigned).toBe(BigInt(text("bigSigned")));
    expect(M.ratio).toBe(Number(text("ratio")));
    expect(M.yes).toBe(text("yes") === "true");
    expect(M.greeting).toBe(JSON.parse(text("greeting")));
    expect(text("blob")).toBe('"\\001\\002\\377"');
    expect(M.blob).toEqual(new Uint8Array([1, 2, 255]));
    expect(M.primes).toEqual(JSON.parse(text("primes")));
    expect(M.words).toEqual(JSON.parse(text("words")));
    expect(M.Level[M.loud]).toBe(text("loud"));
    expect(M.many).toEqual([{ a: 1, b: "one" }, { a: 1, b: "two" }]);
    expect(text("many")).toBe('[(a = 1, b = "one"), (a = 1, b = "two")]');
    // Struct consts: the binary capnp eval writes, read with the generated reader.
    const root = <T extends $.Struct>(name: string, cls: $.StructCtor<T>): T => new $.Message(new Uint8Array(capnp(["eval", "--binary", SCHEMA, name])), false).getRoot(cls);
    expect(M.defaultOptions).toEqual(M.readOptions(root("defaultOptions", M.Options$Struct)));
    expect(M.defaultOptions).toEqual({ ...DEFAULT_OPTIONS, precious: true, label: "const", tags: ["c"] });
    expect(M.circle).toEqual(M.readShape(root("circle", M.Shape$Struct)));
    expect(Object.isFrozen(M.defaultOptions) && Object.isFrozen(M.primes)).toBe(true);
  });

  it("a union discriminant unknown to this schema reads as `which: <discriminant>` (more in union-evolution.test.ts)", () => {
    const msg = new $.Message();
    const sh = msg.initRoot(M.Shape$Struct);
    M.writeShape(sh, SHAPES[0]!);
    // Shape's unnamed union has its discriminant at byte 8 (see Shape$Struct.which()): 9 names no member.
    $.Struct.setUint16(8, 9, sh);
    const { which: _, circle: __, ...common } = SHAPES[0] as Shape & { which: "circle" };
    expect(M.readShape(sh)).toEqual({ ...common, which: 9 });
    expect(() => M.writeShape(new $.Message().initRoot(M.Shape$Struct), M.readShape(sh))).toThrow(/cannot write union member 9 of Shape/);
  });
});
