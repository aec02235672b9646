// Lanes reach worker threads (issue 15): a worker's runInLane("A") and runInLane("B") calls run
// on two server Threads of their own (lane B completes while lane A's first call is still
// running), each FIFO (A's second call starts only after its first ended), and the server's
// callbacks while serving a lane's call run on that lane in the worker. The server's calls
// wait on gates the test opens; events are ordered by those gates and by messages, never by time.
// The worker is fixtures/lanes-worker.mjs.
import { deferred, type Deferred } from "@multiprocess-ts/capnp";
import { currentFrame } from "@multiprocess-ts/runtime";
import { type FooCallback, type FooInterface, FooCallbackClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { describe, expect, it } from "vitest";
import { startFooWorker } from "./support/foo-worker.js";

describe("lanes on a worker thread", () => {
  it("two lanes of one worker run concurrently, each FIFO, each on its own server Thread; callbacks come back on the lane", async () => {
    const gates = new Map<number, Deferred<void>>();
    const started = new Map<number, Deferred<void>>();
    const at = (m: Map<number, Deferred<void>>, n: number): Deferred<void> => {
      let d = m.get(n);
      if (d === undefined) m.set(n, (d = deferred<void>()));
      return d;
    };
    const events: string[] = [];
    const threads = new Map<number, string | undefined>();
    const impl: Partial<FooInterface> = {
      initThreadMap(): void {},
      async callback(cb: FooCallback | null, arg: number): Promise<number> {
        try {
          return await cb!.call(arg);
        } finally {
          await (cb as FooCallbackClient).close();
        }
      },
      async callIntFnAsync(arg: number): Promise<number> {
        threads.set(arg, currentFrame()?.context.name);
        events.push(`start ${arg}`);
        at(started, arg).resolve();
        await at(gates, arg).promise;
        events.push(`end ${arg}`);
        return arg;
      },
    };
    interface Msg {
      op: string;
      r?: number;
      order?: number[];
      results?: number[];
      seen?: { lane?: string; thread?: string }[];
    }
    const t = await startFooWorker<Msg>({
      name: "lanes-worker",
      fixture: new URL("./fixtures/lanes-worker.mjs", import.meta.url),
      impl,
      threadMap: true,
    });
    const { worker, next } = t;

    worker.postMessage({ op: "run" });
    await next("sent");
    // Both lanes' first calls run at once (neither has ended).
    await Promise.all([at(started, 1).promise, at(started, 11).promise]);
    // Lane B goes on while lane A's first call still runs: its second call starts and ends.
    at(gates, 11).resolve();
    await at(started, 12).promise;
    at(gates, 12).resolve();
    // The worker has both of lane B's results before lane A's first call may end (two Threads'
    // Returns have no order between them: the test orders them by this message).
    expect((await next("result")).r).toBe(11);
    expect((await next("result")).r).toBe(12);
    // Only now lane A's first call ends; its second starts after it (FIFO in the lane).
    at(gates, 1).resolve();
    await at(started, 2).promise;
    at(gates, 2).resolve();
    const done = await next("done");

    expect(done.order).toEqual([11, 12, 1, 2]);
    const i = (e: string): number => events.indexOf(e);
    expect(i("end 12")).toBeLessThan(i("end 1")); // B finished while A's first call ran
    expect(i("start 2")).toBeGreaterThan(i("end 1")); // FIFO within lane A
    expect(i("start 12")).toBeGreaterThan(i("end 11")); // FIFO within lane B
    expect(threads.get(1)).toMatch(/\(from .*\/lanes-worker\/lane:A\)$/);
    expect(threads.get(2)).toBe(threads.get(1));
    expect(threads.get(11)).toMatch(/\(from .*\/lanes-worker\/lane:B\)$/);
    expect(threads.get(12)).toBe(threads.get(11));

    // A callback the server makes while serving a lane's call runs on that lane in the worker
    // (its executor), one made for a call outside lanes on the worker's own thread.
    worker.postMessage({ op: "callbacks" });
    const cbs = await next("callbacks");
    expect(cbs.results).toEqual([10, 20, 30]);
    expect(cbs.seen!.map((x) => x.lane)).toEqual(["A", "B", undefined]);
    expect(cbs.seen![0]!.thread).toMatch(/\/lanes-worker\/lane:A$/);
    expect(cbs.seen![1]!.thread).toMatch(/\/lanes-worker\/lane:B$/);
    expect(cbs.seen![2]!.thread).toMatch(/\/lanes-worker$/);

    await t.finish();
  });
});
