/**
 * Shutdown (ours): on a graceful close, queued loop work and cleanups drain in a defined order
 * before the loop reports done: the Connection's sync cleanups run LIFO (upstream CleanupList),
 * async cleanups queued during teardown run after every sync cleanup, FIFO, and `loop.done`
 * settles only when all of it, plus work posted before the close, has run.
 *
 * Threading: runs on the mptest process's main thread (or a `--jobs` shard child's main thread).
 */

import type { Scenario } from "../scenario.js";
import { check, checkEq, deepEqual, withSetup } from "./util.js";

export const shutdownScenarios: Scenario[] = [
  {
    name: "Graceful close drains queued loop work and async cleanups in order",
    origin: "ours: shutdown",
    run: (ctx) =>
      withSetup(ctx, { clientOwnsConnection: false }, async (s) => {
        checkEq(await s.client.add(1, 2), 3, "add");
        const loop = s.clientLoop;
        const conn = s.connections.client;
        const order: string[] = [];
        const nSync = 1 + ctx.rng.int(4);
        const nAsync = 1 + ctx.rng.int(4);
        const nPost = ctx.rng.int(4);
        for (let i = 0; i < nSync; i++) {
          conn.addSyncCleanup(() => {
            order.push(`sync${i}`);
            // Async cleanups queued while tearing down wait for every sync cleanup.
            if (i === nSync - 1) {
              for (let j = 0; j < nAsync; j++) {
                conn.addAsyncCleanup(async () => {
                  await new Promise<void>((r) => setImmediate(r)); // each one really is async
                  order.push(`async${j}`);
                });
              }
            }
          });
        }
        // A cleanup that throws is logged and does not stop the others.
        s.expectLog(/cleanup/i);
        conn.addSyncCleanup(() => {
          order.push("throwing");
          throw new Error("deliberate cleanup failure");
        });
        for (let i = 0; i < nPost; i++) loop.post(() => order.push(`post${i}`));
        const ref = loop.ref(); // the application's own reference, released after the close
        let atDone: string[] | undefined;
        const done = loop.done.then(() => (atDone = [...order]));
        await s.clientDisconnect();
        ref[Symbol.dispose]();
        await done;

        const expectSync = ["throwing", ...Array.from({ length: nSync }, (_, i) => `sync${nSync - 1 - i}`)];
        const expectAsync = Array.from({ length: nAsync }, (_, j) => `async${j}`);
        const expectPost = Array.from({ length: nPost }, (_, i) => `post${i}`);
        check(atDone !== undefined, "loop.done settled");
        const got = atDone!;
        check(deepEqual(got.filter((x) => x.startsWith("sync") || x === "throwing"), expectSync), `sync cleanups LIFO: ${got.join(",")}`);
        check(deepEqual(got.filter((x) => x.startsWith("async")), expectAsync), `async cleanups FIFO: ${got.join(",")}`);
        check(deepEqual(got.filter((x) => x.startsWith("post")), expectPost), `posted work FIFO: ${got.join(",")}`);
        const lastSync = Math.max(...expectSync.map((x) => got.indexOf(x)));
        const firstAsync = Math.min(...expectAsync.map((x) => got.indexOf(x)));
        check(lastSync < firstAsync, `async cleanups after every sync cleanup: ${got.join(",")}`);
        checkEq(loop.pendingWork, 0, "nothing pending after done");
        check(s.logs.some((l) => /deliberate cleanup failure/.test(l.msg)), "the throwing cleanup was logged");
      }),
  },
];
