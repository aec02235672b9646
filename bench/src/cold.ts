/**
 * Bench diagnostic (not part of `pnpm bench`): the cold-start window alone. A fresh client
 * process (this one) makes its first connection to a fresh server child (`server.js rpc`) and
 * times the first `--calls` sequential `add`s (default 1,000), as run.ts's cold-start row does,
 * then prints every phase, the calls over `--threshold` µs (default 135: 3× a steady P1 p50 of
 * ~45 µs), and each side's CPU per call. V8 flags go to this process on the command line and to
 * the server with `--server-flags "..."` (diagnosis only: the library sets none).
 *
 *   node bench/dist/cold.js [--calls 1000] [--threshold 135] [--tail 4000] [--second] [--warm 12000] [--print]
 *   node --no-opt bench/dist/cold.js --server-flags "--no-opt" --tail 4000     # unoptimised
 *   node --cpu-prof --cpu-prof-dir D bench/dist/cold.js --server-flags "--cpu-prof --cpu-prof-dir D"
 *
 * `--kind raw|birpc|capnweb`: the same window for the raw ping-pong floor (the bytes of an `add`)
 * or a peer library instead of ours, for comparison.
 * `--tail N`: N more calls after the window, with their CPU per call per side (under `--no-opt`:
 * the unoptimised steady cost). `--second`: then a second fresh server child and a new connection
 * of this (now warm) process, timed the same way. `--warm N`: after the window (and the tail),
 * both processes make calls on the first connection until N in all (12,000: P1's count), then a
 * brand-new connection between the two warm processes is timed the same way (its adds count from
 * 1,000,000, and so do its marks; `#connect` marks the connection's start): what a NEW CONNECTION costs apart from a fresh process's JIT
 * (run.ts's "new connection of a warm client to a warm server" row). `--print`: every call's µs. `--marks N`: a
 * `#call I` line on stdout every N calls (written synchronously, so V8's `--trace-opt` /
 * `--trace-gc` lines on the same stdout fall between them: when each function tiers up); the
 * server child writes `#srv I` when add(I) runs, and `--server-out FILE` sends its stdout to FILE.
 * `--alloc PREFIX`: sampling heap profiles of the window, both sides, garbage included.
 * `--cpu-calls N`: each side's CPU µs per call (process.cpuUsage(): one native call, no JS that
 * is itself cold) for calls 1-N (the server's from one add to the next: the Return of one call
 * and the Call of the next).
 * `--span A-B`: also prints the monotonic µs from the start of call A to the end of call B
 * (`calls A-B: --from T0 --to T1`, for profile-summary.js: e.g. `--span 2-10` with
 * `--cpu-prof --cpu-prof-interval 20` on both sides). `--settle MS`: wait MS ms after the server
 * child is ready before connecting (the window then starts after the processes' start-up work).
 *
 * Threading: the main (loop) thread.
 */
import { writeSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectTransport, EventLoop } from "@multiprocess-ts/runtime";
import { SocketReader, streamTransport } from "@multiprocess-ts/capnp";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectUnix, startServer, withCpu } from "./children.js";
import { connectPeer } from "./peers.js";
import { RawClient } from "./raw.js";
import type { ServerKind } from "./server.js";
import { cpuUs, latency, timeSequential } from "./stats.js";

const argv = process.argv.slice(2);
const num = (name: string, dflt: number): number => {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(argv[i + 1]);
};
const str = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? undefined : argv[i + 1];
};
const CALLS = num("calls", 1000);
const THRESHOLD = num("threshold", 135);
const TAIL = num("tail", 0);
const MARKS = num("marks", 0);
const WARM = num("warm", 0);
const SETTLE = num("settle", 0);
/** The first add argument of the --warm window (its `#call` / `#srv` marks start there). */
const WARM_BASE = 1_000_000;
const KIND = (str("kind") ?? "rpc") as ServerKind;
const serverFlags = (str("server-flags") ?? "").split(" ").filter((f) => f !== "");
// `--server-out FILE`: the server child's stdout (its V8 trace lines) to FILE; `--marks N` also
// marks the server's stdout (`#srv I` when add(I) runs there).
if (str("server-out") !== undefined) process.env.MP_BENCH_SERVER_OUT = str("server-out");
if (MARKS > 0) process.env.MP_BENCH_SERVER_MARKS = String(MARKS);
// `--fn-marks N`: before each of the first N calls, on both sides, a function of its own runs for
// the first time (`new Function`, source `/*mark I*/`): with `--log-function-events` the V8 log
// then shows which functions each call parses, compiles and runs for the first time.
const FN_MARKS = num("fn-marks", 0);
// `--cpu-calls N`: each side's main-thread CPU (schedstat) per call for the first N calls.
const CPU_CALLS = num("cpu-calls", 0);
if (CPU_CALLS > 0) process.env.MP_BENCH_SERVER_CPU_CALLS = String(CPU_CALLS + 1);
if (FN_MARKS > 0) process.env.MP_BENCH_SERVER_FN_MARKS = String(FN_MARKS);
const fnMarks = Array.from({ length: FN_MARKS }, (_, i) => new Function(`return ${i} /*mark ${i}*/`) as () => number);

const f1 = (v: number): string => v.toFixed(1);

type Server = Awaited<ReturnType<typeof startServer>>;
type Conn = Awaited<ReturnType<typeof connectKind>>;

/** A fresh server child and this process's connection to it; the first window on it, then --tail and --warm. */
async function window(loop: EventLoop, dir: string, label: string): Promise<void> {
  const path = join(dir, `${label.replace(" ", "-")}.sock`);
  const server = await startServer(KIND, path, `cold-${label.replace(" ", "-")}`, undefined, serverFlags);
  try {
    if (SETTLE > 0) await new Promise((resolve) => setTimeout(resolve, SETTLE));
    const conn = await connectKind(loop, path);
    await timeWindow(server, conn, label, 0);
    if (TAIL > 0) await tail(server, conn, label, TAIL);
    if (WARM > 0) {
      // Both processes run WARM more calls on this connection (P1's 12,000 by default), then a
      // brand-new connection between them is timed: what a new connection costs, JIT aside.
      if (TAIL < WARM) await tail(server, conn, label, WARM - TAIL);
      if (MARKS > 0) writeSync(1, "#connect\n"); // what follows in a trace: the new connection
      const second = await connectKind(loop, path);
      await timeWindow(server, second, "new connection, warm processes", WARM_BASE);
      await second.close();
    }
    await conn.close();
  } finally {
    await server.stop();
  }
}

/**
 * Times CALLS sequential adds on `conn` and prints the window's figures. `base` offsets the
 * first argument of add (and so the `#call` / `#srv` marks) to tell windows apart in traces.
 */
async function timeWindow(server: Server, conn: Conn, label: string, base: number): Promise<void> {
  let us: Float64Array = new Float64Array(0);
  const starts = new Float64Array(CALLS);
  const cpuAt = new Float64Array(CPU_CALLS + 1);
  const add = async (i: number): Promise<void> => {
    starts[i] = Number(process.hrtime.bigint() / 1000n);
    const a = base + i;
    if (i <= CPU_CALLS && CPU_CALLS > 0) cpuAt[i] = cpuUs();
    if (a < FN_MARKS) fnMarks[a]!();
    if (MARKS > 0 && a % MARKS === 0) writeSync(1, `#call ${a}\n`);
    if ((await conn.add(a, 1)) !== a + 1) throw new Error("wrong sum");
  };
  const allocTo = str("alloc");
  const session = allocTo === undefined ? null : await startAllocSampling(server);
  const cpu = await withCpu(server, async () => {
    const t0 = process.hrtime.bigint() / 1000n;
    us = await timeSequential(CALLS, 0, add);
    process.stdout.write(`${label}: window --from ${t0} --to ${process.hrtime.bigint() / 1000n}\n`);
    return CALLS;
  });
  if (session !== null) await stopAllocSampling(server, session, `${allocTo!}-${label.replaceAll(" ", "-").replaceAll(",", "")}`);
  const l = latency(us);
  let slow = 0;
  for (const v of us) if (v > THRESHOLD) slow++;
  const phase = (a: number, b: number): string => `${a}-${b} ${f1(latency(us.subarray(a - 1, Math.min(b, CALLS))).p50)}`;
  process.stdout.write(`${label}: p99 ${f1(l.p99)} p50 ${f1(l.p50)} µs; first ${f1(us[0]!)}; p50 of calls ${phase(2, 10)}, ${phase(11, 100)}, ${phase(101, 500)}, ${phase(501, CALLS)}; `
    + `over ${THRESHOLD} µs: ${slow}/${CALLS}; CPU per call client ${f1(cpu.client)} server ${f1(cpu.server)} µs\n`);
  if (argv.includes("--print")) process.stdout.write(Array.from(us, (v) => v.toFixed(0)).join(" ") + "\n");
  if (CPU_CALLS > 0 && base === 0) {
    const r = await server.request({ op: "cpu-calls" });
    const srv = "cpuCalls" in r ? r.cpuCalls : [];
    const d = (v: ArrayLike<number>, i: number): string => f1(v[i + 1]! - v[i]!);
    process.stdout.write(`${label}: CPU per call (process.cpuUsage), calls 1-${CPU_CALLS}: client ${Array.from({ length: CPU_CALLS }, (_, i) => d(cpuAt, i)).join(" ")}\n`);
    process.stdout.write(`${label}: server (add I to add I+1) ${Array.from({ length: CPU_CALLS }, (_, i) => d(srv, i)).join(" ")}\n`);
  }
  const span = str("span")?.split("-").map(Number);
  if (span !== undefined) {
    const [a, b] = span as [number, number];
    process.stdout.write(`${label}: calls ${a}-${b}: --from ${starts[a - 1]!} --to ${Math.ceil(starts[b - 1]! + us[b - 1]!)}\n`);
  }
}

/** `n` more calls on `conn` after its window, with their CPU per call per side. */
async function tail(server: Server, conn: Conn, label: string, n: number): Promise<void> {
  let tus: Float64Array = new Float64Array(0);
  const tcpu = await withCpu(server, async () => {
    const t0 = process.hrtime.bigint() / 1000n;
    tus = await timeSequential(n, 0, (i) => conn.add(CALLS + i, 1));
    process.stdout.write(`${label} tail: window --from ${t0} --to ${process.hrtime.bigint() / 1000n}\n`);
    return n;
  });
  const tl = latency(tus);
  process.stdout.write(`${label} then ${n} more: p50 ${f1(tl.p50)} p99 ${f1(tl.p99)} µs; CPU per call client ${f1(tcpu.client)} server ${f1(tcpu.server)} µs\n`);
}

/**
 * `--alloc PREFIX`: V8's sampling heap profiler over the window in both processes, every
 * allocation (scavenged garbage included), written to PREFIX-LABEL-{client,server}.heapprofile.
 */
async function startAllocSampling(server: Server): Promise<Session> {
  const session = new Session();
  session.connect();
  await session.post("HeapProfiler.startSampling", { samplingInterval: 128, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  await server.request({ op: "heap-sample-start", minor: true });
  return session;
}

async function stopAllocSampling(server: Server, session: Session, prefix: string): Promise<void> {
  const { profile } = await session.post("HeapProfiler.getSamplingProfile");
  await session.post("HeapProfiler.stopSampling");
  session.disconnect();
  await writeFile(`${prefix}-client.heapprofile`, JSON.stringify(profile));
  await server.request({ op: "heap-sample-stop", file: `${prefix}-server.heapprofile` });
}

/** `add` over a connection of --kind (raw: the floor's frames of an add's 160 / 80 bytes, the sum computed here). */
async function connectKind(loop: EventLoop, path: string): Promise<{ add(a: number, b: number): Promise<number>; close(): Promise<void> }> {
  if (KIND === "rpc") {
    const reader = new SocketReader();
    const socket = await connectUnix(path, reader);
    const foo = await connectTransport(loop, streamTransport(socket, undefined, undefined, reader), FooInterfaceClient);
    return { add: (a, b) => foo.add(a, b), close: async () => { await foo.close(); socket.destroy(); } };
  }
  if (KIND === "raw") {
    const raw = await RawClient.connect(path);
    const req = RawClient.request(156, 76);
    return { add: async (a, b) => { await raw.call(req); return a + b; }, close: async () => { raw.close(); } };
  }
  const peer = await connectPeer(KIND, path);
  return { add: (a, b) => peer.add(a, b), close: async () => { peer.close(); } };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mpts-cold-"));
  const loop = new EventLoop("bench-cold", { log: { level: "warning" } });
  try {
    await window(loop, dir, "fresh process");
    if (argv.includes("--second")) await window(loop, dir, "second connection");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`cold: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
