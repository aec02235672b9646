import { deferred } from "@multiprocess-ts/capnp";
import { EventLoop, longThreadName, truncate, type LogLevel } from "@multiprocess-ts/runtime";
import { describe, expect, it } from "vitest";

function loopWithLog(level: LogLevel = "trace", maxChars?: number) {
  const lines: { level: LogLevel; msg: string }[] = [];
  const loop = new EventLoop("test-loop", {
    log: { level, maxChars, logFn: (lvl, msg) => lines.push({ level: lvl, msg }) },
  });
  return { loop, lines };
}

async function settled(loop: EventLoop) {
  await loop.done;
  expect(loop.numRefs).toBe(0);
  expect(loop.pendingWork).toBe(0);
}

describe("EventLoop post/sync", () => {
  it("post queues FIFO and never runs inline; sync runs inline", async () => {
    const { loop } = loopWithLog();
    const order: string[] = [];
    loop.post(() => order.push("p1"));
    loop.post(() => {
      order.push("p2");
      // posted while draining: still after everything queued before it
      loop.post(() => order.push("p4"));
    });
    loop.post(() => order.push("p3"));
    const r = loop.sync(() => {
      order.push("sync");
      return 42;
    });
    expect(r).toBe(42);
    expect(order).toEqual(["sync"]);
    await settled(loop);
    expect(order).toEqual(["sync", "p1", "p2", "p3", "p4"]);
  });

  it("an exception in a posted function is logged and does not stop the queue (upstream #260)", async () => {
    const { loop, lines } = loopWithLog();
    const order: string[] = [];
    loop.post(() => {
      throw new Error("boom");
    });
    loop.post(() => order.push("after"));
    await settled(loop);
    expect(order).toEqual(["after"]);
    expect(lines.some((l) => l.level === "error" && /posted function: Error: boom/.test(l.msg))).toBe(true);
  });
});

describe("EventLoop refs and completion", () => {
  it("done settles only once every ref is released", async () => {
    const { loop } = loopWithLog();
    const r1 = loop.ref();
    const r2 = loop.ref();
    expect(loop.numRefs).toBe(2);
    let done = false;
    const p = loop.done.then(() => (done = true));
    // A posted function that releases the first ref; the loop must still wait for r2.
    const released = deferred<void>();
    loop.post(() => {
      r1[Symbol.dispose]();
      released.resolve();
    });
    await released.promise;
    await new Promise<void>((r) => setImmediate(r));
    expect(done).toBe(false);
    expect(loop.numRefs).toBe(1);
    r2.reset();
    r2.reset(); // idempotent
    r1[Symbol.dispose]();
    expect(loop.numRefs).toBe(0);
    await p;
    expect(done).toBe(true);
  });

  it("done waits for the post queue to drain", async () => {
    const { loop } = loopWithLog();
    const order: string[] = [];
    loop.post(() => order.push("posted"));
    await loop.done.then(() => order.push("done"));
    expect(order).toEqual(["posted", "done"]);
  });

  it("done settles on a later turn when already idle", async () => {
    const { loop } = loopWithLog();
    let done = false;
    const p = loop.done.then(() => (done = true));
    await Promise.resolve();
    expect(done).toBe(false);
    await p;
    expect(done).toBe(true);
  });
});

describe("EventLoop async cleanup", () => {
  it("runs FIFO, off the caller's turn, one at a time, awaiting promises; done waits for the queue", async () => {
    const { loop, lines } = loopWithLog();
    const order: string[] = [];
    const gate = deferred<void>();
    const started = deferred<void>();
    loop.addAsyncCleanup(async () => {
      order.push("c1 start");
      started.resolve();
      await gate.promise;
      order.push("c1 end");
    });
    loop.addAsyncCleanup(() => {
      order.push("c2");
      throw new Error("cleanup failure");
    });
    loop.addAsyncCleanup(() => order.push("c3"));
    // Never inline: nothing ran during addAsyncCleanup.
    expect(order).toEqual([]);
    let done = false;
    const p = loop.done.then(() => (done = true));
    // Once c1 is running, c2 must not start while c1 is pending (checked a turn later).
    await started.promise;
    await new Promise<void>((r) => setImmediate(r));
    expect(order).toEqual(["c1 start"]);
    expect(done).toBe(false);
    expect(loop.pendingWork).toBeGreaterThan(0);
    gate.resolve();
    await p;
    expect(order).toEqual(["c1 start", "c1 end", "c2", "c3"]);
    expect(lines.some((l) => l.level === "error" && /async cleanup failed: Error: cleanup failure/.test(l.msg))).toBe(true);
    await settled(loop);
  });
});

describe("EventLoop hooks, handlers, logging", () => {
  it("testing hooks are no-ops unless set, and can be assigned", () => {
    const loop = new EventLoop("hooks");
    expect(loop.hooks.connected).toBeUndefined();
    let n = 0;
    loop.hooks.connected = () => n++;
    loop.hooks.connected?.();
    expect(n).toBe(1);
    const withOpts = new EventLoop("hooks2", { hooks: { disconnected: () => n++ } });
    withOpts.hooks.disconnected?.();
    expect(n).toBe(2);
    for (const l of [loop, withOpts]) expect([l.numRefs, l.pendingWork]).toEqual([0, 0]);
  });

  it("named handlers run through the post queue; unknown names and throwing handlers reject", async () => {
    const { loop } = loopWithLog();
    const order: string[] = [];
    const h = loop.handle("double", (data) => {
      order.push("handler");
      return (data as number) * 2;
    });
    expect(() => loop.handle("double", () => 0)).toThrow(/already registered/);
    loop.handle("async", async (data) => `got ${String(data)}`);
    loop.handle("throws", () => {
      throw new Error("handler failed");
    });
    loop.post(() => order.push("posted first"));
    const r = loop.dispatch("double", 21);
    expect(order).toEqual([]);
    expect(await r).toBe(42);
    expect(order).toEqual(["posted first", "handler"]);
    expect(await loop.dispatch("async", 1)).toBe("got 1");
    await expect(loop.dispatch("throws", null)).rejects.toThrow("handler failed");
    await expect(loop.dispatch("nope", null)).rejects.toThrow('no EventLoop handler "nope"');
    h[Symbol.dispose]();
    expect(loop.hasHandler("double")).toBe(false);
    await settled(loop);
  });

  it("logs with level filter, thread-name prefix and maxChars truncation", () => {
    const { loop, lines } = loopWithLog("info", 10);
    loop.log("debug", "hidden");
    loop.log("info", "shown");
    loop.log("error", "bad");
    expect(lines.map((l) => l.level)).toEqual(["info", "error"]);
    expect(lines[0]!.msg).toBe(`{${loop.threadName}} shown`);
    expect(loop.threadName).toBe(longThreadName("test-loop"));
    expect(loop.threadName).toMatch(new RegExp(`-${process.pid}/test-loop$`));
    expect(loop.truncate("0123456789abcdef")).toBe("0123456789... (6 more chars)");
    expect(truncate("short", 10)).toBe("short");
    expect(loop.logEnabled("trace")).toBe(false);
    expect([loop.numRefs, loop.pendingWork]).toEqual([0, 0]);
  });

  it("a throwing log function never breaks the caller", () => {
    const loop = new EventLoop("throwing-log", {
      log: () => {
        throw new Error("log failed");
      },
    });
    expect(() => loop.log("error", "x")).not.toThrow();
    expect([loop.numRefs, loop.pendingWork]).toEqual([0, 0]);
  });
});
