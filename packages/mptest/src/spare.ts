/**
 * One spare resource started ahead of use: a fresh worker thread, or a child process, that a
 * scenario ends in every iteration (terminate, exit, SIGKILL). Starting one costs 50-150 ms of
 * CPU (a Node isolate or process, then one bundle to load), and most of that is waiting: `take()`
 * hands out a spare started earlier, which loaded in the background while other iterations ran,
 * and starts the next spare at once. Each spare is used exactly once, so every iteration still
 * ends a thread or process that served nobody before.
 *
 * A parked spare holds no reference on the event loop (`park`): it neither keeps the process
 * alive nor counts in the leak check (process.getActiveResourcesInfo() lists referenced handles
 * only); `unpark` gives it back to the taker as if just started. A spare that died while parked
 * (`alive` false) is discarded and a new one started in its place.
 *
 * Threading: main thread of the mptest process.
 */

export interface SpareHooks<T> {
  /** Starts a new resource (never throws: a failed start shows when it is used). */
  start(): T;
  /** Drops its event-loop references while it waits. */
  park(t: T): void;
  /** Takes it back into use: references, and the listeners of its new owner from here on. */
  unpark(t: T): void;
  /** False once it has died on its own (it is then discarded, not handed out). */
  alive(t: T): boolean;
  /** Ends an unused spare. */
  discard(t: T): Promise<void>;
}

export interface SpareStats {
  /** Resources started (spares and cold starts). */
  started: number;
  /** take() calls served by a spare started earlier. */
  warm: number;
  /** take() calls that had to start one on the spot (first use, or the spare had died). */
  cold: number;
  /** Spares discarded because they died while parked. */
  dead: number;
}

export class Spare<T> {
  readonly #hooks: SpareHooks<T>;
  readonly #size: number;
  /** Parked spares, oldest first. */
  readonly #spares: T[] = [];
  readonly #stats: SpareStats = { started: 0, warm: 0, cold: 0, dead: 0 };

  /**
   * `size`: how many spares to keep parked; one per scenario that takes from this Spare in each
   * round of the scheduler, so that each gets one started a whole round earlier.
   */
  constructor(hooks: SpareHooks<T>, size = 1) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`Spare: size must be a positive integer, got ${size}`);
    this.#hooks = hooks;
    this.#size = size;
  }

  /**
   * A resource nobody used before: the oldest parked spare that is alive, else a new one. Then
   * new spares are started until `size` are parked again.
   */
  take(): T {
    let t: T | undefined;
    while (t === undefined && this.#spares.length > 0) {
      const s = this.#spares.shift()!;
      if (this.#hooks.alive(s)) t = s;
      else {
        this.#stats.dead++;
        void this.#hooks.discard(s);
      }
    }
    if (t === undefined) {
      this.#stats.cold++;
      t = this.#start();
    } else {
      this.#stats.warm++;
      this.#hooks.unpark(t);
    }
    while (this.#spares.length < this.#size) {
      const next = this.#start();
      this.#hooks.park(next);
      this.#spares.push(next);
    }
    return t;
  }

  /** Ends the parked spares (end of a test run; a CLI process just exits). */
  async close(): Promise<void> {
    await Promise.all(this.#spares.splice(0).map((t) => this.#hooks.discard(t)));
  }

  get stats(): SpareStats {
    return { ...this.#stats };
  }

  /** How many spares are parked now. */
  get parked(): number {
    return this.#spares.length;
  }

  #start(): T {
    this.#stats.started++;
    return this.#hooks.start();
  }
}
