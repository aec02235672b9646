/**
 * Capability lifetime (ours): a capability the client passed to the server (a FooCallback saved
 * with saveCallback) is released exactly once, whichever of explicit dispose, garbage collection
 * of the server's handles, or connection teardown comes first. The exporting side counts how often
 * the runtime disposes the callback object; the memory transport's wireLog shows the Release going
 * out (or not) at each step.
 *
 * What garbage collection can release: a generated client (FooCallbackClient) is owned
 * explicitly, like upstream's ProxyClient. Its Connection's disconnect callback holds it, so it is
 * never collected while the connection is open. The GC safety net is on the engine handles
 * (`Capability`, docs/rpc.md): a handle dropped without close() is closed by its finalizer. So
 * the "gc first" order saves two callbacks and leaks an engine handle on each (`$cap.dup()`):
 * beside the first the server keeps its own reference (collecting the leaked handle must release
 * nothing; the server's close later releases it once); on the second the client gives its own
 * reference up with release() (no remote destroy), and the collection of the leaked handle, the
 * last one left, is what releases that callback.
 *
 * Cost: a full GC costs CPU in proportion to the live heap it marks (on the thread and V8's helper
 * threads), and was most of this scenario's time. So the story runs on the lifetime thread
 * (lifetime.ts), whose heap holds only the fixtures' code, and an iteration runs ONE full GC: the
 * three orders run at the same time, each on its own fixture with its own seeded random source,
 * and share it (shared-gc.ts), and the "gc" order checks both of its stories (an extra handle
 * collected, the last handle collected) on two callbacks in that one GC. After the GC each order
 * checks through WeakRefs that what it was meant to collect was collected; the releases a GC
 * causes are awaited as events (the callback's dispose), never as a number of turns.
 *
 * Threading: runs on the lifetime thread, the worker thread lifetime.ts keeps for it (the fixtures,
 * both ends of their connections and the GC are all that thread's).
 */

import { deferred } from "@multiprocess-ts/capnp";
import type { FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { getGc, type FooSetup as TestSetup } from "@multiprocess-ts/testing";
import { createRng } from "../rng.js";
import type { ScenarioContext } from "../scenario.js";
import { SharedGc } from "../shared-gc.js";
import { check, checkEq, withSetup } from "./util.js";

type First = "dispose" | "gc" | "teardown";

const releasesSent = (s: TestSetup): number => s.serverTransport.wireLog.filter((e) => e.which === "release").length;

/** An engine handle on `client`'s capability, reachable only through the returned WeakRef. */
function leakHandle(client: FooCallback): WeakRef<object> {
  return new WeakRef((client as unknown as { $cap: { dup(): object } }).$cap.dup());
}

/** What the "gc" order needs of its callbacks: how often each one was disposed, once-promises. */
interface Tracked {
  handle: FooCallback;
  disposed(): number;
  disposedOnce: Promise<void>;
}

/**
 * "gc first", on two callbacks saved by the server, with ONE full GC for both stories:
 * - `holder`: an engine handle leaked beside the handle the server still holds; collecting the
 *   leaked one closes that handle only (no Release, no dispose); then the server's own close
 *   releases it, once.
 * - `last`: the server's client lets its reference go with release() (no remote destroy) while a
 *   leaked handle is the last one left; collecting that handle releases the callback: one
 *   Release, one dispose.
 */
async function gcFirst(s: TestSetup, gcs: SharedGc, holder: Tracked, last: Tracked): Promise<void> {
  const releases0 = releasesSent(s);
  const extra = leakHandle(holder.handle);
  const lastRef = leakHandle(last.handle);
  await (last.handle as unknown as { release(): Promise<void> }).release();
  checkEq(await s.client.add(3, 3), 6, "round trip after the client's release");
  checkEq(last.disposed(), 0, "release() with a handle left released the capability");
  checkEq(releasesSent(s), releases0, "release() with a handle left sent a Release");
  await gcs.collect();
  check(extra.deref() === undefined, "a full GC collected the leaked extra handle");
  check(lastRef.deref() === undefined, "a full GC collected the last leaked handle");
  await last.disposedOnce; // its finalizer releases the capability: Release, then the dispose
  checkEq(await s.client.add(1, 1), 2, "round trip after the gc release");
  checkEq(last.disposed(), 1, "released once by gc");
  checkEq(holder.disposed(), 0, "collecting a leaked extra handle released the capability");
  checkEq(releasesSent(s), releases0 + 1, "the gc release went out as one Release (none for the extra handle)");
  // The holder's own handle still works, and its close is the one release of that callback.
  await (holder.handle as unknown as { close(): Promise<void> }).close();
  await holder.disposedOnce;
  checkEq(holder.disposed(), 1, "the holder's close after collecting its extra handle released it once");
  checkEq(last.disposed(), 1, "still released once by gc");
}

/** One order, on its own fixture. Leaves `gcs` once it needs no more GCs (or failed). */
async function lifetime(ctx: ScenarioContext, first: First, gcs: SharedGc): Promise<void> {
  try {
    await lifetimeOrder(ctx, first, gcs);
  } finally {
    gcs.leave();
  }
}

/**
 * Saves a fresh callback with the server and takes the server's only reference away from the
 * implementation: from then on the scenario decides how that callback's lifetime ends.
 */
async function saveTracked(s: TestSetup, arg: number): Promise<Tracked> {
  let disposed = 0;
  const once = deferred<void>();
  const cb = {
    call: (x: number) => x + 1,
    async [Symbol.asyncDispose]() {
      disposed++;
      once.resolve();
    },
  };
  await s.client.saveCallback(cb);
  checkEq(await s.client.callbackSaved(arg), arg + 1, "saved callback works");
  const handle = s.impl.savedCallback;
  s.impl.savedCallback = null;
  check(handle !== null, "server holds the callback");
  return { handle, disposed: () => disposed, disposedOnce: once.promise };
}

async function lifetimeOrder(ctx: ScenarioContext, first: First, gcs: SharedGc): Promise<void> {
  const tracked: Tracked[] = [];
  await withSetup(ctx, { clientOwnsConnection: false }, async (s) => {
    await s.client.initThreadMap();
    const cb = await saveTracked(s, 1);
    tracked.push(cb);
    const releases0 = releasesSent(s);
    ctx.log(`first: ${first}; server imports ${s.connections.server.rpc.stats().imports}`);

    switch (first) {
      case "dispose": {
        await (cb.handle as unknown as { close(): Promise<void> }).close();
        await cb.disposedOnce;
        checkEq(cb.disposed(), 1, "released once by dispose");
        // (The import count is not compared: the destroy call itself imports the client's
        // Thread for its Context, so the table size moves both ways.)
        check(releasesSent(s) > releases0, "a Release went out");
        await gcs.collect();
        checkEq(await s.client.add(1, 1), 2, "round trip after gc");
        checkEq(cb.disposed(), 1, "gc after dispose releases nothing more");
        break;
      }
      case "gc": {
        const last = await saveTracked(s, 2);
        tracked.push(last);
        await gcFirst(s, gcs, cb, last);
        break;
      }
      case "teardown": {
        s.expectLog(/destroy|disconnect/i);
        await s.clientDisconnect();
        await cb.disposedOnce;
        checkEq(cb.disposed(), 1, "released once by teardown");
        const wire = s.serverTransport.wireLog.length;
        // Closing the server's handle now must neither throw nor release again.
        await (cb.handle as unknown as { close(): Promise<void> }).close();
        checkEq(s.serverTransport.wireLog.length, wire, "nothing sent after teardown");
        await gcs.collect();
        checkEq(cb.disposed(), 1, "dispose and gc after teardown release nothing more");
        break;
      }
    }
  });
  // After the fixture's teardown (and its leak check), whatever came first: exactly once.
  for (const t of tracked) checkEq(t.disposed(), 1, "callback released exactly once in total");
}

/**
 * One iteration of the scenario: all three orders, started in a seed-chosen sequence, at the same
 * time; each with a random source of its own (so a seed replays the same choices), and its own log
 * prefix. Runs on the lifetime thread (lifetime.ts), where a full GC is cheap.
 */
export async function runLifetime(ctx: ScenarioContext): Promise<void> {
  const orders = ctx.rng.shuffle<First>(["dispose", "gc", "teardown"]);
  const gcs = new SharedGc(orders.length, getGc());
  const runs = orders.map((first) => {
    const own: ScenarioContext = { ...ctx, rng: createRng(ctx.rng.int(0x1_0000_0000)), log: (m) => ctx.log(`[${first}] ${m}`) };
    return lifetime(own, first, gcs);
  });
  // Every order runs to its end (its fixture disposed) before the first failure is reported.
  const settled = await Promise.allSettled(runs);
  for (const r of settled) if (r.status === "rejected") throw r.reason;
  checkEq(gcs.runs, 1, "full GCs this iteration (one, shared by the three orders)");
}
