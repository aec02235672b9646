// An async method's results (issue 13, eleventh session): the generated `invoke` hands the
// implementation's promise and its results writer to the runtime (`$mp.thenWrite`), which writes
// them in the engine's own reaction to that promise (`IncomingCall.whenSettled`) and ends a server
// Thread task started at once in the same callback; a queued task, and any call at debug level
// (one reaction releases the IO and logs), chain the same writer onto the promise. Every path must
// end alike: the value written, an out-of-range value failing the call with the server's error,
// the Thread free for the next call, every start hook matched by a done hook.
// Threading: loop thread (the test's thread).
import { RemoteError } from "@multiprocess-ts/capnp";
import type { LogLevel } from "@multiprocess-ts/runtime";
import { describe, expect, it } from "vitest";
import { FooImpl, fooSetup } from "./fixtures.js";

/** What a call ended with, comparable across paths. */
async function outcome(p: Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await p };
  } catch (e) {
    return { err: (e as Error).constructor.name, message: (e as Error).message, remote: e instanceof RemoteError };
  }
}

/** Counts a server loop's async task start and done hooks. */
function countTasks(loop: { hooks: { asyncRequestStart?: () => void; asyncRequestDone?: () => void } }): { started: number; done: number } {
  const n = { started: 0, done: 0 };
  loop.hooks.asyncRequestStart = () => void n.started++;
  loop.hooks.asyncRequestDone = () => void n.done++;
  return n;
}

const OUT_OF_RANGE = { err: "RemoteError", message: expect.stringContaining("out of range for Int32"), remote: true };

describe.each(["warning", "debug"] as LogLevel[])("an async method's results at log level %s", (level) => {
  it("a Thread task started at once: written from the promise's value, or the call fails; the Thread goes on", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl, { logLevel: level });
    await p.client.initThreadMap();
    const tasks = countTasks(p.serverLoop);
    impl.intFn = async (n) => n + 1;
    expect(await p.client.callIntFnAsync(41)).toBe(42);
    impl.intFn = async () => 2 ** 40;
    expect(await outcome(p.client.callIntFnAsync(1))).toEqual(OUT_OF_RANGE);
    impl.intFn = async (n) => n * 2;
    expect(await p.client.callIntFnAsync(21)).toBe(42);
    expect([tasks.started, tasks.done]).toEqual([3, 3]);
  });

  it("a queued Thread task: written from the promise's value, or the call fails; the next task runs", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl, { logLevel: level });
    await p.client.initThreadMap();
    const tasks = countTasks(p.serverLoop);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const order: number[] = [];
    impl.intFn = async (n) => {
      order.push(n);
      if (n === 1) await gate; // the Thread is busy: calls 2 and 3 queue behind this one
      return n === 2 ? 2 ** 40 : n + 10;
    };
    const c1 = p.client.callIntFnAsync(1);
    const c2 = outcome(p.client.callIntFnAsync(2));
    const c3 = p.client.callIntFnAsync(3);
    await p.client.add(0, 0); // no Context: runs at once, after all three reached the server
    expect(order).toEqual([1]);
    open();
    expect(await c1).toBe(11);
    expect(await c2).toEqual(OUT_OF_RANGE);
    expect(await c3).toBe(13);
    expect(order).toEqual([1, 2, 3]);
    expect([tasks.started, tasks.done]).toEqual([3, 3]);
  });

  it("a call without a Context: written from the promise's value, or the call fails", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl, { logLevel: level });
    const setAdd = (f: (a: number, b: number) => Promise<number>): void => {
      (impl as unknown as { add: typeof f }).add = f;
    };
    setAdd(async (a, b) => a * b);
    expect(await p.client.add(6, 7)).toBe(42);
    setAdd(async () => 2 ** 40);
    expect(await outcome(p.client.add(0, 0))).toEqual(OUT_OF_RANGE);
    setAdd(async (a, b) => a - b);
    expect(await p.client.add(6, 7)).toBe(-1);
  });
});
