/**
 * docs/usage.md, "Server thread pools": makePool asks the peer for pool Threads, and
 * `thread: "pool"` sends calls there instead of the one Thread per calling JS thread.
 */
import { makePool, setCallDefaults } from "@multiprocess-ts/runtime";
import type { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";

export async function poolExample(init: InitInterfaceClient): Promise<void> {
  // Needs the peer's ThreadMap: Init's `construct` exchanged them when the client connected.
  await makePool(init, 4); // once per connection

  const calc = await init.makeCalculator(null);
  // Both calls run at once, each on the least loaded pool Thread of the peer.
  await Promise.all([
    calc.solveEquation("1+1", { thread: "pool" }),
    calc.solveEquation("2+2", { thread: "pool" }),
  ]);
  // Or for every call through this client:
  setCallDefaults(calc, { thread: "pool" });
  await calc.solveEquation("3+3");
  await calc.close();
}
