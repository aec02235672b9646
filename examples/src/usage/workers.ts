/**
 * docs/usage.md, "Worker threads": proxies used ON worker threads against the loop thread's
 * connection (attachWorkers on the loop, workerConnection in the worker, callSync to block).
 * The worker side is workers-worker.ts.
 */
import { Worker } from "node:worker_threads";
import type { EventLoop } from "@multiprocess-ts/runtime";
import { attachWorkers, loopHandleTransferList } from "@multiprocess-ts/node";
import type { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";

export async function runWorker(loop: EventLoop, init: InitInterfaceClient): Promise<void> {
  const workers = attachWorkers(loop); // WorkerHost + LoopBridge for this EventLoop (loop thread only)
  const unshare = workers.share("init", init); // any ProxyClientBase; shareCapability for a raw one
  const handle = workers.handle({ name: "printer-user" }); // one per worker
  const worker = new Worker(new URL("./workers-worker.js", import.meta.url), {
    workerData: { handle },
    transferList: loopHandleTransferList(handle),
  });
  await new Promise((resolve) => worker.once("exit", resolve));
  unshare();
}
