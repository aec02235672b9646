// Thread mapping at run time: the construct exchange, makeThread and request/callback Threads,
// pools and thread-selection errors, ThreadClient teardown in either order, FifoExecutor,
// re-entrancy, and cancellation of queued server calls.
// Threading: loop thread (the test's thread).
import { CanceledError, deferred, memoryTransportPair } from "@multiprocess-ts/capnp";
import { FooInterfaceClient, FooInterface_callIntFnAsync$Params, type FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { FooInitClient } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import {
  connectTransport,
  currentFrame,
  serveTransport,
  ThreadClient,
  ThreadSelectionError,
  ThreadServer,
  type Connection,
} from "@multiprocess-ts/runtime";
import * as $mp from "@multiprocess-ts/runtime/gen";
import { assertIdle, createTestLoops } from "@multiprocess-ts/testing";
import { Struct } from "capnp-ts";
import { describe, expect, it } from "vitest";
import { CALL_INT_FN_ASYNC, FooImpl, InitImpl, callIntFnOn, fooSetup, initSetup } from "./fixtures.js";

/** Asks the peer ThreadMap of `conn` for a pool of `count` Threads. */
async function makePool(conn: Connection, count: number): Promise<void> {
  const req = conn.peerThreadMap!.newCall($mp.THREAD_MAP_INTERFACE_ID, 1, $mp.ThreadMap_makePool$Params);
  req.params.count = count;
  const resp = await req.send();
  resp.close();
}

/** Thread.getName through a Thread capability. */
async function getName(cap: $mp.Capability): Promise<string> {
  const resp = await cap.newCall($mp.THREAD_INTERFACE_ID, 0, $mp.Thread_getName$Params).send();
  try {
    return resp.results($mp.Thread_getName$Results).result;
  } finally {
    resp.close();
  }
}

const frameName = (): string => currentFrame()?.context.name ?? "<loop>";

describe("construct exchange", () => {
  it("connectTransport sends our ThreadMap with construct and keeps the peer's; both sides end up with one", async () => {
    const init = new InitImpl();
    await using p = await initSetup(init);
    expect(p.connections.client.peerThreadMap).not.toBeNull();
    expect(p.connections.server.peerThreadMap).not.toBeNull();
    expect(p.connections.client.threadMapServer).toBeDefined();
    expect(p.connections.server.threadMapServer).toBeDefined();
    // The first thing on the wire after bootstrap is the construct call.
    const calls = p.clientTransport.wireLog.filter((e) => e.which === "call" || e.which === "bootstrap");
    expect(calls.slice(0, 2).map((e) => e.which)).toEqual(["bootstrap", "call"]);
  });
});

describe("makeThread and request threads", () => {
  it("creates one server Thread per client thread and connection (pipelined), named after the client thread", async () => {
    const init = new InitImpl();
    await using p = await initSetup(init);
    const hooks: string[] = [];
    p.serverLoop.hooks.makeThread = () => hooks.push("makeThread");
    p.serverLoop.hooks.makeThreadCreated = () => hooks.push("makeThreadCreated");
    p.serverLoop.hooks.asyncRequestStart = () => hooks.push("start");
    p.serverLoop.hooks.asyncRequestDone = () => hooks.push("done");
    const foo = await p.client.makeFoo();
    const f = init.foos[0]!;
    f.threadNameFn = frameName;
    const names = [await foo.threadName(), await foo.threadName()];
    expect(hooks).toEqual(["makeThread", "makeThreadCreated", "start", "done", "start", "done", "start", "done"]);
    expect(names[0]).toBe(names[1]);
    expect(names[0]).toContain(`(from ${p.clientLoop.threadName})`);
    // Thread.getName returns the same name.
    const entry = p.clientLoop.threadContext.requestThreads.get(p.connections.client)!;
    expect(await getName(entry.cap!)).toBe(names[0]);
    // Calls without a Context run directly on the loop, outside any server Thread.
    f.add = (a: number, b: number) => {
      expect(currentFrame()).toBeUndefined();
      return a + b;
    };
    expect(await foo.add(1, 2)).toBe(3);
    await foo.close();
  });

  it("calls naming the same Thread run FIFO, one at a time", async () => {
    const init = new InitImpl();
    await using p = await initSetup(init);
    const foo = await p.client.makeFoo();
    const f = init.foos[0]!;
    const events: string[] = [];
    const gates = [deferred<void>(), deferred<void>(), deferred<void>()];
    const started = [deferred<void>(), deferred<void>(), deferred<void>()];
    f.intFn = async (n) => {
      events.push(`start ${n}`);
      started[n]!.resolve();
      await gates[n]!.promise;
      events.push(`end ${n}`);
      return n * 2;
    };
    const calls = [foo.callIntFnAsync(0), foo.callIntFnAsync(1), foo.callIntFnAsync(2)];
    await started[0]!.promise;
    // A context-less call behind them is a fence: when it returns, calls 1 and 2 have been
    // delivered and queued on the same server Thread.
    expect(await foo.add(0, 0)).toBe(0);
    const thread = [...p.connections.server.threads].find((t) => t.name.includes("(from"))!;
    expect(thread.load).toBe(3);
    expect(events).toEqual(["start 0"]);
    gates[2]!.resolve(); // releasing a later call first changes nothing: it has not started
    gates[0]!.resolve();
    await started[1]!.promise;
    expect(events).toEqual(["start 0", "end 0", "start 1"]);
    gates[1]!.resolve();
    expect(await Promise.all(calls)).toEqual([0, 2, 4]);
    expect(events).toEqual(["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]);
    await foo.close();
  });

  it("callbacks run on the caller's callback Thread; nested calls use it only for the call's duration", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const seen: string[] = [];
    let serverThread: ThreadServer | undefined;
    impl.callback = async (cb: FooCallback | null, arg: number) => {
      const frame = currentFrame()!;
      serverThread = [...p.connections.server.threads].find((t) => t.context === frame.context);
      // While serving, this thread's request Thread for the connection is the caller's callbackThread.
      seen.push(`server request thread set: ${frame.context.requestThreads.has(p.connections.server)}`);
      try {
        return await cb!.call(arg);
      } finally {
        await (cb as unknown as { close(): Promise<void> }).close();
      }
    };
    const cb: FooCallback = {
      call: (n) => {
        seen.push(`callback on ${currentFrame()?.context === p.clientLoop.threadContext ? "client loop context" : "?"}`);
        return n + 1;
      },
    };
    expect(await p.client.callback(cb, 1)).toBe(2);
    expect(seen).toEqual(["server request thread set: true", "callback on client loop context"]);
    // The temporary entry is gone after the call.
    expect(serverThread!.context.requestThreads.has(p.connections.server)).toBe(false);
  });
});

describe("pool and thread selection errors", () => {
  it("a call with a Context but no thread goes to the least-loaded pool Thread (ties: lowest index)", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    await makePool(p.connections.client, 2);
    expect(p.connections.server.pool!.map((t) => t.name.replace(/^.*\(/, "("))).toEqual(["(pool/0)", "(pool/1)"]);
    const gate = deferred<void>();
    const where: string[] = [];
    const arrived = [deferred<void>(), deferred<void>(), deferred<void>(), deferred<void>()];
    impl.intFn = async (n) => {
      where.push(`${n}:${frameName().replace(/^.*\(/, "(")}`);
      arrived[n]!.resolve();
      await gate.promise;
      return n * 2;
    };
    // 0 → pool/0 (tie, lowest index); 1 → pool/1 (less loaded); 2 → pool/0 (tie again), queued.
    const c0 = callIntFnOn(p.client, null, 0);
    await arrived[0]!.promise;
    const c1 = callIntFnOn(p.client, null, 1);
    await arrived[1]!.promise;
    const c2 = callIntFnOn(p.client, null, 2);
    expect(await p.client.add(0, 0)).toBe(0); // fence: c2 is queued
    expect(p.connections.server.pool!.map((t) => t.load)).toEqual([2, 1]);
    // 3 → pool/1 (load 1 < 2), queued behind 1.
    const c3 = callIntFnOn(p.client, null, 3);
    expect(await p.client.add(0, 0)).toBe(0); // fence
    expect(p.connections.server.pool!.map((t) => t.load)).toEqual([2, 2]);
    expect(where).toEqual(["0:(pool/0)", "1:(pool/1)"]);
    gate.resolve();
    expect(await Promise.all([c0, c1, c2, c3])).toEqual([0, 2, 4, 6]);
    expect([...where].sort()).toEqual(["0:(pool/0)", "1:(pool/1)", "2:(pool/0)", "3:(pool/1)"]);
    await expect(makePool(p.connections.client, 1)).rejects.toThrow("makePool called on connection with existing pool");
  });

  it('fails with "no thread specified and no pool configured" without a thread or pool', async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    // No ThreadMap exchange: the runtime leaves Context.thread unset.
    expect(p.connections.client.peerThreadMap).toBeNull();
    await expect(p.client.callIntFnAsync(1)).rejects.toThrow("no thread specified and no pool configured");
    await expect(callIntFnOn(p.client, null, 1)).rejects.toThrow("no thread specified and no pool configured");
    expect(impl.calls).toEqual([]);
    // The server-side error class and code, checked locally.
    const local = new ThreadSelectionError("no thread specified and no pool configured", "MP_ERR_NO_THREAD");
    expect(local.kind).toBe("failed");
  });

  it('fails with "invalid thread handle" for a Thread this connection\'s ThreadMap did not create', async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    // Make the client's callback Thread exist by making one Context call, then send the client's
    // own (client-hosted) Thread as Context.thread: the server does not host it.
    impl.intFn = (n) => n;
    await expect(p.client.callIntFnAsync(5)).resolves.toBe(5);
    const own = p.clientLoop.threadContext.callbackThreads.get(p.connections.client)!.cap!;
    await expect(callIntFnOn(p.client, own, 1)).rejects.toThrow("invalid thread handle");
    expect(impl.calls).toEqual(["callIntFnAsync(5)"]);
  });
});

describe("ThreadClient teardown (#189) in either order", () => {
  it("entry first: unregisters its cleanup; the connection's teardown then skips it", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    impl.intFn = (n) => n;
    await p.client.callIntFnAsync(1);
    const tc = p.clientLoop.threadContext;
    const entry = tc.requestThreads.get(p.connections.client)!;
    const before = p.connections.client.syncCleanupCount;
    entry.destroy();
    expect(entry.destroyed).toBe(true);
    expect(entry.cap).toBeNull();
    expect(tc.requestThreads.has(p.connections.client)).toBe(false);
    expect(p.connections.client.syncCleanupCount).toBe(before - 1);
    entry.destroy(); // idempotent
    // The next call makes a new request Thread.
    await p.client.callIntFnAsync(2);
    expect(tc.requestThreads.get(p.connections.client)).not.toBe(entry);
    await p.dispose();
    expect(tc.requestThreads.size).toBe(0);
    expect(tc.callbackThreads.size).toBe(0);
  });

  it("connection first: its cleanup marks the entry destroyed; a later destroy() is a no-op", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    impl.intFn = (n) => n;
    await p.client.callIntFnAsync(1);
    const tc = p.clientLoop.threadContext;
    const entries: ThreadClient[] = [tc.requestThreads.get(p.connections.client)!, tc.callbackThreads.get(p.connections.client)!];
    await p.connections.client.close();
    for (const e of entries) {
      expect(e.destroyed).toBe(true);
      e.destroy();
    }
    expect(tc.requestThreads.size).toBe(0);
    expect(tc.callbackThreads.size).toBe(0);
  });
});

describe("FifoExecutor", () => {
  it("runs one task at a time, FIFO; a task waiting for an IPC call lets the next one run", async () => {
    const { FifoExecutor } = await import("@multiprocess-ts/runtime");
    const ex = new FifoExecutor();
    const events: string[] = [];
    const g1 = deferred<void>();
    const ipc = deferred<void>();
    const resumed = deferred<void>();
    const t1 = ex.run(async (task) => {
      events.push("1 start");
      task.enterWait(); // waiting for an "IPC call"
      task.enterWait(); // idempotent
      await ipc.promise;
      task.exitWait();
      events.push("1 resumed");
      resumed.resolve();
      await g1.promise;
      events.push("1 end");
    });
    const t2 = ex.run(() => {
      events.push("2");
    });
    const t3 = ex.run(() => {
      events.push("3");
    });
    // 2 and 3 ran while 1 was waiting.
    await t2;
    await t3;
    expect(events).toEqual(["1 start", "2", "3"]);
    ipc.resolve();
    await resumed.promise;
    const t4 = ex.run(() => {
      events.push("4");
    });
    // 1 is running again (not waiting), so 4 waits for it.
    await Promise.resolve();
    expect(ex.load).toBe(2);
    g1.resolve();
    await Promise.all([t1, t4]);
    expect(events).toEqual(["1 start", "2", "3", "1 resumed", "1 end", "4"]);
    expect(ex.load).toBe(0);
  });

  it("a task that finishes while still marked waiting does not wedge the queue", async () => {
    const { FifoExecutor } = await import("@multiprocess-ts/runtime");
    const ex = new FifoExecutor();
    let late: (() => void) | undefined;
    await ex.run((task) => {
      task.enterWait();
      late = () => task.exitWait(); // fire-and-forget call settling after the task
    });
    late!();
    const events: string[] = [];
    await Promise.all([ex.run(() => void events.push("a")), ex.run(() => void events.push("b"))]);
    expect(events).toEqual(["a", "b"]);
    await expect(ex.run(() => Promise.reject(new Error("task failed")))).rejects.toThrow("task failed");
    await expect(ex.run(() => 7)).resolves.toBe(7);
    expect(ex.load).toBe(0);
  });
});

describe("re-entrancy", () => {
  it("a callback that calls back into the server Thread waiting for it does not deadlock", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const names: string[] = [];
    impl.intFn = (n) => {
      names.push(frameName());
      return n * 3;
    };
    impl.callback = async (cb: FooCallback | null, arg: number) => {
      names.push(frameName());
      try {
        return await cb!.call(arg);
      } finally {
        await (cb as unknown as { close(): Promise<void> }).close();
      }
    };
    // The callback (client side) calls callIntFnAsync, which the client sends to its request
    // Thread: the server Thread that is busy waiting for this very callback.
    const cb: FooCallback = { call: (n) => p.client.callIntFnAsync(n) };
    expect(await p.client.callback(cb, 2)).toBe(6);
    expect(names).toHaveLength(2);
    expect(names[0]).toBe(names[1]);
    expect(names[0]).toContain("(from");
  });
});

describe("a waiting task's Return (proxy/client.ts ClientCall.settle)", () => {
  it("a call delivered with the Return the Thread waits for starts before the task resumes", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const order: string[] = [];
    impl.intFn = (n) => {
      order.push(`intFn on ${frameName()}`);
      return n * 3;
    };
    impl.callback = async (cb: FooCallback | null, arg: number) => {
      const v = await cb!.call(arg);
      order.push(`resumed on ${frameName()}`);
      await (cb as unknown as { close(): Promise<void> }).close();
      return v;
    };
    // The callback sends callIntFnAsync (to the server Thread waiting for this callback) and
    // then returns: the fence holds both, and they reach the server in one delivery, the Call
    // first, so the Call's dispatch is still queued when the Return settles the task's call.
    const t = p.clientTransport;
    const send = t.send.bind(t);
    let fenced = false;
    let intFn: Promise<number> | undefined;
    let released: string[] = [];
    t.send = (segments) => {
      send(segments);
      if (fenced && t.held === 2) {
        fenced = false;
        released = t.wireLog.slice(-2).map((e) => e.which);
        t.release();
      }
    };
    const cb: FooCallback = {
      call: (n) => {
        t.fence();
        fenced = true;
        intFn = p.client.callIntFnAsync(n);
        return n * 2;
      },
    };
    expect(await p.client.callback(cb, 5)).toBe(10);
    expect(await intFn).toBe(15);
    expect(released).toEqual(["call", "return"]);
    expect(order).toHaveLength(2);
    expect(order[0]).toMatch(/^intFn on .*\(from/);
    expect(order[1]).toBe(order[0]!.replace("intFn on", "resumed on"));
  });

  it("a Return with no call queued resumes the task with the value or the error; calls queued on its Thread run after it, in order", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const order: string[] = [];
    impl.callback = async (cb: FooCallback | null, arg: number) => {
      order.push(`start ${arg}`);
      try {
        const v = await cb!.call(arg);
        order.push(`resumed ${arg} = ${v}`);
        return v;
      } catch (e) {
        order.push(`resumed ${arg} threw ${(e as Error).message}`);
        throw e;
      } finally {
        await (cb as unknown as { close(): Promise<void> }).close();
      }
    };
    const cb = (): FooCallback => ({
      call: (n) => {
        if (n < 0) throw new Error("negative");
        return n * 2;
      },
    });
    const calls = [p.client.callback(cb(), 1), p.client.callback(cb(), -1), p.client.callback(cb(), 3)];
    const settled = await Promise.allSettled(calls);
    expect(settled[0]).toEqual({ status: "fulfilled", value: 2 });
    expect(settled[1]!.status).toBe("rejected");
    expect(String((settled[1] as PromiseRejectedResult).reason)).toContain("negative");
    expect(settled[2]).toEqual({ status: "fulfilled", value: 6 });
    // Each task waits for its callback: the next queued one starts meanwhile (FIFO), and each
    // resumes with its own outcome (an error's way back takes more microtasks: no order across
    // tasks is promised).
    expect(order.filter((s) => s.startsWith("start"))).toEqual(["start 1", "start -1", "start 3"]);
    expect(order.filter((s) => s.startsWith("resumed")).sort()).toEqual(["resumed -1 threw negative", "resumed 1 = 2", "resumed 3 = 6"]);
  });
});

describe("cancellation of queued server calls", () => {
  it("a call canceled by its caller (Finish) while queued on a Thread is skipped when its turn comes", async () => {
    const init = new InitImpl();
    await using p = await initSetup(init);
    const foo = await p.client.makeFoo();
    const f = init.foos[0]!;
    const running = deferred<void>();
    const gate = deferred<void>();
    f.intFn = async (n) => {
      if (n === 1) {
        running.resolve();
        await gate.promise;
      }
      return n;
    };
    const first = foo.callIntFnAsync(1);
    await running.promise;
    // Queue a second call on the same Thread, then cancel it before it can start.
    const thread = p.clientLoop.threadContext.requestThreads.get(p.connections.client)!.cap!;
    const req = foo.$cap.newCall(FooInterfaceClient.interfaceId, CALL_INT_FN_ASYNC, FooInterface_callIntFnAsync$Params);
    req.params.arg = 2;
    $mp.writeCap(Struct.initStructAt(0, $mp.Context, req.params), 0, thread);
    const second = req.send();
    expect(await foo.add(0, 0)).toBe(0); // fence: call 2 is queued on the server Thread
    second.cancel();
    await expect(Promise.resolve(second)).rejects.toBeInstanceOf(CanceledError);
    expect(await foo.add(0, 0)).toBe(0); // fence: its Finish has arrived
    gate.resolve();
    expect(await first).toBe(1);
    // A third call on the same Thread runs after the skipped one.
    expect(await foo.callIntFnAsync(3)).toBe(3);
    expect(f.calls).toEqual(["callIntFnAsync(1)", "add(0,0)", "add(0,0)", "callIntFnAsync(3)"]); // never 2
    expect(p.logs.some((l) => /canceled before it could be executed/.test(l.msg))).toBe(true);
    await foo.close();
  });
});

describe("connectTransport", () => {
  it("closes the connection and rethrows when construct fails", async () => {
    // A server whose Init does not implement construct.
    class NoConstructServer extends $mp.ProxyServerBase<object> {
      static readonly interfaceId = FooInitClient.interfaceId;
      static readonly methods: readonly $mp.ServerMethod<object>[] = [];
    }
    const { serverLoop, clientLoop, logs } = createTestLoops({ logLevel: "debug" });
    const [ct, st] = memoryTransportPair();
    const impl = { disposed: 0, [Symbol.dispose]() { this.disposed++; } };
    const serverConn = serveTransport(serverLoop, st, impl, NoConstructServer);
    await expect(connectTransport(clientLoop, ct, FooInitClient)).rejects.toThrow(/not implemented/i);
    await serverConn.disconnected;
    await Promise.all([serverLoop.done, clientLoop.done]);
    expect(impl.disposed).toBe(1);
    assertIdle({ connections: { serverConn }, loops: { serverLoop, clientLoop }, logs });
  });
});
