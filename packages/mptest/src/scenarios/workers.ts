/**
 * Our worker-thread race scenarios, on the TestSetup with a worker attached to the client loop
 * (`attachWorkers`) calling the shared FooInterface client from its own thread:
 * - a worker exits (process.exit in the worker), or is terminated, while its call is running on
 *   the server: the call's reply is dropped, the worker's loop-side ThreadContext and its server
 *   Threads are released, the connection keeps working for others, nothing leaks;
 * - a worker disposes its thread handle while the connection tears down, in each order, forced
 *   through the WorkerHost's sessionClosing hook and the Connection's disconnect callback (the
 *   JavaScript counterpart of upstream's ~ProxyClient<Thread> / ~Connection race, #189);
 * - a closure posted across threads is rejected at once with a clear TypeError.
 *
 * The exit and terminate scenarios start a fresh worker thread; the others attach a pooled one
 * and give it back after checking it kept nothing of the iteration's loop (worker-driver.ts).
 *
 * Threading: main thread of the mptest process (the fixture's loops), plus the worker threads.
 */

import { deferred } from "@multiprocess-ts/capnp";
import { attachWorkers, type WorkerSupport } from "@multiprocess-ts/node";
import type { FooSetup as TestSetup } from "@multiprocess-ts/testing";
import type { Scenario, ScenarioContext } from "../scenario.js";
import { CALLED_AFTER_DISCONNECT, Counter, INTERRUPTED_BY_DISCONNECT, check, checkEq, withSetup } from "./util.js";
import { WorkerDriver } from "./worker-driver.js";

interface Attached {
  support: WorkerSupport;
  unshare: () => void;
  sessionsClosed: Counter;
  /**
   * Attaches a worker to this support: a pooled one, or a new thread with `fresh` (for scenarios
   * that end it). detach() finishes it (see WorkerDriver.finish).
   */
  start(name: string, opts?: { fresh?: boolean }): Promise<WorkerDriver>;
  /**
   * Finish the workers (back to the pool after their checks; terminated when `ok` is false, i.e.
   * the scenario failed), unshare, close the host, check the worker state is gone.
   */
  detach(ok: boolean): Promise<void>;
}

async function attach(s: TestSetup): Promise<Attached> {
  const support = attachWorkers(s.clientLoop);
  const unshare = support.share("foo", s.client);
  const sessionsClosed = new Counter();
  support.host.hooks.sessionClosed = () => sessionsClosed.inc();
  const drivers: WorkerDriver[] = [];
  return {
    support,
    unshare,
    sessionsClosed,
    async start(name, opts) {
      const w = await WorkerDriver.start(support, name, drivers, opts);
      return w;
    },
    async detach(ok) {
      // A scenario that failed half-way leaves its workers running: end them, so one failure
      // does not turn into leaks in the iterations after it.
      const finished = await Promise.allSettled(drivers.map((w) => w.finish(ok)));
      unshare();
      await support.host.close();
      for (const f of finished) if (f.status === "rejected") throw f.reason;
      checkEq(support.host.sessions.size, 0, "worker sessions left open");
      checkEq(support.threadContexts.size, 0, "loop-side ThreadContexts of gone workers");
    },
  };
}

/** Runs `fn` with workers attached to the client loop of `s`, and always detaches them. */
async function withWorkers(s: TestSetup, fn: (a: Attached) => Promise<void>): Promise<void> {
  const a = await attach(s);
  let ok = false;
  try {
    await fn(a);
    ok = true;
  } finally {
    await a.detach(ok);
  }
}

/** A worker's callFnAsync is running on the server when the worker goes away (exit or terminate). */
async function workerGoneMidCall(ctx: ScenarioContext, how: "exit" | "terminate"): Promise<void> {
  await withSetup(ctx, {}, async (s) => {
    await s.client.initThreadMap();
    await withWorkers(s, async (a) => {
      const entered = deferred<void>();
      const gate = deferred<void>();
      let finished = false;
      s.impl.fn = async () => {
        entered.resolve();
        await gate.promise;
        finished = true;
      };
      // The worker thread goes away: a fresh one, not a pooled one.
      const w = await a.start(`mptest-${how}`, { fresh: true });
      w.send({ op: "callFnAsync" });
      await w.next("calling");
      await entered.promise; // the call runs on the worker's server Thread now
      // Either let the call finish while the worker is going away, or only after it is gone.
      const finishEarly = ctx.rng.bool();
      ctx.log(`${how}, finish ${finishEarly ? "while going away" : "after the session closed"}`);
      if (how === "exit") w.send({ op: "exit" });
      else void w.worker.terminate();
      if (finishEarly) gate.resolve();
      const code = await w.exited;
      if (how === "exit") checkEq(code, 0, "worker exit code");
      await a.sessionsClosed.atLeast(1);
      gate.resolve();
      // The connection outlives the worker: the main thread can still call.
      checkEq(await s.client.add(2, 3), 5, "main-thread call after the worker left");
      check(finished, "server call ran to completion");
      check(w.errors.length === 0, `worker errors: ${w.errors.map((e) => e.message).join("; ")}`);
    });
  });
}

type TeardownOrder = "worker-first" | "connection-first" | "connection-during-worker-close";

/** The worker drops its thread handle (detaches) and the client Connection tears down, in `order`. */
async function workerVsConnection(ctx: ScenarioContext, order: TeardownOrder): Promise<void> {
  await withSetup(ctx, { clientOwnsConnection: false }, async (s) => {
    await s.client.initThreadMap();
    await withWorkers(s, async (a) => {
      s.impl.fn = () => {};
      const w = await a.start(`mptest-${order}`);
      w.send({ op: "add", a: 1, b: 2 });
      checkEq((await w.next("added")).value, 3, "worker add");
      // A Context call gives the worker a request Thread and a callback Thread on this Connection.
      w.send({ op: "callFnAsync" });
      await w.next("returned");
      checkEq(a.support.threadContexts.size, 1, "the worker has a loop-side ThreadContext");
      const conn = s.connections.client;
      let disconnecting: Promise<void> | undefined;
      switch (order) {
        case "worker-first":
          w.send({ op: "close" });
          await w.next("closed");
          await a.sessionsClosed.atLeast(1);
          disconnecting = s.clientDisconnect();
          break;
        case "connection-first":
          // The worker is told to detach from the Connection's disconnect callback, i.e. after
          // the Connection ran its cleanups (the thread handles' disconnect callbacks among them).
          conn.onDisconnect(() => w.send({ op: "close" }));
          disconnecting = s.clientDisconnect();
          await w.next("closed");
          await a.sessionsClosed.atLeast(1);
          break;
        case "connection-during-worker-close":
          // The Connection starts tearing down from inside the session's close, before the
          // session's cleanups (which close the worker's ThreadContext) have run.
          a.support.host.hooks.sessionClosing = () => {
            disconnecting = s.clientDisconnect();
          };
          w.send({ op: "close" });
          await w.next("closed");
          await a.sessionsClosed.atLeast(1);
          break;
      }
      await disconnecting;
      check(disconnecting !== undefined, "the connection was torn down");
      checkEq(conn.state, "closed", "client connection state");
      checkEq(conn.syncCleanupCount, 0, "client connection sync cleanups left");
      check(w.errors.length === 0, `worker errors: ${w.errors.map((e) => e.message).join("; ")}`);
      // Back to the pool only if the worker thread kept nothing of this loop.
      await w.finish();
    });
  });
}

export const workerScenarios: Scenario[] = [
  {
    name: "Worker exits in the middle of a call",
    origin: "ours: worker-thread races",
    run: (ctx) => workerGoneMidCall(ctx, "exit"),
  },
  {
    name: "Worker is terminated in the middle of a call",
    origin: "ours: worker-thread races",
    run: (ctx) => workerGoneMidCall(ctx, "terminate"),
  },
  {
    name: "Worker disposes its thread handle while the connection tears down",
    origin: "ours: worker-thread races (#189 counterpart)",
    async run(ctx) {
      // Every order, each iteration, in a seed-chosen sequence.
      const orders = ctx.rng.shuffle<TeardownOrder>(["worker-first", "connection-first", "connection-during-worker-close"]);
      for (const order of orders) {
        ctx.log(`order: ${order}`);
        await workerVsConnection(ctx, order);
      }
    },
  },
  {
    name: "Calls from two worker threads run on their own server threads",
    origin: "ours: thread mapping",
    run: (ctx) =>
      withSetup(ctx, {}, async (s) => {
        // Upstream maps each client thread to its own server thread (makeThread per thread): two
        // workers' calls must be able to run at the same time. Each call waits on the server until
        // both are inside: if they were serialized on one Thread this would never finish.
        await s.client.initThreadMap();
        await withWorkers(s, async (a) => {
          const inside = new Counter();
          const gate = deferred<void>();
          s.impl.intFn = async (n) => {
            inside.inc();
            await gate.promise;
            return n * 10;
          };
          const [w1, w2] = await Promise.all([a.start("mptest-t1"), a.start("mptest-t2")]);
          w1.send({ op: "callIntFnAsync", arg: 1 });
          w2.send({ op: "callIntFnAsync", arg: 2 });
          await inside.atLeast(2);
          checkEq(s.connections.server.threads.size, 2, "one server Thread per worker");
          gate.resolve();
          checkEq((await w1.next("int")).value, 10, "worker 1 result");
          checkEq((await w2.next("int")).value, 20, "worker 2 result");
          checkEq(a.support.threadContexts.size, 2, "one loop-side ThreadContext per worker");
          // Each worker detaches (and shows its thread kept nothing of this loop).
          await Promise.all([w1.finish(), w2.finish()]);
          await a.sessionsClosed.atLeast(2);
          checkEq(a.support.threadContexts.size, 0, "ThreadContexts released when their workers detached");
        });
      }),
  },
  {
    name: "Worker's concurrent calls with a disconnect at a random moment",
    origin: "ours: worker-thread races, randomized",
    run: async (ctx) => {
      const cut = ctx.rng.pick(["serverDisconnect", "transportBreak", "clientDisconnect", "none"] as const);
      await withSetup(ctx, { clientOwnsConnection: false }, async (s) => {
        await s.client.initThreadMap();
        await withWorkers(s, async (a) => {
          s.impl.intFn = async (n) => {
            if (ctx.rng.bool()) await new Promise<void>((r) => setImmediate(r));
            return n;
          };
          const w = await a.start("mptest-burst");
          const n = 1 + ctx.rng.int(10);
          const cutAfter = ctx.rng.int(n); // completions to wait for before cutting
          ctx.log(`${n} calls, cut ${cut} after ${cutAfter} completions`);
          w.send({ op: "burst", n });
          for (let i = 0; i < cutAfter; i++) await w.next("progress");
          let cutting: Promise<void> | undefined;
          if (cut === "serverDisconnect") cutting = s.serverDisconnect();
          else if (cut === "clientDisconnect") cutting = s.clientDisconnect();
          else if (cut === "transportBreak") s.clientTransport.break();
          const { outcomes } = await w.next("burst");
          await cutting;
          checkEq(outcomes.length, n, "outcomes");
          outcomes.forEach((o, i) => {
            if (o.ok) checkEq(o.value, i, `call ${i} result`);
            else {
              check(cut !== "none", `call ${i} failed without a disconnect: ${o.message}`);
              check(o.message === INTERRUPTED_BY_DISCONNECT || o.message === CALLED_AFTER_DISCONNECT, `call ${i}: ${o.message}`);
            }
          });
          w.send({ op: "close" });
          await w.next("closed");
          check(w.errors.length === 0, `worker errors: ${w.errors.map((e) => e.message).join("; ")}`);
          await w.finish();
        });
      });
    },
  },
  {
    name: "A closure posted across threads is rejected with a clear error",
    origin: "ours: shutdown",
    run: (ctx) =>
      withSetup(ctx, {}, async (s) => {
        await withWorkers(s, async (a) => {
          const w = await a.start("mptest-closure");
          w.send({ op: "postClosure" });
          const r = await w.next("postClosure");
          check(r.threw, "posting a function to the loop must throw in the worker");
          checkEq(r.name, "TypeError", "error class");
          check(/function|clon/i.test(r.message ?? ""), `message should say a function cannot cross: ${r.message}`);
          // The worker and the loop are still fine afterwards.
          w.send({ op: "add", a: 2, b: 2 });
          checkEq((await w.next("added")).value, 4, "worker add after the rejected post");
          await w.finish();
        });
      }),
  },
];
