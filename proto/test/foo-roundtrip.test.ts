/**
 * FooInterface round trip, TS client ↔ TS server, through the generated proxies
 * (proto/src/test/foo.capnp.ts), the runtime (EventLoop, Connection, serveTransport) and the RPC
 * engine over an in-memory transport pair (createTestSetup). Every FooInterface method is called
 * at least once and its result checked against upstream's test/mp/test/foo.h semantics.
 *
 * Threading: loop thread (the test's thread).
 */
import { FooImplementation, createTestSetup, type TestSetup } from "@multiprocess-ts/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type ExtendedCallback,
  type FooCallback,
  FooInterfaceClient,
  FooInterfaceServer,
  type FooStruct,
  FooStructError,
} from "@multiprocess-ts/proto/test/foo.capnp.js";

/** Upstream foo.h FooImplementation (the testing package's), counting initThreadMap calls. */
class FooImpl extends FooImplementation {
  threadMapCalls = 0;
  override initThreadMap(): void {
    this.threadMapCalls++;
  }
}

describe("FooInterface round trip (generated proxies, TS ↔ TS)", () => {
  let s: TestSetup<FooImpl, FooInterfaceClient>;
  let impl: FooImpl;
  let client: FooInterfaceClient;

  beforeEach(async () => {
    s = await createTestSetup({ impl: new FooImpl(), Server: FooInterfaceServer, Client: FooInterfaceClient });
    ({ impl, client } = s);
    // FooInterface has no `construct`: like upstream's tests, exchange ThreadMaps with initThreadMap
    // so methods with a Proxy.Context can pick a server thread.
    await client.initThreadMap();
  });

  // The leak check: RPC tables empty, loops idle, impl disposed once, no error log lines.
  afterEach(() => s.dispose());

  it("add, addOut, addInOut", async () => {
    expect(await client.add(1, 2)).toBe(3);
    expect(await client.addOut(3, 4)).toBe(7);
    expect(await client.addInOut(3, 4)).toBe(7);
  });

  it("range-checks Int32 arguments on the client (RangeError)", async () => {
    await expect(client.add(2 ** 31, 1)).rejects.toBeInstanceOf(RangeError);
    await expect(client.add(1.5, 1)).rejects.toBeInstanceOf(RangeError);
  });

  it("mapSize (List(Pair(Text, Text)) as Map)", async () => {
    expect(await client.mapSize(new Map([["a", "1"], ["b", "2"], ["c", "3"]]))).toBe(3);
    expect(await client.mapSize(new Map())).toBe(0);
  });

  it("pass (struct with lists, optional field, map)", async () => {
    const foo: FooStruct = {
      name: "name",
      setInt: [2, 1],
      vectorBool: [false, true, false],
      optionalInt: 5,
      unorderedSetInt: [3],
      mapStringInt: new Map([["a", 1], ["b", -2]]),
    };
    const out = await client.pass(foo);
    expect(out).toEqual(foo);
    const noOpt = await client.pass({ ...foo, optionalInt: undefined });
    expect(noOpt.optionalInt).toBeUndefined();
  });

  it("raise: $Proxy.exception → typed error on the client", async () => {
    const foo: FooStruct = { name: "bad", setInt: [], vectorBool: [], unorderedSetInt: [], mapStringInt: new Map() };
    const err = await client.raise(foo).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(FooStructError);
    expect((err as FooStructError).value.name).toBe("bad");
  });

  it("initThreadMap", async () => {
    expect(impl.threadMapCalls).toBe(1); // beforeEach
    await client.initThreadMap();
    expect(impl.threadMapCalls).toBe(2);
  });

  it("callback, callbackUnique, callbackShared", async () => {
    const cb: FooCallback = { call: (arg) => arg * 2 };
    expect(await client.callback(cb, 5)).toBe(10);
    expect(await client.callbackUnique(cb, 6)).toBe(12);
    expect(await client.callbackShared({ call: async (arg) => arg + 1 }, 7)).toBe(8);
  });

  it("saveCallback + callbackSaved", async () => {
    await client.saveCallback({ call: (arg) => arg * 3 });
    expect(await client.callbackSaved(4)).toBe(12);
    expect(await client.callbackSaved(5)).toBe(15);
  });

  it("a callback proxy closed by the callee calls the remote destroy: the caller's object is disposed once", async () => {
    let disposed = 0;
    const cb = { call: (arg: number) => arg + 100, async [Symbol.asyncDispose]() { disposed++; } };
    expect(await client.callback(cb, 1)).toBe(101);
    expect(disposed).toBe(1);
  });

  it("the server impl is disposed once when the connection ends", async () => {
    await client.close();
    await s.serverDisconnect();
    await s.serverLoop.done; // refs gone and the async-cleanup queue (impl disposal) drained
    expect(impl.disposeCount).toBe(1);
  });

  it("callbackExtended (interface inheritance)", async () => {
    const cb: ExtendedCallback = { call: (arg) => arg, callExtended: (arg) => arg * 10 };
    expect(await client.callbackExtended(cb, 3)).toBe(30);
  });

  it("passCustom, passEmpty, passMessage, passMutable", async () => {
    expect(await client.passCustom({ v1: "v1", v2: 5 })).toEqual({ v1: "v1", v2: 5 });
    expect(await client.passEmpty({})).toEqual({});
    expect(await client.passMessage({ message: "init" })).toEqual({ message: "init call" });
    expect(await client.passMutable({ message: "init" })).toEqual({ message: "init call" });
  });

  it("passData, passDataPointers", async () => {
    const d = new Uint8Array([1, 2, 3, 255]);
    expect(await client.passData(d)).toEqual(d);
    expect(await client.passData(new Uint8Array(0))).toEqual(new Uint8Array(0));
    const list = [new Uint8Array([1]), new Uint8Array(0), new Uint8Array([7, 8, 9])];
    expect(await client.passDataPointers(list)).toEqual(list);
    // Large elements are adopted by the writers (docs/rpc.md "Large Data is sent from your
    // buffer"); what comes back is the server's copy, not a view of the caller's buffers.
    const big = [new Uint8Array(1 << 16).fill(5), new Uint8Array(3), new Uint8Array(8192).fill(9)];
    const back = await client.passDataPointers(big);
    expect(back).toEqual(big);
    for (const b of big) b.fill(0);
    expect(back[0]!.every((x) => x === 5) && back[2]!.every((x) => x === 9)).toBe(true);
  });

  it("passEnum, passDouble", async () => {
    expect(await client.passEnum(1)).toBe(1);
    expect(await client.passDouble(3.25)).toBe(3.25);
    expect(await client.passDouble(-0.5)).toBe(-0.5);
  });

  it("passFn (ProxyCallback<std::function> as a TS function)", async () => {
    expect(await client.passFn(() => 42)).toBe(42);
    expect(await client.passFn(async () => 43)).toBe(43);
  });

  it("callFn, callFnAsync, callIntFnAsync", async () => {
    let n = 0;
    impl.fn = () => { n++; };
    impl.intFn = (x) => x * 4;
    await client.callFn();
    await client.callFnAsync();
    expect(n).toBe(2);
    expect(await client.callIntFnAsync(3)).toBe(12);
  });
});
