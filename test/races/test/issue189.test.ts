// bitcoin-core/libmultiprocess#189: races between ~ProxyClient<Thread> and ~Connection. Upstream,
// a worker thread's ThreadContext holds ProxyClient<Thread> entries (its request and callback
// Threads) per Connection, each with a disconnect callback registered on the Connection; the
// worker thread and the event-loop thread could touch them at the same time. The three problems:
//   (1) the worker removes its disconnect callback while the Connection runs its cleanups;
//   (2) a disconnect callback runs after the worker's ProxyClient<Thread> was destroyed;
//   (3) the worker exits (its ThreadContext is gone) while a disconnect callback for it is
//       pending or running.
// Here the worker's ThreadContext lives on the loop thread, and both the Connection's teardown
// and the worker's departure (its port closing) run there, so the question is only ever one of
// order. These tests pin every reachable order with hooks and fences, not sleeps: a worker
// leaving before, during (between the cleanups) and after the Connection's cleanup run, and
// while teardown is parked with the cleanups still pending. "A disconnect callback for it is
// running" at the instant the worker leaves cannot happen: a cleanup runs synchronously on the
// loop thread, and the worker's exit is an event on that same thread.
// Every test ends with the fixture's leak check (RPC tables, loop refs, sessions, bridge tables,
// loop-side ThreadContexts, sync cleanups, server Threads, unexpected error logs).
// Threading: loop thread (the test's thread); workers run dist/workers/foo-worker.js.
import { describe, expect, it } from "vitest";
import { createWorkerSetup, type WorkerSetup, type StartedWorker } from "../dist/index.js";

/** Starts a worker that makes one call with a Context, so the loop holds its Thread entries. */
async function workerWithThreads(t: WorkerSetup): Promise<{ w: StartedWorker; entries: { destroyed: boolean; cap: unknown }[] }> {
  const w = t.start("callsThenCommand");
  await w.ready;
  const tc = t.support.threadContexts.get(w.session)!;
  expect(tc).toBeDefined();
  const entries = [tc.requestThreads.get(t.connections.client)!, tc.callbackThreads.get(t.connections.client)!];
  expect(entries.every((e) => e !== undefined && !e.destroyed)).toBe(true);
  return { w, entries };
}

/** What the worker reports when its Connection to the loop ended under it. */
async function expectDisconnectedWorker(w: StartedWorker): Promise<void> {
  w.send("call");
  const r = await w.done;
  expect(r.value).toMatchObject({ name: expect.stringMatching(/Error$/) });
  await w.exited;
}

describe("#189 (1): the worker unregisters while the Connection is tearing down", () => {
  it("worker leaves from inside the Connection's cleanup run, before its own callbacks ran", async () => {
    await using t = await createWorkerSetup();
    const { w, entries } = await workerWithThreads(t);
    const before = t.connections.client.syncCleanupCount;
    let removedDuringCleanups = -1;
    // Registered after the worker's entries, so it runs first (LIFO): the worker's disconnect
    // callbacks are still pending when the worker goes away.
    t.connections.client.addSyncCleanup(() => {
      void w.session.close(); // what the worker's port closing does; its cleanups run now
      removedDuringCleanups = before + 1 - t.connections.client.syncCleanupCount;
    });
    await t.connections.server.close(); // peer goes away: the client Connection tears down
    await t.connections.client.disconnected;
    expect(removedDuringCleanups).toBe(1 + entries.length); // ours (running) + the worker's two
    expect(entries.every((e) => e.destroyed && e.cap === null)).toBe(true);
    await expectDisconnectedWorker(w);
  });

  it("worker terminated while teardown is parked with every cleanup still pending (real exit event)", async () => {
    await using t = await createWorkerSetup();
    const { w, entries } = await workerWithThreads(t);
    t.clientTransport.fence(); // holds the close: teardown parks in step 3, cleanups not yet run
    const closing = t.connections.client.close();
    expect(t.connections.client.state).toBe("closing");
    const cleanupsBefore = t.connections.client.syncCleanupCount;
    await w.worker.terminate();
    await w.session.closed; // the loop disposed the worker's ThreadContext: entries unregistered
    expect(t.connections.client.state).toBe("closing");
    expect(t.connections.client.syncCleanupCount).toBe(cleanupsBefore - entries.length);
    expect(entries.every((e) => e.destroyed && e.cap === null)).toBe(true);
    t.clientTransport.release();
    await closing;
  });
});

describe("#189 (2): a disconnect callback never runs for a destroyed ProxyClient<Thread>", () => {
  it("worker exits first: its callbacks are unregistered, teardown does not run them", async () => {
    await using t = await createWorkerSetup();
    const { w, entries } = await workerWithThreads(t);
    const before = t.connections.client.syncCleanupCount;
    w.send("exit"); // process.exit in the worker: its port closes
    await w.exited;
    await w.session.closed;
    expect(entries.every((e) => e.destroyed)).toBe(true);
    expect(t.connections.client.syncCleanupCount).toBe(before - entries.length);
    expect(t.support.threadContexts.has(w.session)).toBe(false);
    let ranAfter = 0;
    t.connections.client.addSyncCleanup(() => void ranAfter++);
    await t.connections.server.close();
    await t.connections.client.disconnected;
    expect(ranAfter).toBe(1); // the Connection ran what was registered, and nothing of the worker's
  });

  it("Connection first: its callbacks destroy the entries; the worker leaving later finds nothing", async () => {
    await using t = await createWorkerSetup();
    const { w, entries } = await workerWithThreads(t);
    await t.connections.server.close();
    await t.connections.client.disconnected;
    expect(entries.every((e) => e.destroyed && e.cap === null)).toBe(true);
    const tc = t.support.threadContexts.get(w.session)!;
    expect(tc.requestThreads.size + tc.callbackThreads.size).toBe(0);
    await expectDisconnectedWorker(w); // it leaves afterwards: tc.close() is a no-op
    await w.session.closed;
    expect(t.support.threadContexts.has(w.session)).toBe(false);
  });
});

describe("#189 (3): a worker exits while a disconnect callback for it is pending or has run", () => {
  it("exits after its callbacks ran, within the same cleanup run", async () => {
    await using t = await createWorkerSetup();
    let w!: StartedWorker;
    let entriesDestroyedWhenLeaving: boolean[] = [];
    // Registered before the worker's entries exist, so it runs after them (LIFO).
    t.connections.client.addSyncCleanup(() => {
      const tc = t.support.threadContexts.get(w.session);
      entriesDestroyedWhenLeaving = [tc!.requestThreads.size, tc!.callbackThreads.size].map((n) => n === 0);
      void w.session.close();
    });
    ({ w } = await workerWithThreads(t));
    await t.connections.server.close();
    await t.connections.client.disconnected;
    expect(entriesDestroyedWhenLeaving).toEqual([true, true]);
    await expectDisconnectedWorker(w);
  });

  it("exits while its makeThread is still in flight (testing hook), then the peer goes away", async () => {
    await using t = await createWorkerSetup();
    let terminated: Promise<number> | undefined;
    let w!: StartedWorker;
    t.serverLoop.hooks.makeThreadCreated = () => {
      // The server is creating the worker's Thread; the worker's first call has not run yet.
      terminated ??= w.worker.terminate();
    };
    w = t.start("callsThenCommand");
    await w.exited;
    await w.session.closed;
    expect(terminated).toBeDefined();
    expect(t.support.threadContexts.size).toBe(0);
    await t.connections.server.close();
  });
});

describe("workers leaving with calls in flight", () => {
  async function parked(t: WorkerSetup): Promise<{ w: StartedWorker; release: () => void }> {
    let release!: () => void;
    let started!: () => void;
    const isParked = new Promise<void>((r) => (started = r));
    t.impl.intFn = (n) =>
      new Promise<number>((resolve) => {
        release = () => resolve(n);
        started();
      });
    const w = t.start("parkedCall");
    await Promise.all([w.ready, isParked]);
    expect(t.support.bridge.stats(w.session).answers).toBe(1);
    return { w, release: () => release() };
  }

  it("worker.terminate() in the middle of a call: the loop cancels it and disposes the worker", async () => {
    await using t = await createWorkerSetup();
    const { w, release } = await parked(t);
    await w.worker.terminate();
    await w.session.closed;
    expect(t.support.bridge.stats()).toMatchObject({ answers: 0, caps: 0 });
    release(); // the server finishes; its result goes nowhere
  });

  it("worker exits (process.exit) with a call in flight", async () => {
    await using t = await createWorkerSetup();
    const { w, release } = await parked(t);
    w.send("exit");
    expect(await w.exited).toBe(0);
    await w.session.closed;
    expect(t.support.threadContexts.size).toBe(0);
    release();
  });

  it("the Connection goes away with a worker's call in flight: the worker's call fails, nothing leaks", async () => {
    await using t = await createWorkerSetup();
    const { w, release } = await parked(t);
    await t.connections.server.close();
    w.send("wait");
    const r = await w.done;
    expect(r.value.error).toMatchObject({ message: "IPC client method call interrupted by disconnect." });
    await w.exited;
    release(); // the server impl returns late; its Thread is released once the task ends
  });
});
