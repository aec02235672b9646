/**
 * Worker-thread program for test/spawn: receives a MessagePort in workerData and serves the
 * example InitInterface over it with messagePortTransport; its Printer posts each printed text
 * to the parent (parentPort). The worker's loop ends when the parent disconnects; the thread
 * then has nothing left to do and exits.
 */
import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import { EventLoop, serveTransport } from "@multiprocess-ts/runtime";
import { messagePortTransport } from "@multiprocess-ts/node";
import { InitInterfaceServer, type InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";

const { port } = workerData as { port: MessagePort };

class Init implements InitInterface {
  makePrinter(): PrinterInterface {
    return { print: (text: string) => parentPort!.postMessage({ printed: text }) };
  }
  makeCalculator(): CalculatorInterface {
    throw new Error("no calculator in this worker");
  }
}

const loop = new EventLoop("port-worker");
const connection = serveTransport(loop, messagePortTransport(port), new Init(), InitInterfaceServer);
await connection.disconnected;
await loop.done;
parentPort!.postMessage({ done: true, stats: connection.rpc.stats() });
