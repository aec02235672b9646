/**
 * Generated server `invoke` is synchronous when the implementation is: it writes the results (or
 * a declared `$Proxy.exception`) at once and returns undefined; only a thenable from the
 * implementation makes it return a promise. Checked on the generated entries directly, then end
 * to end (sync/async, declared/undeclared errors) through the runtime, which accepts both.
 *
 * Threading: loop thread (the test's thread).
 */
import * as $ from "capnp-ts";
import { RpcError } from "@multiprocess-ts/capnp";
import { createTestSetup, type TestSetup } from "@multiprocess-ts/testing";
import type * as $mp from "@multiprocess-ts/runtime/gen";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type FooInterface,
  FooInterfaceClient,
  FooInterfaceServer,
  FooInterface_add$Params,
  FooInterface_add$Results,
  FooInterface_raise$Params,
  FooInterface_raise$Results,
  type FooStruct,
  FooStructError,
} from "@multiprocess-ts/proto/test/foo.capnp.js";

const foo = (name: string): FooStruct => ({ name, setInt: [], vectorBool: [], unorderedSetInt: [], mapStringInt: new Map() });

function entry(name: string): $mp.ServerMethod<FooInterface> {
  const e = FooInterfaceServer.methods.find((m) => m.method.name === name);
  if (e?.invoke === undefined) throw new Error(`no invoke for ${name}`);
  return e;
}

function structs<P extends $.Struct, R extends $.Struct>(P: $.StructCtor<P>, R: $.StructCtor<R>): { p: P; r: R } {
  return { p: new $.Message().initRoot(P), r: new $.Message().initRoot(R) };
}

// Only the methods under test are called; the IO is not used by add/raise.
const noIO = undefined as unknown as $mp.ServerIO;
const asImpl = (o: Partial<FooInterface>): FooInterface => o as FooInterface;

describe("generated invoke: sync when the implementation is", () => {
  it("a synchronous result is written before invoke returns, and invoke returns undefined", () => {
    const { p, r } = structs(FooInterface_add$Params, FooInterface_add$Results);
    p.a = 1;
    p.b = 2;
    const ret = entry("add").invoke!(asImpl({ add: (a, b) => a + b }), p, r, noIO);
    expect(ret).toBeUndefined();
    expect(r.result).toBe(3);
  });

  it("a promise from the implementation makes invoke return a promise that writes afterwards", async () => {
    const { p, r } = structs(FooInterface_add$Params, FooInterface_add$Results);
    p.a = 4;
    p.b = 5;
    let resolve!: (v: number) => void;
    const ret = entry("add").invoke!(asImpl({ add: () => new Promise<number>((res) => (resolve = res)) }), p, r, noIO);
    expect(ret).toBeInstanceOf(Promise);
    expect(r.result).toBe(0);
    resolve(9);
    await ret;
    expect(r.result).toBe(9);
  });

  it("a non-Promise thenable is awaited too", async () => {
    const { p, r } = structs(FooInterface_add$Params, FooInterface_add$Results);
    const thenable = { then: (ok: (v: number) => void) => ok(11) } as unknown as Promise<number>;
    const ret = entry("add").invoke!(asImpl({ add: () => thenable }), p, r, noIO);
    expect(ret).toBeInstanceOf(Promise);
    await ret;
    expect(r.result).toBe(11);
  });

  it("$Proxy.exception thrown synchronously: written at once, invoke returns undefined", () => {
    const { p, r } = structs(FooInterface_raise$Params, FooInterface_raise$Results);
    const ret = entry("raise").invoke!(asImpl({ raise: () => { throw new FooStructError(foo("sync")); } }), p, r, noIO);
    expect(ret).toBeUndefined();
    expect(r.hasError()).toBe(true);
    expect(r.error.name).toBe("sync");
  });

  it("$Proxy.exception as a rejection: the returned promise resolves with the error written", async () => {
    const { p, r } = structs(FooInterface_raise$Params, FooInterface_raise$Results);
    const ret = entry("raise").invoke!(asImpl({ raise: () => Promise.reject(new FooStructError(foo("async"))) }), p, r, noIO);
    expect(ret).toBeInstanceOf(Promise);
    await expect(ret).resolves.toBeUndefined();
    expect(r.error.name).toBe("async");
  });

  it("other errors: a synchronous throw propagates synchronously, a rejection rejects", async () => {
    const raise = entry("raise").invoke!;
    const a = structs(FooInterface_raise$Params, FooInterface_raise$Results);
    expect(() => raise(asImpl({ raise: () => { throw new TypeError("boom"); } }), a.p, a.r, noIO)).toThrow("boom");
    expect(a.r.hasError()).toBe(false);
    const b = structs(FooInterface_raise$Params, FooInterface_raise$Results);
    await expect(raise(asImpl({ raise: () => Promise.reject(new TypeError("later")) }), b.p, b.r, noIO)).rejects.toThrow("later");
    expect(b.r.hasError()).toBe(false);
  });
});

describe("sync and async implementations end to end", () => {
  let s: TestSetup<FooInterface, FooInterfaceClient>;
  let client: FooInterfaceClient;
  let mode: "sync" | "async";

  // A fresh object per test: the runtime disposes an object once in its lifetime.
  const makeImpl = (): Partial<FooInterface> => ({
    add: (a, b) => (mode === "sync" ? a + b : Promise.resolve(a + b)),
    raise: (arg) => {
      if (arg.name === "other") {
        if (mode === "sync") throw new TypeError("not declared");
        return Promise.reject(new TypeError("not declared"));
      }
      if (mode === "sync") throw new FooStructError(arg);
      return Promise.reject(new FooStructError(arg));
    },
    initThreadMap: () => {},
  });

  beforeEach(async () => {
    s = await createTestSetup({ impl: makeImpl() as FooInterface, Server: FooInterfaceServer, Client: FooInterfaceClient });
    client = s.client;
    await client.initThreadMap();
  });

  // The leak check: RPC tables empty, loops idle, impl disposed once, no error log lines.
  afterEach(() => s.dispose());

  for (const m of ["sync", "async"] as const) {
    it(`${m}: results, a declared exception, an undeclared one`, async () => {
      mode = m;
      expect(await client.add(20, 22)).toBe(42);
      const declared = await client.raise(foo("declared")).then(() => undefined, (e: unknown) => e);
      expect(declared).toBeInstanceOf(FooStructError);
      expect((declared as FooStructError).value.name).toBe("declared");
      const other = await client.raise(foo("other")).then(() => undefined, (e: unknown) => e);
      expect(other).toBeInstanceOf(RpcError);
      expect((other as RpcError).kind).toBe("failed");
      expect((other as RpcError).message).toContain("not declared");
      // The connection is still usable after both.
      expect(await client.add(1, 1)).toBe(2);
    });
  }
});
