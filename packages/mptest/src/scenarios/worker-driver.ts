/**
 * Drives one worker thread running workers/foo-worker.js: starts it with a loop handle from the
 * client loop's worker support, sends it ops, and waits for the events it reports (never on time).
 */

import { Worker } from "node:worker_threads";
import { deferred, type Deferred } from "@multiprocess-ts/capnp";
import { loopHandleTransferList, type WorkerSupport } from "@multiprocess-ts/node";
import type { WorkerEvent, WorkerOp } from "../workers/foo-worker.js";

const WORKER_JS = new URL("../workers/foo-worker.js", import.meta.url);

/**
 * Worker threads started by scenarios and not yet exited. process.getActiveResourcesInfo() does
 * not list workers, so the leak probe counts them here.
 */
export const liveWorkers = new Set<Worker>();

export class WorkerDriver {
  readonly worker: Worker;
  readonly exited: Promise<number>;
  readonly errors: Error[] = [];
  readonly log: WorkerEvent[] = [];
  #queue: WorkerEvent[] = [];
  #waiter: { ev: WorkerEvent["ev"]; d: Deferred<WorkerEvent> } | undefined;
  #exitCode: number | undefined;

  private constructor(support: WorkerSupport, name: string) {
    const handle = support.handle({ name });
    this.worker = new Worker(WORKER_JS, { workerData: { handle }, transferList: loopHandleTransferList(handle) });
    liveWorkers.add(this.worker);
    this.worker.on("message", (e: WorkerEvent) => this.#onEvent(e));
    this.worker.on("error", (e) => {
      this.errors.push(e);
      this.#failWaiter(e);
    });
    this.exited = new Promise<number>((resolve) => {
      this.worker.once("exit", (code) => {
        liveWorkers.delete(this.worker);
        this.#exitCode = code;
        this.#failWaiter(new Error(`worker exited (code ${code}) while a test waited for an event`));
        resolve(code);
      });
    });
  }

  /**
   * Starts a worker attached through `support` (from attachWorkers) and waits until it is ready.
   * `registry`, if given, gets the driver before the wait (so a failed start can be cleaned up).
   */
  static async start(support: WorkerSupport, name: string, registry?: WorkerDriver[]): Promise<WorkerDriver> {
    const w = new WorkerDriver(support, name);
    registry?.push(w);
    await w.next("ready");
    return w;
  }

  /** Terminates the worker unless it has exited already; resolves once it is gone. */
  async terminateIfRunning(): Promise<void> {
    if (this.#exitCode !== undefined) return;
    await this.worker.terminate();
    await this.exited;
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
