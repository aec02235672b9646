// The server's per-call path for Context calls (issue 13): the Thread read in place, one request
// Thread entry per caller callback Thread reused across calls (and replaced when another caller
// uses the same server Thread), and FifoExecutor.runNow (an idle Thread runs a call at once, a
// value goes back without a promise).
// Threading: loop thread (the test's thread).
import { deferred, localCapability } from "@multiprocess-ts/capnp";
import { currentFrame, FifoExecutor, runInFrame, ThreadContext, ThreadServer, type TaskControl } from "@multiprocess-ts/runtime";
import type { FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { describe, expect, it } from "vitest";
import { FooImpl, callIntFnOn, fooSetup } from "./fixtures.js";

describe("FifoExecutor.runNow", () => {
  it("runs a task at once when idle: a value comes back as is, a throw is thrown, a promise settles the task", async () => {
    const ex = new FifoExecutor();
    expect(ex.idle).toBe(true);
    let seenLoad = -1;
    expect(ex.runNow(() => ((seenLoad = ex.load), 7))).toBe(7);
    expect(seenLoad).toBe(1);
    expect(ex.load).toBe(0);
    expect(() => ex.runNow(() => { throw new Error("boom"); })).toThrow("boom");
    expect(ex.idle).toBe(true);
    const gate = deferred<void>();
    const p = ex.runNow(async () => {
      await gate.promise;
      return 8;
    });
    expect(p).toBeInstanceOf(Promise);
    expect(ex.idle).toBe(false);
    expect(ex.load).toBe(1);
    gate.resolve();
    expect(await p).toBe(8);
    expect(ex.load).toBe(0);
    expect(ex.idle).toBe(true);
  });

  it("queues behind a running task (FIFO), as run() does; a waiting task lets it start", async () => {
    const ex = new FifoExecutor();
    const events: string[] = [];
    const gate = deferred<void>();
    let control: TaskControl | undefined;
    const first = ex.run(async (task) => {
      control = task;
      events.push("1 start");
      await gate.promise;
      events.push("1 end");
    });
    const second = ex.runNow(() => {
      events.push("2");
      return 2;
    });
    expect(second).toBeInstanceOf(Promise);
    expect(events).toEqual(["1 start"]);
    control!.enterWait(); // waiting for an IPC call: the queued task runs
    expect(events).toEqual(["1 start", "2"]);
    control!.exitWait();
    expect(ex.idle).toBe(false);
    gate.resolve();
    await first;
    expect(await second).toBe(2);
    expect(events).toEqual(["1 start", "2", "1 end"]);
    expect(ex.idle).toBe(true);
  });
});

describe("Context calls on one server Thread from two caller threads", () => {
  it("each call's callbacks go back to its own caller's callback Thread; no entry stays after the calls", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const seen: string[] = [];
    const threads = new Set<ThreadServer>();
    impl.callback = async (cb: FooCallback | null, arg: number) => {
      const ctx = currentFrame()!.context;
      threads.add([...p.connections.server.threads].find((t) => t.context === ctx)!);
      try {
        return await cb!.call(arg);
      } finally {
        await (cb as unknown as { close(): Promise<void> }).close();
      }
    };
    const loopCtx = p.clientLoop.threadContext;
    const other = new ThreadContext(p.clientLoop, "other caller");
    const name = (): string => (currentFrame()?.context === other ? "other" : currentFrame()?.context === loopCtx ? "loop" : "?");
    const cb: FooCallback = { call: (n) => (seen.push(`${n} on ${name()}`), n + 1) };
    // The first call makes the loop context's request Thread; `other` is pointed at the same one.
    expect(await p.client.callback(cb, 0)).toBe(1);
    const shared = loopCtx.requestThreads.get(p.connections.client)!.cap!;
    expect(other.setRequestThread(p.connections.client, shared.dup())).toBeDefined();
    const order = ["other", "loop", "other", "other", "loop", "loop", "other"];
    for (let i = 0; i < order.length; i++) {
      const n = i + 1;
      const r = order[i] === "other" ? runInFrame(other, () => p.client.callback(cb, n)) : p.client.callback(cb, n);
      expect(await r).toBe(n + 1);
    }
    expect(seen).toEqual(["0 on loop", ...order.map((w, i) => `${i + 1} on ${w}`)]);
    expect(threads.size).toBe(1); // one server Thread served them all
    const [thread] = [...threads];
    expect(thread!.context.requestThreads.has(p.connections.server)).toBe(false);
    other.close();
  });

  it("a Context naming no callbackThread sets no request Thread; a later call with one does", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    const set: boolean[] = [];
    impl.intFn = (n) => {
      set.push(currentFrame()!.context.requestThreads.has(p.connections.server));
      return n;
    };
    expect(await p.client.callIntFnAsync(1)).toBe(1);
    const thread = p.clientLoop.threadContext.requestThreads.get(p.connections.client)!.cap!;
    expect(await callIntFnOn(p.client, thread, 2)).toBe(2);
    const cbThread = localCapability(new ThreadServer(p.connections.client, "extra", p.clientLoop.threadContext));
    expect(await callIntFnOn(p.client, thread, 3, cbThread)).toBe(3);
    expect(await p.client.callIntFnAsync(4)).toBe(4);
    cbThread.close();
    expect(set).toEqual([true, false, true, true]);
  });
});
