/**
 * Worker thread of `pnpm bench` (loaded as built JS). workerData.mode:
 *   "p3"        attaches to the main thread's loop (workerData.handle), gets the shared
 *               FooInterface client and times n sequential callIntFnAsync calls (a method with a
 *               Proxy.Context, so each call is thread-mapped to this worker's server Thread):
 *               posts {ready, tid}, waits for a message, then times and posts
 *               {us: Float64Array, workerCpuUs, workerSlices: number | null} (this thread's CPU
 *               time and timeslices, i.e. switch-ins, from /proc/thread-self).
 *   "pingpong"  the MessagePort floor: echoes every message back to the main thread.
 */
import { parentPort, workerData } from "node:worker_threads";
import { workerConnection, type LoopHandle } from "@multiprocess-ts/node";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { threadCpuUs, threadId, threadStats, timeSequential } from "./stats.js";

interface P3Data { mode: "p3"; handle: LoopHandle; n: number; warmup: number }
interface PingData { mode: "pingpong" }

const data = workerData as P3Data | PingData;
const port = parentPort!;

if (data.mode === "pingpong") {
  port.on("message", (m: unknown) => port.postMessage(m));
} else {
  const wc = workerConnection(data.handle);
  const foo = await wc.get("foo", FooInterfaceClient);
  try {
    // Start-up (module loading in this fresh isolate, attaching) and the warm-up calls are not
    // part of the figure: the main thread starts its CPU accounting when it sends "go", and only
    // the timed calls follow it (the same window as the latency figure).
    const call = async (i: number): Promise<void> => {
      const r = await foo.callIntFnAsync(i);
      if (r !== i + 1) throw new Error(`callIntFnAsync(${i}) = ${r}`);
    };
    for (let i = 0; i < data.warmup; i++) await call(i);
    const go = new Promise<void>((resolve) => port.once("message", () => resolve()));
    const tid = threadId();
    port.postMessage({ ready: true, tid });
    await go;
    const slices = (): number | null => (tid === null ? null : (threadStats().get(tid)?.slices ?? null));
    const s0 = slices();
    const t0 = threadCpuUs();
    const us = await timeSequential(data.n, 0, (i) => call(data.warmup + i));
    const t1 = threadCpuUs();
    const s1 = slices();
    // This thread's own CPU over the timed calls, so the loop thread's share is the rest.
    const workerCpuUs = t0 === null || t1 === null ? null : t1 - t0;
    const workerSlices = s0 === null || s1 === null ? null : s1 - s0;
    port.postMessage({ us, workerCpuUs, workerSlices }, [us.buffer as ArrayBuffer]);
  } catch (e) {
    port.postMessage({ error: e instanceof Error ? e.stack ?? e.message : String(e) });
  } finally {
    await foo.close();
    await wc.close();
  }
}
