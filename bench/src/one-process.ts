/**
 * Bench diagnostic (not part of `pnpm bench`): both ends of P1, P2 and P4 in ONE process over an
 * in-memory transport pair (`memoryTransportPair`), so the CPU per call is what our own code costs
 * on both sides together, without sockets, Node streams, the kernel or cross-process wake-ups
 * (which are most of the two-process figures and as noisy as the machine's load). Same client
 * (`FooInterfaceClient`), same server (`BenchFoo` behind `FooInterfaceServer`), same calls as the
 * bench: `add(i, 1)` sequential and 64 in flight, `callbackSaved(i)` (the server calls the
 * client's saved callback during the call). Prints the median and range over the rounds.
 *
 *   node bench/dist/one-process.js [--n 20000] [--rounds 5]          (add --no-opt: unoptimised)
 *
 * Threading: the main (loop) thread.
 */
import { memoryTransportPair } from "@multiprocess-ts/capnp";
import { EventLoop, connectTransport, serveTransport } from "@multiprocess-ts/runtime";
import { FooInterfaceClient, FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { BenchFoo } from "./foo-impl.js";
import { cpuNow, pipelinedAdd } from "./diag-loops.js";

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
};
const N = arg("n", 20000);
const ROUNDS = arg("rounds", 5);


/** Wall-clock µs of the calls of the last {@link perCall} (for its p99: stalls show up there). */
let lastUs: number[] = [];

async function perCall(n: number, fn: (i: number) => Promise<void>): Promise<number> {
  const us: number[] = new Array(n);
  const c0 = cpuNow();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    us[i] = (performance.now() - t0) * 1000;
  }
  const cpu = (cpuNow() - c0) / n;
  lastUs = us;
  return cpu;
}

const p99s: Record<string, number[]> = {};
function keepP99(name: string): void {
  const s = [...lastUs].sort((a, b) => a - b);
  (p99s[name] ??= []).push(s[Math.floor(s.length * 0.99)]!);
}

const pipelined = (foo: FooInterfaceClient, n: number): Promise<number> => pipelinedAdd(foo, n, "one-process");

const add = (foo: FooInterfaceClient) => async (i: number): Promise<void> => {
  if ((await foo.add(i, 1)) !== i + 1) throw new Error("one-process: wrong sum");
};
const cbSaved = (foo: FooInterfaceClient) => async (i: number): Promise<void> => {
  if ((await foo.callbackSaved(i)) !== i * 2) throw new Error("one-process: wrong callback result");
};

const loop = new EventLoop("one-process", { log: { level: "warning" } });
const [ct, st] = memoryTransportPair();
const server = serveTransport(loop, st, new BenchFoo(), FooInterfaceServer);
const foo = await connectTransport(loop, ct, FooInterfaceClient);
const cold = await perCall(1000, add(foo));
await foo.initThreadMap();
await foo.saveCallback({ call: (a: number) => a * 2 });
await perCall(N, add(foo)); // warm-up
await perCall(N / 4, cbSaved(foo));
const rows: Record<string, number[]> = { "add sequential": [], "add 64 in flight": [], "callbackSaved (P4)": [] };
for (let r = 0; r < ROUNDS; r++) {
  rows["add sequential"]!.push(await perCall(N, add(foo)));
  keepP99("add sequential");
  rows["add 64 in flight"]!.push(await pipelined(foo, N));
  rows["callbackSaved (P4)"]!.push(await perCall(N / 4, cbSaved(foo)));
  keepP99("callbackSaved (P4)");
}
await foo.close();
await server.close();

const f1 = (x: number): string => x.toFixed(2);
const out = [`one process, both ends (memory transport; ${process.execArgv.join(" ") || "default flags"}), CPU µs per call, both sides`];
out.push(`  first 1000 add calls ${f1(cold).padStart(20)}`);
for (const [k, xs] of Object.entries(rows)) {
  const s = [...xs].sort((a, b) => a - b);
  const p = p99s[k];
  const p99 = p === undefined ? "" : `   wall p99 ${p.map((x) => x.toFixed(0)).join(", ")} µs`;
  out.push(`  ${k.padEnd(20)} ${f1(s[s.length >> 1]!).padStart(8)}   range ${f1(s[0]!)}–${f1(s[s.length - 1]!)}${p99}`);
}
process.stdout.write(out.join("\n") + "\n");
