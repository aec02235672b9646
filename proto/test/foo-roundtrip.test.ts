/**
 * FooInterface round trip, TS client ↔ TS server, through the generated proxies
 * (proto/src/test/foo.capnp.ts), the runtime (EventLoop, Connection, serveTransport) and the RPC
 * engine over an in-memory transport pair. Every FooInterface method is called at least once and
 * its result checked against upstream's test/mp/test/foo.h semantics.
 */
import { memoryTransportPair } from "@multiprocess-ts/capnp";
import { Connection, EventLoop, serveTransport } from "@multiprocess-ts/runtime";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type ExtendedCallback,
  type FooCallback,
  type FooCustom,
  type FooEmpty,
  type FooFn,
  type FooInterface,
  FooInterfaceClient,
  FooInterfaceServer,
  type FooMessage,
  type FooMutable,
  type FooStruct,
  FooStructError,
} from "@multiprocess-ts/proto/test/foo.capnp.js";

/** Upstream foo.h FooImplementation, typed against the generated TS interface. */
class FooImpl implements FooInterface {
  saved: FooCallback | null = null;
  fn: (() => void) | undefined;
  intFn: ((n: number) => number | Promise<number>) | undefined;
  threadMapCalls = 0;
  disposed = 0;
  add(a: number, b: number): number { return a + b; }
  addOut(a: number, b: number): number { return a + b; }
  addInOut(x: number, sum: number): number { return sum + x; }
  mapSize(map: Map<string, string>): number { return map.size; }
  pass(arg: FooStruct): FooStruct { return arg; }
  raise(arg: FooStruct): never { throw new FooStructError(arg); }
  initThreadMap(): void { this.threadMapCalls++; }
  async callback(cb: FooCallback | null, arg: number): Promise<number> {
    try { return await cb!.call(arg); } finally { await close(cb); }
  }
  callbackUnique(cb: FooCallback | null, arg: number): Promise<number> { return this.callback(cb, arg); }
  callbackShared(cb: FooCallback | null, arg: number): Promise<number> { return this.callback(cb, arg); }
  async saveCallback(cb: FooCallback | null): Promise<void> {
    const old = this.saved;
    this.saved = cb;
    await close(old);
  }
  async callbackSaved(arg: number): Promise<number> { return await this.saved!.call(arg); }
  async callbackExtended(cb: ExtendedCallback | null, arg: number): Promise<number> {
    try { return await cb!.callExtended(arg); } finally { await close(cb); }
  }
  passCustom(arg: FooCustom): FooCustom { return arg; }
  passEmpty(arg: FooEmpty): FooEmpty { return arg; }
  passData(arg: Uint8Array): Uint8Array { return arg; }
  passMessage(arg: FooMessage): FooMessage { return { message: arg.message + " call" }; }
  passMutable(arg: FooMutable): FooMutable { return { message: arg.message + " call" }; }
  passEnum(arg: number): number { return arg; }
  passDouble(arg: number): number { return arg; }
  async passFn(fn: FooFn | null): Promise<number> {
    try { return await fn!(); } finally { await close(fn); }
  }
  callFn(): void { this.fn!(); }
  callFnAsync(): void { this.fn!(); }
  async callIntFnAsync(arg: number): Promise<number> { return await this.intFn!(arg); }
  passDataPointers(arg: Uint8Array[]): Uint8Array[] { return arg; }
  async [Symbol.asyncDispose](): Promise<void> {
    this.disposed++;
    const s = this.saved;
    this.saved = null;
    await close(s);
  }
}

async function close(x: unknown): Promise<void> {
  const c = x as { close?: () => unknown; [Symbol.asyncDispose]?: () => unknown } | null;
  if (c === null || c === undefined) return;
  if (typeof c.close === "function") await c.close();
  else if (typeof c[Symbol.asyncDispose] === "function") await c[Symbol.asyncDispose]!();
}

describe("FooInterface round trip (generated proxies, TS ↔ TS)", () => {
  let serverLoop: EventLoop;
  let clientLoop: EventLoop;
  let impl: FooImpl;
  let serverConn: Connection;
  let client: FooInterfaceClient;
  const errors: string[] = [];

  beforeEach(async () => {
    errors.length = 0;
    const log = (level: string, msg: string): void => { if (level === "error") errors.push(msg); };
    serverLoop = new EventLoop("foo-server", { log: { logFn: log, level: "warning" } });
    clientLoop = new EventLoop("foo-client", { log: { logFn: log, level: "warning" } });
    const [ct, st] = memoryTransportPair();
    impl = new FooImpl();
    serverConn = serveTransport(serverLoop, st, impl, FooInterfaceServer);
    serverConn.onDisconnect(() => void serverConn.close());
    const clientConn = new Connection(clientLoop, ct);
    client = new FooInterfaceClient(clientConn.rpc.bootstrap(), clientConn, { destroyConnection: true });
    // FooInterface has no `construct`: like upstream's tests, exchange ThreadMaps with initThreadMap
    // so methods with a Proxy.Context can pick a server thread.
    await client.initThreadMap();
  });

  afterEach(async () => {
    await client.close();
    await serverConn.close();
    expect(errors).toEqual([]);
  });

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
    await serverConn.close();
    await serverLoop.done; // refs gone and the async-cleanup queue (impl disposal) drained
    expect(impl.disposed).toBe(1);
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
