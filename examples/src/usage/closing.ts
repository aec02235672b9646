/**
 * docs/usage.md, "Closing and disposing": who closes what, and checking that nothing is left.
 */
import { EventLoop } from "@multiprocess-ts/runtime";
import { clientConnection, connectStream, serveStream } from "@multiprocess-ts/node";
import type { Duplex } from "node:stream";
import { InitInterfaceClient, InitInterfaceServer } from "@multiprocess-ts/proto/example/init.capnp.js";
import { Init } from "./server.js";

export async function closingExample(a: Duplex, b: Duplex): Promise<void> {
  const loop = new EventLoop("closing");
  const served = serveStream(loop, a, new Init(), InitInterfaceServer); // owns the Init impl (ownsImpl)
  const init = await connectStream(loop, b, InitInterfaceClient);

  // close() calls the remote `destroy` when the interface declares one (CalculatorInterface
  // does), then releases the capability; idempotent. Clients are also AsyncDisposable
  // ([Symbol.asyncDispose] = close), so `await using` closes one at the end of its block. It
  // runs on Node 20 when TypeScript down-levels it (target ES2022, lib "esnext.disposable").
  {
    await using calc = await init.makeCalculator(null);
    await calc.solveEquation("1+2");
  } // calc.close() ran here, even if solveEquation threw

  const printer = await init.makePrinter();
  await printer.print("bye\n");
  await printer.close();

  const connection = clientConnection(init); // the Connection the Init client owns
  await init.close(); // closing the Init client closes its connection
  await served.disconnected; // the server side ended too; its impl is disposed

  // Nothing left: RPC tables empty, no EventLoopRef held, cleanups drained.
  console.log(connection.rpc.stats()); // all counts 0
  await loop.done;
  console.log(loop.numRefs); // 0
}
