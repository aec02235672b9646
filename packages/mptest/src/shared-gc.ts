/**
 * One full garbage collection shared by concurrent parties (the three orders of the capability
 * lifetime scenario, each on its own fixture): a GC runs once every party still in the game is
 * waiting in {@link SharedGc.collect}, and serves them all. A party that has no more GCs to wait
 * for calls {@link SharedGc.leave}, so the others do not wait for it. Each party still gets a full
 * GC at the point of its story where it asks for one; the GC just also collects the others'
 * garbage, which is theirs to check.
 *
 * Each GC runs after a turn of the event loop (setImmediate), so WeakRef targets kept alive for
 * the job that created them (ECMAScript's KeepDuringJob) can be collected; the waiters resume in
 * the same turn, right after the GC, and can check their WeakRefs at once.
 *
 * Threading: the thread that owns the parties (mptest's main thread).
 */

import { deferred, type Deferred } from "@multiprocess-ts/capnp";

export class SharedGc {
  #parties: number;
  readonly #gc: () => void;
  #waiting: Deferred<void>[] = [];
  #scheduled = false;
  #runs = 0;

  constructor(parties: number, gc: () => void) {
    this.#parties = parties;
    this.#gc = gc;
  }

  /** Resolves right after a full GC that ran once every remaining party was waiting here. */
  collect(): Promise<void> {
    if (this.#parties <= 0) return Promise.reject(new Error("SharedGc: collect() after every party left"));
    const d = deferred<void>();
    this.#waiting.push(d);
    this.#maybeRun();
    return d.promise;
  }

  /** This party asks for no more GCs. Idempotence is the caller's: call it once per party. */
  leave(): void {
    this.#parties--;
    this.#maybeRun();
  }

  /** GCs run so far. */
  get runs(): number {
    return this.#runs;
  }

  #maybeRun(): void {
    if (this.#scheduled || this.#waiting.length === 0 || this.#waiting.length < this.#parties) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      const waiters = this.#waiting.splice(0);
      this.#runs++;
      this.#gc();
      for (const d of waiters) d.resolve();
    });
  }
}
