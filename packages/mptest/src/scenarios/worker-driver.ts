/**
 * Drives one worker thread running workers/foo-worker.js: attaches it to the client loop's worker
 * support with a fresh loop handle, sends it ops, and waits for the events it reports (never on
 * time).
 *
 * Worker pool: starting a worker thread costs ~50 ms of CPU before it runs any of our code, and
 * most worker scenarios only need *a* worker attached to this iteration's loop. Those take a
 * pooled worker: it attaches to the iteration's loop, detaches at the end, and goes back to the
 * pool only after it showed that nothing of that loop is left on its thread (no attached loop,
 * Connection closed, no loop references or queued work, no handles beyond an idle worker's) and
 * the loop side checked its session and ThreadContext are gone (workers.ts). The scenarios where
 * the worker thread itself goes away (exit, terminate) take a fresh one: a spare started ahead of
 * use (spare.ts) that loaded its bundle in the background and was never attached to any loop.
 * Idle pooled workers and the spare are unref'd: they hold no handle and do not keep the process
 * alive. Every worker compiles its bundle with the V8 code cache that the first pooled worker to
 * come back clean made of its own compiled code (bundle-loader.ts).
 *
 * Threading: main thread of the mptest process (the loop thread of the fixture).
 */

import type { Worker } from "node:worker_threads";
import { deferred, type Deferred } from "@multiprocess-ts/capnp";
import { loopHandleTransferList, type WorkerSupport } from "@multiprocess-ts/node";
import type { WorkerEvent, WorkerOp } from "../workers/foo-worker.js";
import { CodeCachedBundle } from "../bundle-loader.js";
import { Spare } from "../spare.js";

/** The built worker entry (workers/foo-worker.ts) that every worker thread of the scenarios runs. */
export const fooWorkerEntry = new URL("../workers/foo-worker.js", import.meta.url);

/** The workers' bundle, built and read on first use. */
let bundle: CodeCachedBundle | undefined;
const workerBundle = (): CodeCachedBundle => (bundle ??= new CodeCachedBundle(fooWorkerEntry));

/**
 * Worker threads in use by the running iteration: fresh ones until they exit, pooled ones until
 * they are back in the pool. process.getActiveResourcesInfo() does not list workers, so the leak
 * probe counts them here.
 */
export const liveWorkers = new Set<Worker>();

/** Detached, checked, unref'd workers waiting for the next iteration. */
const idle: Worker[] = [];
/** At most this many idle workers are kept (the most any scenario uses at once). */
const POOL_SIZE = 2;

function newWorker(pooled: boolean): Worker {
  const w = workerBundle().start();
  stats.started++;
  if (pooled) {
    // While idle nobody else listens: an idle worker that fails or dies just leaves the pool.
    w.on("error", () => {});
    w.once("exit", () => {
      const i = idle.indexOf(w);
      if (i >= 0) idle.splice(i, 1);
    });
  }
  return w;
}

const stats = { started: 0, reused: 0 };
/** How new workers compiled their bundle (from their first "ready"). */
const codeCacheUse = { none: 0, accepted: 0, rejected: 0 };

/** Listeners of a parked spare (removed when it is taken) and the spares that died parked. */
const parkedOff = new WeakMap<Worker, () => void>();
const diedParked = new WeakSet<Worker>();

/** Scenarios that take a fresh worker each iteration (exit, terminate): one spare each. */
const FRESH_SPARES = 2;

/** The next fresh workers, started (and loading their bundle) while earlier iterations run. */
const freshSpare = new Spare<Worker>({
  start: () => newWorker(false),
  park(w) {
    w.unref();
    const onError = (): void => {};
    const onExit = (): void => void diedParked.add(w);
    w.on("error", onError);
    w.once("exit", onExit);
    parkedOff.set(w, () => {
      w.off("error", onError);
      w.off("exit", onExit);
    });
  },
  unpark(w) {
    parkedOff.get(w)?.();
    parkedOff.delete(w);
  },
  alive: (w) => !diedParked.has(w),
  discard: async (w) => void (await w.terminate()),
}, FRESH_SPARES);

export interface WorkerPoolStats {
  /** Worker threads started so far. */
  started: number;
  /** Pooled attachments that reused a worker. */
  reused: number;
  /** Idle pooled workers now. */
  idle: number;
  /** Fresh workers handed out already loaded (a spare). */
  freshWarm: number;
  /** Fresh workers started on the spot. */
  freshCold: number;
  /** Workers (used so far) that compiled their bundle without a code cache, from one, or had it rejected. */
  codeCache: { none: number; accepted: number; rejected: number };
  /** Size of the code cache new workers get now (0 before a pooled worker produced one). */
  codeCacheBytes: number;
}

export function workerPoolStats(): WorkerPoolStats {
  const f = freshSpare.stats;
  return {
    ...stats,
    idle: idle.length,
    freshWarm: f.warm,
    freshCold: f.cold,
    codeCache: { ...codeCacheUse },
    codeCacheBytes: bundle?.codeCacheBytes ?? 0,
  };
}

/** Terminates the idle pooled workers and the fresh spare (end of a test run; the CLI just exits). */
export async function closeWorkerPool(): Promise<void> {
  await Promise.all([...idle.splice(0).map((w) => w.terminate()), freshSpare.close()]);
}

export class WorkerDriver {
  readonly worker: Worker;
  /** Taken from the pool (and given back by {@link finish}) rather than started for this test. */
  readonly pooled: boolean;
  readonly exited: Promise<number>;
  readonly errors: Error[] = [];
  readonly log: WorkerEvent[] = [];
  #queue: WorkerEvent[] = [];
  #waiter: { ev: WorkerEvent["ev"]; d: Deferred<WorkerEvent> } | undefined;
  #exitCode: number | undefined;
  #closed = false;
  #finished = false;
  #off: () => void;

  private constructor(worker: Worker, pooled: boolean, support: WorkerSupport, name: string) {
    this.worker = worker;
    this.pooled = pooled;
    worker.ref();
    liveWorkers.add(worker);
    const onMessage = (e: WorkerEvent): void => this.#onEvent(e);
    const onError = (e: Error): void => {
      this.errors.push(e);
      this.#failWaiter(e);
    };
    let onExit: (code: number) => void = () => {};
    this.exited = new Promise<number>((resolve) => {
      onExit = (code) => {
        liveWorkers.delete(worker);
        this.#exitCode = code;
        this.#failWaiter(new Error(`worker exited (code ${code}) while a test waited for an event`));
        resolve(code);
      };
    });
    worker.on("message", onMessage);
    worker.on("error", onError);
    worker.once("exit", onExit);
    this.#off = () => {
      worker.off("message", onMessage);
      worker.off("error", onError);
      worker.off("exit", onExit);
    };
    const handle = support.handle({ name });
    worker.postMessage({ op: "attach", handle } satisfies WorkerOp, loopHandleTransferList(handle));
  }

  /**
   * Attaches a worker to `support`'s loop and waits until it has the shared "foo" client: a
   * pooled one unless `fresh` (a scenario that ends the thread). `registry`, if given, gets the
   * driver before the wait (so a failed start can be cleaned up).
   */
  static async start(
    support: WorkerSupport,
    name: string,
    registry?: WorkerDriver[],
    opts: { fresh?: boolean } = {},
  ): Promise<WorkerDriver> {
    const pooled = opts.fresh !== true;
    const reused = pooled ? idle.pop() : undefined;
    if (reused !== undefined) stats.reused++;
    const worker = reused ?? (pooled ? newWorker(true) : freshSpare.take());
    const w = new WorkerDriver(worker, pooled, support, name);
    registry?.push(w);
    const ready = await w.next("ready");
    if (reused === undefined) {
      if (ready.codeCache === "no loader") throw new Error("check failed: a new worker was not started by the bundle loader");
      codeCacheUse[ready.codeCache]++;
    }
    return w;
  }

  /** Terminates the worker unless it has exited already; resolves once it is gone. */
  async terminateIfRunning(): Promise<void> {
    if (this.#exitCode !== undefined) return;
    await this.worker.terminate();
    await this.exited;
  }

  /**
   * The end of this driver. A fresh worker is terminated if still running. A pooled one detaches
   * (if the scenario did not), reports what is left of the loop on its thread, and goes back to
   * the pool when that is nothing; otherwise it is terminated and this throws. With `recycle`
   * false (the scenario failed) it is terminated without checks. Only the first call acts.
   */
  async finish(recycle = true): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    if (!this.pooled || !recycle || this.#exitCode !== undefined || this.errors.length > 0) {
      await this.terminateIfRunning();
      return;
    }
    try {
      if (!this.#closed) {
        this.send({ op: "close" });
        await this.next("closed");
      }
      this.send({ op: "state" });
      const { state } = await this.next("state");
      const clean =
        !state.attached &&
        state.loopClosed &&
        state.connection === "closed" &&
        state.loopRefs === 0 &&
        state.pendingWork === 0 &&
        state.extraResources.length === 0;
      if (!clean) throw new Error(`check failed: the worker thread still holds loop state after detaching: ${JSON.stringify(state)}`);
      // The first clean return makes the code cache for the workers started after it: by now this
      // thread has attached, called (plain and Context calls) and detached.
      const b = workerBundle();
      if (!b.hasCodeCache) {
        this.send({ op: "codeCache" });
        b.adoptCodeCache((await this.next("codeCache")).data);
      }
    } catch (e) {
      await this.terminateIfRunning();
      throw e;
    }
    this.#off();
    this.worker.unref();
    liveWorkers.delete(this.worker);
    if (idle.length < POOL_SIZE) idle.push(this.worker);
    else await this.worker.terminate();
  }

  send(op: WorkerOp): void {
    this.worker.postMessage(op);
  }

  /** The next event of kind `ev` (earlier events of other kinds stay logged, not queued). Rejects on "error". */
  next<E extends WorkerEvent["ev"]>(ev: E): Promise<Extract<WorkerEvent, { ev: E }>> {
    if (this.#waiter) throw new Error("WorkerDriver: one waiter at a time");
    const i = this.#queue.findIndex((e) => e.ev === ev || e.ev === "error");
    if (i >= 0) {
      const e = this.#queue.splice(i, 1)[0]!;
      if (e.ev === "error" && ev !== "error") return Promise.reject(new Error(`worker reported: ${e.message}`));
      return Promise.resolve(e as Extract<WorkerEvent, { ev: E }>);
    }
    if (this.#exitCode !== undefined) return Promise.reject(new Error(`worker already exited (code ${this.#exitCode})`));
    const d = deferred<WorkerEvent>();
    this.#waiter = { ev, d };
    return d.promise as Promise<Extract<WorkerEvent, { ev: E }>>;
  }

  /** Makes the worker exit and waits for it (a no-op if it is gone). */
  async stop(): Promise<number> {
    if (this.#exitCode === undefined) this.send({ op: "exit" });
    return await this.exited;
  }

  #onEvent(e: WorkerEvent): void {
    this.log.push(e);
    if (e.ev === "closed") this.#closed = true;
    const w = this.#waiter;
    if (w && (e.ev === w.ev || e.ev === "error")) {
      this.#waiter = undefined;
      if (e.ev === "error" && w.ev !== "error") w.d.reject(new Error(`worker reported: ${e.message}`));
      else w.d.resolve(e);
      return;
    }
    this.#queue.push(e);
  }

  #failWaiter(err: Error): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.d.reject(err);
  }
}
