/**
 * One round of `pnpm bench` (started by main.ts as `node run.js OPTIONS_JSON`, under
 * `taskset -c 0` in the pinned mode): this process is the client (and hosts the P3 worker
 * thread); servers are forked children (server.js). Writes the round's rows as JSON to
 * `options.out`. See bench/README.md for what each figure measures.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventLoop } from "@multiprocess-ts/runtime";
import { attachWorkers, loopHandleTransferList } from "@multiprocess-ts/node";
import { FooInterfaceClient, type FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectRpc as connectRpcWith, log, runWorker, sequentialWithCpu, startServer, stepWorker, withCpu, type Cpu, type ServerChild } from "./children.js";
import { runCppReference, type CppCpu, type CppResult } from "./cpp.js";
import { Figures } from "./figures.js";
import { freshRows, freshWindow, type FreshWindow } from "./fresh-window.js";
import { memoryPerConnection } from "./memory.js";
import { rawNewConnection, rawNewConnectionRows, steadyOverRows } from "./noise-floor.js";
import { addPairedRows } from "./paired.js";
import { runPaired } from "./run-paired.js";
import { runPeer } from "./run-peers.js";
import { RawClient } from "./raw.js";
import { DATA_BYTES, echoRate, INFLIGHT, latency, pipelinedRate, threadCpuUs, threadStats, timeSequential, writeSyscalls, type Latency, type ThreadStats } from "./stats.js";

export interface RunOptions {
  n: number; warmup: number; seconds: number; conns: number; only: string[]; cpp: boolean;
  quick: boolean; peers: boolean; profileDir?: string; tag: string; out: string;
  /** Diagnostic `--stream-reads`: the client reads its RPC socket through the Readable stream. */
  streamReads?: boolean;
  /** Diagnostic `--server-stream-reads`: the RPC server reads accepted sockets as streams (`readInPlace: false`). */
  serverStreamReads?: boolean;
  /** `--peers`: calls per block of the paired P1 (run-paired.ts); the paired P2 windows last PAIR_WINDOW s. */
  pairBlock?: number;
  /** `--peers`: sequential warm-up calls of each paired client before its first block. */
  pairWarmup?: number;
}
const o = JSON.parse(process.argv[2]!) as RunOptions;
// Read by server.js (forked with this environment).
if (o.serverStreamReads === true) process.env.MP_BENCH_SERVER_STREAM_READS = "1";
const only = new Set(o.only);
const DATA_SECONDS = o.quick ? 0.7 : 2;
const COLD_CALLS = 1000;
/** Seconds of one paired P2 window (`--peers`): `o.seconds` per side in windows this long. */
const PAIR_WINDOW = 0.5;

/** What the figure functions share. */
export interface Ctx {
  o: RunOptions; figs: Figures; info: Record<string, unknown>; dir: string; loop: EventLoop;
  foo: FooInterfaceClient; socket: Socket; raw: RawClient; rawServer: ServerChild; rpcServer: ServerChild; rpcPath: string;
  rawAdd: Buffer; dataSeconds: number; rawSeq?: Latency; cpuRawSeq?: Cpu; rawRate?: number; cpuRawPipe?: Cpu; rawEcho?: number; cpuRawEcho?: Cpu;
  p1?: Latency; p2?: number;
  /** The timed calls of the raw floor's sequential run, P1's and (`--peers`) birpc's: the steady rows of noise-floor.ts. */
  rawSeqUs?: Float64Array; p1Us?: Float64Array; birpcSeqUs?: Float64Array;
}

function connectRpc(loop: EventLoop, path: string): Promise<{ socket: Socket; foo: FooInterfaceClient }> {
  return connectRpcWith(loop, path, o.streamReads === true);
}

async function bytesPerCall(socket: Socket, n: number, fn: (i: number) => Promise<unknown>): Promise<{ out: number; in: number }> {
  await fn(0);
  const w0 = socket.bytesWritten;
  const r0 = socket.bytesRead;
  for (let i = 0; i < n; i++) await fn(i);
  return { out: (socket.bytesWritten - w0) / n, in: (socket.bytesRead - r0) / n };
}

async function floors(c: Ctx): Promise<void> {
  log(`floor: raw socket sequential (${o.n} + ${o.warmup} warm-up)`);
  const raw = await sequentialWithCpu(c.rawServer, o.n, o.warmup, () => c.raw.call(c.rawAdd));
  c.rawSeq = latency(raw.us);
  c.rawSeqUs = raw.us;
  c.cpuRawSeq = raw.cpu;
  if (only.has("P2")) {
    log(`floor: raw socket, ${INFLIGHT} in flight for ${o.seconds} s`);
    await pipelinedRate(INFLIGHT, 0.5, () => c.raw.call(c.rawAdd), 0);
    c.cpuRawPipe = await withCpu(c.rawServer, async () => {
      const r = await pipelinedRate(INFLIGHT, o.seconds, () => c.raw.call(c.rawAdd), 0);
      c.rawRate = r.rate;
      return r.calls;
    });
  }
  if (only.has("P5")) {
    const rawData = RawClient.request(DATA_BYTES, DATA_BYTES);
    log(`floor: raw 1 MiB echo for ${DATA_SECONDS} s`);
    c.cpuRawEcho = await withCpu(c.rawServer, async () => {
      const r = await echoRate(DATA_SECONDS, async () => { await c.raw.call(rawData); });
      c.rawEcho = r.mbps;
      return r.calls + 5;
    });
  }
  c.figs.add("floor: raw ping-pong p50", "µs", c.rawSeq!.p50, null);
  c.figs.cpu("floor: raw ping-pong", c.cpuRawSeq, null);
}

async function p1(c: Ctx): Promise<void> {
  log("P1: sequential add");
  const { us, cpu } = await sequentialWithCpu(c.rpcServer, o.n, o.warmup, async (i) => {
    if ((await c.foo.add(i, 1)) !== i + 1) throw new Error("wrong sum");
  });
  c.p1 = latency(us);
  c.p1Us = us;
  c.info["cpu_us_per_call_P1"] = cpu;
  c.figs.add("P1 add sequential p50", "µs", c.p1!.p50, c.rawSeq!.p50, { dir: "le", x: 1.2 });
  c.figs.add("P1 add sequential p99", "µs", c.p1!.p99, c.rawSeq!.p99);
  c.figs.cpu("P1", cpu, c.cpuRawSeq!);
  c.figs.io("P1", cpu);
}

/**
 * Cold start: the first COLD_CALLS sequential adds of this fresh client process on its first
 * connection, to a fresh server child (nothing warmed up on either side: JIT, tables, buffers).
 * Its row is added by {@link coldRows} once the steady P1 p50 is known.
 */
async function cold(c: { dir: string; loop: EventLoop }, again = false): Promise<{ l: Latency; us: Float64Array; cpu: Cpu }> {
  log(again
    ? `new connection of this (warm) client process to a fresh server: first ${COLD_CALLS} calls`
    : `cold start: first ${COLD_CALLS} calls of a fresh client on a new connection to a fresh server`);
  const name = again ? "cold2" : "cold";
  const path = join(c.dir, `${name}.sock`);
  const server = await startServer("rpc", path, `${name}-${o.tag}`, o.profileDir);
  try {
    const foo = await connectRpc(c.loop, path).then((r) => r.foo);
    let us: Float64Array = new Float64Array(0);
    const cpu = await withCpu(server, async () => {
      us = await timeSequential(COLD_CALLS, 0, async (i) => { if ((await foo.add(i, 1)) !== i + 1) throw new Error("wrong sum"); });
      return COLD_CALLS;
    });
    await foo.close();
    return { l: latency(us), us, cpu };
  } finally {
    await server.stop();
  }
}

/**
 * The cold-start rows, and where in the first COLD_CALLS calls the slow ones are: the first call,
 * then p50 by phase (V8 runs our code in its interpreter, then its baseline tier, and optimizes a
 * function only after it has run a while: see bench/README "Where the time goes"), and how many
 * calls took over 3× the steady p50 (the target allows 1 %).
 */
function coldRows(c: Ctx, r: { l: Latency; us: Float64Array; cpu: Cpu }): void {
  const steady = c.p1?.p50 ?? null;
  c.figs.add(`cold start: p99 of first ${COLD_CALLS} calls`, "µs", r.l.p99, steady, { dir: "le", x: 3 },
    { note: "floor = steady P1 p50" });
  c.figs.add(`  cold start: p50 of first ${COLD_CALLS} calls`, "µs", r.l.p50, steady);
  c.figs.add("  cold start: first call", "µs", r.us[0]!, steady);
  for (const [a, b] of [[2, 10], [11, 100], [101, 500], [501, COLD_CALLS]] as const) {
    c.figs.add(`  cold start: p50 of calls ${a}-${b}`, "µs", latency(r.us.subarray(a - 1, b)).p50, steady);
  }
  if (steady !== null) {
    let slow = 0;
    for (const v of r.us) if (v > 3 * steady) slow++;
    c.figs.add(`  cold start: calls over 3× steady p50 (of ${COLD_CALLS})`, "calls", slow, null, undefined, { note: "target: at most 1 %" });
  }
  c.figs.cpu("cold start", r.cpu, c.cpuRawSeq!);
}

/**
 * Informational (the issue says "on a new connection"; the official row stays the fresh
 * process's): the same window on a second connection of this client process, now warm (its
 * code optimised by the cold run and P1), to a fresh server child (whose code is cold).
 */
function newConnectionRows(c: Ctx, r: { l: Latency; cpu: Cpu }): void {
  const steady = c.p1?.p50 ?? null;
  const label = "new connection of a warm client to a fresh server";
  c.figs.add(`  ${label}: p99 of first ${COLD_CALLS} calls`, "µs", r.l.p99, steady, undefined, { note: "informational; floor = steady P1 p50" });
  c.figs.add(`  ${label}: p50`, "µs", r.l.p50, steady);
  c.figs.cpu(label, r.cpu, c.cpuRawSeq!);
}

/**
 * Informational: the first COLD_CALLS calls of a brand-new connection between two warm processes
 * (this client and the RPC server both ran P1 on their first connection, so their code is
 * optimised): what a NEW CONNECTION costs (its tables, slabs and buffers, the first use of its
 * objects) apart from what a fresh process's JIT costs (the cold-start row). The connection is
 * closed afterwards; P2 onwards use P1's.
 */
async function warmNewConnection(c: Ctx): Promise<void> {
  log(`new connection between the warm client and the warm server: first ${COLD_CALLS} calls`);
  const { foo } = await connectRpc(c.loop, c.rpcPath);
  let us: Float64Array = new Float64Array(0);
  const cpu = await withCpu(c.rpcServer, async () => {
    us = await timeSequential(COLD_CALLS, 0, async (i) => { if ((await foo.add(i, 1)) !== i + 1) throw new Error("wrong sum"); });
    return COLD_CALLS;
  });
  await foo.close();
  const l = latency(us);
  const steady = c.p1?.p50 ?? null;
  const label = "new connection of a warm client to a warm server";
  c.figs.add(`  ${label}: p99 of first ${COLD_CALLS} calls`, "µs", l.p99, steady, undefined, { note: "informational; floor = steady P1 p50" });
  c.figs.add(`  ${label}: p50`, "µs", l.p50, steady);
  if (steady !== null) {
    let slow = 0;
    for (const v of us) if (v > 3 * steady) slow++;
    c.figs.add(`  ${label}: calls over 3× steady p50 (of ${COLD_CALLS})`, "calls", slow, null);
  }
  c.figs.cpu(label, cpu, c.cpuRawSeq!);
}

async function p2(c: Ctx): Promise<void> {
  log(`P2: add, ${INFLIGHT} in flight for ${o.seconds} s`);
  const addCall = (): Promise<unknown> => c.foo.add(1, 2);
  await pipelinedRate(INFLIGHT, 0.5, addCall, 0);
  const cpu = await withCpu(c.rpcServer, async () => {
    const r = await pipelinedRate(INFLIGHT, o.seconds, addCall, 0);
    c.p2 = r.rate;
    return r.calls;
  });
  c.figs.add(`P2 add pipelined (${INFLIGHT} in flight)`, "calls/s", c.p2!, c.rawRate!, { dir: "ge", x: 0.5 });
  c.figs.cpu("P2", cpu, c.cpuRawPipe!);
  c.figs.io("P2", cpu);
}

async function p3(c: Ctx): Promise<void> {
  log("floor: MessagePort ping-pong main ↔ worker");
  const { worker: pw } = runWorker<never>({ mode: "pingpong" });
  await new Promise<void>((resolve) => pw.once("online", () => resolve()));
  const payload = new Uint8Array(c.rawAdd.length);
  const pingPong = await sequentialWithCpu(null, o.n, o.warmup, () => new Promise<void>((resolve) => { pw.once("message", () => resolve()); pw.postMessage(payload); }));
  const mp = latency(pingPong.us);
  const cpuMp = pingPong.cpu;
  await pw.terminate();
  log("P3 reference: the same callIntFnAsync made on the loop thread");
  const loopRun = await sequentialWithCpu(c.rpcServer, o.n, o.warmup, async (i) => {
    if ((await c.foo.callIntFnAsync(i)) !== i + 1) throw new Error("wrong callIntFnAsync result");
  });
  const onLoop = latency(loopRun.us);
  const cpuLoop = loopRun.cpu;
  log("P3: callIntFnAsync (Proxy.Context) from a worker through the loop thread");
  const workers = attachWorkers(c.loop);
  const unshare = workers.share("foo", c.foo);
  const handle = workers.handle({ name: "bench-worker" });
  let p3l: Latency | undefined;
  let workerCpu: number | null = null;
  let mainCpu: number | null = null;
  const { worker, next } = stepWorker({ mode: "p3", handle, n: o.n, warmup: o.warmup }, loopHandleTransferList(handle));
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  const { tid: workerTid } = await next<{ ready: true; tid: string | null }>();
  let w0: number | null = null;
  let writes: number | null = null;
  let slices: { loop: number; worker: number | null; other: number; otherCpu: number } | undefined;
  // CPU from "go" to the result: the worker's start-up and exit are left out, as a process's are.
  const cpu = await withCpu(c.rpcServer, async () => {
    const m0 = threadCpuUs();
    const t0 = threadStats();
    w0 = writeSyscalls();
    worker.postMessage("go");
    const r = await next<{ us: Float64Array; workerCpuUs: number | null; workerSlices: number | null }>();
    slices = threadSlices(t0, threadStats(), workerTid, r.workerSlices);
    const w1 = writeSyscalls();
    writes = w0 === null || w1 === null ? null : w1 - w0;
    p3l = latency(r.us);
    workerCpu = r.workerCpuUs;
    const m1 = threadCpuUs();
    mainCpu = m0 === null || m1 === null ? null : m1 - m0;
    return o.n;
  });
  await exited;
  unshare();
  const floorSum = { client: c.cpuRawSeq!.client + cpuMp.client, server: c.cpuRawSeq!.server };
  // The target compares P3 with both of its hops measured alone (issue 13): a raw socket round
  // trip plus a MessagePort round trip.
  c.figs.add("P3 worker add (Context) p50", "µs", p3l!.p50, c.rawSeq!.p50 + mp!.p50, { dir: "le", x: 2 }, { note: "floor = raw socket + MessagePort p50" });
  c.figs.add("P3 worker add (Context) p99", "µs", p3l!.p99, c.rawSeq!.p99);
  c.figs.cpu("P3", cpu, floorSum);
  if (workerCpu !== null) {
    const w = workerCpu / o.n;
    c.figs.add("  P3 CPU per call, client worker thread", "µs", w, null, undefined, { note: "/proc/thread-self/schedstat" });
    if (mainCpu !== null) {
      const l = mainCpu / o.n;
      c.figs.add("  P3 CPU per call, client loop thread", "µs", l, null, undefined, { note: "/proc/thread-self/schedstat" });
      c.figs.add("  P3 CPU per call, client other threads", "µs", cpu.client - w - l, null, undefined, { note: "V8 GC/compiler helpers, libuv pool" });
    }
  }
  if (slices !== undefined && slices.loop > 0) {
    const calls = o.n;
    if (slices.worker !== null) c.figs.add("  P3 switch-ins per call, client worker thread", "n", slices.worker / calls, null, undefined, { note: "schedstat timeslices" });
    if (writes !== null) c.figs.add("  P3 write syscalls per call, client", "n", writes / calls, null, undefined, { note: "/proc/self/io syscw: socket writes + port wake-ups" });
    c.figs.add("  P3 switch-ins per call, client loop thread", "n", slices.loop / calls, null, undefined, { note: "schedstat timeslices" });
    c.figs.add("  P3 switch-ins per call, client other threads", "n", slices.other / calls, null, undefined, { note: "schedstat timeslices" });
    c.figs.add("  P3 CPU per call, client other threads (schedstat)", "µs", slices.otherCpu / 1000 / calls, null, undefined, { note: "threads alive at both ends" });
  }
  c.figs.add("  P3 same call made on the loop thread p50", "µs", onLoop!.p50, c.rawSeq!.p50, undefined, { note: "no worker hop" });
  c.figs.cpu("P3 same call on the loop thread", cpuLoop, c.cpuRawSeq!);
  c.figs.add("  floor: MessagePort ping-pong p50", "µs", mp!.p50, null, undefined, { note: "main ↔ worker" });
  c.figs.add("  floor: MessagePort CPU per call (both threads)", "µs", cpuMp.client, null);
  c.figs.add("  P3 against the raw socket floor alone", "µs", p3l!.p50, c.rawSeq!.p50, undefined, { note: "no MessagePort hop in the floor" });
}

/**
 * Switch-ins (schedstat timeslices) of the client's threads between two snapshots: the loop
 * (main) thread, the P3 worker (as it reported them; it may have exited by the second snapshot)
 * and every other thread alive at both.
 */
function threadSlices(a: ThreadStats, b: ThreadStats, workerTid: string | null, worker: number | null): { loop: number; worker: number | null; other: number; otherCpu: number } {
  const loopTid = String(process.pid);
  let loop = 0;
  let other = 0;
  let otherCpu = 0;
  for (const [tid, s1] of b) {
    const s0 = a.get(tid);
    if (s0 === undefined || tid === workerTid) continue;
    if (tid === loopTid) loop = s1.slices - s0.slices;
    else {
      other += s1.slices - s0.slices;
      otherCpu += s1.cpuNs - s0.cpuNs;
    }
  }
  return { loop, worker, other, otherCpu };
}

async function p4(c: Ctx): Promise<void> {
  log("P4: callbackSaved (server calls the client's callback during the call)");
  const p4run = await sequentialWithCpu(c.rpcServer, o.n, o.warmup, async (i) => {
    if ((await c.foo.callbackSaved(i)) !== i * 2) throw new Error("wrong callback result");
  });
  const l = latency(p4run.us);
  const cpu = p4run.cpu;
  c.figs.add("P4 callback round trip p50", "µs", l!.p50, c.rawSeq!.p50, { dir: "le", x: 2.5 }, { note: "callbackSaved" });
  c.figs.add("P4 callback round trip p99", "µs", l!.p99, c.rawSeq!.p99);
  c.figs.cpu("P4", cpu, c.cpuRawSeq!);
  const n4 = Math.max(200, Math.floor(o.n / 5));
  log(`P4b: callback(cb, arg) with a fresh callback each call (${n4} calls)`);
  const cb: FooCallback = { call: (arg) => arg * 2 };
  let l4b: Latency | undefined;
  const cpu4b = await withCpu(c.rpcServer, async () => {
    l4b = latency(await timeSequential(n4, Math.floor(n4 / 5), async (i) => {
      if ((await c.foo.callback(cb, i)) !== i * 2) throw new Error("wrong callback result");
    }));
    return n4 + Math.floor(n4 / 5);
  });
  c.figs.add("  P4b callback(cb) incl. export+destroy p50", "µs", l4b!.p50, c.rawSeq!.p50, undefined, { note: "export, call, remote destroy" });
  c.figs.cpu("P4b", cpu4b, c.cpuRawSeq!);
}

async function p5(c: Ctx): Promise<void> {
  const data = new Uint8Array(DATA_BYTES);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  log(`P5: passData 1 MiB for ${DATA_SECONDS} s`);
  let r = { mbps: 0, calls: 0 };
  const cpu = await withCpu(c.rpcServer, async () => {
    r = await echoRate(DATA_SECONDS, async () => {
      const back = await c.foo.passData(data);
      if (back.length !== DATA_BYTES || back[DATA_BYTES - 1] !== data[DATA_BYTES - 1]) throw new Error("wrong echo");
    });
    return r.calls + 5;
  });
  c.figs.add("P5 1 MiB Data echo", "MB/s", r.mbps, c.rawEcho!, { dir: "ge", x: 0.7 });
  c.figs.cpu("P5", cpu, c.cpuRawEcho!);
}

async function p6(c: Ctx): Promise<void> {
  log(`P6: ${o.conns} idle connections`);
  const f = await memoryPerConnection(c.dir, c.loop, "raw", o.conns);
  const m = await memoryPerConnection(c.dir, c.loop, "rpc", o.conns);
  c.figs.add("  P6 server RSS per idle conn, cold pass", "KiB", m.coldRss / 1024, f.coldRss / 1024, undefined, { note: "includes one-off V8 young-generation growth" });
  c.figs.add("P6 server RSS per idle connection", "KiB", m.rss / 1024, f.rss / 1024, { dir: "le", x: 16, abs: true }, { note: "floor = plain net.Socket server; young-generation growth left out" });
  c.figs.add("  P6 server RSS incl. young-generation growth", "KiB", m.rssWithYoung / 1024, f.rssWithYoung / 1024, undefined, { note: "plain RSS delta" });
  c.figs.add("  P6 server young-generation growth per conn", "KiB", m.young / 1024, f.young / 1024, undefined, { note: "V8 new space resized during the pass" });
  c.figs.add("P6 server heap per idle connection", "KiB", m.heap / 1024, f.heap / 1024, { dir: "le", x: 16, abs: true }, { note: "floor = plain net.Socket server" });
  c.figs.add("  P6 server V8 heapTotal per idle connection", "KiB", m.heapTotal / 1024, f.heapTotal / 1024);
  c.figs.add("  P6 server external (Buffers, ArrayBuffers) per idle connection", "KiB", m.external / 1024, f.external / 1024);
  c.figs.add("  P6 client heap per connection", "KiB", m.clientHeap / 1024, f.clientHeap / 1024);
}

async function cppRef(c: Ctx): Promise<CppResult | undefined> {
  log("C++ reference: foo-bench client ↔ foo-bench serve (libcapnp-rpc)");
  try {
    const r = await runCppReference(c.dir, { n: o.n, warmup: o.warmup, seconds: o.seconds, inflight: INFLIGHT, dataBytes: DATA_BYTES, dataN: o.quick ? 20 : 100 });
    const set = (prefix: string, v: number): void => { c.figs.set(prefix, "cpp", v); };
    set("P1 add sequential p50", r.add.p50_us);
    set("P1 add sequential p99", r.add.p99_us);
    set("P2 add pipelined", r.pipelined.rate);
    set("P3 worker add (Context) p50", r.ctx.p50_us);
    set("P3 worker add (Context) p99", r.ctx.p99_us);
    set("P4 callback round trip p50", r.callback.p50_us);
    set("P4 callback round trip p99", r.callback.p99_us);
    set("P5 1 MiB Data echo", r.data.mbps);
    const setCpu = (label: string, cpu: CppCpu): void => {
      if (cpu.client_us !== null) set(`${label} CPU per call, client`, cpu.client_us);
      if (cpu.server_us !== null) set(`${label} CPU per call, server`, cpu.server_us);
    };
    setCpu("P1", r.cpu.add);
    setCpu("P2", r.cpu.pipelined);
    setCpu("P4", r.cpu.callback);
    if (c.p1 !== undefined) c.figs.add("P1 p50 against the C++ reference", "µs", c.p1.p50, r.add.p50_us, { dir: "le", x: 1 }, { note: "vs C++" });
    for (const side of ["client", "server"] as const) {
      const ours = c.figs.rows.find((f) => f.name === `P1 CPU per call, ${side}`)?.ours;
      const theirs = r.cpu.add[`${side}_us`];
      // The P1 target: CPU per call per side ≤ the C++ reference's too.
      if (ours != null && theirs !== null) c.figs.add(`P1 CPU per call ${side} against the C++ reference`, "µs", ours, theirs, { dir: "le", x: 1 }, { note: "vs C++" });
    }
    if (c.p2 !== undefined) c.figs.add("P2 rate against the C++ reference", "calls/s", c.p2, r.pipelined.rate, { dir: "ge", x: 1 }, { note: "vs C++" });
    const p4 = c.figs.rows.find((f) => f.name === "P4 callback round trip p50");
    if (p4?.ours != null) c.figs.add("P4 p50 against the C++ reference", "µs", p4.ours, r.callback.p50_us, { dir: "le", x: 1.5 }, { note: "vs C++" });
    return r;
  } catch (e) {
    log(`C++ reference skipped: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}

/**
 * `--peers`: our P1/P2 and birpc's in alternating blocks in this round (run-paired.ts), each
 * client in its own process; the rows scored against birpc (paired.ts).
 */
async function paired(c: Ctx): Promise<void> {
  const r = await runPaired({
    dir: c.dir, tag: o.tag, peer: "birpc", p1: only.has("P1"), n: o.n, warmup: o.pairWarmup ?? o.warmup, block: o.pairBlock ?? 2000,
    p2: only.has("P2"), seconds: o.seconds, window: PAIR_WINDOW, inflight: INFLIGHT,
    ...(o.profileDir !== undefined ? { profileDir: o.profileDir } : {}), streamReads: o.streamReads === true,
  });
  addPairedRows(c.figs, r);
  c.info["paired"] = r;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mpts-bench-"));
  const loop = new EventLoop("bench-client", { log: { level: "warning", logFn: (l, m) => log(`[client ${l}] ${m}`) } });
  const rpcPath = join(dir, "rpc.sock");
  const rawServer = await startServer("raw", join(dir, "raw.sock"), `raw-${o.tag}`, o.profileDir);
  const rpcServer = await startServer("rpc", rpcPath, `rpc-${o.tag}`, o.profileDir);
  const figs = new Figures();
  const info: Record<string, unknown> = {};
  let cpp: CppResult | undefined;
  try {
    const coldRun = only.has("P1") ? await cold({ dir, loop }) : undefined;
    const raw = await RawClient.connect(join(dir, "raw.sock"));
    const { socket, foo } = await connectRpc(loop, rpcPath);
    await foo.initThreadMap(); // ThreadMap exchange, so Proxy.Context methods can pick a server thread
    await foo.saveCallback({ call: (arg) => arg * 2 });
    const addBytes = await bytesPerCall(socket, 100, async (i) => { await foo.add(i, 1); });
    info["bytes_per_add"] = addBytes;
    log(`add moves ${addBytes.out} B out / ${addBytes.in} B in per call`);
    const c: Ctx = { o, figs, info, dir, loop, foo, socket, raw, rawServer, rpcServer, rpcPath, rawAdd: RawClient.request(addBytes.out - 4, addBytes.in - 4), dataSeconds: DATA_SECONDS };
    // The same fresh-process window with no RPC at all, and with birpc (--peers): their own
    // fresh client and server processes (fresh-window.ts), measured near our cold window.
    const fresh = (kind: "raw" | "birpc"): Promise<FreshWindow> => freshWindow(kind, dir, o.tag, COLD_CALLS, addBytes.out - 4, addBytes.in - 4, o.profileDir);
    const freshRaw = only.has("P1") ? await fresh("raw") : undefined;
    const freshBirpc = only.has("P1") && o.peers ? await fresh("birpc") : undefined;
    await floors(c);
    let freshAt = figs.rows.length;
    let steadyAt = freshAt;
    if (only.has("P1")) {
      await p1(c);
      coldRows(c, coldRun!);
      await warmNewConnection(c);
      // The same new connection between warm processes with no RPC (noise-floor.ts).
      const rawNew = await rawNewConnection(join(dir, "raw.sock"), rawServer, COLD_CALLS, c.rawAdd);
      figs.rows.push(...rawNewConnectionRows(rawNew, c.p1!.p50, c.rawSeq!.p50, c.cpuRawSeq!));
      newConnectionRows(c, await cold({ dir, loop }, true));
      figs.rows.push(...freshRows(freshRaw!, c.p1!.p50, c.rawSeq!.p50));
      freshAt = figs.rows.length;
      // How many calls cross the target's threshold where nothing is cold: the steady runs' own samples.
      figs.rows.push(...steadyOverRows("ours", c.p1Us!, c.p1!.p50, c.p1!.p50));
      figs.rows.push(...steadyOverRows("raw", c.rawSeqUs!, c.p1!.p50, c.rawSeq!.p50));
      steadyAt = figs.rows.length;
    }
    if (only.has("P2")) await p2(c);
    if (only.has("P3")) await p3(c);
    if (only.has("P4")) await p4(c);
    if (only.has("P5")) await p5(c);
    raw.close();
    await foo.close();
    if (o.peers) for (const kind of ["birpc", "capnweb"] as const) await runPeer(c, kind);
    if (freshBirpc !== undefined) {
      // Beside the raw floor's fresh rows; its own steady p50 is the birpc P1 row just measured.
      const own = figs.rows.find((f) => f.name === "birpc add sequential p50")?.ours ?? null;
      // birpc's steady rows after ours and the raw floor's (first, as the splice below moves them).
      if (c.birpcSeqUs !== undefined && c.p1 !== undefined && own !== null) figs.rows.splice(steadyAt, 0, ...steadyOverRows("birpc", c.birpcSeqUs, c.p1.p50, own));
      figs.rows.splice(freshAt, 0, ...freshRows(freshBirpc, c.p1?.p50 ?? null, own));
    }
    if (o.peers && (only.has("P1") || only.has("P2"))) await paired(c);
    if (only.has("P6")) await p6(c);
    if (o.cpp) cpp = await cppRef(c);
  } finally {
    await rawServer.stop();
    await rpcServer.stop();
  }
  await rm(dir, { recursive: true, force: true });
  await writeFile(o.out, JSON.stringify({ figures: figs.rows, info, cpp: cpp ?? null }));
}

main().then(() => {
  // Handles of the loop (and the worker bridge) may keep the process alive; the round is over.
  process.exit(process.exitCode ?? 0);
}, (e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
