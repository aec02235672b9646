/**
 * Server child process of `pnpm bench` (forked with an IPC channel, `--expose-gc`):
 *   server.js rpc PATH   FooInterface (BenchFoo) on a Unix socket via listenConnections (its
 *                        sockets read through onread; as streams with --server-stream-reads)
 *   server.js raw PATH   the raw u32-length-prefix ping-pong floor (see raw.ts)
 *   server.js birpc|capnweb PATH   a peer RPC library serving add/passData (see peers.ts)
 * IPC: it sends {ready:true}; it answers {op:"mem"} with {mem, connections} sampled after gc(),
 * {op:"cpu"} with its process.cpuUsage() and read/write syscall counts (stats.ts syscallCounts),
 * and exits on {op:"exit"} (or when the parent goes away).
 * Diagnostics (diag-phases.ts): {op:"heap-sample-start"} starts V8's sampling heap profiler
 * keeping the samples a full GC frees but not those a scavenge frees, so what it reports is what
 * survived scavenges (promoted to the old generation; with `minor: true` all of them, scavenged
 * garbage included); {op:"heap-sample-stop", file} writes the
 * profile (a .heapprofile JSON) and stops. Both answer with {cpu, io}.
 */
import { writeFileSync, writeSync } from "node:fs";
import { Session } from "node:inspector";
import { getHeapSpaceStatistics } from "node:v8";
import { EventLoop } from "@multiprocess-ts/runtime";
import { listenConnections } from "@multiprocess-ts/node";
import { FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { BenchFoo } from "./foo-impl.js";
import { startPeerServer } from "./peers.js";
import { startRawServer } from "./raw.js";
import { cpuUs, syscallCounts, type SyscallCounts } from "./stats.js";

/** `youngPhysical`: resident bytes of V8's young generation (new space), which V8 resizes on its own. */
export interface MemSample { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number; youngPhysical: number }
export type ServerKind = "rpc" | "raw" | "birpc" | "capnweb";
export type ServerRequest = { op: "mem" } | { op: "cpu" } | { op: "exit" } | { op: "cpu-calls" } | { op: "heap-sample-start"; minor?: boolean } | { op: "heap-sample-stop"; file: string };
export type ServerReply = { ready: true } | { mem: MemSample; connections: number }
  | { cpu: { user: number; system: number }; io: SyscallCounts | null } | { cpuCalls: number[] };

const [kind, path] = process.argv.slice(2);
if (!["rpc", "raw", "birpc", "capnweb"].includes(kind ?? "") || path === undefined) {
  process.stderr.write("usage: server.js rpc|raw|birpc|capnweb PATH\n");
  process.exit(2);
}
const send = (m: ServerReply): void => { process.send!(m); };
const gc = (globalThis as { gc?: () => void }).gc;

async function sample(): Promise<MemSample> {
  // Let pending I/O callbacks and finalizers settle, then collect twice.
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setImmediate(r));
    gc?.();
  }
  const m = process.memoryUsage();
  const young = getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.physical_space_size ?? 0;
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, youngPhysical: young };
}

// Diagnostics (cold.ts --marks N): a `#srv I` line on stdout when add(I, …) runs with I % N === 0,
// so the server's --trace-opt / --trace-gc lines can be placed between call numbers.
const marks = Number(process.env.MP_BENCH_SERVER_MARKS ?? "0");
if (marks > 0) {
  const add = BenchFoo.prototype.add;
  BenchFoo.prototype.add = function (this: BenchFoo, a: number, b: number): number {
    if (a % marks === 0) writeSync(1, `#srv ${a}\n`);
    return add.call(this, a, b);
  };
}

// Diagnostics (cold.ts --fn-marks N): before add(I) for I < N, a function of its own (made by
// `new Function`, script source `/*mark I*/`) runs for the first time, so V8's
// `--log-function-events` log shows where each call starts among the functions first run.
const fnMarks = Number(process.env.MP_BENCH_SERVER_FN_MARKS ?? "0");
if (fnMarks > 0) {
  const fns = Array.from({ length: fnMarks }, (_, i) => new Function(`return ${i} /*mark ${i}*/`) as () => number);
  const add = BenchFoo.prototype.add;
  BenchFoo.prototype.add = function (this: BenchFoo, a: number, b: number): number {
    if (a < fnMarks) fns[a]!();
    return add.call(this, a, b);
  };
}

// Diagnostics (cold.ts --cpu-calls N): this process's CPU µs (process.cpuUsage) when add(I) starts, for
// I < N; {op: "cpu-calls"} answers them. Consecutive differences: the server's CPU per call.
const cpuCallsN = Number(process.env.MP_BENCH_SERVER_CPU_CALLS ?? "0");
const cpuCalls: number[] = [];
if (cpuCallsN > 0) {
  const add = BenchFoo.prototype.add;
  BenchFoo.prototype.add = function (this: BenchFoo, a: number, b: number): number {
    if (a < cpuCallsN) cpuCalls[a] = cpuUs();
    return add.call(this, a, b);
  };
}

let connections = (): number => 0;
let rawConnections = 0;
let stop: () => Promise<void>;
if (kind === "rpc") {
  const loop = new EventLoop("bench-server", { log: { level: "warning" } });
  // Accepted sockets are read through onread (listenConnections' default) unless the diagnostic
  // `--server-stream-reads` (run.ts sets the variable) asks for the Readable stream.
  const readInPlace = process.env.MP_BENCH_SERVER_STREAM_READS !== "1";
  const listener = await listenConnections(path, loop, new BenchFoo(), FooInterfaceServer, { readInPlace });
  connections = () => listener.connections;
  stop = () => listener.close({ destroy: true });
} else {
  const track = (s: import("node:net").Socket): void => { rawConnections++; s.once("close", () => rawConnections--); };
  const server = kind === "raw" ? await startRawServer(path) : await startPeerServer(kind as "birpc" | "capnweb", path, track);
  connections = () => rawConnections;
  if (kind === "raw") server.on("connection", track);
  stop = () => new Promise((resolve) => { server.close(() => resolve()); server.unref(); });
}

let inspector: Session | null = null;
function heapSampling(m: ServerRequest & { op: "heap-sample-start" | "heap-sample-stop" }): void {
  const done = (): void => send({ cpu: process.cpuUsage(), io: syscallCounts() });
  if (inspector === null) {
    inspector = new Session();
    inspector.connect();
  }
  const s = inspector;
  if (m.op === "heap-sample-start") {
    // `minor` (cold.ts --alloc): every allocation, scavenged garbage included, sampled finely.
    const minor = m.minor === true;
    const params = { samplingInterval: minor ? 128 : 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: minor };
    s.post("HeapProfiler.startSampling", params, done);
    return;
  }
  s.post("HeapProfiler.getSamplingProfile", (err, r) => {
    if (err === null) writeFileSync(m.file, JSON.stringify(r.profile));
    else process.stderr.write(`bench server: heap profile: ${err.message}\n`);
    s.post("HeapProfiler.stopSampling", done);
  });
}

process.on("message", (m: ServerRequest) => {
  if (m.op === "heap-sample-start" || m.op === "heap-sample-stop") {
    heapSampling(m);
  } else if (m.op === "mem") {
    void sample().then((mem) => send({ mem, connections: connections() }));
  } else if (m.op === "cpu-calls") {
    send({ cpuCalls });
  } else if (m.op === "cpu") {
    send({ cpu: process.cpuUsage(), io: syscallCounts() });
  } else if (m.op === "exit") {
    void stop().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  }
});
process.on("disconnect", () => process.exit(0));
send({ ready: true });
