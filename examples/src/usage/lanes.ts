/**
 * docs/usage.md, "Concurrency lanes": independent async flows of one JS thread on separate server
 * Threads (the default keeps upstream's one-thread-one-queue order).
 */
import { runInLane, lane } from "@multiprocess-ts/runtime";
import type { CalculatorInterfaceClient } from "@multiprocess-ts/proto/example/calculator.capnp.js";

export async function twoFlows(calc: CalculatorInterfaceClient): Promise<void> {
  // Without lanes both calls would run one after the other on this thread's one server Thread.
  const slow = runInLane("batch", async () => {
    await calc.solveEquation("slow"); // FIFO within the "batch" lane...
    await calc.solveEquation("slower");
  });
  // ...while this lane's calls run on a server Thread of their own, concurrently.
  const fast = lane("interactive").run(() => calc.solveEquation("fast"));
  await Promise.all([slow, fast]);
}
