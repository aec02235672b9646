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
 * the "gc first" order leaks two engine handles (`$cap.dup()`), the client gives its own reference
 * up with release() (no remote destroy), and the collection of the last leaked handle is what
 * releases the callback.
 *
 * Cost: a full GC takes 10-30 ms on mptest's heap, and was most of this scenario's time. The three
 * orders run at the same time, each on its own fixture with its own seeded random source, and
 * share their GCs (shared-gc.ts): the first GC of the "gc" order is also the one the other two
 * orders ask for after their release, so an iteration runs 2 GCs where the orders one after the
 * other needed 4. After each GC the order checks through a WeakRef that what it was meant to
 * collect was collected; the releases a GC causes are awaited as events (the callback's dispose),
 * never as a number of turns.
 *
 * Threading: runs on the mptest process's main thread (or a `--jobs` shard child's main thread).
 */

import { deferred } from "@multiprocess-ts/capnp";
import type { FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { getGc, type FooSetup as TestSetup } from "@multiprocess-ts/testing";
import { createRng } from "../rng.js";
import type { Scenario, ScenarioContext } from "../scenario.js";
import { SharedGc } from "../shared-gc.js";
import { check, checkEq, withSetup } from "./util.js";

type First = "dispose" | "gc" | "teardown";

const releasesSent = (s: TestSetup): number => s.serverTransport.wireLog.filter((e) => e.which === "release").length;

/** An engine handle on `client`'s capability, reachable only through the returned WeakRef. */
function leakHandle(client: FooCallback): WeakRef<object> {
  return new WeakRef((client as unknown as { $cap: { dup(): object } }).$cap.dup());
}

/** "gc first": the callback is released by the collection of leaked engine handles. */
async function gcFirst(
  s: TestSetup,
  gcs: SharedGc,
  client: FooCallback,
  disposedOnce: Promise<void>,
  disposed: () => number,
): Promise<void> {
  const releases0 = releasesSent(s);
  // A leaked extra handle while the client still holds its reference: collecting it closes that
  // handle only, the capability stays.
  const extra = leakHandle(client);
  await gcs.collect();
  check(extra.deref() === undefined, "a full GC collected the leaked extra handle");
  checkEq(await s.client.add(2, 2), 4, "round trip after collecting the extra handle");
  checkEq(disposed(), 0, "collecting a leaked extra handle released the capability");
  checkEq(releasesSent(s), releases0, "collecting a leaked extra handle sent a Release");
  // The last reference left is a leaked handle: the client lets go of its own (no destroy).
  const last = leakHandle(client);
  await (client as unknown as { release(): Promise<void> }).release();
  checkEq(await s.client.add(3, 3), 6, "round trip after the client's release");
  checkEq(disposed(), 0, "release() with a handle left released the capability");
  checkEq(releasesSent(s), releases0, "release() with a handle left sent a Release");
  await gcs.collect();
  check(last.deref() === undefined, "a full GC collected the last leaked handle");
  await disposedOnce; // its finalizer releases the capability: Release, then the dispose
  checkEq(await s.client.add(1, 1), 2, "round trip after the gc release");
  checkEq(disposed(), 1, "released once by gc");
  checkEq(releasesSent(s), releases0 + 1, "the gc release went out as one Release");
}

/** One order, on its own fixture. Leaves `gcs` once it needs no more GCs (or failed). */
async function lifetime(ctx: ScenarioContext, first: First, gcs: SharedGc): Promise<void> {
  try {
    await lifetimeOrder(ctx, first, gcs);
  } finally {
    gcs.leave();
  }
}

async function lifetimeOrder(ctx: ScenarioContext, first: First, gcs: SharedGc): Promise<void> {
  let disposed = 0;
  const disposedOnce = deferred<void>();
  await withSetup(ctx, { clientOwnsConnection: false }, async (s) => {
    await s.client.initThreadMap();
    const cb = {
      call: (arg: number) => arg + 1,
      async [Symbol.asyncDispose]() {
        disposed++;
        disposedOnce.resolve();
      },
    };
    await s.client.saveCallback(cb);
    checkEq(await s.client.callbackSaved(1), 2, "saved callback works");
    // Take the server's only reference away from the implementation: from now on this scenario
    // decides how it ends.
    let handle: FooCallback | null = s.impl.savedCallback;
    s.impl.savedCallback = null;
    check(handle !== null, "server holds the callback");
    const releases0 = releasesSent(s);
    ctx.log(`first: ${first}; server imports ${s.connections.server.rpc.stats().imports}`);

    switch (first) {
      case "dispose": {
        await (handle as unknown as { close(): Promise<void> }).close();
        handle = null;
        await disposedOnce.promise;
        checkEq(disposed, 1, "released once by dispose");
        // (The import count is not compared: the destroy call itself imports the client's
        // Thread for its Context, so the table size moves both ways.)
        check(releasesSent(s) > releases0, "a Release went out");
        await gcs.collect();
        checkEq(await s.client.add(1, 1), 2, "round trip after gc");
        checkEq(disposed, 1, "gc after dispose releases nothing more");
        break;
      }
      case "gc":
        await gcFirst(s, gcs, handle, disposedOnce.promise, () => disposed);
        handle = null;
        break;
      case "teardown": {
        s.expectLog(/destroy|disconnect/i);
        await s.clientDisconnect();
        await disposedOnce.promise;
        checkEq(disposed, 1, "released once by teardown");
        const wire = s.serverTransport.wireLog.length;
        // Closing the server's handle now must neither throw nor release again.
        await (handle as unknown as { close(): Promise<void> }).close();
        handle = null;
        checkEq(s.serverTransport.wireLog.length, wire, "nothing sent after teardown");
        await gcs.collect();
        checkEq(disposed, 1, "dispose and gc after teardown release nothing more");
        break;
      }
    }
  });
  // After the fixture's teardown (and its leak check), whatever came first: exactly once.
  checkEq(disposed, 1, "callback released exactly once in total");
}

export const lifetimeScenarios: Scenario[] = [
  {
    name: "Capability is released exactly once whichever of dispose, gc or teardown comes first",
    origin: "ours: capability lifetime",
    async run(ctx) {
      // All three orders each iteration, started in a seed-chosen sequence, at the same time; each
      // with a random source of its own (so a seed replays the same choices), and its own log prefix.
      const orders = ctx.rng.shuffle<First>(["dispose", "gc", "teardown"]);
      const gcs = new SharedGc(orders.length, getGc());
      const runs = orders.map((first) => {
        const own: ScenarioContext = { ...ctx, rng: createRng(ctx.rng.int(0x1_0000_0000)), log: (m) => ctx.log(`[${first}] ${m}`) };
        return lifetime(own, first, gcs);
      });
      // Every order runs to its end (its fixture disposed) before the first failure is reported.
      const settled = await Promise.allSettled(runs);
      for (const r of settled) if (r.status === "rejected") throw r.reason;
      checkEq(gcs.runs, 2, "full GCs this iteration (shared by the three orders)");
    },
  },
];
