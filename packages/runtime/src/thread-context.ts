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

  private done(): void {
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

/** @internal */
export function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  if (v instanceof Promise) return true;
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof (v as { then?: unknown }).then === "function";
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
}

/** What runs "on" a logical thread: found with {@link currentFrame} from inside a task. */
export interface TaskFrame {
  readonly context: ThreadContext;
  /** The executor's control for this task (absent for frames entered with runInFrame alone). */
  readonly task: TaskControl | undefined;
  /** Outgoing IPC calls this task is waiting for (maintained by the proxy layer). */
  waits: number;
}

/*
 * Finding the current frame. Proxy calls made by a task must find it even after an `await`, which
 * only AsyncLocalStorage can do; but an enabled AsyncLocalStorage turns on promise hooks for the
 * whole process (every promise costs more). So:
 *  - `syncFrame` is the frame whose synchronous code is running (set around each task's start):
 *    calls made before a task's first await (the common case) need no lookup at all;
 *  - `frames` (AsyncLocalStorage) carries the frame across awaits. It is enabled only while at least
 *    one frame is live (`liveFrames`, a task started and not yet settled) and disabled again when
 *    the last one settles, so a process (or a period) without thread-mapped tasks runs without
 *    promise hooks. Work a task leaves running after it settled (a promise it did not await) may
 *    not see its frame any more; such work runs as the loop thread's.
 */
const frames = new AsyncLocalStorage<TaskFrame>();
let syncFrame: TaskFrame | undefined;
let liveFrames = 0;

/** The frame of the server Thread task we are running in, if any (survives awaits). */
export function currentFrame(): TaskFrame | undefined {
  if (syncFrame !== undefined) return syncFrame;
  return liveFrames > 0 ? frames.getStore() : undefined;
}

/** Runs `fn` as a task of `context` (its proxy calls use `context`'s threads). */
export function runInFrame<T>(context: ThreadContext, fn: () => T, task?: TaskControl): T {
  return enterFrame({ context, task, waits: 0 }, fn);
}

/** @internal Runs `fn` in `frame` (see the comment above); the frame stays live until `fn` settles. */
export function enterFrame<T>(frame: TaskFrame, fn: () => T): T {
  const prev = syncFrame;
  syncFrame = frame;
  liveFrames++;
  let r: T;
  try {
    r = frames.run(frame, fn);
  } catch (e) {
    syncFrame = prev;
    leaveFrame();
    throw e;
  }
  syncFrame = prev;
  if (isThenable(r)) r.then(leaveFrame, leaveFrame);
  else leaveFrame();
  return r;
}

function leaveFrame(): void {
  if (--liveFrames === 0) frames.disable();
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
