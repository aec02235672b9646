/**
 * Randomized (ours): a seed-chosen mix of concurrent calls (loop-thread methods, Context methods on
 * the server Thread, callbacks into the client, nested calls back into the server) with a
 * seed-chosen disconnect in the middle: server teardown now or on a later turn, client teardown,
 * or a broken transport. Every call must either succeed with the right value or reject with one of
 * upstream's two disconnect errors; afterwards nothing may leak. Many seeds, many interleavings.
 */

import { setImmediate as nextTurn } from "node:timers/promises";
import type { FooSetup as TestSetup } from "@multiprocess-ts/testing";
import type { Scenario, ScenarioContext } from "../scenario.js";
import { CALLED_AFTER_DISCONNECT, INTERRUPTED_BY_DISCONNECT, check, checkEq, withSetup } from "./util.js";

type Cut = "none" | "serverDisconnect" | "serverDisconnectLater" | "clientDisconnect" | "transportBreak";

interface Op {
  what: string;
  run(s: TestSetup): Promise<unknown>;
  expect: unknown;
}

function randomOp(ctx: ScenarioContext, i: number): Op {
  switch (ctx.rng.int(6)) {
    case 0:
      return { what: `add(${i},${i})`, run: (s) => s.client.add(i, i), expect: 2 * i };
    case 1:
      return { what: `callIntFnAsync(${i})`, run: (s) => s.client.callIntFnAsync(i), expect: i };
    case 2:
      return { what: `callback(+1, ${i})`, run: (s) => s.client.callback({ call: (x: number) => x + 1 }, i), expect: i + 1 };
    case 3:
      return { what: `passFn(${i})`, run: (s) => s.client.passFn(() => i), expect: i };
    case 4:
      // Nested: the callback calls back into the server while the outer call waits.
      return { what: `passFn(add(${i},1))`, run: (s) => s.client.passFn(() => s.client.add(i, 1)), expect: i + 1 };
    default:
      return { what: "callFnAsync", run: (s) => s.client.callFnAsync(), expect: undefined };
  }
}

export const randomScenarios: Scenario[] = [
  {
    name: "Random concurrent calls with a disconnect at a random moment",
    origin: "ours: randomized",
    run: async (ctx) => {
      const owns = ctx.rng.bool();
      const cuts: Cut[] = ["none", "serverDisconnect", "serverDisconnectLater", "transportBreak", ...(owns ? [] : (["clientDisconnect"] as const))];
      const cut = ctx.rng.pick(cuts);
      await withSetup(ctx, { clientOwnsConnection: owns }, async (s) => {
        await s.client.initThreadMap();
        s.impl.intFn = async (n) => {
          if (ctx.rng.bool()) await nextTurn();
          return n;
        };
        s.impl.fn = async () => {
          if (ctx.rng.bool()) await nextTurn();
        };
        const n = 1 + ctx.rng.int(8);
        const cutAt = ctx.rng.int(n);
        ctx.log(`owns ${owns}, ${n} calls, cut ${cut} after call ${cutAt}`);
        const ops: Op[] = [];
        // Settled as they are made: they may reject while later calls are still being issued.
        const pending: Promise<PromiseSettledResult<unknown>>[] = [];
        let cutting: Promise<void> | undefined;
        for (let i = 0; i < n; i++) {
          const op = randomOp(ctx, i);
          ops.push(op);
          pending.push(
            op.run(s).then(
              (value): PromiseSettledResult<unknown> => ({ status: "fulfilled", value }),
              (reason: unknown): PromiseSettledResult<unknown> => ({ status: "rejected", reason }),
            ),
          );
          if (i === cutAt && cut !== "none") {
            ctx.log(`cut: ${cut}`);
            if (cut === "serverDisconnect") cutting = s.serverDisconnect();
            else if (cut === "serverDisconnectLater") s.serverDisconnectLater();
            else if (cut === "clientDisconnect") cutting = s.clientDisconnect();
            else s.clientTransport.break();
          }
          for (let t = ctx.rng.int(3); t > 0; t--) await nextTurn();
        }
        const settled = await Promise.all(pending);
        await cutting;
        let failed = 0;
        settled.forEach((r, i) => {
          const op = ops[i]!;
          if (r.status === "fulfilled") {
            checkEq(r.value, op.expect, `${op.what} result`);
          } else {
            failed++;
            const msg = r.reason instanceof Error ? r.reason.message : String(r.reason);
            check(cut !== "none", `${op.what} failed without any disconnect: ${msg}`);
            check(msg === CALLED_AFTER_DISCONNECT || msg === INTERRUPTED_BY_DISCONNECT, `${op.what} rejected with an unexpected error: ${msg}`);
          }
        });
        ctx.log(`${n - failed} succeeded, ${failed} rejected with a disconnect error`);
      });
    },
  },
];
