/**
 * `pnpm bench [--json FILE] [--quick] [--only P1,P2,...] [--no-cpp] [--profile DIR]`
 * `pnpm bench --hostile [...]` / `pnpm bench --fuzz-frames N`: the hostile-peer benchmark and the
 * seeded fuzz run instead (bench/src/hostile.ts).
 *
 * One run, one table: our figures (P1..P6), the floors measured in the same run (raw Node
 * ping-pong of the same bytes over the same kind of Unix socket between two processes, and a
 * MessagePort ping-pong for the worker hop), the C++ reference (plain libcapnp-rpc C++ client ↔
 * C++ server on the same schema) and the targets. See bench/README.md.
 *
 * Processes: this one is the client (and hosts the P3 worker thread); servers are forked children
 * (bench/dist/server.js) started with --expose-gc. `--profile DIR` starts them with --cpu-prof
 * (run this process under `node --cpu-prof --cpu-prof-dir DIR` to profile the client too).
 */
import { fork, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Worker } from "node:worker_threads";
import { EventLoop } from "@multiprocess-ts/runtime";
import { attachWorkers, connectStream, loopHandleTransferList } from "@multiprocess-ts/node";
import { FooInterfaceClient, type FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { runCppReference, type CppResult } from "./cpp.js";
import { RawClient } from "./raw.js";
import type { MemSample, ServerReply, ServerRequest } from "./server.js";
import { latency, pipelinedRate, timeSequential, type Latency } from "./stats.js";

// ---------------------------------------------------------------------------------------------
// Arguments

const argv = process.argv.slice(2);
function opt(name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith("--")) throw new Error(`${name} needs a value`);
  return v;
}
const quick = argv.includes("--quick");
const jsonFile = opt("--json");
const profileDir = opt("--profile");
const only = new Set((opt("--only") ?? "P1,P2,P3,P4,P5,P6").toUpperCase().split(","));
const withCpp = !argv.includes("--no-cpp");
const N = Number(opt("--n") ?? (quick ? 2000 : 10_000));
const WARMUP = Number(opt("--warmup") ?? (quick ? 500 : 2000));
const SECONDS = Number(opt("--seconds") ?? (quick ? 1 : 3));
const INFLIGHT = 64;
const DATA_BYTES = 1 << 20;
const DATA_SECONDS = quick ? 0.7 : 2;
const IDLE_CONNS = Number(opt("--conns") ?? 1000);

const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const log = (s: string): void => { process.stderr.write(`bench: ${s}\n`); };

// ---------------------------------------------------------------------------------------------
// Server children

interface ServerChild {
  proc: ChildProcess;
  request(m: ServerRequest): Promise<ServerReply>;
  stop(): Promise<void>;
}

async function startServer(kind: "rpc" | "raw", path: string, tag: string): Promise<ServerChild> {
  const execArgv = ["--expose-gc"];
  if (profileDir !== undefined) execArgv.push("--cpu-prof", "--cpu-prof-dir", profileDir, "--cpu-prof-name", `server-${tag}.cpuprofile`);
  const proc = fork(here("./server.js"), [kind, path], { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    proc.once("message", () => resolve());
    proc.once("error", reject);
    void exited.then(() => reject(new Error(`bench server (${kind}) exited before it was ready`)));
  });
  return {
    proc,
    request: (m) => new Promise((resolve, reject) => {
      const onExit = (): void => reject(new Error(`bench server (${kind}) exited during a request`));
      proc.once("exit", onExit);
      proc.once("message", (r: ServerReply) => { proc.off("exit", onExit); resolve(r); });
      proc.send(m, (e) => { if (e) reject(e); });
    }),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.send({ op: "exit" } satisfies ServerRequest);
      await exited;
    },
  };
}

function connectUnix(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ path });
    s.once("connect", () => { s.off("error", reject); resolve(s); });
    s.once("error", reject);
  });
}

async function connectFoo(loop: EventLoop, path: string): Promise<{ foo: FooInterfaceClient; socket: Socket }> {
  const socket = await connectUnix(path);
  const foo = await connectStream(loop, socket, FooInterfaceClient);
  return { foo, socket };
}

// ---------------------------------------------------------------------------------------------
// Figures

type Dir = "le" | "ge";
interface Figure {
  name: string;
  unit: string;
  ours: number | null;
  floor: number | null;
  ratio: number | null;
  target: string | null;
  met: boolean | null;
  /** A supporting row (indented in the table): no target of its own. */
  informational?: boolean;
  /** C++ reference (libcapnp-rpc C++ ↔ C++ on the same schema), when measured. */
  cpp?: number | null;
  note?: string;
}
const figures: Figure[] = [];

function figure(name: string, unit: string, ours: number | null, floor: number | null, target?: { dir: Dir; x: number; abs?: boolean },
  extra: { cpp?: number | null; note?: string } = {}): void {
  const ratio = ours !== null && floor !== null && floor > 0 ? ours / floor : null;
  let met: boolean | null = null;
  let t: string | null = null;
  if (target !== undefined) {
    const sym = target.dir === "le" ? "≤" : "≥";
    t = target.abs === true ? `${sym} ${target.x} ${unit}` : `${sym} ${target.x}× floor`;
    const v = target.abs === true ? ours : ratio;
    met = v === null ? null : target.dir === "le" ? v <= target.x : v >= target.x;
  }
  const f: Figure = { name: name.trim(), unit, ours, floor, ratio, target: t, met };
  if (name.startsWith(" ")) f.informational = true;
  if (extra.cpp !== undefined) f.cpp = extra.cpp;
  if (extra.note !== undefined) f.note = extra.note;
  figures.push(f);
}

// ---------------------------------------------------------------------------------------------

/** Runs `fn` (which returns how many calls it made) and returns client and server CPU µs per call. */
async function withCpu(server: ServerChild, fn: () => Promise<number>): Promise<{ client: number; server: number; total: number }> {
  const cpu = async (): Promise<number> => {
    const r = await server.request({ op: "cpu" });
    if (!("cpu" in r)) throw new Error("bench: bad cpu reply");
    return r.cpu.user + r.cpu.system;
  };
  const s0 = await cpu();
  const c0 = process.cpuUsage();
  const calls = await fn();
  const c = process.cpuUsage(c0);
  const s = (await cpu()) - s0;
  const client = (c.user + c.system) / calls;
  return { client, server: s / calls, total: client + s / calls };
}

async function bytesPerCall(socket: Socket, n: number, fn: (i: number) => Promise<unknown>): Promise<{ out: number; in: number }> {
  await fn(0);
  const w0 = socket.bytesWritten;
  const r0 = socket.bytesRead;
  for (let i = 0; i < n; i++) await fn(i);
  return { out: (socket.bytesWritten - w0) / n, in: (socket.bytesRead - r0) / n };
}

/** Time-boxed sequential 1 MiB echo: payload MB/s (10^6 bytes/s, payload counted once per call). */
async function echoRate(seconds: number, fn: () => Promise<void>): Promise<{ mbps: number; calls: number }> {
  for (let i = 0; i < 5; i++) await fn();
  const t0 = process.hrtime.bigint();
  let calls = 0;
  let el = 0;
  do {
    await fn();
    calls++;
    el = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (el < seconds || calls < 10);
  return { mbps: (DATA_BYTES * calls) / el / 1e6, calls };
}

function runWorker<T>(data: Record<string, unknown>, transferList: readonly unknown[] = []): { worker: Worker; result: Promise<T> } {
  const worker = new Worker(here("./worker.js"), { workerData: data, transferList: transferList as never });
  const result = new Promise<T>((resolve, reject) => {
    worker.once("message", (m: T & { error?: string }) => {
      if (m.error !== undefined) reject(new Error(`bench worker: ${m.error}`)); else resolve(m);
    });
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`bench worker exited (${code}) without a result`)));
  });
  return { worker, result };
}

async function messagePortFloor(bytes: number): Promise<Latency> {
  const { worker } = runWorker<never>({ mode: "pingpong" });
  await new Promise<void>((resolve) => worker.once("online", () => resolve()));
  const payload = new Uint8Array(bytes);
  const us = await timeSequential(N, WARMUP, () => new Promise<void>((resolve) => {
    worker.once("message", () => resolve());
    worker.postMessage(payload);
  }));
  await worker.terminate();
  return latency(us);
}

interface MemResult { coldRss: number; rss: number; heap: number; heapTotal: number; external: number; clientRss: number; clientHeap: number }

/**
 * Server-side memory per idle connection: a fresh server child, one warm connection (with a call)
 * as the baseline, then IDLE_CONNS more connections that each made one call; delta / IDLE_CONNS
 * after gc(). `kind` "raw" measures the floor (plain net.Socket connections, one ping each).
 */
async function memoryPerConnection(dir: string, loop: EventLoop, kind: "rpc" | "raw"): Promise<MemResult> {
  const path = join(dir, `mem-${kind}.sock`);
  const server = await startServer(kind, path, `mem-${kind}`);
  const closers: (() => unknown)[] = [];
  const open = async (): Promise<void> => {
    if (kind === "rpc") {
      const { foo } = await connectFoo(loop, path);
      closers.push(() => foo.close());
      await foo.add(1, 2);
    } else {
      const c = await RawClient.connect(path);
      closers.push(() => c.close());
      await c.call(RawClient.request(16, 16));
    }
  };
  try {
    const sample = async (): Promise<{ mem: MemSample; connections: number }> => {
      const r = await server.request({ op: "mem" });
      if (!("mem" in r)) throw new Error("bench: bad mem reply");
      return r;
    };
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    await open(); // warm: code and one-time state are not counted
    const cold = await sample();
    // Cold pass: the first IDLE_CONNS connections also grow V8's young generation (heapTotal) and
    // malloc arenas once; the figure is measured on a second pass after closing them again.
    const keep = closers.length;
    const batch = 50;
    for (let i = 0; i < IDLE_CONNS; i += batch) {
      await Promise.all(Array.from({ length: Math.min(batch, IDLE_CONNS - i) }, open));
    }
    const coldAfter = await sample();
    await Promise.allSettled(closers.splice(keep).map(async (c) => { await c(); }));
    for (let tries = 0; (await sample()).connections !== cold.connections; tries++) {
      if (tries > 200) throw new Error(`bench: ${kind} server did not see the cold-pass connections close`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const base = await sample();
    gc();
    const cBase = process.memoryUsage();
    for (let i = 0; i < IDLE_CONNS; i += batch) {
      await Promise.all(Array.from({ length: Math.min(batch, IDLE_CONNS - i) }, open));
    }
    const after = await sample();
    if (after.connections !== base.connections + IDLE_CONNS) {
      throw new Error(`bench: ${kind} server reports ${after.connections} connections, expected ${base.connections + IDLE_CONNS}`);
    }
    gc();
    const cAfter = process.memoryUsage();
    return {
      coldRss: (coldAfter.mem.rss - cold.mem.rss) / IDLE_CONNS,
      rss: (after.mem.rss - base.mem.rss) / IDLE_CONNS,
      heap: (after.mem.heapUsed - base.mem.heapUsed) / IDLE_CONNS,
      heapTotal: (after.mem.heapTotal - base.mem.heapTotal) / IDLE_CONNS,
      external: (after.mem.external - base.mem.external) / IDLE_CONNS,
      clientRss: (cAfter.rss - cBase.rss) / IDLE_CONNS,
      clientHeap: (cAfter.heapUsed - cBase.heapUsed) / IDLE_CONNS,
    };
  } finally {
    await Promise.allSettled(closers.map(async (c) => { await c(); }));
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = new Date();
  const loadBefore = loadavg();
  const dir = await mkdtemp(join(tmpdir(), "mpts-bench-"));
  const loop = new EventLoop("bench-client", { log: { level: "warning", logFn: (l, m) => log(`[client ${l}] ${m}`) } });
  const rawPath = join(dir, "raw.sock");
  const rpcPath = join(dir, "rpc.sock");
  const rawServer = await startServer("raw", rawPath, "raw");
  const rpcServer = await startServer("rpc", rpcPath, "rpc");
  const info: Record<string, unknown> = {};
  let cpp: CppResult | undefined;
  try {
    const raw = await RawClient.connect(rawPath);
    const { foo, socket } = await connectFoo(loop, rpcPath);
    await foo.initThreadMap(); // ThreadMap exchange, so Proxy.Context methods can pick a server thread
    const cb: FooCallback = { call: (arg) => arg * 2 };
    await foo.saveCallback(cb);

    // Bytes on the wire per call, so the raw floor moves the same amount.
    const addBytes = await bytesPerCall(socket, 100, async (i) => { await foo.add(i, 1); });
    const cbBytes = await bytesPerCall(socket, 100, async (i) => { await foo.callbackSaved(i); });
    info["bytes_per_add"] = addBytes;
    info["bytes_per_callbackSaved"] = cbBytes;
    const rawAdd = RawClient.request(addBytes.out - 4, addBytes.in - 4);
    log(`add moves ${addBytes.out} B out / ${addBytes.in} B in per call; callbackSaved ${cbBytes.out} / ${cbBytes.in}`);

    let rawSeq: Latency | undefined;
    const needRawSeq = only.has("P1") || only.has("P3") || only.has("P4");
    if (needRawSeq) {
      log(`floor: raw socket sequential (${N} + ${WARMUP} warm-up)`);
      const cpuFloor = await withCpu(rawServer, async () => {
        rawSeq = latency(await timeSequential(N, WARMUP, () => raw.call(rawAdd)));
        return N + WARMUP;
      });
      info["cpu_us_per_call_raw_sequential"] = cpuFloor;
    }

    if (only.has("P1")) {
      log("P1: sequential add");
      let p1: Latency | undefined;
      const cpu1 = await withCpu(rpcServer, async () => {
        p1 = latency(await timeSequential(N, WARMUP, async (i) => {
          if ((await foo.add(i, 1)) !== i + 1) throw new Error("wrong sum");
        }));
        return N + WARMUP;
      });
      const cpuFloor = info["cpu_us_per_call_raw_sequential"] as { client: number; server: number; total: number };
      info["cpu_us_per_call_P1"] = cpu1;
      figure("P1 add sequential p50", "µs", p1!.p50, rawSeq!.p50, { dir: "le", x: 1.2 });
      figure("P1 add sequential p99", "µs", p1!.p99, rawSeq!.p99);
      figure("  P1 CPU per call, client", "µs", cpu1.client, cpuFloor.client, undefined, { note: "process CPU time / calls, informational" });
      figure("  P1 CPU per call, server", "µs", cpu1.server, cpuFloor.server, undefined, { note: "process CPU time / calls, informational" });
    }

    if (only.has("P2")) {
      log(`floor: raw socket, ${INFLIGHT} in flight for ${SECONDS} s`);
      const rawCall = (): Promise<unknown> => raw.call(rawAdd);
      const addCall = (): Promise<unknown> => foo.add(1, 2);
      let rawRate = 0;
      let p2 = 0;
      await pipelinedRate(INFLIGHT, 0.5, rawCall, 0);
      const cpuRaw = await withCpu(rawServer, async () => {
        const r = await pipelinedRate(INFLIGHT, SECONDS, rawCall, 0);
        rawRate = r.rate;
        return r.calls;
      });
      log(`P2: add, ${INFLIGHT} in flight for ${SECONDS} s`);
      await pipelinedRate(INFLIGHT, 0.5, addCall, 0);
      const cpu2 = await withCpu(rpcServer, async () => {
        const r = await pipelinedRate(INFLIGHT, SECONDS, addCall, 0);
        p2 = r.rate;
        return r.calls;
      });
      info["cpu_us_per_call_raw_pipelined"] = cpuRaw;
      info["cpu_us_per_call_P2"] = cpu2;
      figure(`P2 add pipelined (${INFLIGHT} in flight)`, "calls/s", p2, rawRate, { dir: "ge", x: 0.5 });
      figure("  P2 CPU per call, client", "µs", cpu2.client, cpuRaw.client, undefined, { note: "process CPU time / calls, informational" });
      figure("  P2 CPU per call, server", "µs", cpu2.server, cpuRaw.server, undefined, { note: "process CPU time / calls, informational" });
    }

    if (only.has("P3")) {
      log("floor: MessagePort ping-pong main ↔ worker");
      const mp = await messagePortFloor(addBytes.out);
      log("P3: callIntFnAsync (Proxy.Context) from a worker through the loop thread");
      const workers = attachWorkers(loop);
      const unshare = workers.share("foo", foo);
      const handle = workers.handle({ name: "bench-worker" });
      const { worker, result } = runWorker<{ us: Float64Array }>({ mode: "p3", handle, n: N, warmup: WARMUP }, loopHandleTransferList(handle));
      const p3 = latency((await result).us);
      await new Promise<void>((resolve) => worker.once("exit", () => resolve()));
      unshare();
      figure("P3 worker add (Context) p50", "µs", p3.p50, rawSeq!.p50, { dir: "le", x: 2 });
      figure("P3 worker add (Context) p99", "µs", p3.p99, rawSeq!.p99);
      figure("  floor: MessagePort ping-pong p50", "µs", mp.p50, null, undefined, { note: "main ↔ worker, informational" });
      figure("  floor: raw socket + MessagePort p50", "µs", p3.p50, rawSeq!.p50 + mp.p50, undefined,
        { note: "ratio of P3 to the sum of both hops, informational" });
    }

    if (only.has("P4")) {
      log("P4: callbackSaved (server calls the client's callback during the call)");
      let p4: Latency | undefined;
      const cpu4 = await withCpu(rpcServer, async () => {
        p4 = latency(await timeSequential(N, WARMUP, async (i) => {
          if ((await foo.callbackSaved(i)) !== i * 2) throw new Error("wrong callback result");
        }));
        return N + WARMUP;
      });
      info["cpu_us_per_call_P4"] = cpu4;
      figure("P4 callback round trip p50", "µs", p4!.p50, rawSeq!.p50, { dir: "le", x: 2.5 }, { note: "callbackSaved" });
      figure("P4 callback round trip p99", "µs", p4!.p99, rawSeq!.p99);
      figure("  P4 CPU per call, client+server", "µs", cpu4.total, (info["cpu_us_per_call_raw_sequential"] as { total: number }).total,
        undefined, { note: "floor: one raw ping-pong, informational" });
      const n4 = Math.max(200, Math.floor(N / 5));
      log(`P4b: callback(cb, arg) with a fresh callback each call (${n4} calls)`);
      const p4b = latency(await timeSequential(n4, Math.floor(n4 / 5), async (i) => {
        if ((await foo.callback(cb, i)) !== i * 2) throw new Error("wrong callback result");
      }));
      figure("  P4b callback(cb) incl. export+destroy p50", "µs", p4b.p50, rawSeq!.p50, undefined,
        { note: "export, call, remote destroy awaited by the server: informational" });
    }

    if (only.has("P5")) {
      const data = new Uint8Array(DATA_BYTES);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
      const rawData = RawClient.request(DATA_BYTES, DATA_BYTES);
      log(`floor: raw 1 MiB echo for ${DATA_SECONDS} s`);
      let rawEcho = { mbps: 0, calls: 0 };
      const cpu5raw = await withCpu(rawServer, async () => {
        rawEcho = await echoRate(DATA_SECONDS, async () => { await raw.call(rawData); });
        return rawEcho.calls + 5;
      });
      log(`P5: passData 1 MiB for ${DATA_SECONDS} s`);
      let p5 = { mbps: 0, calls: 0 };
      const cpu5 = await withCpu(rpcServer, async () => {
        p5 = await echoRate(DATA_SECONDS, async () => {
          const r = await foo.passData(data);
          if (r.length !== DATA_BYTES || r[DATA_BYTES - 1] !== data[DATA_BYTES - 1]) throw new Error("wrong echo");
        });
        return p5.calls + 5;
      });
      info["cpu_us_per_call_raw_echo"] = cpu5raw;
      info["cpu_us_per_call_P5"] = cpu5;
      figure("P5 1 MiB Data echo", "MB/s", p5.mbps, rawEcho.mbps, { dir: "ge", x: 0.7 });
      figure("  P5 CPU per call, client", "µs", cpu5.client, cpu5raw.client, undefined, { note: "informational" });
      figure("  P5 CPU per call, server", "µs", cpu5.server, cpu5raw.server, undefined, { note: "informational" });
    }

    raw.close();
    await foo.close();

    if (only.has("P6")) {
      log(`P6: ${IDLE_CONNS} idle connections`);
      const f = await memoryPerConnection(dir, loop, "raw");
      const m = await memoryPerConnection(dir, loop, "rpc");
      figure("  P6 server RSS per idle conn, cold pass", "KiB", m.coldRss / 1024, f.coldRss / 1024, undefined,
        { note: "includes one-off V8 young-generation growth, informational" });
      figure("P6 server RSS per idle connection", "KiB", m.rss / 1024, f.rss / 1024, { dir: "le", x: 20, abs: true },
        { note: "floor = plain net.Socket server" });
      figure("P6 server heap per idle connection", "KiB", m.heap / 1024, f.heap / 1024, { dir: "le", x: 20, abs: true },
        { note: "floor = plain net.Socket server" });
      figure("  P6 server external per idle connection", "KiB", m.external / 1024, f.external / 1024);
      figure("  P6 server V8 heapTotal per idle connection", "KiB", m.heapTotal / 1024, f.heapTotal / 1024);
      figure("  P6 client heap per connection", "KiB", m.clientHeap / 1024, f.clientHeap / 1024, undefined, { note: "informational" });
    }
  } finally {
    await rawServer.stop();
    await rpcServer.stop();
  }

  if (withCpp) {
    log("C++ reference: foo-bench client ↔ foo-bench serve (libcapnp-rpc)");
    try {
      cpp = await runCppReference(dir, { n: N, warmup: WARMUP, seconds: SECONDS, inflight: INFLIGHT, dataBytes: DATA_BYTES, dataN: quick ? 20 : 100 });
      const c = cpp;
      const set = (prefix: string, v: number): void => {
        for (const f of figures) if (f.name.startsWith(prefix)) f.cpp = v;
      };
      set("P1 add sequential p50", c.add.p50_us);
      set("P1 add sequential p99", c.add.p99_us);
      set("P2 add pipelined", c.pipelined.rate);
      set("P3 worker add (Context) p50", c.ctx.p50_us);
      set("P3 worker add (Context) p99", c.ctx.p99_us);
      set("P4 callback round trip p50", c.callback.p50_us);
      set("P4 callback round trip p99", c.callback.p99_us);
      set("P5 1 MiB Data echo", c.data.mbps);
    } catch (e) {
      log(`C++ reference skipped: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  await rm(dir, { recursive: true, force: true });

  const loadAfter = loadavg();
  const machine = {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadBefore: loadBefore.map((x) => Math.round(x * 100) / 100),
    loadAfter: loadAfter.map((x) => Math.round(x * 100) / 100),
  };
  const params = { n: N, warmup: WARMUP, seconds: SECONDS, inflight: INFLIGHT, dataBytes: DATA_BYTES, idleConnections: IDLE_CONNS, quick };
  const elapsed = (Date.now() - started.getTime()) / 1000;
  printTable(started, machine, params, elapsed);
  if (jsonFile !== undefined) {
    const out = { date: started.toISOString(), elapsedSeconds: elapsed, machine, params, client: "generated FooInterface proxies (@multiprocess-ts/proto) over @multiprocess-ts/node connectStream/listenConnections",
      figures, info, cpp: cpp ?? null };
    await writeFile(jsonFile, JSON.stringify(out, null, 2) + "\n");
    log(`wrote ${jsonFile}`);
  }
}

function fmt(v: number | null | undefined, unit?: string): string {
  if (v === null || v === undefined) return "-";
  if (unit === "calls/s") return Math.round(v).toLocaleString("en-US");
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(1);
}

function printTable(date: Date, machine: Record<string, unknown>, params: Record<string, unknown>, elapsed: number): void {
  const rows = figures.map((f) => [(f.informational === true ? "  " : "") + f.name, f.unit, fmt(f.ours, f.unit), fmt(f.floor, f.unit), f.ratio === null ? "-" : `${f.ratio.toFixed(2)}×`,
    f.target ?? "", f.met === null ? "" : f.met ? "met" : "NOT MET", fmt(f.cpp, f.unit)]);
  const head = ["figure", "unit", "ours", "floor", "ratio", "target", "", "C++ ref"];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 || i === 1 || i === 5 || i === 6 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ").trimEnd();
  const out: string[] = [];
  out.push(`multiprocess-ts bench — ${date.toISOString()} — node ${String(machine["node"])}, ${String(machine["cpus"])} CPUs (${String(machine["cpuModel"])}), load ${(machine["loadBefore"] as number[]).join(" ")} → ${(machine["loadAfter"] as number[]).join(" ")}`);
  out.push(`TS client and TS server in two processes over a Unix socket, generated FooInterface proxies; n=${String(params["n"])} (+${String(params["warmup"])} warm-up), ${String(params["seconds"])} s pipelined; ${elapsed.toFixed(0)} s total`);
  out.push(`floor = raw Node u32-length-prefixed ping-pong of the same bytes, 2 processes, same socket kind; C++ ref = libcapnp-rpc C++ client ↔ C++ server, same schema`);
  out.push("");
  out.push(line(head));
  out.push(line(w.map((n) => "-".repeat(n))));
  for (const r of rows) out.push(line(r));
  const scored = figures.filter((f) => f.met !== null);
  out.push("");
  out.push(`targets met: ${scored.filter((f) => f.met).length}/${scored.length}`);
  process.stdout.write(out.join("\n") + "\n");
}

(argv.includes("--hostile") || argv.includes("--fuzz-frames") ? import("./hostile.js").then((h) => h.hostileMain(argv)) : main()).then(() => {
  // Handles of the loop (and the worker bridge) may keep the process alive; the run is over.
  process.exit(process.exitCode ?? 0);
}, (e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
