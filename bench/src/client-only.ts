/**
 * Bench diagnostic (not part of `pnpm bench`): the CLIENT half of a call, alone, in one process.
 * A generated `FooInterfaceClient` talks to an in-process echo peer (`EchoPeer`, a Transport that
 * answers Bootstrap with one capability and each `add` Call with its Return, from byte templates,
 * on the next macrotask as a socket read would), so what is measured is our client path only:
 * generated method, runtime proxy client, engine questions / Return / Finish, no sockets and no
 * server. Prints CPU per call (sequential and 64 in flight), promises created per call (a V8
 * promise hook, in its own pass), bytes allocated per call (heap growth between two `gc()`s, with
 * a young generation large enough that no scavenge runs in between) and the CPU per call of the
 * first 1,000 calls of this fresh process (the cold window: baseline-tier code).
 *
 *   node --expose-gc --max-semi-space-size=64 bench/dist/client-only.js [--n 20000] [--rounds 5]
 *   node --expose-gc --max-semi-space-size=64 --no-opt bench/dist/client-only.js   # unoptimised
 *   ... --heap-sample FILE.heapprofile: also a sampling heap profile of 20,000 calls (all allocations)
 *
 * Threading: the main (loop) thread.
 */
import { getHeapSpaceStatistics, promiseHooks } from "node:v8";
import { EventLoop, connectTransport } from "@multiprocess-ts/runtime";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { cpuNow, pipelinedAdd } from "./diag-loops.js";
import { EchoPeer } from "./echo-peer.js";

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
};
const N = arg("n", 20000);
const ROUNDS = arg("rounds", 5);
const COLD = 1000;

async function sequential(foo: FooInterfaceClient, n: number): Promise<number> {
  const c0 = cpuNow();
  for (let i = 0; i < n; i++) if ((await foo.add(i, 1)) !== i + 1) throw new Error("client-only: wrong sum");
  return (cpuNow() - c0) / n;
}

const pipelined = (foo: FooInterfaceClient, n: number): Promise<number> => pipelinedAdd(foo, n, "client-only");

async function promisesPerCall(foo: FooInterfaceClient, n: number): Promise<number> {
  let count = 0;
  const stop = promiseHooks.onInit(() => {
    count++;
  });
  for (let i = 0; i < n; i++) await foo.add(i, 1);
  stop();
  return count / n;
}

async function bytesPerCall(foo: FooInterfaceClient, n: number): Promise<number | null> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return null;
  const young = (): number => getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!.space_used_size;
  gc();
  const y0 = young();
  for (let i = 0; i < n; i++) await foo.add(i, 1);
  const y1 = young();
  // A scavenge in between empties new space: then the delta is meaningless.
  return y1 > y0 ? (y1 - y0) / n : null;
}

/** A sampling heap profile of 20,000 calls, counting objects the GC already collected. */
async function heapSample(foo: FooInterfaceClient, file: string): Promise<void> {
  const { Session } = await import("node:inspector/promises");
  const { writeFile } = await import("node:fs/promises");
  const s = new Session();
  s.connect();
  await s.post("HeapProfiler.startSampling", {
    samplingInterval: 256,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  } as object);
  for (let i = 0; i < 20000; i++) await foo.add(i, 1);
  const { profile } = await s.post("HeapProfiler.stopSampling");
  await writeFile(file, JSON.stringify(profile));
  s.disconnect();
}

const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const f1 = (x: number): string => x.toFixed(2);

const loop = new EventLoop("client-only", { log: { level: "warning" } });
const foo = await connectTransport(loop, new EchoPeer(), FooInterfaceClient);
const cold = await sequential(foo, COLD);
await sequential(foo, N); // warm-up
const seq: number[] = [];
const pipe: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  seq.push(await sequential(foo, N));
  pipe.push(await pipelined(foo, N));
}
const bytes = await bytesPerCall(foo, 2000);
const promises = await promisesPerCall(foo, 2000);
const sampleTo = process.argv.indexOf("--heap-sample");
if (sampleTo > 0) await heapSample(foo, process.argv[sampleTo + 1]!);
await foo.close();

process.stdout.write(
  [
    `client only (echo peer, ${process.execArgv.join(" ") || "default flags"})`,
    `  first ${COLD} calls, CPU per call      ${f1(cold)} µs`,
    `  sequential CPU per call (median of ${ROUNDS}) ${f1(med(seq))} µs  [${seq.map(f1).join(", ")}]`,
    `  64 in flight CPU per call (median)    ${f1(med(pipe))} µs  [${pipe.map(f1).join(", ")}]`,
    `  bytes allocated per call              ${bytes === null ? "- (needs --expose-gc; or a GC ran)" : bytes.toFixed(0)}`,
    `  promises created per call             ${promises.toFixed(2)}`,
    "",
  ].join("\n"),
);
