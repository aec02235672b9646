/**
 * A worker thread for the worker-race scenarios. The parent sends it a loop handle ("attach"); it
 * attaches to that loop, gets the FooInterface client the loop shared as "foo", and then does what
 * the parent tells it over parentPort, reporting each step back (so the parent waits on events,
 * not on time). After "close" it is detached, and can attach to another iteration's loop: the
 * worker pool of worker-driver.ts reuses it, after "state" shows that nothing of the old loop is
 * left on this thread. Loaded as one CommonJS esbuild bundle of the built JS, compiled with a V8
 * code cache (bundle-loader.ts); "codeCache" hands the parent a cache of this thread's
 * compiled code for the threads started after it.
 *
 * Threading: runs on its own worker thread.
 */

import { parentPort } from "node:worker_threads";
import { currentLoop, workerConnection, type LoopHandle, type WorkerConnection } from "@multiprocess-ts/node";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { loadedBundle, type CodeCacheUse } from "../loaded-bundle.js";

export type WorkerOp =
  | { op: "attach"; handle: LoopHandle }
  | { op: "state" }
  | { op: "add"; a: number; b: number }
  | { op: "callFnAsync" }
  | { op: "callIntFnAsync"; arg: number }
  | { op: "burst"; n: number }
  | { op: "close" }
  | { op: "exit" }
  | { op: "postClosure" }
  | { op: "loaded" }
  | { op: "codeCache" };

export type WorkerEvent =
  | { ev: "ready"; codeCache: CodeCacheUse | "no loader" }
  | { ev: "loaded"; codeCache: CodeCacheUse | "no loader" }
  | { ev: "added"; value: number }
  | { ev: "calling" }
  | { ev: "returned" }
  | { ev: "int"; value: number }
  | { ev: "progress"; done: number }
  | { ev: "burst"; outcomes: ({ ok: true; value: number } | { ok: false; message: string })[] }
  | { ev: "rejected"; name: string; message: string }
  | { ev: "closed" }
  | { ev: "postClosure"; threw: boolean; name?: string; message?: string }
  | { ev: "state"; state: WorkerState }
  | { ev: "codeCache"; data: Uint8Array }
  | { ev: "error"; message: string };

/** What is left on the worker thread of the loop it attached to last ("state" op). */
export interface WorkerState {
  /** `currentLoop()` still finds an attached loop. */
  attached: boolean;
  /** The last WorkerLoop's session is closed. */
  loopClosed: boolean;
  /** State of the last WorkerConnection's Connection ("closed" once detached). */
  connection: string;
  /** References still held on the last WorkerConnection's EventLoop. */
  loopRefs: number;
  /** Work still queued on that EventLoop. */
  pendingWork: number;
  /** Handles and requests open on this thread beyond those of the idle worker (by type). */
  extraResources: string[];
}

const port = parentPort!;
const post = (e: WorkerEvent): void => port.postMessage(e);
const describe = (e: unknown): { name: string; message: string } =>
  e instanceof Error ? { name: e.name, message: e.message } : { name: typeof e, message: String(e) };

let wc: WorkerConnection | undefined;
let fooClient: FooInterfaceClient | undefined;
const attached = (): { wc: WorkerConnection; foo: FooInterfaceClient } => {
  if (wc === undefined || fooClient === undefined) throw new Error("foo-worker: not attached to a loop");
  return { wc, foo: fooClient };
};

function state(): WorkerState {
  let attachedNow = true;
  try {
    currentLoop();
  } catch {
    attachedNow = false;
  }
  return {
    attached: attachedNow,
    loopClosed: wc?.loop.isClosed ?? true,
    connection: wc?.connection.state ?? "closed",
    loopRefs: wc?.eventLoop.numRefs ?? 0,
    pendingWork: wc?.eventLoop.pendingWork ?? 0,
    extraResources: extraResources(),
  };
}

/** Open handles by type, from process.getActiveResourcesInfo() on this thread. */
function resourceCounts(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
  return m;
}
let idleResources: Map<string, number> | undefined;
function extraResources(): string[] {
  const out: string[] = [];
  for (const [r, n] of resourceCounts()) {
    const base = idleResources?.get(r) ?? 0;
    if (n > base) out.push(`${r}: ${base} -> ${n}`);
  }
  return out;
}

port.on("message", (m: WorkerOp) => {
  void (async () => {
    try {
      if (m.op === "attach") {
        if (wc !== undefined && !wc.loop.isClosed) throw new Error("foo-worker: attach while still attached");
        wc = workerConnection(m.handle);
        fooClient = undefined;
        fooClient = await wc.get("foo", FooInterfaceClient);
        post({ ev: "ready", codeCache: loadedBundle()?.codeCache ?? "no loader" });
        return;
      }
      if (m.op === "state") return post({ ev: "state", state: state() });
      if (m.op === "loaded") return post({ ev: "loaded", codeCache: loadedBundle()?.codeCache ?? "no loader" });
      if (m.op === "codeCache") {
        const b = loadedBundle();
        if (b === undefined) throw new Error("foo-worker: not started by the bundle loader, no code cache to make");
        return post({ ev: "codeCache", data: b.createCachedData() });
      }
      if (m.op === "exit") process.exit(0);
      const { wc: conn, foo } = attached();
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
          await conn.close();
          post({ ev: "closed" });
          break;
        case "postClosure":
          try {
            conn.loop.post("mptest.neverRegistered", { fn: () => 1 });
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
// What this thread holds before any loop attached: the baseline of WorkerState.extraResources.
idleResources = resourceCounts();
