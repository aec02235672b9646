/**
 * Bench diagnostic (not part of `pnpm bench`): what the PROXY layer costs per P1 call, on each
 * side, in one process (issue 13, ninth session). Both ends over in-memory transport pairs
 * (`memoryTransportPair`, delivery a macrotask later as a socket read would be), four modes in
 * alternating blocks of sequential `add(i, 1)`:
 *
 *   gen/gen    the generated FooInterfaceClient.add and FooInterfaceServer dispatch (what P1 runs)
 *   bare/gen   a hand-written call straight on the engine (a `DirectCall` that writes the params and
 *              reads the result through the struct classes, no ProxyClientBase, no closure, no
 *              CallOptions, no frame lookup) against the generated server
 *   gen/bare   the generated client against a server whose `dispatch` reads the params, calls
 *              BenchFoo.add and writes the result itself (no method table, no ServerCallIO, no
 *              generated invoke, no int checks)
 *   bare/bare  both
 *
 * The engine, the transport and the runtime's Connection are the same in every mode, so
 * `gen/gen − bare/gen` is the generated client + ProxyClientBase per call, `gen/gen − gen/bare`
 * the generated server + ProxyServerBase per call (the CPU of both sides is one process's; each
 * difference is the median of the per-block paired differences). Besides CPU, the 25th percentile
 * of each block's per-call wall-clock times: the calls this shared machine did not preempt, whose
 * time is the two sides' CPU, so its differences resolve what the CPU figures' noise hides. Also prints the promises made
 * per call (a V8 promise hook) and the bytes allocated per call (new-space growth between two
 * `gc()`s; run with `--expose-gc --min-semi-space-size=64`).
 *
 *   node --expose-gc --min-semi-space-size=64 bench/dist/diag-proxy.js [--n 5000] [--blocks 20] [--build DIR] [--print]
 *
 * `--build DIR`: measure another built checkout's engine, runtime and generated code (e.g. a
 * baseline), with this file's harness.
 *
 * Nothing is asserted. Threading: the main (loop) thread.
 */
import { getHeapSpaceStatistics, promiseHooks } from "node:v8";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Capability, IncomingCall, RpcError } from "@multiprocess-ts/capnp";
import type { FooInterface } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { cpuNow } from "./diag-loops.js";

// The build measured: this checkout, or `--build DIR` (another built checkout, e.g. a baseline).
const buildOpt = process.argv.indexOf("--build");
const DIR = resolve(buildOpt < 0 ? "." : process.argv[buildOpt + 1]!);
const url = (p: string): string => pathToFileURL(join(DIR, p)).href;
const { DirectCall, memoryTransportPair } = (await import(url("packages/capnp/dist/index.js"))) as typeof import("@multiprocess-ts/capnp");
const { EventLoop, connectTransport, serveTransport } = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
const { ProxyServerBase } = (await import(url("packages/runtime/dist/gen/index.js"))) as typeof import("@multiprocess-ts/runtime/gen");
const { FooInterfaceClient, FooInterfaceServer, FooInterface_add$Params, FooInterface_add$Results } = (await import(
  url("proto/dist/test/foo.capnp.js")
)) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
const { BenchFoo } = (await import(url("bench/dist/foo-impl.js"))) as typeof import("./foo-impl.js");

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
};
const N = arg("n", 5000);
const BLOCKS = arg("blocks", 20);

/** One `add` straight on the engine: the least a client call can do with this engine. */
class BareAdd extends DirectCall {
  resolve: (v: number) => void = noop;
  reject: (e: unknown) => void = noop;
  protected settle(err: RpcError | null): void {
    if (err !== null) {
      this.releaseResults();
      this.reject(err);
      return;
    }
    const v = this.results(FooInterface_add$Results).result;
    this.releaseResults();
    this.resolve(v);
  }
}
const noop = (): void => {};

function bareAdd(cap: Capability, a: number, b: number): Promise<number> {
  const call = new BareAdd();
  const p = new Promise<number>((res, rej) => {
    call.resolve = res;
    call.reject = rej;
  });
  const params = call.begin(cap, FooInterfaceClient.interfaceId, 0, FooInterface_add$Params);
  params.a = a;
  params.b = b;
  call.sendCall();
  return p;
}

/** A server that answers `add` itself (method 0 of FooInterface only). */
class BareServer extends ProxyServerBase<FooInterface> {
  static readonly interfaceId = FooInterfaceServer.interfaceId;
  static readonly methods = FooInterfaceServer.methods;
  override dispatch(call: IncomingCall): void {
    const p = call.params(FooInterface_add$Params);
    call.results(FooInterface_add$Results).result = this.impl!.add(p.a, p.b) as number;
  }
}

type Add = (i: number) => Promise<number>;

/** The last block's 25th percentile of per-call wall-clock µs (leaves out preempted calls). */
let lastP25 = 0;

async function block(add: Add, n: number): Promise<number> {
  const us = new Float64Array(n);
  const c0 = cpuNow();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    if ((await add(i)) !== i + 1) throw new Error("diag-proxy: wrong sum");
    us[i] = (performance.now() - t0) * 1000;
  }
  const cpu = (cpuNow() - c0) / n;
  lastP25 = us.sort()[n >> 2]!;
  return cpu;
}

async function promisesPerCall(add: Add, n: number): Promise<number> {
  let count = 0;
  const stop = promiseHooks.onInit(() => {
    count++;
  });
  for (let i = 0; i < n; i++) await add(i);
  stop();
  return count / n;
}

async function bytesPerCall(add: Add, n: number): Promise<number | null> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return null;
  const young = (): number => getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!.space_used_size;
  gc();
  const y0 = young();
  for (let i = 0; i < n; i++) await add(i);
  const y1 = young();
  return y1 > y0 ? (y1 - y0) / n : null;
}

const loop = new EventLoop("diag-proxy", { log: { level: "warning" } });
const [ct1, st1] = memoryTransportPair();
const [ct2, st2] = memoryTransportPair();
const genServer = serveTransport(loop, st1, new BenchFoo(), FooInterfaceServer);
const bareServer = serveTransport(loop, st2, new BenchFoo(), BareServer as unknown as typeof FooInterfaceServer);
const toGen = await connectTransport(loop, ct1, FooInterfaceClient);
const toBare = await connectTransport(loop, ct2, FooInterfaceClient);

const modes: [string, Add][] = [
  ["gen/gen", (i) => toGen.add(i, 1)],
  ["bare/gen", (i) => bareAdd(toGen.$cap, i, 1)],
  ["gen/bare", (i) => toBare.add(i, 1)],
  ["bare/bare", (i) => bareAdd(toBare.$cap, i, 1)],
];
for (let w = 0; w < 3; w++) for (const [, f] of modes) await block(f, Math.max(N, 5000));
const got: number[][] = modes.map(() => []);
const p25: number[][] = modes.map(() => []);
for (let b = 0; b < BLOCKS; b++) {
  const order = modes.map((_, j) => (b + j) % modes.length);
  for (const k of b % 2 === 0 ? order : order.reverse()) {
    got[k]!.push(await block(modes[k]![1], N));
    p25[k]!.push(lastP25);
  }
}
const extra: { name: string; promises: number; bytes: number | null }[] = [];
for (const [name, f] of modes) extra.push({ name, promises: await promisesPerCall(f, 2000), bytes: await bytesPerCall(f, 2000) });
await toGen.close();
await toBare.close();
await genServer.close();
await bareServer.close();

const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
const f2 = (x: number): string => x.toFixed(2);
const out = [`diag-proxy ${DIR}: CPU µs per sequential add, both sides in one process (${BLOCKS} blocks of ${N}, alternating)`];
modes.forEach(([name], k) => {
  const xs = got[k]!;
  const e = extra[k]!;
  out.push(`  ${name.padEnd(10)} CPU median ${f2(med(xs)).padStart(6)}  range ${f2(Math.min(...xs))}–${f2(Math.max(...xs))}  wall p25 median ${f2(med(p25[k]!))}  promises ${e.promises.toFixed(2)}  bytes ${e.bytes === null ? "-" : e.bytes.toFixed(0)}`);
});
const diff = (a: number, b: number, what: string): void => {
  for (const [how, xs] of [["CPU", got], ["wall p25", p25]] as const) {
    const d = xs[a]!.map((x, i) => x - xs[b]![i]!);
    out.push(`  ${what.padEnd(44)} ${how.padEnd(8)} ${f2(med(d)).padStart(6)} µs  (range ${f2(Math.min(...d))}–${f2(Math.max(...d))}; > 0 in ${d.filter((x) => x > 0).length} of ${d.length})`);
  }
};
diff(0, 1, "generated client layer (gen/gen − bare/gen)");
diff(2, 3, "generated client layer (gen/bare − bare/bare)");
diff(0, 2, "generated server layer (gen/gen − gen/bare)");
diff(1, 3, "generated server layer (bare/gen − bare/bare)");
process.stdout.write(out.join("\n") + "\n");
if (process.argv.includes("--print")) {
  for (let b = 0; b < BLOCKS; b++) process.stdout.write(`block ${b}: ${modes.map(([name], k) => `${name} ${f2(got[k]![b]!)}`).join("  ")}\n`);
}
