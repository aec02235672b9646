/**
 * Fixture for worker-thread tests: createTestSetup (`@multiprocess-ts/testing`) serving a
 * {@link RaceFoo} as a generated ThreadFoo, both loops on the test's (main) thread, with the
 * client's loop accepting workers (`attachWorkers`) and sharing the client under "foo" (and
 * "init"). Workers run `dist/workers/foo-worker.js` and reach the server through the client loop,
 * as a Bitcoin Core thread reaches a remote process through its EventLoop.
 *
 * Disposing (`await using`) is the leak check every test ends with: workers exited, sessions
 * closed, bridge tables and loop-side ThreadContexts empty, no sync cleanups or server Threads
 * left, then createTestSetup's own check (both Connections' RPC tables empty, both loops
 * unreferenced and idle, the impl disposed once, no error-level log lines except expected ones).
 *
 * Threading: loop thread (the test's thread) only.
 */
import { Worker } from "node:worker_threads";
import { deferred } from "@multiprocess-ts/capnp";
import { attachWorkers, loopHandleTransferList, type WorkerSession, type WorkerSupport } from "@multiprocess-ts/node";
import type { FooCallback, FooCallbackClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { ThreadFooClient, ThreadFooServer, type ThreadFoo } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import { currentFrame } from "@multiprocess-ts/runtime";
import { FooImplementation, createTestSetup, type TestSetup } from "@multiprocess-ts/testing";

export const FOO_WORKER = new URL("./workers/foo-worker.js", import.meta.url);

/** The server-side implementation: upstream foo.h semantics, and a log of what ran on which Thread. */
export class RaceFoo extends FooImplementation implements ThreadFoo {
  readonly log: string[] = [];
  /** What callIntFnAsync does (tests replace it to park a call). */
  override intFn: (n: number) => number | Promise<number> = (n) => n;

  /** The server Thread running the current Context call. */
  private here(): string {
    return currentFrame()?.context.name ?? "<loop>";
  }
  /**
   * Calls the callback, then releases it without `destroy` (upstream foo.h destroys it), so a test
   * can pass the same callback object (a worker's client of another Connection) more than once.
   */
  override async callback(cb: FooCallback | null, arg: number): Promise<number> {
    this.log.push(`callback(${arg}) on ${this.here()}`);
    if (cb === null) throw new Error("callback: null callback");
    try {
      return await cb.call(arg);
    } finally {
      // `$release` is @internal on ProxyClientBase (stripped from the shipped .d.ts): the runtime's
      // relay servers use it; this test reaches it on purpose, hence the structural cast.
      await (cb as FooCallbackClient as unknown as { $release(): Promise<void> }).$release();
    }
  }
  override async callIntFnAsync(arg: number): Promise<number> {
    this.log.push(`callIntFnAsync(${arg}) on ${this.here()}`);
    return await super.callIntFnAsync(arg);
  }
  threadName(): string {
    return this.here();
  }
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

export interface WorkerSetup extends TestSetup<RaceFoo, ThreadFooClient> {
  readonly support: WorkerSupport;
  start(scenario: string, data?: Record<string, unknown>): StartedWorker;
}

function startWorker(support: WorkerSupport, scenario: string, data: Record<string, unknown>): StartedWorker {
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
  return { worker, session, messages, ready: ready.promise, done: done.promise, exited, send: (cmd) => worker.postMessage(cmd) };
}

/** The worker-side leak report (empty when clean); runs after every worker has gone. */
function workerProblems(s: WorkerSetup): string[] {
  const problems: string[] = [];
  const check = (what: string, got: unknown, want: unknown): void => {
    if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`${what}: ${JSON.stringify(got)} (want ${JSON.stringify(want)})`);
  };
  check("open worker sessions", s.support.host.sessions.size, 0);
  check("bridge stats", s.support.bridge.stats(), { caps: 0, answers: 0, questions: 0, objects: 0, sessions: 0 });
  check("worker ThreadContexts", s.support.threadContexts.size, 0);
  check("client sync cleanups", s.connections.client.syncCleanupCount, 0);
  check("server threads", s.connections.server.threads.size, 0);
  return problems;
}

export async function createWorkerSetup(): Promise<WorkerSetup> {
  const base = await createTestSetup({ impl: new RaceFoo(), Server: ThreadFooServer, Client: ThreadFooClient }, { name: "races", logLevel: "info" });
  await base.client.initThreadMap(); // gives the client Connection the server's ThreadMap
  const support = attachWorkers(base.clientLoop);
  const unshare = [support.share("foo", base.client), support.share("init", base.client)]; // "init": wc.getInit
  const workers: StartedWorker[] = [];
  let disposing: Promise<void> | undefined;
  const dispose = (): Promise<void> =>
    (disposing ??= (async () => {
      await Promise.all(workers.map((w) => w.exited));
      await Promise.all(workers.map((w) => w.session.closed));
      for (const u of unshare) u();
      await base.client.close();
      await base.connections.client.disconnected;
      await base.connections.server.disconnected;
      await support.host.close();
      const problems = workerProblems(setup);
      await base.dispose();
      if (problems.length > 0) throw new Error(`worker leak check failed:\n  ${problems.join("\n  ")}`);
    })());
  // Inherits every TestSetup member from `base`; adds the worker glue and a disposer that waits
  // for the workers before running base's leak check.
  const setup: WorkerSetup = Object.assign(Object.create(base) as TestSetup<RaceFoo, ThreadFooClient>, {
    support,
    start: (scenario: string, data: Record<string, unknown> = {}) => {
      const w = startWorker(support, scenario, data);
      workers.push(w);
      return w;
    },
    dispose,
    [Symbol.asyncDispose]: dispose,
  });
  return setup;
}
