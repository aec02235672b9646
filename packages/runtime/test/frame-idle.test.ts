// Task-frame storage (threads/frame.ts): the AsyncLocalStorage that carries a server Thread
// task's frame across awaits stays enabled between Context calls and is disabled once no frame has
// been live for the idle delay (so Node's promise hooks are not switched on and off per call, and
// are off again in a process that stopped serving Context calls). Its own file: the module state
// (idle timer, live-frame count) must start fresh. The idle timer is driven with fake timers.
// Threading: loop thread (the test's thread).
import * as runtime from "@multiprocess-ts/runtime";
import { describe, expect, it, vi } from "vitest";
import { FooImpl, fooSetup } from "./fixtures.js";

const internals = runtime as unknown as { frameStorageEnabled(): boolean };

describe("task-frame storage", () => {
  it("stays enabled between Context calls and is disabled after the idle delay without frames", async () => {
    const impl = new FooImpl();
    impl.intFn = async (n) => {
      await Promise.resolve();
      // After an await, the frame is still found (through the storage).
      expect(runtime.currentFrame()).toBeDefined();
      return n + 1;
    };
    await using p = await fooSetup(impl);
    await p.client.initThreadMap();
    expect(internals.frameStorageEnabled()).toBe(false);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      expect(await p.client.callIntFnAsync(1)).toBe(2);
      // The call's task has settled: no frame outside it, but the storage stays enabled.
      expect(runtime.currentFrame()).toBeUndefined();
      expect(internals.frameStorageEnabled()).toBe(true);
      vi.advanceTimersByTime(500);
      expect(await p.client.callIntFnAsync(2)).toBe(3);
      // The first check (1 s after the first call settled) sees that a frame was entered since.
      vi.advanceTimersByTime(600);
      expect(internals.frameStorageEnabled()).toBe(true);
      // A full idle delay with no frame: disabled.
      vi.advanceTimersByTime(1000);
      expect(internals.frameStorageEnabled()).toBe(false);
      // And enabled again by the next call, whose frame is found after its await as before.
      expect(await p.client.callIntFnAsync(3)).toBe(4);
      expect(internals.frameStorageEnabled()).toBe(true);
      vi.advanceTimersByTime(2000);
      expect(internals.frameStorageEnabled()).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });
});
