// Test harness shared by the worker-thread tests of examples/test (calls-worker, errors-threads,
// lanes-worker): a FooInterface server on its own EventLoop, a client on a second loop over an
// in-memory transport, the client shared to one worker thread running a fixture, an inbox of the
// worker's messages by op, and a finish() that closes everything in order and runs the leak check.
// Threads: the loop thread of the test; the fixture runs on its worker thread.
import { Worker } from "node:worker_threads";
import { memoryTransportPair } from "@multiprocess-ts/capnp";
import { Connection, EventLoop, serveTransport, type EventLoopOptions } from "@multiprocess-ts/runtime";
import { attachWorkers, loopHandleTransferList } from "@multiprocess-ts/node";
import { type FooInterface, FooInterfaceClient, FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { expect } from "vitest";

/** Messages from a worker, awaited by op in arrival order. */
export function inbox<M extends { op: string }>(worker: Worker): (op: string) => Promise<M> {
  const queued: M[] = [];
  const waiting: { op: string; resolve: (m: M) => void }[] = [];
  worker.on("message", (m: M) => {
    const i = waiting.findIndex((w) => w.op === m.op);
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(m);
    else queued.push(m);
  });
  return (op) => {
    const i = queued.findIndex((m) => m.op === op);
    if (i >= 0) return Promise.resolve(queued.splice(i, 1)[0]!);
    return new Promise((resolve) => waiting.push({ op, resolve }));
  };
}

export interface FooWorkerOptions {
  /** Names the loops (`NAME-server`, `NAME-loop`) and the worker's handle. */
  name: string;
  /** The worker's module (it receives `{ handle }` as workerData and posts `{ op: "ready" }`). */
  fixture: URL;
  impl: Partial<FooInterface>;
  /** Extra options of the server's loop (its log is the harness's). */
  serverLoop?: Omit<EventLoopOptions, "log">;
  /** Exchange ThreadMaps before the worker starts (Context methods). */
  threadMap?: boolean;
  /** Trace the worker's loop (the one the worker is attached to): every trace line goes here. */
  loopTrace?: (line: string) => void;
  /** Run before the leak check (close extra clients the test made). */
  beforeFinish?: () => Promise<void>;
}

export interface FooWorker<M extends { op: string }> {
  serverLoop: EventLoop;
  loop: EventLoop;
  serverConn: Connection;
  clientConn: Connection;
  foo: FooInterfaceClient;
  worker: Worker;
  next: (op: string) => Promise<M>;
  /** Close the worker, the client and the server; then check nothing leaked. */
  finish(): Promise<void>;
}

export async function startFooWorker<M extends { op: string }>(o: FooWorkerOptions): Promise<FooWorker<M>> {
  const errors: string[] = [];
  const log = (level: string, msg: string): void => {
    if (level === "error") errors.push(msg);
  };
  const serverLoop = new EventLoop(`${o.name}-server`, { ...o.serverLoop, log: { logFn: log, level: "warning" } });
  const traceLog = (level: string, msg: string): void => {
    if (level === "trace") o.loopTrace?.(msg);
    else log(level, msg);
  };
  const loop = new EventLoop(`${o.name}-loop`, { log: o.loopTrace === undefined ? { logFn: log, level: "warning" } : { logFn: traceLog, level: "trace" } });
  const [ct, st] = memoryTransportPair();
  const serverConn = serveTransport(serverLoop, st, o.impl as FooInterface, FooInterfaceServer);
  serverConn.onDisconnect(() => void serverConn.close());
  const clientConn = new Connection(loop, ct);
  const foo = new FooInterfaceClient(clientConn.rpc.bootstrap(), clientConn, { destroyConnection: true });
  if (o.threadMap === true) await foo.initThreadMap();
  const workers = attachWorkers(loop);
  const unshare = workers.share("foo", foo);
  const handle = workers.handle({ name: o.name });
  const worker = new Worker(o.fixture, { workerData: { handle }, transferList: loopHandleTransferList(handle) });
  const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
  const next = inbox<M>(worker);
  await next("ready");
  return {
    serverLoop, loop, serverConn, clientConn, foo, worker, next,
    async finish(): Promise<void> {
      worker.postMessage({ op: "close" });
      expect(await exited).toBe(0);
      unshare();
      await o.beforeFinish?.();
      await foo.close();
      await serverConn.close();
      await Promise.all([serverLoop.done, loop.done]);
      // Leak check: RPC tables empty, loops unreferenced and idle, no error logs.
      for (const c of [serverConn, clientConn]) {
        expect(c.rpc.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
      }
      for (const l of [serverLoop, loop]) {
        expect(l.numRefs).toBe(0);
        expect(l.pendingWork).toBe(0);
      }
      expect(errors).toEqual([]);
    },
  };
}
