/**
 * Fixture for worker-thread tests: a FooInterface server and a FooClient connected over an
 * in-memory transport, both on the test's (main) thread, with the client's loop accepting
 * workers (`attachWorkers`) and sharing the client under "foo" (and "init"). Workers run
 * `dist/workers/foo-worker.js` and reach the server through the client loop, as a Bitcoin Core
 * thread reaches a remote process through its EventLoop.
 *
 * `dispose()` is the leak check every test ends with: workers exited, sessions closed, bridge
 * tables and loop-side ThreadContexts empty, both Connections' RPC tables empty, both loops
 * unreferenced and idle, no error-level log lines except expected ones.
 *
 * Threading: loop thread (the test's thread) only.
 */
import { Worker } from "node:worker_threads";
import { deferred, memoryTransportPair, type MemoryTransport } from "@multiprocess-ts/capnp";
import { EventLoop, connectTransport, serveTransport, type Connection } from "@multiprocess-ts/runtime";
import { attachWorkers, loopHandleTransferList, type WorkerSession, type WorkerSupport } from "../../../packages/node/dist/worker/index.js";
import { FooClient, FooImpl, FooServer } from "./proxies.js";

export const FOO_WORKER = new URL("./workers/foo-worker.js", import.meta.url);

export interface LogLine {
  loop: string;
  level: string;
  msg: string;
}

export interface StartedWorker {
  readonly worker: Worker;
  readonly session: WorkerSession;
  /** Messages the worker posted so far. */
  readonly messages: unknown[];
  /** The first `{ ready: true }` message. */
  readonly ready: Promise<any>;
  /** The final `{ done: true, ok, value | error }` message. */
  readonly done: Promise<any>;
  readonly exited: Promise<number>;
  send(cmd: string): void;
}

export interface WorkerSetup {
  readonly serverLoop: EventLoop;
  readonly clientLoop: EventLoop;
  readonly impl: FooImpl;
  readonly client: FooClient;
  readonly serverConn: Connection;
  readonly clientConn: Connection;
  readonly clientTransport: MemoryTransport;
  readonly serverTransport: MemoryTransport;
  readonly support: WorkerSupport;
  readonly logs: LogLine[];
  start(scenario: string, data?: Record<string, unknown>): StartedWorker;
  /** Error-level lines matching `re` are expected (upstream EXPECT_LOG). */
  expectLog(re: RegExp): void;
  /** Unshare, close the client and its Connection, wait for everything, assert no leaks. */
  dispose(): Promise<void>;
}

export async function createWorkerSetup(): Promise<WorkerSetup> {
  const logs: LogLine[] = [];
  const expected: RegExp[] = [];
  const mk = (name: string) =>
    new EventLoop(name, { log: { level: "info", logFn: (level, msg) => logs.push({ loop: name, level, msg }) } });
  const serverLoop = mk("server");
  const clientLoop = mk("client");
  const impl = new FooImpl(serverLoop);
  const [clientTransport, serverTransport] = memoryTransportPair();
  const serverConn = serveTransport(serverLoop, serverTransport, impl, FooServer);
  const client = await connectTransport(clientLoop, clientTransport, FooClient);
  const clientConn = client.$connection;
  await client.initThreadMap(); // gives the client Connection the server's ThreadMap
  const support = attachWorkers(clientLoop);
  const unshareFoo = support.share("foo", client);
  const unshareInit = support.share("init", client); // the conventional name (wc.getInit)
  const unshare = (): void => {
    unshareFoo();
    unshareInit();
  };
  const workers: StartedWorker[] = [];

  const start = (scenario: string, data: Record<string, unknown> = {}): StartedWorker => {
    const handle = support.handle({ name: scenario });
    const session = [...support.host.sessions].find((s) => s.id === handle.session)!;
    const worker = new Worker(FOO_WORKER, { workerData: { ...data, handle, scenario }, transferList: loopHandleTransferList(handle) });
    const messages: unknown[] = [];
    const ready = deferred<any>();
    const done = deferred<any>();
    worker.on("message", (m: any) => {
      messages.push(m);
      if (m?.ready) ready.resolve(m);
      if (m?.done) done.resolve(m);
    });
    worker.on("error", (e) => {
      ready.reject(e);
      done.reject(e);
    });
    const exited = new Promise<number>((r) => worker.once("exit", r));
    const w: StartedWorker = {
      worker,
      session,
      messages,
      ready: ready.promise,
      done: done.promise,
      exited,
      send: (cmd) => worker.postMessage(cmd),
    };
    workers.push(w);
    return w;
  };

  let disposed = false;
  return {
    serverLoop,
    clientLoop,
    impl,
    client,
    serverConn,
    clientConn,
    clientTransport,
    serverTransport,
    support,
    logs,
    start,
    expectLog: (re) => void expected.push(re),
    async dispose() {
      if (disposed) return;
      disposed = true;
      await Promise.all(workers.map((w) => w.exited));
      await Promise.all(workers.map((w) => w.session.closed));
      unshare();
      await client.close();
      await clientConn.disconnected;
      await serverConn.disconnected;
      await support.host.close();
      await Promise.all([serverLoop.done, clientLoop.done]);
      const problems: string[] = [];
      const check = (what: string, got: unknown, want: unknown): void => {
        if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`${what}: ${JSON.stringify(got)} (want ${JSON.stringify(want)})`);
      };
      const zero = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };
      check("client rpc stats", clientConn.rpc.stats(), zero);
      check("server rpc stats", serverConn.rpc.stats(), zero);
      check("client loop refs", clientLoop.numRefs, 0);
      check("server loop refs", serverLoop.numRefs, 0);
      check("open worker sessions", support.host.sessions.size, 0);
      check("bridge stats", support.bridge.stats(), { caps: 0, answers: 0, questions: 0, objects: 0, sessions: 0 });
      check("worker ThreadContexts", support.threadContexts.size, 0);
      check("client sync cleanups", clientConn.syncCleanupCount, 0);
      check("server threads", serverConn.threads.size, 0);
      const errors = logs.filter((l) => l.level === "error" && !expected.some((re) => re.test(l.msg)));
      for (const e of errors) problems.push(`unexpected error log [${e.loop}]: ${e.msg}`);
      if (problems.length > 0) throw new Error(`leak check failed:\n  ${problems.join("\n  ")}`);
    },
  };
}
