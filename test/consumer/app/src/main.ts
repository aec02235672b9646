/**
 * The consumer app (loop thread): a call into a spawned child process, a call from a worker
 * thread, and a call over a WebSocket, all with the proxies mpgen generated from schema/calc.capnp.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { EventLoop } from "@multiprocess-ts/runtime";
import { attachWorkers, connectWebSocket, listenWebSocketConnections, loopHandleTransferList, spawnProcess } from "@multiprocess-ts/node";
import { AdderClient, AdderServer } from "./gen/calc.capnp.js";
import { AdderImpl } from "./impl.js";

const loop = new EventLoop("consumer");

// 1. A spawned child process serving an Adder.
const childScript = fileURLToPath(new URL("./child.js", import.meta.url));
const proc = await spawnProcess(process.execPath, (fd) => [childScript, String(fd)], { loop, InitClient: AdderClient });
console.log(`spawn: add(2, 3) = ${await proc.init.add(2, 3)}`);
const who = await proc.init.whoami();
if (who !== `child pid ${proc.pid}`) throw new Error(`unexpected whoami: ${who}`);
let told = "";
const sum = await proc.init.addAndTell(4, 5, { onResult: (text) => { told = text; } });
console.log(`spawn: ${who}; addAndTell(4, 5) = ${sum}; callback: ${told}`);
{
  await using counter = await proc.init.makeCounter(41n);
  console.log(`spawn: counter ${await counter.next()}, ${await counter.next()} (await using)`);
}

// 2. A worker thread calling the child's Adder through this loop.
const workers = attachWorkers(loop);
const unshare = workers.share("adder", proc.init);
const handle = workers.handle({ name: "consumer-worker" });
const worker = new Worker(new URL("./worker.js", import.meta.url), { workerData: { handle }, transferList: loopHandleTransferList(handle) });
const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
const report = await new Promise<string>((resolve, reject) => {
  worker.once("message", resolve);
  worker.once("error", reject);
});
console.log(report);
if (await exited !== 0) throw new Error("worker failed");
unshare();

await proc.init.close();
const status = await proc.exited;
console.log(`spawn: child exited with code ${status.code}`);

// 3. A WebSocket server and client (exactOptionalPropertyTypes: origin may be undefined).
const token = randomBytes(16).toString("hex");
const wsListener = await listenWebSocketConnections(loop, new AdderImpl("websocket server"), AdderServer, { token });
const remote = await connectWebSocket(loop, wsListener.url, AdderClient, { token, origin: process.env["CONSUMER_ORIGIN"] });
console.log(`websocket: add(40, 2) = ${await remote.add(40, 2)}; ${await remote.whoami()}`);
await remote.close();
await wsListener.close();

workers.host.close();
await loop.done;
console.log("consumer: OK");
