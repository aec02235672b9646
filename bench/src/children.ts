/**
 * Child processes and threads of one bench round (run.ts, main thread): the forked server
 * children (`server.js rpc|raw|birpc|capnweb PATH`), CPU accounting per side, and the P3 / floor
 * worker threads.
 */
import { fork, type ChildProcess } from "node:child_process";
import { openSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { SocketReader, streamTransport } from "@multiprocess-ts/capnp";
import { connectTransport, type EventLoop } from "@multiprocess-ts/runtime";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { syscallCounts, timeSequential, type SyscallCounts } from "./stats.js";
import type { ServerKind, ServerReply, ServerRequest } from "./server.js";

export const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
export const log = (s: string): void => { process.stderr.write(`bench: ${s}\n`); };

export interface ServerChild {
  proc: ChildProcess;
  request(m: ServerRequest): Promise<ServerReply>;
  stop(): Promise<void>;
}

/** `extraArgv`: more Node/V8 flags for the child (diagnostics only: cold.ts's `--server-flags`). */
export async function startServer(kind: ServerKind, path: string, tag: string, profileDir?: string, extraArgv: readonly string[] = []): Promise<ServerChild> {
  const execArgv = ["--expose-gc", ...extraArgv];
  if (profileDir !== undefined) execArgv.push("--cpu-prof", "--cpu-prof-dir", profileDir, "--cpu-prof-name", `server-${tag}.cpuprofile`);
  // Diagnostics (cold.ts --server-out FILE): the child's stdout (V8's --trace-* lines) to a file of its own.
  const out = process.env.MP_BENCH_SERVER_OUT;
  const stdout = out === undefined || out === "" ? "inherit" : openSync(out, "w");
  const proc = fork(here("./server.js"), [kind, path], { execArgv, stdio: ["ignore", stdout, "inherit", "ipc"] });
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

export function connectUnix(path: string, reader?: SocketReader): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = reader === undefined ? connect({ path }) : connect({ path, onread: reader.onread });
    s.once("connect", () => { s.off("error", reject); resolve(s); });
    s.once("error", reject);
  });
}

/**
 * The client's RPC connection, made as `connectSocket` makes it (the socket read through its
 * `onread` option, packages/capnp socket-read.ts), or with `streamReads` (`--stream-reads`) as
 * `connectStream` on a plain socket (its Readable stream): the same transport otherwise, for A/B
 * runs.
 */
export async function connectRpc(loop: EventLoop, path: string, streamReads = false): Promise<{ socket: Socket; foo: FooInterfaceClient }> {
  const reader = streamReads ? undefined : new SocketReader();
  const socket = await connectUnix(path, reader);
  const foo = await connectTransport(loop, streamTransport(socket, undefined, undefined, reader), FooInterfaceClient);
  return { socket, foo };
}

/**
 * CPU µs per call of each side; `io`: read- and write-family syscalls per call of each side
 * (Linux /proc/PID/io; the client's count includes its other threads), when known.
 */
export interface Cpu { client: number; server: number; total: number; io?: { clientReads: number; clientWrites: number; serverReads: number; serverWrites: number } }

/**
 * A sequential loop as every sequential figure runs it: `warmup` calls first, then `n` timed
 * calls, each call's latency recorded and CPU per call per side ({@link withCpu}) taken over the
 * timed calls only, the same window as the latency figures. A fresh process's warm-up (its first
 * ~1,000 calls run before V8 has optimised them) is the cold-start figure's, not this one's.
 */
export async function sequentialWithCpu(server: ServerChild | null, n: number, warmup: number, fn: (i: number) => Promise<unknown>): Promise<{ us: Float64Array; cpu: Cpu }> {
  for (let i = 0; i < warmup; i++) await fn(i);
  let us: Float64Array = new Float64Array(0);
  const cpu = await withCpu(server, async () => {
    us = await timeSequential(n, 0, (i) => fn(warmup + i));
    return n;
  });
  return { us, cpu };
}

/**
 * Runs `fn` (which returns how many calls it made) and returns client and server CPU µs per call
 * (`process.cpuUsage()` of each process: the client's includes its worker threads). Without a
 * server child, `server` is 0 (both ends live in this process).
 */
export async function withCpu(server: ServerChild | null, fn: () => Promise<number>): Promise<Cpu> {
  const cpu = async (): Promise<{ us: number; io: SyscallCounts | null }> => {
    if (server === null) return { us: 0, io: null };
    const r = await server.request({ op: "cpu" });
    if (!("cpu" in r)) throw new Error("bench: bad cpu reply");
    return { us: r.cpu.user + r.cpu.system, io: r.io };
  };
  const s0 = await cpu();
  const io0 = syscallCounts();
  const c0 = process.cpuUsage();
  const calls = await fn();
  const c = process.cpuUsage(c0);
  const io1 = syscallCounts();
  const s1 = await cpu();
  const client = (c.user + c.system) / calls;
  const s = s1.us - s0.us;
  const out: Cpu = { client, server: s / calls, total: client + s / calls };
  if (io0 !== null && io1 !== null && s0.io !== null && s1.io !== null) {
    out.io = {
      clientReads: (io1.reads - io0.reads) / calls, clientWrites: (io1.writes - io0.writes) / calls,
      // less the cpu request's own IPC read and the reply's write
      serverReads: Math.max(0, s1.io.reads - s0.io.reads - 1) / calls, serverWrites: Math.max(0, s1.io.writes - s0.io.writes - 1) / calls,
    };
  }
  return out;
}

/**
 * A bench worker whose messages are taken one at a time: `next()` resolves with the next message
 * (rejects on a `{error}` message, an error event or an exit before it).
 */
export function stepWorker(data: Record<string, unknown>, transferList: readonly unknown[] = []): { worker: Worker; next<T>(): Promise<T> } {
  const worker = new Worker(here("./worker.js"), { workerData: data, transferList: transferList as never });
  const queue: unknown[] = [];
  const waiting: { resolve(m: unknown): void; reject(e: Error): void }[] = [];
  let failed: Error | undefined;
  const fail = (e: Error): void => {
    failed ??= e;
    for (const w of waiting.splice(0)) w.reject(e);
  };
  worker.on("message", (m: { error?: string }) => {
    if (m !== null && typeof m === "object" && m.error !== undefined) fail(new Error(`bench worker: ${m.error}`));
    else if (waiting.length > 0) waiting.shift()!.resolve(m);
    else queue.push(m);
  });
  worker.once("error", fail);
  worker.once("exit", (code) => fail(new Error(`bench worker exited (${code})`)));
  return {
    worker,
    next: <T>() => new Promise<T>((resolve, reject) => {
      if (queue.length > 0) resolve(queue.shift() as T);
      else if (failed !== undefined) reject(failed);
      else waiting.push({ resolve: resolve as (m: unknown) => void, reject });
    }),
  };
}

export function runWorker<T>(data: Record<string, unknown>, transferList: readonly unknown[] = []): { worker: Worker; result: Promise<T> } {
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
