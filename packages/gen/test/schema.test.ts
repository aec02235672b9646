/**
 * Reading CodeGeneratorRequests (flattening, sourceInfo, the three input forms of generate()) and
 * small naming helpers.
 */
import * as path from "node:path";
import * as $ from "capnp-ts";
import * as S from "capnp-ts/src/std/schema.capnp.js";
import { describe, expect, it } from "vitest";
import { flattenMessage, generate, parseRequest } from "../dist/index.js";
import { compileSchemas } from "../dist/compile.js";
import {
  ANN_COUNT, ANN_EXCEPTION, ANN_INCLUDE, ANN_INCLUDE_TYPES, ANN_NAME, ANN_SKIP, ANN_WRAP, CONTEXT_ID, THREAD_ID, THREAD_MAP_ID,
} from "../dist/annotations.js";
import { relativeImport } from "../dist/emit/context.js";
import { errorClassName } from "../dist/emit/interface.js";
import { camelCase } from "../dist/names.js";
import { PROTO } from "./helpers.js";

const request = (capnp?: true): Promise<Uint8Array> =>
  compileSchemas({ files: ["mp/proxy.capnp", "test/foo.capnp"].map((f) => path.join(PROTO, f)), importPaths: [PROTO], ...(capnp ? { capnp } : {}) });

describe("CodeGeneratorRequest reading", () => {
  it("capnp writes a multi-segment request; the flat copy is one segment with the same content", async () => {
    const bytes = await request(true);
    expect(new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true)).toBeGreaterThan(0); // >1 segment
    const flat = flattenMessage(bytes);
    expect(new DataView(flat.buffer).getUint32(0, true)).toBe(0);
    const root = new $.Message(flat, false).getRoot(S.CodeGeneratorRequest);
    expect(root.requestedFiles.toArray().map((f) => f.filename)).toEqual(["mp/proxy.capnp", "test/foo.capnp"]);
    expect(root.nodes.getLength()).toBeGreaterThan(50);
  });

  it("reads doc comments from sourceInfo (nodes and members)", async () => {
    const model = parseRequest(await request());
    const byName = new Map([...model.nodes.values()].map((n) => [n.displayName, n]));
    expect(byName.get("mp/proxy.capnp:Thread")!.doc).toBe("Thread handle returned by makeThread corresponding to one server thread.");
    const ctx = byName.get("mp/proxy.capnp:Context")!;
    expect(ctx.struct!.fields.map((f) => f.doc)).toEqual([
      "Handle of the server thread the current method call should execute on.",
      "Handle of the client thread that is calling the current method, and that\nany callbacks made by the server thread should be made on.",
    ]);
  });

  it("the annotation and type ids mpgen relies on match mp/proxy.capnp", async () => {
    const model = parseRequest(await request());
    const id = (name: string): bigint => [...model.nodes.values()].find((n) => n.displayName === `mp/proxy.capnp:${name}`)!.id;
    expect([id("include"), id("includeTypes"), id("wrap"), id("count"), id("exception"), id("name"), id("skip")]).toEqual([
      ANN_INCLUDE, ANN_INCLUDE_TYPES, ANN_WRAP, ANN_COUNT, ANN_EXCEPTION, ANN_NAME, ANN_SKIP,
    ]);
    expect([id("Context"), id("ThreadMap"), id("Thread")]).toEqual([CONTEXT_ID, THREAD_MAP_ID, THREAD_ID]);
  });

  it("generate() gives the same output for bytes, a capnp-ts reader and a parsed model", async () => {
    const bytes = await request();
    const fromBytes = generate(bytes);
    const reader = new $.Message(flattenMessage(bytes), false).getRoot(S.CodeGeneratorRequest);
    expect(generate(reader)).toEqual(fromBytes);
    expect(generate(parseRequest(bytes))).toEqual(fromBytes);
    expect([...fromBytes.keys()]).toEqual(["mp/proxy.capnp.ts", "test/foo.capnp.ts"]);
  });
});

describe("naming helpers", () => {
  it("relativeImport between generated files", () => {
    expect(relativeImport("test/foo.capnp", "mp/proxy.capnp")).toBe("../mp/proxy.capnp.js");
    expect(relativeImport("example/init.capnp", "example/printer.capnp")).toBe("./printer.capnp.js");
    expect(relativeImport("a.capnp", "mp/proxy.capnp")).toBe("./mp/proxy.capnp.js");
    expect(relativeImport("a/b/c.capnp", "d.capnp")).toBe("../../d.capnp.js");
  });

  it("camelCase of $Proxy.name and error class names", () => {
    expect(camelCase("set_int")).toBe("setInt");
    expect(camelCase("map_string_int")).toBe("mapStringInt");
    expect(camelCase("getTip")).toBe("getTip");
    expect(errorClassName("mp::test::FooStruct")).toBe("FooStructError");
    expect(errorClassName("std::runtime_error")).toBe("RuntimeError");
  });
});
