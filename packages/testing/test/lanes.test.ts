// Concurrency lanes (docs/usage.md, "Concurrency lanes"): by default one JS thread's Context calls
// run FIFO on one server Thread; runInLane gives an async flow its own server Thread, so two lanes
// run concurrently while each stays FIFO, and callbacks come back on the calling lane.
import { describe, expect, it } from "vitest";
import { deferred } from "@multiprocess-ts/capnp";
import { ThreadContext, currentLane, lane, runInLane } from "@multiprocess-ts/runtime";
import { assertNoLeaks, createFooSetup } from "@multiprocess-ts/testing";

describe("concurrency lanes", () => {
  it("two lanes run concurrently, each FIFO on its own server Thread", async () => {
    const s = await createFooSetup();
    await s.client.initThreadMap();
    const events: string[] = [];
    const threads = new Map<number, string>();
    const release1 = deferred<void>();
    const started3 = deferred<void>();
    s.impl.intFn = async (n) => {
      threads.set(n, ThreadContext.current(s.serverLoop).name);
      events.push(`start ${n}`);
      if (n === 3) started3.resolve();
      if (n === 1) await release1.promise; // call 1 blocks lane A until call 3 (lane B) has started
      events.push(`end ${n}`);
      return n * 10;
    };
    const a = runInLane("A", () => Promise.all([s.client.callIntFnAsync(1), s.client.callIntFnAsync(2)]));
    const b = runInLane(lane("B"), async () => {
      expect(currentLane()?.name).toBe("B");
      return s.client.callIntFnAsync(3);
    });
    await started3.promise; // lane B ran although lane A's first call is still blocked
    expect(events).toEqual(["start 1", "start 3", "end 3"]);
    release1.resolve();
    expect(await a).toEqual([10, 20]);
    expect(await b).toBe(30);
    // FIFO within lane A: call 2 started only after call 1 ended.
    expect(events).toEqual(["start 1", "start 3", "end 3", "end 1", "start 2", "end 2"]);
    expect(threads.get(1)).toBe(threads.get(2));
    expect(threads.get(1)).toMatch(/lane:A/);
    expect(threads.get(3)).toMatch(/lane:B/);
    expect(threads.get(3)).not.toBe(threads.get(1));
    // Default (no lane): the loop thread's one server Thread, not a lane's.
    s.impl.intFn = (n) => {
      threads.set(n, ThreadContext.current(s.serverLoop).name);
      return n;
    };
    await s.client.callIntFnAsync(4);
    expect(threads.get(4)).not.toMatch(/lane:/);
    await s.dispose();
    assertNoLeaks(s);
  });

  it("callbacks made while serving a lane's call run on that lane's callback Thread", async () => {
    const s = await createFooSetup();
    await s.client.initThreadMap();
    const seen: string[] = [];
    const cb = (tag: string) => ({
      call: (arg: number): number => {
        seen.push(`${tag} ${ThreadContext.current(s.clientLoop).name}`);
        return arg + 1;
      },
    });
    const [x, y] = await Promise.all([
      runInLane("A", () => s.client.callback(cb("A"), 1)),
      runInLane("B", () => s.client.callback(cb("B"), 2)),
    ]);
    expect([x, y]).toEqual([2, 3]);
    expect(seen).toHaveLength(2);
    expect(seen.find((l) => l.startsWith("A "))).toMatch(/lane:A$/);
    expect(seen.find((l) => l.startsWith("B "))).toMatch(/lane:B$/);
    await s.dispose();
    assertNoLeaks(s);
  });
});
