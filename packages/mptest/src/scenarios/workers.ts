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
  /** Starts a worker attached to this support; detach() terminates it if it is still running. */
  start(name: string): Promise<WorkerDriver>;
  /** Unshare, close the host, check the worker state is gone. */
  detach(): Promise<void>;
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
    async start(name) {
      const w = await WorkerDriver.start(support, name, drivers);
      return w;
    },
    async detach() {
      // A scenario that failed half-way leaves its workers running: end them, so one failure
      // does not turn into leaks in the iterations after it.
      await Promise.all(drivers.map((w) => w.terminateIfRunning()));
      unshare();
      await support.host.close();
      checkEq(support.host.sessions.size, 0, "worker sessions left open");
      checkEq(support.threadContexts.size, 0, "loop-side ThreadContexts of gone workers");
    },
  };
}

/** A worker's callFnAsync is running on the server when the worker goes away (exit or terminate). */
async function workerGoneMidCall(ctx: ScenarioContext, how: "exit" | "terminate"): Promise<void> {
  await withSetup(ctx, {}, async (s) => {
    await s.client.initThreadMap();
    const a = await attach(s);
    try {
      const entered = deferred<void>();
      const gate = deferred<void>();
      let finished = false;
      s.impl.fn = async () => {
        entered.resolve();
        await gate.promise;
        finished = true;
      };
      const w = await a.start(`mptest-${how}`);
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
    } finally {
      await a.detach();
    }
  });
}

type TeardownOrder = "worker-first" | "connection-first" | "connection-during-worker-close";

/** The worker drops its thread handle (detaches) and the client Connection tears down, in `order`. */
async function workerVsConnection(ctx: ScenarioContext, order: TeardownOrder): Promise<void> {
  await withSetup(ctx, { clientOwnsConnection: false }, async (s) => {
    await s.client.initThreadMap();
    const a = await attach(s);
    try {
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
      checkEq(await w.stop(), 0, "worker exit code");
      check(w.errors.length === 0, `worker errors: ${w.errors.map((e) => e.message).join("; ")}`);
    } finally {
      await a.detach();
    }
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
        const a = await attach(s);
        try {
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
          checkEq(await w1.stop(), 0, "worker 1 exit");
          checkEq(await w2.stop(), 0, "worker 2 exit");
          await a.sessionsClosed.atLeast(2);
          checkEq(a.support.threadContexts.size, 0, "ThreadContexts released with their workers");
        } finally {
          await a.detach();
        }
      }),
  },
  {
    name: "Worker's concurrent calls with a disconnect at a random moment",
    origin: "ours: worker-thread races, randomized",
    run: async (ctx) => {
      const cut = ctx.rng.pick(["serverDisconnect", "transportBreak", "clientDisconnect", "none"] as const);
      await withSetup(ctx, { clientOwnsConnection: false }, async (s) => {
        await s.client.initThreadMap();
        const a = await attach(s);
        try {
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
          checkEq(await w.stop(), 0, "worker exit");
          check(w.errors.length === 0, `worker errors: ${w.errors.map((e) => e.message).join("; ")}`);
        } finally {
          await a.detach();
        }
      });
    },
  },
  {
    name: "A closure posted across threads is rejected with a clear error",
    origin: "ours: shutdown",
    run: (ctx) =>
      withSetup(ctx, {}, async (s) => {
        const a = await attach(s);
        try {
          const w = await a.start("mptest-closure");
          w.send({ op: "postClosure" });
          const r = await w.next("postClosure");
          check(r.threw, "posting a function to the loop must throw in the worker");
          checkEq(r.name, "TypeError", "error class");
          check(/function|clon/i.test(r.message ?? ""), `message should say a function cannot cross: ${r.message}`);
          // The worker and the loop are still fine afterwards.
          w.send({ op: "add", a: 2, b: 2 });
          checkEq((await w.next("added")).value, 4, "worker add after the rejected post");
          checkEq(await w.stop(), 0, "worker exit code");
        } finally {
          await a.detach();
        }
      }),
  },
];
