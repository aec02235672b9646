/**
 * EventLoop: the object that owns everything touching sockets and RPC tables on one thread, after
 * upstream's `mp::EventLoop` (proxy-io.h). In Node the thread's own event loop does the I/O; this
 * class adds what upstream's loop adds on top of KJ: a FIFO `post` queue, `sync`, reference counting
 * (`ref()` → {@link EventLoopRef}), a completion promise, the async-cleanup queue for server
 * implementations, testing hooks, logging, and a registry of named request handlers through which
 * the worker glue (`@multiprocess-ts/node`) forwards cross-thread post/sync requests.
 *
 * Owns: the post queue, the async-cleanup queue, the handler registry, the loop thread's
 * ThreadContext, the reference count.
 *
 * Threading: an EventLoop belongs to the thread that created it ("the loop thread"); every method
 * must be called there (JS objects cannot be shared between threads, so other threads reach it
 * only through the handlers registered with {@link EventLoop.handle}). Nothing here blocks.
 */
import { deferred, type Deferred } from "@multiprocess-ts/capnp";
import { envLogOptions, levelIndex, longThreadName, truncate, type LogFn, type LogLevel, type LogOptions } from "./log.js";
import { ThreadContext } from "./threads/thread-context.js";
import { errorText } from "./util.js";

/**
 * Named testing hooks (upstream `testing_hook_*`), no-ops unless set. Race tests use them to pin
 * interleavings instead of sleeping. All run on the loop thread, synchronously.
 */
export interface TestingHooks {
  /** Server ThreadMap.makeThread was called, before the server Thread exists. */
  makeThread?: () => void;
  /** Server ThreadMap.makeThread created the Thread, before it is returned. */
  makeThreadCreated?: () => void;
  /** A request with a Context starts executing on its server Thread. */
  asyncRequestStart?: () => void;
  /** A request with a Context finished executing, just before its results are returned. */
  asyncRequestDone?: () => void;
  /** serveTransport: a client connected (its Connection exists). */
  connected?: () => void;
  /** serveTransport: that client's Connection has been torn down. */
  disconnected?: () => void;
}

export interface EventLoopOptions {
  log?: LogOptions | LogFn;
  hooks?: TestingHooks;
  /** Opaque application value (upstream `m_context`). */
  context?: unknown;
  /**
   * Default of `ConnectionOptions.errorStacks` for this loop's connections: send a server error's
   * stack to the peer (its `RemoteError.remoteStack`). Off by default (a stack reveals file paths).
   */
  errorStacks?: boolean;
}

/** A handler reachable by name from other threads (data and MessagePorts only). */
export type LoopHandler = (data: unknown) => unknown;

/**
 * One reference keeping an {@link EventLoop} from completing (upstream `EventLoopRef`). Dispose it
 * (or call `reset()`) exactly when done; both are idempotent.
 *
 * Threading: loop thread only.
 */
export class EventLoopRef implements Disposable {
  #loop: EventLoop | undefined;

  /** @internal use {@link EventLoop.ref} */
  constructor(loop: EventLoop, token: typeof REF_TOKEN) {
    if (token !== REF_TOKEN) throw new TypeError("use EventLoop.ref()");
    this.#loop = loop;
  }

  get loop(): EventLoop | undefined {
    return this.#loop;
  }

  get active(): boolean {
    return this.#loop !== undefined;
  }

  reset(): void {
    const loop = this.#loop;
    if (!loop) return;
    this.#loop = undefined;
    loop[RELEASE_REF]();
  }

  [Symbol.dispose](): void {
    this.reset();
  }
}

const REF_TOKEN: unique symbol = Symbol("EventLoopRef");
/** `levelIndex` as a lookup (logEnabled runs on every call). */
const LEVEL_INDEX: Readonly<Record<string, number>> = { trace: 0, debug: 1, info: 2, warning: 3, error: 4 };
const RELEASE_REF: unique symbol = Symbol("releaseRef");

/** See the module comment. */
export class EventLoop {
  /** Short name (`loop` part of `exe-pid/loop`). */
  readonly name: string;
  /** Long name `exe-pid/name`, the prefix of every log line. */
  readonly threadName: string;
  /** Testing hooks; tests assign fields directly (`loop.hooks.connected = ...`). */
  readonly hooks: TestingHooks;
  readonly context: unknown;
  /** See {@link EventLoopOptions.errorStacks}. */
  readonly errorStacks: boolean;

  #logFn: LogFn | undefined;
  #logLevel: number;
  #maxChars: number;

  #refs = 0;
  #posted: Array<() => void> = [];
  #postScheduled = false;
  #asyncCleanups: Array<() => unknown> = [];
  #asyncRunning = false;
  #done: Deferred<void> | undefined;
  #doneCheckScheduled = false;
  #handlers = new Map<string, LoopHandler>();
  #threadContext: ThreadContext | undefined;
  #requestCounter = 0;

  constructor(name: string, opts: EventLoopOptions = {}) {
    this.name = name;
    this.threadName = longThreadName(name);
    this.hooks = opts.hooks ?? {};
    this.context = opts.context;
    this.errorStacks = opts.errorStacks === true;
    // Without a `log` option, MPTS_TRACE=1 / DEBUG=multiprocess-ts:* turn tracing on (log.ts).
    const log: LogOptions = typeof opts.log === "function" ? { logFn: opts.log } : opts.log ?? envLogOptions() ?? {};
    this.#logFn = log.logFn;
    this.#logLevel = levelIndex(log.level ?? "info");
    this.#maxChars = log.maxChars ?? 200;
  }

  // ---------------------------------------------------------------------------------------------
  // post / sync

  /**
   * Queues `fn` to run on the loop thread in a later turn (a `setImmediate` batch), FIFO with every
   * other posted function. Exceptions are logged at "error" and do not stop the queue (upstream
   * #260). Takes ownership of `fn`; it runs at most once.
   */
  post(fn: () => void): void {
    this.#posted.push(fn);
    if (!this.#postScheduled) {
      this.#postScheduled = true;
      setImmediate(() => this.#drainPosted());
    }
  }

  /**
   * Runs `fn` now and returns its result (upstream `sync` on the loop thread runs inline). Used as
   * the barrier for code that mutates Connection state: on the loop thread it is simply a call, but
   * every such mutation goes through it so that the worker glue can route the same code here.
   */
  sync<T>(fn: () => T): T {
    return fn();
  }

  #drainPosted(): void {
    // Functions posted while draining run in this batch too: FIFO is preserved either way.
    while (this.#posted.length > 0) {
      const fn = this.#posted.shift()!;
      try {
        fn();
      } catch (e) {
        this.log("error", `uncaught exception in posted function: ${errorText(e)}`);
      }
    }
    this.#postScheduled = false;
    this.#checkDone();
  }

  // ---------------------------------------------------------------------------------------------
  // references and completion

  /** Takes one reference; the loop is not done while any reference is held. */
  ref(): EventLoopRef {
    this.#refs++;
    return new EventLoopRef(this, REF_TOKEN);
  }

  /** Number of live {@link EventLoopRef}s (upstream `m_num_refs`). Tests compare it to a baseline. */
  get numRefs(): number {
    return this.#refs;
  }

  /** Functions waiting in the post queue plus async cleanups not yet finished. */
  get pendingWork(): number {
    return this.#posted.length + this.#asyncCleanups.length + (this.#asyncRunning ? 1 : 0);
  }

  /**
   * Settles (never rejects) the next time no references are held, the post queue is empty and the
   * async-cleanup queue has drained: upstream's `loop()` returning. If that is already the case it
   * settles on a later turn. Each idle moment settles the promises obtained before it.
   */
  get done(): Promise<void> {
    if (!this.#done) this.#done = deferred<void>();
    const p = this.#done.promise;
    if (!this.#doneCheckScheduled) {
      this.#doneCheckScheduled = true;
      setImmediate(() => {
        this.#doneCheckScheduled = false;
        this.#checkDone();
      });
    }
    return p;
  }

  /** Same as {@link done}, as a method (upstream `loop()`). */
  run(): Promise<void> {
    return this.done;
  }

  [RELEASE_REF](): void {
    this.#refs--;
    if (this.#refs < 0) throw new Error("EventLoopRef released more often than taken");
    this.#checkDone();
  }

  #isIdle(): boolean {
    return this.#refs === 0 && this.#posted.length === 0 && this.#asyncCleanups.length === 0 && !this.#asyncRunning;
  }

  #checkDone(): void {
    if (!this.#done || !this.#isIdle()) return;
    const d = this.#done;
    this.#done = undefined;
    d.resolve();
  }

  // ---------------------------------------------------------------------------------------------
  // async cleanup

  /**
   * Queues `fn` (typically disposing a server implementation) to run off the current call stack:
   * each runs in its own `setImmediate` callback, never inline, FIFO; a returned promise is awaited
   * before the next one starts. Errors are logged at "error", never thrown. The loop is not `done`
   * until the queue has drained, so graceful shutdown runs every queued cleanup.
   * Takes ownership of `fn`.
   */
  addAsyncCleanup(fn: () => unknown): void {
    this.#asyncCleanups.push(fn);
    if (!this.#asyncRunning) {
      this.#asyncRunning = true;
      setImmediate(() => void this.#runAsyncCleanups());
    }
  }

  async #runAsyncCleanups(): Promise<void> {
    while (this.#asyncCleanups.length > 0) {
      const fn = this.#asyncCleanups.shift()!;
      try {
        await fn();
      } catch (e) {
        this.log("error", `async cleanup failed: ${errorText(e)}`);
      }
      if (this.#asyncCleanups.length > 0) await new Promise<void>((r) => setImmediate(r));
    }
    this.#asyncRunning = false;
    this.#checkDone();
  }

  // ---------------------------------------------------------------------------------------------
  // named handlers (cross-thread requests from the worker glue)

  /**
   * Registers `fn` under `name`; the worker glue calls {@link dispatch} when a request for it
   * arrives from another thread. Names are unique per loop. Returns a Disposable that unregisters.
   * `fn` receives and returns structured-cloneable data (and MessagePorts) only.
   */
  handle(name: string, fn: LoopHandler): Disposable {
    if (this.#handlers.has(name)) throw new Error(`EventLoop handler "${name}" already registered`);
    this.#handlers.set(name, fn);
    return {
      [Symbol.dispose]: () => {
        if (this.#handlers.get(name) === fn) this.#handlers.delete(name);
      },
    };
  }

  hasHandler(name: string): boolean {
    return this.#handlers.has(name);
  }

  /**
   * Runs the handler `name` with `data` through the post queue (FIFO with other posted work) and
   * resolves with its (awaited) result; rejects if there is no such handler or it throws.
   */
  dispatch(name: string, data: unknown): Promise<unknown> {
    const d = deferred<unknown>();
    this.post(() => {
      const fn = this.#handlers.get(name);
      if (!fn) {
        d.reject(new Error(`no EventLoop handler "${name}"`));
        return;
      }
      try {
        Promise.resolve(fn(data)).then(d.resolve, d.reject);
      } catch (e) {
        d.reject(e);
      }
    });
    return d.promise;
  }

  // ---------------------------------------------------------------------------------------------
  // thread context, logging

  /** The loop thread's own {@link ThreadContext}, used by proxy calls made on this thread. */
  get threadContext(): ThreadContext {
    if (!this.#threadContext) this.#threadContext = new ThreadContext(this, this.threadName);
    return this.#threadContext;
  }

  /** @internal next request number for log lines (upstream `req`). */
  nextRequestNumber(): number {
    return ++this.#requestCounter;
  }

  logEnabled(level: LogLevel): boolean {
    return this.#logFn !== undefined && (LEVEL_INDEX[level] ?? levelIndex(level)) >= this.#logLevel;
  }

  /** Logs `{threadName} message` if `level` passes the filter. Never throws. */
  log(level: LogLevel, message: string): void {
    if (!this.logEnabled(level)) return;
    try {
      this.#logFn!(level, `{${this.threadName}} ${message}`);
    } catch {
      // A throwing log function must not break cleanup paths (STYLE 5).
    }
  }

  /** Cuts a message dump to the configured `maxChars`. */
  truncate(text: string): string {
    return truncate(text, this.#maxChars);
  }
}
