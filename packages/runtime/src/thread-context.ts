/**
 * ThreadContext and the loop-side parts of thread mapping (upstream `ThreadContext`, `Waiter`'s
 * task-running half, and `ProxyClient<Thread>`; proxy-io.h, proxy.cpp `SetThread`).
 *
 * A {@link ThreadContext} stands for one client thread: the loop thread has one
 * (`loop.threadContext`), each server Thread created by `ThreadMap.makeThread`/`makePool` has one,
 * and the worker glue creates one per attached worker. Per Connection it keeps
 *  - the request Thread: the peer's Thread that calls made from this context run on (from the
 *    peer's `ThreadMap.makeThread(name)`, pipelined, created once; or, while serving a call, the
 *    caller's `callbackThread` so nested calls go back to the thread that is waiting), and
 *  - the callback Thread: a local server Thread standing for this context, sent to the peer as
 *    `Context.callbackThread` so callbacks made while serving our call come back here.
 *
 * Threading: ThreadContext objects live on the loop thread and are only touched there (worker
 * contexts are loop-side stand-ins; the worker keeps its own module state). Every map mutation
 * happens on the loop thread, which is what makes the #189 teardown race impossible here
 * (libmultiprocess.md §5): see {@link ThreadEntry}.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Capability } from "@multiprocess-ts/capnp";
import { deferred } from "@multiprocess-ts/capnp";
import type { CleanupHandle, Connection } from "./connection.js";
import type { EventLoop } from "./event-loop.js";

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

/** The default {@link ThreadExecutor}: a FIFO queue of async tasks on the loop thread. */
export class FifoExecutor implements ThreadExecutor {
  #queue: Array<() => void> = [];
  #running = 0; // started, not finished, not waiting
  #started = 0; // started, not finished

  get load(): number {
    return this.#queue.length + this.#started;
  }

  run<T>(fn: (task: TaskControl) => T | Promise<T>): Promise<T> {
    const d = deferred<T>();
    this.#queue.push(() => {
      let waiting = false;
      let finished = false;
      const task: TaskControl = {
        enterWait: () => {
          if (finished || waiting) return;
          waiting = true;
          this.#running--;
          this.#pump();
        },
        exitWait: () => {
          if (finished || !waiting) return;
          waiting = false;
          this.#running++;
        },
      };
      this.#running++;
      this.#started++;
      let p: Promise<T>;
      try {
        p = Promise.resolve(fn(task));
      } catch (e) {
        p = Promise.reject(e);
      }
      p.then(d.resolve, d.reject).finally(() => {
        finished = true;
        if (!waiting) this.#running--;
        this.#started--;
        this.#pump();
      });
    });
    this.#pump();
    return d.promise;
  }

  #pump(): void {
    while (this.#running === 0 && this.#queue.length > 0) this.#queue.shift()!();
  }
}

/** What runs "on" a logical thread: found with {@link currentFrame} from inside a task. */
export interface TaskFrame {
  readonly context: ThreadContext;
  /** The executor's control for this task (absent for frames entered with runInFrame alone). */
  readonly task: TaskControl | undefined;
  /** Outgoing IPC calls this task is waiting for (maintained by the proxy layer). */
  waits: number;
}

const frames = new AsyncLocalStorage<TaskFrame>();

/** The frame of the server Thread task we are running in, if any (survives awaits). */
export function currentFrame(): TaskFrame | undefined {
  return frames.getStore();
}

/** Runs `fn` as a task of `context` (its proxy calls use `context`'s threads). */
export function runInFrame<T>(context: ThreadContext, fn: () => T, task?: TaskControl): T {
  return frames.run({ context, task, waits: 0 }, fn);
}

/**
 * One (ThreadContext, Connection) → Thread capability entry: upstream's `ProxyClient<Thread>` in a
 * `ConnThreads` map. It owns one reference to the Thread capability.
 *
 * Teardown is safe in either order (libmultiprocess.md §5): registration adds a disconnect cleanup
 * to the Connection; if the Connection goes first, that cleanup marks the entry `destroyed`, removes
 * it from its map and releases the capability; if the entry goes first, {@link destroy} runs inside
 * `loop.sync` (the barrier every Connection mutation goes through), sees `destroyed === false` and
 * the cleanup still registered, so the Connection is still alive and `removeSyncCleanup` is valid.
 * Maps are searched by Connection again at removal time, never through stale references.
 */
export class ThreadEntry {
  readonly connection: Connection;
  #map: Map<Connection, ThreadEntry>;
  #cap: Capability | null;
  #cleanup: CleanupHandle | undefined;
  #destroyed = false;

  /** Takes ownership of `cap`. Loop thread only. */
  constructor(map: Map<Connection, ThreadEntry>, connection: Connection, cap: Capability) {
    this.connection = connection;
    this.#map = map;
    this.#cap = cap;
    connection.loop.sync(() => {
      this.#cleanup = connection.addSyncCleanup(() => {
        // Connection first: it has spliced this callback out, so we must not remove it again.
        this.#cleanup = undefined;
        this.#drop();
      });
    });
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** The Thread capability (borrowed: dup() it to keep it). Null once destroyed. */
  get cap(): Capability | null {
    return this.#cap;
  }

  /** Entry first: unregister from the Connection and release the capability. Idempotent. */
  destroy(): void {
    this.connection.loop.sync(() => {
      if (this.#destroyed) return;
      if (this.#cleanup !== undefined) {
        this.connection.removeSyncCleanup(this.#cleanup);
        this.#cleanup = undefined;
      }
      this.#drop();
    });
  }

  #drop(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#map.get(this.connection) === this) this.#map.delete(this.connection);
    const cap = this.#cap;
    this.#cap = null;
    cap?.close();
  }
}

export interface ThreadContextOptions {
  /** Where tasks addressed to this context's callback Thread run. Default: a {@link FifoExecutor}. */
  executor?: ThreadExecutor;
}

/** See the module comment. */
export class ThreadContext {
  readonly loop: EventLoop;
  /** Long thread name (`exe-pid/name`), sent as `makeThread(name)` and returned by `getName`. */
  readonly name: string;
  readonly executor: ThreadExecutor;
  /** Connection → the peer Thread our calls run on. */
  readonly requestThreads = new Map<Connection, ThreadEntry>();
  /** Connection → our callback Thread, as sent to that peer. */
  readonly callbackThreads = new Map<Connection, ThreadEntry>();
  #closed = false;

  constructor(loop: EventLoop, name: string, opts: ThreadContextOptions = {}) {
    this.loop = loop;
    this.name = name;
    this.executor = opts.executor ?? new FifoExecutor();
  }

  /** The context proxy calls made right now belong to: the running task's, else the loop's. */
  static current(loop: EventLoop): ThreadContext {
    const frame = currentFrame();
    if (frame && frame.context.loop === loop) return frame.context;
    return loop.threadContext;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sets the request Thread for `connection` if none is set (upstream `SetThread`'s try_emplace).
   * Takes ownership of `cap` either way. Returns the entry it inserted, or undefined if an entry
   * existed (then `cap` is closed).
   */
  setRequestThread(connection: Connection, cap: Capability): ThreadEntry | undefined {
    if (this.requestThreads.has(connection) || connection.state !== "open") {
      cap.close();
      return undefined;
    }
    const entry = new ThreadEntry(this.requestThreads, connection, cap);
    this.requestThreads.set(connection, entry);
    return entry;
  }

  /**
   * Drops every entry (thread exit / worker detach). Loop thread only; idempotent. Entries are
   * detached from the maps first and destroyed afterwards, like upstream's open PR #335, so a
   * destroy that triggers more teardown never sees a half-iterated map.
   */
  close(): void {
    this.#closed = true;
    const entries = [...this.requestThreads.values(), ...this.callbackThreads.values()];
    for (const e of entries) e.destroy();
  }
}
