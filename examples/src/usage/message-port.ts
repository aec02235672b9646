/**
 * docs/usage.md, "MessagePort": one RPC connection over a MessagePort (e.g. to a worker that
 * runs its own EventLoop). For proxies running *on* workers against this loop, see workers.ts.
 */
import { MessageChannel, Worker, workerData } from "node:worker_threads";
import { EventLoop, connectTransport, serveTransport } from "@multiprocess-ts/runtime";
import { messagePortTransport } from "@multiprocess-ts/node";
import { InitInterfaceClient, InitInterfaceServer } from "@multiprocess-ts/proto/example/init.capnp.js";
import { Init } from "./server.js";

// Main thread: start a worker running `portWorkerMain` and connect to its Init object.
export async function portParent(loop: EventLoop, workerScript: URL): Promise<void> {
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(workerScript, { workerData: { port: port2 }, transferList: [port2] });
  const init = await connectTransport(loop, messagePortTransport(port1), InitInterfaceClient);
  const printer = await init.makePrinter();
  await printer.print("from the main thread\n");
  await printer.close();
  await init.close();
  await worker.terminate();
}

// In the worker:
export async function portWorkerMain(): Promise<void> {
  const loop = new EventLoop("worker");
  const connection = serveTransport(loop, messagePortTransport(workerData.port), new Init(), InitInterfaceServer);
  await connection.disconnected;
}
