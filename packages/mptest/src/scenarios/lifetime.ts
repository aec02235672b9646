/**
 * Capability lifetime (ours): a capability the client passed to the server (a FooCallback saved
 * with saveCallback) is released exactly once, whichever of explicit dispose, garbage collection
 * of the server's handle, or connection teardown comes first. The exporting side counts how often
 * the runtime disposes the callback object; the importing side's RPC tables and the memory
 * transport's wireLog show the Release going out (or not) at each step.
 *
 * Threading: runs on the mptest process's main thread (or a `--jobs` shard child's main thread).
 */

import { deferred } from "@multiprocess-ts/capnp";
import type { FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { forceGc, type FooSetup as TestSetup } from "@multiprocess-ts/testing";
import type { Scenario } from "../scenario.js";
import { check, checkEq, withSetup } from "./util.js";

type First = "dispose" | "gc" | "teardown";

const releasesSent = (s: TestSetup): number => s.serverTransport.wireLog.filter((e) => e.which === "release").length;

async function lifetime(ctx: Parameters<Scenario["run"]>[0], first: First): Promise<void> {
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
    const weak = new WeakRef(handle);
    const imports0 = s.connections.server.rpc.stats().imports;
    const releases0 = releasesSent(s);
    ctx.log(`first: ${first}; server imports ${imports0}`);

    switch (first) {
      case "dispose": {
        await (handle as unknown as { close(): Promise<void> }).close();
        handle = null;
        await disposedOnce.promise;
        checkEq(disposed, 1, "released once by dispose");
        // (The import count is not compared: the destroy call itself imports the client's
        // Thread for its Context, so the table size moves both ways.)
        check(releasesSent(s) > releases0, "a Release went out");
        await forceGc();
        checkEq(await s.client.add(1, 1), 2, "round trip after gc");
        checkEq(disposed, 1, "gc after dispose releases nothing more");
        break;
      }
      case "gc": {
        // First a leaked extra reference (an engine handle dropped without close): collecting it
        // may close it, but must not release the capability the proxy still holds.
        const weakExtra = ((): WeakRef<object> => {
          const extra = (handle as unknown as { $cap: { dup(): object } }).$cap.dup();
          return new WeakRef(extra);
        })();
        await forceGc();
        checkEq(await s.client.add(2, 2), 4, "round trip after collecting the extra handle");
        ctx.log(`extra handle collected: ${weakExtra.deref() === undefined}`);
        checkEq(disposed, 0, "collecting a leaked extra handle released the capability");
        checkEq(releasesSent(s), releases0, "collecting a leaked extra handle sent a Release");
        // Then the proxy itself becomes garbage.
        handle = null;
        await forceGc();
        // A call's round trip orders after any Release the finalizer sent.
        checkEq(await s.client.add(1, 1), 2, "round trip after gc");
        const collected = weak.deref() === undefined;
        const importsNow = s.connections.server.rpc.stats().imports;
        ctx.log(`handle collected: ${collected}; released by gc: ${disposed}; server imports ${importsNow}`);
        check(disposed <= 1, `released ${disposed} times after gc`);
        if (disposed === 1) check(releasesSent(s) > releases0, "the gc release went out as a Release");
        else checkEq(releasesSent(s), releases0, "no gc release: nothing sent");
        break;
      }
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
        await forceGc();
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
      // All three orders each iteration, in a seed-chosen sequence.
      for (const first of ctx.rng.shuffle<First>(["dispose", "gc", "teardown"])) await lifetime(ctx, first);
    },
  },
];
