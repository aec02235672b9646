/**
 * Worker for the worker-thread race tests: attaches to the loop from `workerData.handle`, gets a
 * generated ThreadFooClient for the object the loop shares as "foo", and runs
 * `workerData.scenario`. It reports with `parentPort.postMessage` and, for multi-step scenarios,
 * waits for commands from the test.
 *
 * Threading: worker thread.
 */
import { parentPort, threadId, workerData } from "node:worker_threads";
import { workerConnection } from "@multiprocess-ts/node";
import { FooCallbackClient, type FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { ThreadFooClient as FooClient, ThreadedCallbackClient } from "@multiprocess-ts/proto/test/fixtures.capnp.js";

const port = parentPort!;
const wc = workerConnection(workerData.handle);
const log: string[] = [];

function report(m: unknown): void {
  port.postMessage(m);
}

function nextCommand(): Promise<string> {
  return new Promise((resolve) => port.once("message", resolve));
}

function err(e: unknown): { name?: string; message?: string; code?: string } {
  const x = e as { name?: string; message?: string; code?: string };
  return { name: x?.name, message: x?.message, code: x?.code };
}

async function finish(foo: FooClient): Promise<void> {
  await foo.close();
  await wc.close();
}

const scenarios: Record<string, () => Promise<unknown> | unknown> = {
  /** Gets the shared "store", calls it, then (after the "close" command if `waitClose`) closes it. */
  async closeShared() {
    const store = await wc.get("store", ThreadedCallbackClient);
    const sum = await store.call(20);
    if (workerData.waitClose === true) {
      report({ ready: true });
      await nextCommand();
    }
    await store.close();
    await wc.close();
    return sum;
  },

  /** post/sync to handlers registered on the runtime EventLoop with loop.handle(name, fn). */
  async loopHandlers() {
    wc.loop.post("note", { from: wc.loop.name, n: 1 });
    const doubled = wc.loop.sync<number>("double", 21); // a barrier: "note" has run before it
    let closure: unknown;
    try {
      wc.loop.post("note", { callback: () => 1 });
    } catch (e) {
      closure = { isTypeError: e instanceof TypeError, ...err(e) };
    }
    await wc.close();
    return { doubled, closure };
  },

  async threadNames() {
    const foo = await wc.getInit(FooClient);
    const names = [await foo.threadName(), await foo.threadName(), await foo.add(1, 2)];
    await finish(foo);
    return names;
  },

  /** Many calls without waiting in between: they must reach the server in the order made. */
  async ordered() {
    const foo = await wc.get("foo", FooClient);
    const n = workerData.n as number;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => foo.callIntFnAsync(i)));
    await finish(foo);
    return results;
  },

  async callbackRecursion() {
    const foo = await wc.get("foo", FooClient);
    const cb: FooCallback = {
      async call(arg) {
        log.push(`callback(${arg}) on worker thread ${threadId}`);
        log.push(`nested call ran on ${await foo.threadName()}`);
        return arg * 2;
      },
    };
    const outer = await foo.callback(cb, 21);
    await finish(foo);
    return { outer, log, threadId };
  },

  callbackRecursionBlocked() {
    const foo = wc.getSync("foo", FooClient);
    const cb: FooCallback = {
      async call(arg) {
        log.push(`callback(${arg}) on worker thread ${threadId}, blocked waits: ${wc.loop.waiter.waiting}`);
        log.push(`nested call ran on ${await foo.threadName()}`);
        return arg * 2;
      },
    };
    // Blocks this worker (Atomics.wait); the callback and its nested call still run here.
    const outer = wc.loop.callSync(() => foo.callback(cb, 5));
    log.push(`callSync returned ${outer}`);
    return finish(foo).then(() => ({ outer, log, threadId }));
  },

  /**
   * Passes a client of the loop's other Connection ("cbA") into a Context call on "foo": the
   * foo server calls it back (with a Context), so the loop must relay it, not forward it.
   */
  async relayAcross() {
    const foo = await wc.get("foo", FooClient);
    const cb = await wc.get("cbA", FooCallbackClient);
    const direct = await cb.call(1);
    const outcomes: unknown[] = [];
    for (const arg of [2, 3]) {
      try {
        outcomes.push(await foo.callback(cb, arg));
      } catch (e) {
        outcomes.push(err(e));
      }
    }
    await cb.close();
    await finish(foo);
    return { direct, outcomes };
  },

  /** Makes calls (so the loop holds Threads for this worker), then obeys one command. */
  async callsThenCommand() {
    const foo = await wc.get("foo", FooClient);
    const name = await foo.threadName();
    report({ ready: true, name });
    const cmd = await nextCommand();
    if (cmd === "exit") process.exit(0);
    if (cmd === "call") {
      try {
        return await foo.add(2, 2);
      } catch (e) {
        return err(e);
      } finally {
        await wc.close();
      }
    }
    await finish(foo);
    return "closed";
  },

  /** Starts a call the server parks, says so, and waits (the test terminates or exits it). */
  async parkedCall() {
    const foo = await wc.get("foo", FooClient);
    const p = foo.callIntFnAsync(7).then(
      (v) => ({ value: v }),
      (e: unknown) => ({ error: err(e) }),
    );
    report({ ready: true });
    const cmd = await Promise.race([nextCommand(), p.then(() => "settled")]);
    if (cmd === "exit") process.exit(0);
    const outcome = await p;
    await wc.close();
    return outcome;
  },
};

setImmediate(() => {
  void (async () => {
    let msg: { ok: boolean; value?: unknown; error?: unknown };
    try {
      msg = { ok: true, value: await scenarios[workerData.scenario as string]!() };
    } catch (e) {
      msg = { ok: false, error: err(e) };
    }
    report({ done: true, ...msg });
    port.close();
  })();
});
