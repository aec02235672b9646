/**
 * A worker thread for the worker-race scenarios: attaches to the loop whose handle it got in
 * `workerData`, gets the FooInterface client the loop shared as "foo", and then does what the
 * parent tells it over parentPort, reporting each step back (so the parent waits on events, not
 * on time). Loaded as built JS (dist/workers/foo-worker.js).
 */

import { parentPort, workerData } from "node:worker_threads";
import { workerConnection, type LoopHandle } from "@multiprocess-ts/node";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";

export type WorkerOp =
  | { op: "add"; a: number; b: number }
  | { op: "callFnAsync" }
  | { op: "callIntFnAsync"; arg: number }
  | { op: "burst"; n: number }
  | { op: "close" }
  | { op: "exit" }
  | { op: "postClosure" };

export type WorkerEvent =
  | { ev: "ready" }
  | { ev: "added"; value: number }
  | { ev: "calling" }
  | { ev: "returned" }
  | { ev: "int"; value: number }
  | { ev: "progress"; done: number }
  | { ev: "burst"; outcomes: ({ ok: true; value: number } | { ok: false; message: string })[] }
  | { ev: "rejected"; name: string; message: string }
  | { ev: "closed" }
  | { ev: "postClosure"; threw: boolean; name?: string; message?: string }
  | { ev: "error"; message: string };

const port = parentPort!;
const post = (e: WorkerEvent): void => port.postMessage(e);
const describe = (e: unknown): { name: string; message: string } =>
  e instanceof Error ? { name: e.name, message: e.message } : { name: typeof e, message: String(e) };

const wc = workerConnection((workerData as { handle: LoopHandle }).handle);
const foo = await wc.get("foo", FooInterfaceClient);

port.on("message", (m: WorkerOp) => {
  void (async () => {
    try {
      switch (m.op) {
        case "add":
          post({ ev: "added", value: await foo.add(m.a, m.b) });
          break;
        case "callFnAsync":
          foo.callFnAsync().then(
            () => post({ ev: "returned" }),
            (e: unknown) => post({ ev: "rejected", ...describe(e) }),
          );
          post({ ev: "calling" });
          break;
        case "callIntFnAsync":
          post({ ev: "int", value: await foo.callIntFnAsync(m.arg) });
          break;
        case "burst": {
          // n concurrent Context calls; each completion is reported, then all outcomes.
          let done = 0;
          const outcomes = await Promise.all(
            Array.from({ length: m.n }, (_, i) =>
              foo.callIntFnAsync(i).then(
                (value) => ({ ok: true as const, value }),
                (e: unknown) => ({ ok: false as const, message: describe(e).message }),
              ).finally(() => post({ ev: "progress", done: ++done })),
            ),
          );
          post({ ev: "burst", outcomes });
          break;
        }
        case "close":
          await foo.close();
          await wc.close();
          post({ ev: "closed" });
          break;
        case "exit":
          process.exit(0);
        // falls through (never reached)
        case "postClosure":
          try {
            wc.loop.post("mptest.neverRegistered", { fn: () => 1 });
            post({ ev: "postClosure", threw: false });
          } catch (e) {
            post({ ev: "postClosure", threw: true, ...describe(e) });
          }
          break;
      }
    } catch (e) {
      post({ ev: "error", message: describe(e).message });
    }
  })();
});
post({ ev: "ready" });
