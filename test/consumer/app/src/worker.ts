/**
 * A worker thread calling the child's Adder through the app's loop (attachWorkers); the
 * Listener it passes is called back on this worker.
 */
import { parentPort, threadId, workerData } from "node:worker_threads";
import { workerConnection } from "@multiprocess-ts/node";
import { AdderClient } from "./gen/calc.capnp.js";

const wc = workerConnection(workerData.handle);
const adder = await wc.get("adder", AdderClient);
const sum = await adder.add(20, 22);
let heard = "";
const told = await adder.addAndTell(1, 1, {
  onResult(text: string): void {
    heard = `${text}; heard on worker thread ${threadId}`;
  },
});
parentPort?.postMessage(`worker: add(20, 22) = ${sum}; addAndTell(1, 1) = ${told}; ${heard}`);
await adder.close();
wc.close();
