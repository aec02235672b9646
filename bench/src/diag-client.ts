/**
 * Bench diagnostic (not part of `pnpm bench`): the CLIENT side of P1 over a real Unix socket, one
 * bench server child (server.js rpc), connected exactly as run.ts connects (`onread` reader,
 * stream transport, generated FooInterfaceClient), the same sequential loop as the bench
 * (`sequentialWithCpu`: an async function per call). Prints, per block, CPU µs per call of each
 * side, then, in one more instrumented block, what the client's event loop runs per call:
 * `process.nextTick` callbacks, `setImmediate` callbacks and promises created (a V8 promise hook).
 * The instrumented block's CPU is not reported (the counters cost CPU themselves).
 *
 *   node bench/dist/diag-client.js [--n 20000] [--blocks 5]
 *
 * Threading: the main thread.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promiseHooks } from "node:v8";
import { connectTransport, EventLoop } from "@multiprocess-ts/runtime";
import { SocketReader, streamTransport } from "@multiprocess-ts/capnp";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectUnix, sequentialWithCpu, startServer } from "./children.js";

const args = process.argv.slice(2);
const opt = (name: string, d: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const N = opt("--n", 20000);
const BLOCKS = opt("--blocks", 5);

const dir = await mkdtemp(join(tmpdir(), "mpts-diag-client-"));
const path = join(dir, "rpc.sock");
const server = await startServer("rpc", path, "diag-client");
const loop = new EventLoop("diag-client", { log: { level: "warning" } });
const reader = new SocketReader();
const socket = await connectUnix(path, reader);
const foo = await connectTransport(loop, streamTransport(socket, undefined, undefined, reader), FooInterfaceClient);
const call = async (i: number): Promise<void> => {
  if ((await foo.add(i, 1)) !== i + 1) throw new Error("diag-client: wrong sum");
};

const f1 = (x: number): string => x.toFixed(2).padStart(7);
process.stdout.write(`diag-client: P1 over a Unix socket, n=${N} per block (+${N / 10} warm-up)\n`);
for (let b = 0; b < BLOCKS; b++) {
  const { us, cpu } = await sequentialWithCpu(server, N, N / 10, call);
  const sorted = Float64Array.from(us).sort();
  process.stdout.write(`  block ${b + 1}: CPU per call client ${f1(cpu.client)} µs, server ${f1(cpu.server)} µs, p50 ${f1(sorted[sorted.length >> 1]!)} µs\n`);
}

// Instrumented block: counts what runs per call.
let ticks = 0;
let immediates = 0;
let promises = 0;
const nextTick = process.nextTick;
const setImm = globalThis.setImmediate;
process.nextTick = ((cb: (...a: unknown[]) => void, ...a: unknown[]) => {
  ticks++;
  nextTick(cb, ...a);
}) as typeof process.nextTick;
globalThis.setImmediate = ((cb: (...a: unknown[]) => void, ...a: unknown[]) => {
  immediates++;
  return setImm(cb, ...a);
}) as typeof setImmediate;
const stop = promiseHooks.onInit(() => {
  promises++;
});
const M = 2000;
for (let i = 0; i < M; i++) await call(i);
stop();
process.nextTick = nextTick;
globalThis.setImmediate = setImm;
process.stdout.write(`  per call (client): nextTick ${(ticks / M).toFixed(2)}, setImmediate ${(immediates / M).toFixed(2)}, promises ${(promises / M).toFixed(2)} (1 of them this loop's)\n`);

await foo.close();
await server.stop();
await rm(dir, { recursive: true, force: true });
