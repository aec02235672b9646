/**
 * docs/usage.md, "Worker threads", worker side: generated proxies work unchanged in a worker
 * attached to the loop; callSync blocks the worker (never the loop thread) until a call settles.
 */
import { workerData } from "node:worker_threads";
import { workerConnection } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";

const wc = workerConnection(workerData.handle); // attachLoop + a worker-side runtime Connection
const init = await wc.getInit(InitInterfaceClient); // = wc.get("init", InitInterfaceClient); getSync blocks
const printer = await init.makePrinter();
await printer.print("from a worker, with await\n");

// callSync must run from a macrotask (a timer, setImmediate or event handler), not from a
// promise job or the module's top level: it throws "cannot block inside a promise job" there.
setImmediate(() => {
  wc.loop.callSync(() => printer.print("from a worker, blocking\n"));
  void printer.close().then(() => wc.close());
});

