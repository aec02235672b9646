/**
 * docs/usage.md, "Concurrency lanes" (on a worker thread): lanes and `thread: "pool"` work the
 * same in a worker as on the loop thread; the loop makes the worker's lane calls from a lane
 * context of its own for that worker. Runs on a worker thread attached with attachWorkers.
 */
import { workerData } from "node:worker_threads";
import { runInLane } from "@multiprocess-ts/runtime";
import { workerConnection } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";

const wc = workerConnection(workerData.handle);
const init = await wc.getInit(InitInterfaceClient);
const calc = await init.makeCalculator(null);
await Promise.all([
  // Each lane runs on its own server Thread of the peer, in order within the lane.
  runInLane("batch", async () => {
    await calc.solveEquation("slow");
    await calc.solveEquation("slower");
  }),
  runInLane("interactive", () => calc.solveEquation("fast")),
  // A pool Thread of the peer (it made one with makePool), as from the loop thread.
  calc.solveEquation("pooled", { thread: "pool" }),
]);
await calc.close();
await wc.close();
