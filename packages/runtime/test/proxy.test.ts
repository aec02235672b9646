// Generated proxies at run time: client/server shutdown in either order, remote destroy,
// integer range checks, and functions as capabilities.
// Threading: loop thread (the test's thread).
import { deferred } from "@multiprocess-ts/capnp";
import { FooCallbackClient, FooCallbackServer, FooInterfaceServer, type FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import {
  IntRangeError,
  IpcCalledAfterDisconnectError,
  IpcClientClosedError,
  IpcInterruptedError,
} from "@multiprocess-ts/runtime";
import * as $mp from "@multiprocess-ts/runtime/gen";
import { createTestSetup } from "@multiprocess-ts/testing";
import { describe, expect, it } from "vitest";
import { FooImpl, InitImpl, fooSetup, initSetup } from "./fixtures.js";

const callbackMethod = (name: string): $mp.ServerMethod<FooCallback> => FooCallbackServer.methods.find((m) => m.method.name === name)!;

class Callback implements FooCallback {
  disposeCount = 0;
  calls = 0;
  onDispose: () => void = () => {};
  call(arg: number): number {
    this.calls++;
    return arg * 10;
  }
  [Symbol.dispose](): void {
    this.disposeCount++;
    this.onDispose();
  }
}

describe("normal shutdown (client closed first)", () => {
  it("close() calls the remote destroy, which disposes the impl before it replies", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const cb = new Callback();
    const seen: number[] = [];
    impl.callback = async (client: FooCallback | null, arg: number) => {
      try {
        return await client!.call(arg);
      } finally {
        await (client as FooCallbackClient).close();
        // destroy has returned: the callback object on the other side is already disposed.
        seen.push(cb.disposeCount);
      }
    };
    expect(await p.client.callback(cb, 4)).toBe(40);
    expect(seen).toEqual([1]);
    // The same object passed again is served by a new server but never disposed twice.
    expect(await p.client.callback(cb, 5)).toBe(50);
    await p.dispose();
    expect(cb.disposeCount).toBe(1);
    expect(cb.calls).toBe(2);
    expect(impl.disposeCount).toBe(1);
  });

  it("a destroy waits for an impl's async dispose before it replies (a disposer-less or sync one replies at once)", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const gate = deferred<void>();
    const started = deferred<void>();
    const order: string[] = [];
    const asyncCb = {
      call: (arg: number) => arg + 1,
      async [Symbol.asyncDispose](): Promise<void> {
        order.push("dispose started");
        started.resolve();
        await gate.promise;
        order.push("dispose done");
      },
    };
    const plain = { call: (arg: number) => arg + 2 };
    impl.callback = async (client: FooCallback | null, arg: number) => {
      const r = await client!.call(arg);
      const closing = (client as FooCallbackClient).close().then(() => order.push("destroy returned"));
      if (arg === 1) {
        // The client side is inside its async dispose: the destroy must not reply before it ends.
        await started.promise;
        order.push("released the gate");
        gate.resolve();
      }
      await closing;
      return r;
    };
    expect(await p.client.callback(asyncCb, 1)).toBe(2);
    expect(order).toEqual(["dispose started", "released the gate", "dispose done", "destroy returned"]);
    order.length = 0;
    expect(await p.client.callback(plain, 5)).toBe(7);
    expect(order).toEqual(["destroy returned"]);
    await p.dispose();
  });

  it("close() without destroy unregisters the disconnect callback and releases; the server disposes its impl asynchronously", async () => {
    const init = new InitImpl();
    await using p = await initSetup(init);
    // The first Context call also registers the loop thread's request/callback Thread entries.
    const warmup = await p.client.makeFoo();
    const before = p.connections.client.syncCleanupCount;
    const foo = await p.client.makeFoo();
    expect(p.connections.client.syncCleanupCount).toBe(before + 1);
    expect(await foo.add(1, 2)).toBe(3);
    const disposed = deferred<void>();
    const f = init.foos[1]!;
    const orig = f[Symbol.asyncDispose].bind(f);
    f[Symbol.asyncDispose] = async () => {
      await orig();
      disposed.resolve();
    };
    await foo.close();
    await foo.close(); // idempotent
    expect(foo.$state).toBe("closed");
    expect(p.connections.client.syncCleanupCount).toBe(before);
    await expect(foo.add(1, 2)).rejects.toBeInstanceOf(IpcClientClosedError);
    await disposed.promise;
    expect(f.disposeCount).toBe(1);
    await p.dispose();
    expect(f.disposeCount).toBe(1);
    expect(init.disposeCount).toBe(1);
    expect(warmup.$state).toBe("disconnected");
  });

  it("a failing remote destroy is logged, never thrown", async () => {
    // A server whose destroy method fails (an ordinary method entry that throws).
    class FailingDestroyServer extends $mp.ProxyServerBase<FooCallback> {
      static readonly interfaceId = FooCallbackClient.interfaceId;
      static readonly methods: readonly $mp.ServerMethod<FooCallback>[] = [
        {
          method: { ...callbackMethod("destroy").method, special: undefined, destroy: false, context: -1 },
          invoke() {
            throw new Error("destroy exploded");
          },
        },
        callbackMethod("call"),
      ];
    }
    const cb = new Callback();
    {
      await using p = await createTestSetup({ impl: cb, Server: FailingDestroyServer, Client: FooCallbackClient }, { logLevel: "debug" });
      await expect(p.client.close()).resolves.toBeUndefined();
      expect(p.logs.some((l) => l.side === "client" && l.level === "warning" && /IPC client destroy failed: .*destroy exploded/.test(l.msg))).toBe(true);
    }
    expect(cb.disposeCount).toBe(1); // released with the connection instead
  });
});

describe("disconnect first", () => {
  it("marks clients disconnected: later calls fail fast, in-flight calls are interrupted, close() still resolves", async () => {
    const init = new InitImpl();
    await using p = await initSetup(init);
    const foo = await p.client.makeFoo();
    const f = init.foos[0]!;
    const running = deferred<void>();
    f.intFn = () => {
      running.resolve();
      return new Promise<number>(() => {}); // never settles: only the disconnect ends the call
    };
    const inFlight = foo.callIntFnAsync(1);
    await running.promise;
    p.clientTransport.break(new Error("socket gone"));
    const err = await inFlight.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(IpcInterruptedError);
    expect((err as Error).message).toBe("IPC client method call interrupted by disconnect.");
    expect((err as IpcInterruptedError).code).toBe("MP_ERR_INTERRUPTED_BY_DISCONNECT");
    expect((err as IpcInterruptedError).kind).toBe("disconnected");
    await p.connections.client.disconnected;
    expect(foo.$state).toBe("disconnected");
    const after = await foo.add(1, 1).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(after).toBeInstanceOf(IpcCalledAfterDisconnectError);
    expect((after as Error).message).toBe("IPC client method called after disconnect.");
    expect((after as IpcCalledAfterDisconnectError).code).toBe("MP_ERR_CALLED_AFTER_DISCONNECT");
    await foo.close();
    await p.dispose();
    expect(f.disposeCount).toBe(1);
    expect(init.disposeCount).toBe(1);
    // The wire saw no destroy/Finish storm after the break: nothing to assert beyond no leaks.
  });

  it("a server-side disconnect disposes every server impl exactly once, through the async cleanup queue", async () => {
    const init = new InitImpl();
    await using p = await initSetup(init);
    const foos = [await p.client.makeFoo(), await p.client.makeFoo()];
    expect(await foos[1]!.add(2, 2)).toBe(4);
    await p.connections.server.close();
    await p.connections.client.disconnected;
    for (const foo of foos) expect(foo.$state).toBe("disconnected");
    await p.dispose();
    expect(init.foos.map((f) => f.disposeCount)).toEqual([1, 1]);
  });
});

describe("integer checks", () => {
  it("checkInt*/checkUint* pass in-range integers and throw RangeError otherwise", () => {
    expect($mp.checkInt8(-128)).toBe(-128);
    expect(() => $mp.checkInt8(128)).toThrow(RangeError);
    expect($mp.checkInt16(32767)).toBe(32767);
    expect(() => $mp.checkInt16(-32769)).toThrow(RangeError);
    expect($mp.checkInt32(-2147483648)).toBe(-2147483648);
    expect(() => $mp.checkInt32(2147483648)).toThrow(IntRangeError);
    expect(() => $mp.checkInt32(1.5)).toThrow(RangeError);
    expect($mp.checkUint8(255)).toBe(255);
    expect(() => $mp.checkUint8(-1)).toThrow(RangeError);
    expect($mp.checkUint16(65535)).toBe(65535);
    expect(() => $mp.checkUint16(65536)).toThrow(RangeError);
    expect($mp.checkUint32(4294967295)).toBe(4294967295);
    expect(() => $mp.checkUint32(4294967296)).toThrow(RangeError);
    expect(() => $mp.checkUint32(Number.NaN)).toThrow(RangeError);
  });

  it("checkInt*/checkUint* accept exactly what a Number.isInteger and bounds check accepts", () => {
    const ref = (v: unknown, min: number, max: number): boolean => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
    const checks: [(v: number) => number, number, number, string][] = [
      [$mp.checkInt8, -0x80, 0x7f, "Int8"], [$mp.checkInt16, -0x8000, 0x7fff, "Int16"],
      [$mp.checkInt32, -0x80000000, 0x7fffffff, "Int32"], [$mp.checkUint8, 0, 0xff, "UInt8"],
      [$mp.checkUint16, 0, 0xffff, "UInt16"], [$mp.checkUint32, 0, 0xffffffff, "UInt32"],
    ];
    const values: unknown[] = [0, -0, 1, -1, 0.5, -0.5, 1.5, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53), 2 ** 64,
      5n, "5", null, undefined, { valueOf: () => 5 }, true];
    for (const [, min, max] of checks) for (const e of [min, max]) values.push(e - 1, e, e + 1, e + 0.5, e - 0.5, e + 2 ** 32, e - 2 ** 32);
    for (const [check, min, max, type] of checks) {
      for (const v of values) {
        if (ref(v, min, max)) expect(check(v as number)).toBe(v);
        else expect(() => check(v as number), `${type} ${String(v)}`).toThrow(new IntRangeError(`value ${String(v)} out of range for ${type}`));
      }
    }
  });

  it("a range error while building params rejects the call and sends nothing", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await expect(p.client.add(2 ** 31, 0)).rejects.toBeInstanceOf(RangeError);
    expect(impl.calls).toEqual([]);
  });
});

describe("the CallIO of a call", () => {
  it("build and read get one when the descriptor's clientIo says so; without clientIo, when they declare one", async () => {
    await using p = await fooSetup(new FooImpl());
    const m = FooInterfaceServer.methods.find((x) => x.method.name === "add")!.method;
    expect(m.clientIo).toBe(false); // generated: add's writer and reader take no io
    const seen: unknown[] = [];
    // Rest parameters do not count in a function's length: these two declare no io.
    const build1 = (prm: { a: number; b: number }, ...rest: unknown[]): void => {
      seen.push(rest[0] ?? null);
      prm.a = 1;
      prm.b = 2;
    };
    const read1 = (r: { result: number }, ...rest: unknown[]): number => {
      seen.push(rest[0] ?? null);
      return r.result;
    };
    const build2 = (prm: { a: number; b: number }, io: unknown): void => build1(prm, io);
    // $call is @internal ($invoke without `protected`): not in the published typings.
    type Call = (m: $mp.ProxyMethod, build: (p: any, io?: any) => void, read: (r: any) => number) => Promise<number>;
    const call = (p.client as unknown as { $call: Call }).$call.bind(p.client);
    const unset = { ...m };
    delete unset.clientIo;
    expect(await call({ ...m, clientIo: true }, build1, read1)).toBe(3);
    expect(await call({ ...m, clientIo: false }, build1, read1)).toBe(3);
    expect(await call(unset, build2, read1)).toBe(3);
    expect(await call(unset, build1, read1)).toBe(3);
    const has = seen.map((x) => x !== null && typeof x === "object");
    expect(has).toEqual([true, true, false, false, true, true, false, false]);
  });
});

describe("functions as capabilities (ProxyCallback<std::function>)", () => {
  it("exportFunction serves a JS function; importFunction gives a callable the callee disposes with destroy", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    let calls = 0;
    const fn = () => ++calls * 10;
    expect(await p.client.passFn(fn)).toBe(30); // 10 + 20
    expect(calls).toBe(2);
    expect(await p.client.passFn(null)).toBe(-1);
  });
});
