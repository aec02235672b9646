/**
 * docs/usage.md, "Sharing clients": release() versus close(), and a client shared with workers
 * that is destroyed only when its last holder closes it.
 */
import type { EventLoop } from "@multiprocess-ts/runtime";
import { attachWorkers } from "@multiprocess-ts/node";
import type { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { CalculatorInterfaceClient } from "@multiprocess-ts/proto/example/calculator.capnp.js";

export async function releaseVersusClose(init: InitInterfaceClient): Promise<void> {
  const calc = await init.makeCalculator(null);
  await calc.solveEquation("1+1");
  // release(): drop OUR reference only; no remote `destroy` (the object lives on while anyone
  // else references it). close(): the owner's "I am done with it": remote `destroy`, then release.
  await calc.release();
}

export function shareWithWorkers(loop: EventLoop, calc: CalculatorInterfaceClient): () => void {
  const workers = attachWorkers(loop);
  // The shared client and each worker's client of it are holders of one object: a holder's
  // close() only releases while others hold it; the LAST holder to close sends `destroy`.
  // So a worker may `await calc.close()` when done without breaking the others.
  return workers.share("calc", calc);
}
