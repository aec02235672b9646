/**
 * Thread executors: how tasks run on one logical thread on the loop (upstream `Waiter`'s
 * task-running half, proxy-io.h). {@link FifoExecutor} runs tasks FIFO, one at a time, except
 * while the running task waits for an outgoing IPC call it made ({@link TaskControl}).
 *
 * Owns: the per-executor task queue. Threading: loop thread only.
 */
import { isThenable } from "../util.js";

/**
 * Handed to each task by a {@link ThreadExecutor}: the task reports when it starts and stops
 * waiting for an outgoing IPC call, so the executor can run the next task meanwhile (the
 * re-entrancy upstream's `Waiter::wait` gives a blocked thread: a callback from the peer must be
 * able to run while the thread waits for the call that triggered it). Both are idempotent and
 * no-ops once the task has finished.
 */
export interface TaskControl {
  enterWait(): void;
  exitWait(): void;
}

/**
 * Runs tasks for one logical thread: FIFO, one at a time, except while the running task waits
 * for an IPC call it made (see {@link TaskControl}).
 */
export interface ThreadExecutor {
  /** Queues `fn`; resolves/rejects with its result. Takes ownership of `fn`. */
  run<T>(fn: (task: TaskControl) => T | Promise<T>): Promise<T>;
  /** Tasks queued or started and not finished (the pool's "load"). */
  readonly load: number;
}

/** Queue state shared by a {@link FifoExecutor} and its tasks. */
interface FifoState {
  queue: FifoTask<unknown>[];
  /** Index of the next task to start in `queue` (the queue is compacted lazily). */
  head: number;
  running: number; // started, not finished, not waiting
  started: number; // started, not finished
  pumping: boolean;
}

/** One task of a {@link FifoExecutor}; it is also the task's {@link TaskControl}. */
class FifoTask<T> implements TaskControl {
  waiting = false;
  finished = false;
  resolve!: (v: T) => void;
  reject!: (e: unknown) => void;
  constructor(
    readonly s: FifoState,
    public fn: ((task: TaskControl) => T | Promise<T>) | undefined,
  ) {}

  enterWait(): void {
    if (this.finished || this.waiting) return;
    this.waiting = true;
    this.s.running--;
    pump(this.s);
  }

  exitWait(): void {
    if (this.finished || !this.waiting) return;
    this.waiting = false;
    this.s.running++;
  }

  start(): void {
    const s = this.s;
    s.running++;
    s.started++;
    const fn = this.fn!;
    this.fn = undefined;
    let r: T | Promise<T>;
    try {
      r = fn(this);
    } catch (e) {
      this.reject(e);
      this.done();
      return;
    }
    if (isThenable(r)) {
      r.then(
        (v) => {
          this.resolve(v);
          this.done();
        },
        (e: unknown) => {
          this.reject(e);
          this.done();
        },
      );
    } else {
      this.resolve(r);
      this.done();
    }
  }

  /** The task has settled: the next queued task may start. */
  done(): void {
    const s = this.s;
    this.finished = true;
    if (!this.waiting) s.running--;
    s.started--;
    pump(s);
  }
}

/** Starts queued tasks while none is running (not waiting). Not re-entered: the outer loop goes on. */
function pump(s: FifoState): void {
  if (s.pumping) return;
  s.pumping = true;
  try {
    while (s.running === 0 && s.head < s.queue.length) {
      const t = s.queue[s.head]!;
      s.queue[s.head++] = undefined!;
      if (s.head === s.queue.length) {
        s.queue.length = 0;
        s.head = 0;
      }
      t.start();
    }
  } finally {
    s.pumping = false;
  }
}


/**
 * The default {@link ThreadExecutor}: a FIFO queue of tasks on the loop thread. A task that
 * returns a non-promise finishes synchronously (the next queued task may start at once); a task
 * started while nothing runs starts synchronously inside {@link run}.
 */
export class FifoExecutor implements ThreadExecutor {
  #s: FifoState = { queue: [], head: 0, running: 0, started: 0, pumping: false };

  get load(): number {
    const s = this.#s;
    return s.queue.length - s.head + s.started;
  }

  run<T>(fn: (task: TaskControl) => T | Promise<T>): Promise<T> {
    const s = this.#s;
    const t = new FifoTask<T>(s, fn);
    const p = new Promise<T>((resolve, reject) => {
      t.resolve = resolve;
      t.reject = reject;
    });
    s.queue.push(t as FifoTask<unknown>);
    pump(s);
    return p;
  }

  /** True when a task given to {@link run} now would start at once (nothing queued or running). */
  get idle(): boolean {
    const s = this.#s;
    return s.running === 0 && !s.pumping && s.head === s.queue.length;
  }

  /**
   * @internal Starts a task with no function when the executor is {@link idle} (check first): the
   * caller runs the task's work itself, now, and calls `done()` on the returned task once when that
   * work has settled (proxy/server.ts folds it into the task's one promise reaction).
   */
  startNow(): TaskControl & { done(): void } {
    const s = this.#s;
    const t = new FifoTask<unknown>(s, undefined);
    s.running++;
    s.started++;
    return t;
  }

  /**
   * {@link run} without its promise when the task can start now (nothing queued or running): the
   * task runs at once, as `run` would start it, and its own result is returned as is (a value, a
   * thrown error, or its promise, which finishes the task when it settles). Otherwise `run`.
   * A server call whose method returns a value then completes with no promise and no microtask
   * hop (proxy/server.ts).
   */
  runNow<T>(fn: (task: TaskControl) => T | Promise<T>): T | Promise<T> {
    if (!this.idle) return this.run(fn);
    const t = this.startNow();
    let r: T | Promise<T>;
    try {
      r = fn(t);
    } catch (e) {
      t.done();
      throw e;
    }
    if (!isThenable(r)) {
      t.done();
      return r;
    }
    return r.then(
      (v) => {
        t.done();
        return v;
      },
      (e: unknown) => {
        t.done();
        throw e;
      },
    );
  }
}
