// Faithful errors, TS to TS (docs/errors.md, "Remote errors"): the server's error name, code and
// (opt-in) stack reach the client as a RemoteError whose stack names the caller's own frames;
// `$Proxy.exception` errors keep their message.
import { describe, expect, it } from "vitest";
import { RemoteError, RpcError } from "@multiprocess-ts/capnp";
import { ThreadSelectionError } from "@multiprocess-ts/runtime";
import * as $mp from "@multiprocess-ts/runtime/gen";
import { FooStructError, type FooStruct } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { assertNoLeaks, createFooSetup } from "@multiprocess-ts/testing";

class KvError extends Error {
  override name = "KvError";
  readonly code = "KV_E_FULL";
}

async function callerFrameForTest(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (e) {
    return e;
  }
  throw new Error("expected the call to fail");
}

describe("remote errors", () => {
  it("a server TypeError arrives as a RemoteError with its name and message; no stack by default", async () => {
    const s = await createFooSetup();
    s.impl.fn = () => {
      throw new TypeError("bad thing");
    };
    const e = (await callerFrameForTest(() => s.client.callFn())) as RemoteError;
    expect(e).toBeInstanceOf(RemoteError);
    expect(e).toBeInstanceOf(RpcError);
    expect(e).not.toBeInstanceOf(TypeError);
    expect(e.remoteName).toBe("TypeError");
    expect(e.message).toBe("bad thing");
    expect(e.name).toBe("RemoteError [TypeError]");
    expect(e.code).toBe("MP_ERR_FAILED");
    expect(e.kind).toBe("failed");
    expect(e.remote).toBe(true);
    expect(e.remoteStack).toBeUndefined();
    // The caller's own frame is in the client-side stack.
    expect(e.stack).toMatch(/^RemoteError \[TypeError\]: bad thing\n/);
    expect(e.stack).toContain("callerFrameForTest");
    await s.dispose();
    assertNoLeaks(s);
  });

  it("custom classes and codes cross: a plain error's `code`, a runtime error's MP_ERR_* code", async () => {
    const s = await createFooSetup();
    s.impl.fn = () => {
      throw new KvError("store is full");
    };
    const e1 = (await callerFrameForTest(() => s.client.callFn())) as RemoteError;
    expect([e1.remoteName, e1.code, e1.message]).toEqual(["KvError", "KV_E_FULL", "store is full"]);
    s.impl.fn = () => {
      throw new ThreadSelectionError("no thread specified and no pool configured", "MP_ERR_NO_THREAD");
    };
    const e2 = (await callerFrameForTest(() => s.client.callFn())) as RemoteError;
    expect([e2.remoteName, e2.code, e2.message]).toEqual(["ThreadSelectionError", "MP_ERR_NO_THREAD", "no thread specified and no pool configured"]);
    s.impl.fn = () => {
      throw new RpcError("overloaded", "busy");
    };
    const e3 = (await callerFrameForTest(() => s.client.callFn())) as RemoteError;
    expect([e3.kind, e3.code, e3.remoteName, e3.name]).toEqual(["overloaded", "MP_ERR_OVERLOADED", "RpcError", "RemoteError [RpcError]"]);
    await s.dispose();
    assertNoLeaks(s);
  });

  it("with errorStacks the server's stack arrives as remoteStack", async () => {
    const s = await createFooSetup({ errorStacks: true });
    s.impl.fn = function serverSideThrower() {
      throw new RangeError("out of range");
    };
    const e = (await callerFrameForTest(() => s.client.callFn())) as RemoteError;
    expect(e.remoteName).toBe("RangeError");
    expect(e.remoteStack).toMatch(/^RangeError: out of range\n/);
    expect(e.remoteStack).toContain("serverSideThrower");
    expect(e.stack).toContain("callerFrameForTest");
    expect(e.stack).not.toContain("serverSideThrower");
    await s.dispose();
    assertNoLeaks(s);
  });

  it("$Proxy.exception: the typed class arrives with the message derived from its value", async () => {
    const s = await createFooSetup();
    const arg: FooStruct = { name: "n", setInt: [1], vectorBool: [], unorderedSetInt: [], mapStringInt: new Map() };
    const e = (await callerFrameForTest(() => s.client.raise(arg))) as FooStructError;
    expect(e).toBeInstanceOf(FooStructError);
    expect(e.value.setInt).toEqual([1]);
    expect(e.message).toBe(new FooStructError(arg).message);
    expect(e.stack).toContain("callerFrameForTest");
    // A Text value (or a struct's message/what/reason) is the message on both sides.
    expect($mp.exceptionMessage("key not found: missing-key", "kv::KeyNotFound")).toBe("key not found: missing-key");
    expect($mp.exceptionMessage({ what: "key not found: k" }, "kv::KeyNotFound")).toBe("key not found: k");
    expect($mp.exceptionMessage({ code: 3 }, "kv::KeyNotFound")).toBe("kv::KeyNotFound");
    expect($mp.exceptionMessage("", "kv::KeyNotFound")).toBe("kv::KeyNotFound");
    await s.dispose();
    assertNoLeaks(s);
  });
});
