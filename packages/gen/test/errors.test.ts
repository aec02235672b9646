/**
 * Clear errors: a missing compiler, a bad schema (compiler stderr passed through), annotations and
 * types mpgen cannot map.
 */
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { MpgenError, generate, parseRequest } from "../dist/index.js";
import { compileSchemas } from "../dist/compile.js";
import { PROXY_FILE_ID } from "../dist/annotations.js";
import { FIXTURES, PROTO, tmpDir } from "./helpers.js";
import * as fs from "node:fs";

async function gen(file: string): Promise<Map<string, string>> {
  return generate(await compileSchemas({ files: [path.join(FIXTURES, file)], importPaths: [PROTO, FIXTURES] }));
}

describe("mpgen errors", () => {
  it("missing compiler → 'capnp compiler not found: install capnproto'", async () => {
    const p = compileSchemas({ files: [path.join(FIXTURES, "features.capnp")], capnp: "/nonexistent/capnp" });
    await expect(p).rejects.toBeInstanceOf(MpgenError);
    await expect(p).rejects.toThrow(/^capnp compiler not found: install capnproto/);
  });

  it("bad schema → the compiler's stderr", async () => {
    const dir = tmpDir("bad");
    const f = path.join(dir, "bad.capnp");
    fs.writeFileSync(f, "@0xd6b1fe6f1a3c5d11;\nstruct X { a @0 :NoSuchType; }\n");
    await expect(compileSchemas({ files: [f] })).rejects.toThrow(/capnp compile failed[\s\S]*Not defined: NoSuchType/);
  });

  it("$Proxy.count(2) cannot be mapped", async () => {
    await expect(gen("bad-count.capnp")).rejects.toThrow("mpgen: cannot map $Proxy.count(2) on field s");
  });

  it("a field named `which` next to a union cannot be mapped (it is the union's tag)", async () => {
    const dir = tmpDir("which");
    const f = path.join(dir, "which.capnp");
    fs.writeFileSync(f, "@0xd6b1fe6f1a3c5d12;\nstruct W {\n  which @0 :Int32;\n  union {\n    a @1 :Int32;\n    b @2 :Text;\n  }\n}\n");
    const req = await compileSchemas({ files: [f] });
    expect(() => generate(req)).toThrow(MpgenError);
    expect(() => generate(req)).toThrow("mpgen: cannot map field `which` of W: the struct has a union");
  });

  it("$Proxy.exception on a non-pointer field cannot be mapped", async () => {
    await expect(gen("bad-exception.capnp")).rejects.toThrow(/cannot map \$Proxy\.exception on Bad\.oops\.code/);
  });

  it("an mp/proxy.capnp annotation unknown to this mpgen is rejected, not ignored", async () => {
    const req = await compileSchemas({ files: [path.join(FIXTURES, "features.capnp")], importPaths: [PROTO, FIXTURES] });
    const model = parseRequest(req);
    // Pretend a newer proxy.capnp declared `$Proxy.extraParam` and the schema used it on Service.
    const fakeId = 0x1234n;
    model.nodes.set(fakeId, { id: fakeId, displayName: "mp/proxy.capnp:extraParam", shortName: "extraParam", scopeId: PROXY_FILE_ID,
      parameters: [], isGeneric: false, nestedNodes: [], annotations: [], kind: "annotation" });
    const service = [...model.nodes.values()].find((n) => n.displayName === "features.capnp:Service")!;
    service.annotations.push({ id: fakeId, value: { kind: "void", value: null } });
    expect(() => generate(model)).toThrow("mpgen: cannot map annotation $Proxy.extraParam on interface Service");
  });

  it("a truncated request is reported", () => {
    expect(() => generate(new Uint8Array([0, 0, 0, 0, 9, 0, 0, 0]))).toThrow(/truncated/);
  });
});
