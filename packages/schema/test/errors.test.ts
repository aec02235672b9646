/**
 * Bad input gets a typed SchemaError with file:line:col, never a crash or a hang: lexer and parser
 * errors, resolution errors, ordinal rules, and randomly damaged copies of a valid schema.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SchemaError, compile } from "../dist/index.js";
import { SCHEMA_DIR } from "./oracle.js";
import { rng, schemaSeed } from "./random.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "schema-errors-"));

function compileText(text: string, name = "bad.capnp"): Uint8Array {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return compile({ files: [f], srcPrefixes: [dir] });
}

function errorOf(text: string): SchemaError {
  try {
    compileText(text);
  } catch (e) {
    if (e instanceof SchemaError) return e;
    throw e;
  }
  throw new Error("expected a SchemaError");
}

const ID = "@0xd6b1fe6f1a3c5d11;\n";

afterAll(() => { fs.rmSync(dir, { recursive: true }); });

describe("schema errors", () => {
  it.each([
    ["missing file id", "struct A {}\n", "bad.capnp:1:1: error: File does not declare an ID."],
    ["missing semicolon", `${ID}struct A {\n  a @0 :Int32\n}\n`, "bad.capnp:4:1: error: parse error: unexpected '}'"],
    ["unknown type", `${ID}struct A {\n  a @0 :Nope;\n}\n`, "bad.capnp:3:9: error: Not defined: Nope"],
    ["skipped ordinal", `${ID}struct A {\n  a @0 :Int32;\n  b @2 :Int32;\n}\n`, "bad.capnp:4:6: error: Skipped ordinal @1."],
    ["duplicate ordinal", `${ID}enum E {\n  a @0;\n  b @0;\n}\n`, "bad.capnp:4:6: error: Duplicate ordinal number."],
    ["unterminated string", `${ID}const a :Text = "abc;\n`, "bad.capnp:2:17: error: unterminated string literal"],
    ["type mismatch", `${ID}const a :Int32 = "text";\n`, "bad.capnp:2:18: error: Type mismatch; expected Int32."],
    ["out of range", `${ID}const a :UInt8 = 256;\n`, "bad.capnp:2:18: error: Integer value out of range."],
    ["out of range after the 64-bit wrap", `${ID}const a :UInt32 = 0x100000005;\n`, "bad.capnp:2:19: error: Integer value out of range."],
    ["not an annotation", `${ID}struct A $A {}\n`, "bad.capnp:2:10: error: 'A' is not an annotation."],
    ["wrong annotation target", `${ID}annotation x(field) :Void;\nstruct A $x {}\n`, "bad.capnp:3:10: error: 'x' cannot be applied to this kind of declaration."],
    ["single-member union", `${ID}struct A {\n  union {\n    a @0 :Int32;\n  }\n}\n`, "bad.capnp:3:3: error: Union must have at least two members."],
    ["import failed", `${ID}using X = import "/nope.capnp";\nstruct A { a @0 :X.B; }\n`, "bad.capnp:2:11: error: Import failed: /nope.capnp"],
    ["generic arity", `${ID}struct P(T) { t @0 :T; }\nstruct A { a @0 :P(Text, Text); }\n`, "bad.capnp:3:18: error: Too many generic parameters."],
    ["non-pointer generic argument", `${ID}struct P(T) { t @0 :T; }\nstruct A { a @0 :P(Int32); }\n`, "error: Sorry, only pointer types can be used as generic parameters."],
    ["recursive const", `${ID}const a :List(Int32) = .b;\nconst b :List(Int32) = .a;\n`, "error: Declaration recursively depends on itself."],
    ["bad id", "@0x1234;\n", "bad.capnp:1:1: error: Invalid ID."],
    ["\\x escape with one hex digit (capnp: parse error)", `${ID}const a :Text = "ab\\x4)";\n`, "error: invalid \\x escape (two hex digits expected)"],
    ["non-octal digit after a leading 0", `${ID}const a :Int32 = 09;\n`, "bad.capnp:2:19: error: parse error: expected end of declaration, got an integer literal"],
    ["List of a first generic parameter (as capnp 0.9.2)", `${ID}struct B(T) {\n  a @0 :List(T);\n}\n`, "bad.capnp:3:9: error: 'List(AnyPointer)' is not supported."],
    ["List of a second generic parameter (as capnp 0.9.2)", `${ID}struct B(T, U) {\n  a @0 :List(U);\n}\n`, "bad.capnp:3:9: error: 'List(AnyStruct)' is not supported."],
  ])("%s", (_name, text, message) => {
    const e = errorOf(text);
    expect(e).toBeInstanceOf(SchemaError);
    expect(e.message).toContain(message);
    expect(e.file).toBe("bad.capnp");
  });

  it("embed of a struct: a file that is no message, and types other than Text, Data or a struct (as capnp)", () => {
    fs.writeFileSync(path.join(dir, "junk.bin"), "not a message");
    fs.writeFileSync(path.join(dir, "junk16.bin"), Buffer.from("ffffffff00000000ffffffffffffffff", "hex"));
    const S = `${ID}struct S { a @0 :Int32; }\n`;
    expect(errorOf(`${S}const s :S = embed "junk.bin";\n`).message).toContain("bad.capnp:3:14: error: Embedded file is not a valid Cap'n Proto message.");
    expect(errorOf(`${S}const s :S = embed "junk16.bin";\n`).message).toContain("bad.capnp:3:14: error: Embedded file is not a valid Cap'n Proto message.");
    expect(errorOf(`${ID}const l :List(Int32) = embed "junk.bin";\n`).message).toContain("bad.capnp:2:24: error: Embeds can only be used when Text, Data, or a struct is expected.");
  });

  it("damaged copies of a valid schema: a SchemaError or a request, nothing else", () => {
    const seed = schemaSeed();
    const r = rng(seed);
    const text = fs.readFileSync(path.join(SCHEMA_DIR, "test/schemas/imported.capnp"), "utf8")
      + fs.readFileSync(path.join(SCHEMA_DIR, "test/schemas/edge.capnp"), "utf8").replace(/^@0x[0-9a-f]+;$/m, "").replace(/^using.*imported.*$/gm, "");
    let errors = 0;
    for (let i = 0; i < 150; i++) {
      let t = text;
      for (let k = 0; k < 1 + Math.floor(r() * 3); k++) {
        const at = Math.floor(r() * t.length);
        const len = Math.floor(r() * 6);
        const junk = ["", "{", "}", ";", "(", ")", "@", "$", ":", "=", "\"", "#", "x", "0", "[", "union"][Math.floor(r() * 16)]!;
        t = t.slice(0, at) + junk + t.slice(at + len);
      }
      try {
        compileText(t, "damaged.capnp");
      } catch (e) {
        if (!(e instanceof SchemaError)) throw new Error(`seed ${seed}, case ${i}: ${String(e)}\n--- schema ---\n${t}`);
        expect(e.message).toMatch(/^damaged\.capnp:\d+:\d+: error: /);
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(0);
  });
});
