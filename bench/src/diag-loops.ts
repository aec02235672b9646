/**
 * Loops shared by the in-process diagnostics (client-only.ts, one-process.ts): CPU time of this
 * process and 64 lanes of pipelined `add` calls. Runs on the main thread of a bench process.
 */
import type { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";

/** CPU time of this process (all threads), µs. */
export const cpuNow = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** `n` calls of `add` from 64 lanes at once; returns CPU µs per call. `who` names the harness in errors. */
export async function pipelinedAdd(foo: FooInterfaceClient, n: number, who: string): Promise<number> {
  const c0 = cpuNow();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      if ((await foo.add(i, 1)) !== i + 1) throw new Error(`${who}: wrong sum`);
    }
  };
  await Promise.all(Array.from({ length: 64 }, lane));
  return (cpuNow() - c0) / n;
}
