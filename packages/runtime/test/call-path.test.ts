// The per-call path (issue 6): lazy ServerIO.signal, no Release per Context call, the cancel check
// after asyncRequestStart, frames across awaits, synchronous completion of a sync method; the
// client's one ClientCall per call (issue 13), including a call the engine settles while sending.
// Threading: loop thread (the test's thread).
import { deferred } from "@multiprocess-ts/capnp";
import { currentFrame } from "@multiprocess-ts/runtime";
import * as $mp from "@multiprocess-ts/runtime/gen";
import { describe, expect, it } from "vitest";
import { FooInterfaceServer, type FooCallback, type FooInterface } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { ThreadFooClient } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import { createTestSetup } from "@multiprocess-ts/testing";
import { FooImpl, fooSetup, initSetup } from "./fixtures.js";

const Foo$add = FooInterfaceServer.methods.find((m) => m.method.name === "add")!.method; // add @0 (a, b) -> (result), no Context

describe("ServerIO.signal", () => {
  it("is made on first read, aborts when the connection is torn down mid-call, and is not aborted by a normal return", async () => {
    const running = deferred<AbortSignal>();
    let normal: AbortSignal | undefined;
    class SignalServer extends $mp.ProxyServerBase<FooInterface> {
      static readonly interfaceId = FooInterfaceServer.interfaceId;
      static readonly methods: readonly $mp.ServerMethod<FooInterface>[] = [
        {
          method: Foo$add,
          invoke(_impl, p, r, io) {
            if (p.a === 1) {
              normal = io.signal;
              r.result = 1;
              return;
            }
            const signal = io.signal;
            running.resolve(signal);
            return new Promise<void>((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
          },
        },
      ];
    }
    await using p = await createTestSetup({ impl: new FooImpl(), Server: SignalServer, Client: ThreadFooClient });
    expect(await p.client.add(1, 0)).toBe(1);
    expect(normal!.aborted).toBe(false);
    const call = p.client.add(2, 0);
    const signal = await running.promise;
    expect(signal.aborted).toBe(false);
    await p.connections.server.close();
    expect(signal.aborted).toBe(true);
    await expect(call).rejects.toThrow("IPC client method call interrupted by disconnect.");
    // The signal of the call that returned normally never aborts, even at teardown.
    expect(normal!.aborted).toBe(false);
  });
});

describe("Context calls", () => {
  it("send no Release per call: the server Thread keeps the caller's callbackThread import", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    expect(await p.client.callIntFnAsync(1)).toBe(1);
    const from = p.serverTransport.wireLog.length;
    for (let i = 0; i < 5; i++) expect(await p.client.callIntFnAsync(i)).toBe(i);
    expect(await p.client.add(0, 0)).toBe(0); // a round trip: any Release would have been sent
    expect(p.serverTransport.wireLog.slice(from).filter((e) => e.which === "release")).toEqual([]);
  });

  it("a request canceled by the asyncRequestStart hook does not run (upstream f5509a3)", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const hooks: string[] = [];
    let closing: Promise<void> | undefined;
    p.serverLoop.hooks.asyncRequestStart = () => {
      hooks.push("start");
      closing = p.connections.server.close();
    };
    p.serverLoop.hooks.asyncRequestDone = () => hooks.push("done");
    await expect(p.client.callIntFnAsync(7)).rejects.toThrow("IPC client method call interrupted by disconnect.");
    await closing;
    expect(impl.calls).toEqual([]);
    expect(hooks).toEqual(["start", "done"]);
    expect(p.logs.some((l) => /canceled before it could be executed/.test(l.msg))).toBe(true);
  });

  it("a task's frame survives awaits in the implementation; a call without Context sees none", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const seen: string[] = [];
    impl.callback = async (cb: FooCallback | null, arg: number) => {
      const frame = currentFrame();
      await new Promise((r) => setTimeout(r, 1));
      seen.push(`after await: ${currentFrame() === frame && frame !== undefined}`);
      const n = await cb!.call(arg);
      seen.push(`after call: ${currentFrame() === frame}`);
      // The destroy inside close() is a Context call made after awaits: it still goes to the caller.
      await (cb as unknown as { close(): Promise<void> }).close();
      return n;
    };
    impl.add = (a, b) => {
      seen.push(`add frame: ${currentFrame() === undefined ? "none" : "?"}`);
      return a + b;
    };
    expect(await p.client.callback({ call: (n) => n + 1 }, 1)).toBe(2);
    expect(await p.client.add(1, 1)).toBe(2);
    expect(seen).toEqual(["after await: true", "after call: true", "add frame: none"]);
  });
});

describe("client calls (one ClientCall per call)", () => {
  it("results are read as they arrive; a call the engine cannot send (its link already ended) rejects as interrupted", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    const calls = Array.from({ length: 8 }, (_, i) => p.client.add(i, 1));
    expect(await Promise.all(calls)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // The engine's connection ends now; the runtime Connection's teardown runs on a later turn,
    // so the client still sees it open and the engine refuses the Call while it is being sent.
    const closed = p.connections.client.rpc.close();
    expect(p.connections.client.state).toBe("open");
    const late = p.client.add(1, 2);
    await closed;
    await expect(late).rejects.toThrow("IPC client method call interrupted by disconnect.");
  });
});

describe("server dispatch by interface", () => {
  it("calls alternating between a server's interfaces, and one to an interface it lacks, each reach the right method", async () => {
    await using p = await initSetup();
    const foo = await p.client.makeFoo(); // a ThreadFoo: FooInterface's methods plus threadName
    const unknown: $mp.ProxyMethod = { ...Foo$add, name: "unknown", interfaceId: 0x1234n };
    const call = foo as unknown as { $call: (m: $mp.ProxyMethod, build: () => void, read: () => unknown) => Promise<unknown> };
    const out: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      out.push(await foo.add(i, 1)); // FooInterface
      out.push(typeof (await foo.threadName())); // ThreadFoo
    }
    await expect(call.$call(unknown, () => {}, () => undefined)).rejects.toThrow("Method not implemented: interface 1234 method 0");
    out.push(await foo.add(5, 5));
    expect(out).toEqual([1, "string", 2, "string", 3, "string", 10]);
    await foo.close();
  });
});
