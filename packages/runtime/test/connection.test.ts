// Connection: the cleanup list, the documented teardown order, idempotent close, and a peer
// disconnect (with the server's connected/disconnected hooks); engine trace lines only at trace level.
// Threading: loop thread (the test's thread).
import { deferred, memoryTransportPair } from "@multiprocess-ts/capnp";
import { CleanupList, Connection, IpcInterruptedError } from "@multiprocess-ts/runtime";
import { assertIdle, createTestLoops } from "@multiprocess-ts/testing";
import { describe, expect, it } from "vitest";
import { FooImpl, fooSetup } from "./fixtures.js";

describe("CleanupList", () => {
  it("pops most recent first; remove is O(1) and a no-op for popped entries", () => {
    const l = new CleanupList();
    const out: string[] = [];
    const a = l.add(() => out.push("a"));
    l.add(() => out.push("b"));
    const c = l.add(() => out.push("c"));
    expect(l.size).toBe(3);
    expect(l.remove(a)).toBe(true);
    expect(l.remove(a)).toBe(false);
    l.popFront()!();
    expect(l.remove(c)).toBe(false); // already popped
    l.popFront()!();
    expect(l.popFront()).toBeUndefined();
    expect(out).toEqual(["c", "b"]);
    expect(l.size).toBe(0);
    // A handle from another list is never removed here.
    const other = new CleanupList();
    const foreign = other.add(() => {});
    const mine = l.add(() => {});
    expect(l.remove(foreign)).toBe(false);
    expect(other.size).toBe(1);
    expect(l.remove(mine)).toBe(true);
  });
});

describe("Connection teardown", () => {
  it("runs in the documented order: cancel calls, drop caps, flush, sync cleanups one at a time, async cleanups, onDisconnect", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    const serverConn = p.connections.server;
    const { serverLoop } = p;
    const events: string[] = [];
    // An in-flight server call (pool thread) that is running when teardown starts.
    await p.client.initThreadMap();
    const running = deferred<void>();
    const finish = deferred<number>();
    impl.intFn = () => {
      running.resolve();
      return finish.promise;
    };
    const call = p.client.callIntFnAsync(7);
    await running.promise;

    serverConn.signal.addEventListener("abort", () => events.push(`abort rpcClosed=${serverConn.rpc.isClosed}`));
    const origDispose = impl[Symbol.asyncDispose].bind(impl);
    impl[Symbol.asyncDispose] = () => {
      events.push("impl disposed (async cleanup)");
      return origDispose();
    };
    // Sync cleanups run most recent first: C, then B (A was removed by C).
    const a = serverConn.addSyncCleanup(() => events.push("A"));
    let bHandle: ReturnType<Connection["addSyncCleanup"]> | undefined;
    bHandle = serverConn.addSyncCleanup(() => {
      events.push(`B rpcClosed=${serverConn.rpc.isClosed}`);
      // A running cleanup can never be removed, not even by itself.
      events.push(`B removes itself: ${serverConn.removeSyncCleanup(bHandle!)}`);
    });
    serverConn.addSyncCleanup(() => {
      events.push(`C state=${serverConn.state}`);
      events.push(`C removes A: ${serverConn.removeSyncCleanup(a)}`);
      serverConn.addAsyncCleanup(() => events.push("async cleanup from C"));
    });
    serverConn.onDisconnect((err) => events.push(`onDisconnect err=${err?.message ?? "none"}`));

    const closed = serverConn.close();
    // Step 1 ran synchronously: in-flight server calls are canceled first.
    expect(events).toEqual(["abort rpcClosed=false"]);
    await closed;
    expect(serverConn.state).toBe("closed");
    await expect(call).rejects.toBeInstanceOf(IpcInterruptedError);
    finish.resolve(1); // the canceled call finishes; its result is discarded
    await p.dispose();
    expect(events.slice(0, 5)).toEqual([
      "abort rpcClosed=false",
      "C state=closed",
      "C removes A: true",
      "B rpcClosed=true",
      "B removes itself: false",
    ]);
    // Then, on later turns: the async cleanups in FIFO order (the impl's disposal was queued when
    // the engine released the server, before C ran), and the onDisconnect callbacks. The two
    // queues are independent, so only the order within the async queue is fixed.
    const rest = events.slice(5);
    expect([...rest].sort()).toEqual(["async cleanup from C", "impl disposed (async cleanup)", "onDisconnect err=none"]);
    expect(rest.indexOf("impl disposed (async cleanup)")).toBeLessThan(rest.indexOf("async cleanup from C"));
    expect(impl.disposeCount).toBe(1);
    expect(serverLoop.numRefs).toBe(0);
  });

  it("close is idempotent; cleanups added after teardown run on a later turn; onDisconnect after the end still fires", async () => {
    const { serverLoop, clientLoop, logs } = createTestLoops({ logLevel: "debug" });
    const [t1, t2] = memoryTransportPair();
    const c1 = new Connection(serverLoop, t1);
    const c2 = new Connection(clientLoop, t2);
    const h = c1.addSyncCleanup(() => {});
    expect(c1.removeSyncCleanup(h)).toBe(true);
    expect(c1.syncCleanupCount).toBe(0);
    const unregistered: string[] = [];
    const off = c1.onDisconnect(() => unregistered.push("should not run"));
    off();
    const first = c1.close();
    expect(c1.close()).toBe(first);
    await first;
    await c2.disconnected; // the peer sees the end and tears down on its own
    expect(c2.state).toBe("closed");
    const late: string[] = [];
    const lateHandle = c1.addSyncCleanup(() => late.push("late cleanup"));
    expect(c1.removeSyncCleanup(lateHandle)).toBe(false); // too late to remove: it is already queued
    expect(c1.syncCleanupCount).toBe(0);
    c1.onDisconnect(() => late.push("late onDisconnect"));
    expect(late).toEqual([]);
    await Promise.all([serverLoop.done, clientLoop.done]);
    expect(late).toEqual(["late cleanup", "late onDisconnect"]);
    expect(unregistered).toEqual([]);
    assertIdle({ connections: { c1, c2 }, loops: { serverLoop, clientLoop }, logs });
  });

  it("asks the engine for per-message trace lines only when its loop logs at trace level", async () => {
    const traceOn = (c: Connection): boolean => (c.rpc as unknown as { core: { traceOn: boolean } }).core.traceOn;
    for (const level of ["debug", "trace"] as const) {
      const { serverLoop, clientLoop, logs } = createTestLoops({ logLevel: level });
      const [t1, t2] = memoryTransportPair();
      const c1 = new Connection(serverLoop, t1);
      const c2 = new Connection(clientLoop, t2);
      expect([traceOn(c1), traceOn(c2)]).toEqual([level === "trace", level === "trace"]);
      await c1.close();
      await c2.disconnected;
      await Promise.all([serverLoop.done, clientLoop.done]);
      assertIdle({ connections: { c1, c2 }, loops: { serverLoop, clientLoop }, logs });
    }
  });

  it("a peer disconnect tears the connection down with the transport error, and fires the server hooks", async () => {
    const events: string[] = [];
    const hooks = { connected: () => void events.push("connected"), disconnected: () => void events.push("disconnected") };
    const impl = new FooImpl();
    {
      await using p = await fooSetup(impl, { hooks });
      expect(events).toEqual(["connected"]);
      p.clientTransport.break(new Error("link broke"));
      await Promise.all([p.connections.server.disconnected, p.connections.client.disconnected]);
      expect(p.connections.server.error).toBeInstanceOf(Error);
    }
    expect(events).toEqual(["connected", "disconnected"]);
    expect(impl.disposeCount).toBe(1);
  });
});
