/**
 * Loop side of worker attachment: a {@link WorkerHost} hands out {@link LoopHandle}s, and runs the
 * requests that attached workers send (`post`/`sync`) as registered handlers on the loop thread.
 *
 * Upstream counterpart: `EventLoop::post`/`sync` (proxy-io.h), where any thread can hand the loop
 * thread a function. Threads in Node share no closures, so a worker names a handler the loop
 * registered and sends data (and MessagePorts) for it. The worker half is attach.ts.
 *
 * Owns: the sessions (one per handed-out LoopHandle: its port, shared state words, cleanups), the
 * handler registry and channel listeners. Threading: loop thread only.
 */
import { MessageChannel, type MessagePort } from "node:worker_threads";
import { DisconnectedError } from "@multiprocess-ts/capnp";
import {
  CLOSED,
  INTERRUPT,
  RPC_CHANNEL,
  STATE_WORDS,
  WAITERS,
  WAKE,
  checkTransferable,
  cloneError,
  encodeError,
  type ChannelMsg,
  type LoopHandle,
  type ToLoop,
  type ToWorker,
} from "./protocol.js";
import { markLoopThread, unmarkLoopThread } from "./blocking.js";

export type LogLevel = "trace" | "debug" | "info" | "warning" | "error";
export type LogFn = (level: LogLevel, msg: string) => void;

/**
 * A request handler registered on the loop. Runs on the loop thread with the data the worker sent;
 * for `sync` its (awaited) return value goes back to the worker, and so does what it throws.
 * Handlers of one session start in the order the worker sent them (see `WorkerSession`).
 */
export type LoopHandler = (data: unknown, from: WorkerSession) => unknown;

/** Channel listeners (RPC bridges) get every `ch` message of a session with the body. */
export type ChannelListener = (body: unknown, from: WorkerSession) => void;

export interface WorkerHostOptions {
  /** Loop name, shown to workers and in logs. */
  name?: string;
  log?: LogFn;
  /**
   * Called once per session when it opens; the returned Disposable is disposed when it closes.
   * `workerHost(loop)` passes `() => loop.ref()` so an attached worker keeps the loop running.
   */
  ref?: () => Disposable;
  /**
   * Runs requests for names not registered on this host; `workerHost(loop)` passes the runtime
   * EventLoop's registry (`loop.handle(name, fn)` / `loop.dispatch(name, data)`).
   */
  dispatch?: (name: string, data: unknown, from: WorkerSession) => Promise<unknown>;
}

/**
 * Testing hooks (STYLE point 10): no-ops unless set. Race tests use them to stop a session at an
 * exact point instead of sleeping.
 */
export interface WorkerHostHooks {
  /** A session is closing; runs before its cleanups. */
  sessionClosing?: (s: WorkerSession) => void;
  /** A session finished closing (cleanups done, ref released). */
  sessionClosed?: (s: WorkerSession) => void;
  /** A post/sync handler is about to run. */
  handlerStart?: (name: string, s: WorkerSession) => void;
}

/**
 * The loop-thread registry of request handlers and attached-worker sessions.
 *
 * Threads: every method must be called on the loop thread that created the host. It never blocks.
 * After `close()`: `handle()` throws, open sessions are closed (workers blocked in `sync` wake up
 * with a DisconnectedError).
 */
export class WorkerHost {
  readonly name: string;
  readonly hooks: WorkerHostHooks = {};
  private readonly handlers = new Map<string, LoopHandler>();
  private readonly channels = new Map<string, ChannelListener>();
  private readonly openSessions = new Set<WorkerSession>();
  private readonly sessionOpenCbs = new Set<(s: WorkerSession) => void>();
  private nextSession = 1;
  private closedFlag = false;
  /** @internal */
  readonly log: LogFn;
  /** @internal */
  readonly refFn: (() => Disposable) | undefined;
  /** @internal */
  readonly fallbackDispatch: WorkerHostOptions["dispatch"];

  constructor(opts: WorkerHostOptions = {}) {
    this.name = opts.name ?? "loop";
    this.log = opts.log ?? (() => {});
    this.refFn = opts.ref;
    this.fallbackDispatch = opts.dispatch;
    markLoopThread();
  }

  /**
   * Registers `fn` as handler `name`. Returns a function that unregisters it. A name can hold one
   * handler; registering it twice throws.
   */
  register(name: string, fn: LoopHandler): () => void {
    if (typeof fn !== "function") throw new TypeError("WorkerHost.register: handler must be a function");
    if (this.handlers.has(name)) throw new Error(`WorkerHost.register: handler "${name}" is already registered`);
    this.handlers.set(name, fn);
    return () => {
      if (this.handlers.get(name) === fn) this.handlers.delete(name);
    };
  }

  /** @internal Bridge modules receive `ch` messages for channel `ch`. One listener per channel. */
  listen(ch: string, fn: ChannelListener): () => void {
    if (this.channels.has(ch)) throw new Error(`WorkerHost.listen: channel "${ch}" is taken`);
    this.channels.set(ch, fn);
    return () => {
      if (this.channels.get(ch) === fn) this.channels.delete(ch);
    };
  }

  /** @internal Called for each new session (and, at registration, for the open ones). */
  onSession(cb: (s: WorkerSession) => void): () => void {
    this.sessionOpenCbs.add(cb);
    for (const s of this.openSessions) cb(s);
    return () => this.sessionOpenCbs.delete(cb);
  }

  /**
   * A new handle for one worker: pass it in `workerData`, with `loopHandleTransferList(handle)` as
   * the transfer list. The session opens now; it closes when the worker exits (or is terminated),
   * closes its port, calls `WorkerLoop.close()`, or when this host closes. A handle that is never
   * sent anywhere keeps its session open until `host.close()`.
   */
  handle(opts: { name?: string } = {}): LoopHandle {
    if (this.closedFlag) throw new DisconnectedError(`WorkerHost "${this.name}" is closed`);
    const { port1, port2 } = new MessageChannel();
    const shared = new SharedArrayBuffer(STATE_WORDS * 4);
    const id = this.nextSession++;
    const session = new WorkerSession(this, id, opts.name ?? `worker-${id}`, port1, new Int32Array(shared));
    this.openSessions.add(session);
    for (const cb of this.sessionOpenCbs) {
      try {
        cb(session);
      } catch (e) {
        this.log("error", `WorkerHost: session listener threw: ${String(e)}`);
      }
    }
    return { kind: "multiprocess-ts/loop-handle", loopName: this.name, session: id, name: session.name, port: port2, shared };
  }

  /** Sessions currently open (attached or not yet attached workers). */
  get sessions(): ReadonlySet<WorkerSession> {
    return this.openSessions;
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Closes every session and refuses new handles. Idempotent. */
  async close(reason?: Error): Promise<void> {
    if (!this.closedFlag) {
      this.closedFlag = true;
      unmarkLoopThread();
    }
    await Promise.all([...this.openSessions].map((s) => s.close(reason)));
  }

  /** @internal */
  handlerFor(name: string): LoopHandler | undefined {
    return this.handlers.get(name);
  }

  /** @internal */
  channelFor(ch: string): ChannelListener | undefined {
    return this.channels.get(ch);
  }

  /** @internal */
  forget(s: WorkerSession): void {
    this.openSessions.delete(s);
  }
}

/**
 * The loop side of one attached worker (one {@link LoopHandle}).
 *
 * Threads: loop thread only. The session owns `port` and a loop ref; both go when it closes.
 * Cleanups registered with `onClose` run once, last registered first, when it closes; that is
 * where per-worker state (its ThreadContext, exported callbacks, in-flight calls) is disposed.
 */
export class WorkerSession {
  private state: "open" | "closing" | "closed" = "open";
  private readonly cleanups: { fn: (reason: Error) => void }[] = [];
  private loopRef: Disposable | undefined;
  private readonly closedDeferred: { promise: Promise<void>; resolve: () => void };
  private closeReason: Error | undefined;

  /** @internal */
  constructor(
    readonly host: WorkerHost,
    readonly id: number,
    readonly name: string,
    private readonly port: MessagePort,
    private readonly shared: Int32Array,
  ) {
    let resolve!: () => void;
    this.closedDeferred = { promise: new Promise<void>((r) => (resolve = r)), resolve };
    this.loopRef = host.refFn?.();
    port.on("message", (m: ToLoop | ArrayBuffer) => this.onMessage(m));
    // 'close' fires when either end goes away: the worker exited or was terminated (its end is
    // closed by Node), or it closed the port itself.
    port.on("close", () => void this.close(new DisconnectedError(`worker "${this.name}" went away`)));
  }

  /** True once close has started. */
  get isClosed(): boolean {
    return this.state !== "open";
  }

  /** Settles after close finished (cleanups ran, ref released). */
  get closed(): Promise<void> {
    return this.closedDeferred.promise;
  }

  /** Why the session closed (undefined while open). */
  get reason(): Error | undefined {
    return this.closeReason;
  }

  /**
   * Registers a cleanup to run when the session closes (immediately, with the close reason, if it
   * already has). Returns an unregister function; unregistering a cleanup that is running or has
   * run is a no-op (compare upstream `removeSyncCleanup`, whose misuse was #189 problem 1).
   */
  onClose(fn: (reason: Error) => void): () => void {
    if (this.state !== "open") {
      this.runCleanup(fn, this.closeReason ?? new DisconnectedError("session closed"));
      return () => {};
    }
    const entry = { fn };
    this.cleanups.push(entry);
    return () => {
      const i = this.cleanups.indexOf(entry);
      if (i >= 0) this.cleanups.splice(i, 1);
    };
  }

  /**
   * @internal Posts `msg` to the worker and wakes it if it is blocked. Dropped after close.
   * Throws a TypeError (and sends nothing) when `msg` holds something that cannot be cloned.
   */
  send(msg: ToWorker, transfer: readonly MessagePort[] = []): void {
    if (this.state !== "open") return;
    try {
      this.port.postMessage(msg, transfer as MessagePort[]);
    } catch (e) {
      throw cloneError(e, `message to worker "${this.name}"`);
    }
    // The message is in the worker's queue before the counter moves, so a worker that sees the
    // new count always finds it with receiveMessageOnPort.
    this.wake();
  }

  /**
   * Bumps WAKE after a message was posted, and notifies only when the worker is in a blocking
   * wait (protocol.ts, WAITERS): a worker that awaits its calls is woken by the port alone.
   */
  private wake(): void {
    Atomics.add(this.shared, WAKE, 1);
    if (Atomics.load(this.shared, WAITERS) !== 0) Atomics.notify(this.shared, WAKE);
  }

  /**
   * The shared cancel flag: every blocking wait the worker is in right now (`sync`, `callSync`,
   * `getSync`, `Waiter.wait`) throws CanceledError; waits it starts later are not affected. What
   * the worker was waiting for goes on (a call is not canceled by this). No-op after close.
   */
  interrupt(): void {
    if (this.state !== "open") return;
    Atomics.add(this.shared, INTERRUPT, 1);
    Atomics.add(this.shared, WAKE, 1);
    Atomics.notify(this.shared, WAKE);
  }

  /**
   * @internal Sends an RPC frame (protocol.ts, "flat frames"): a bare ArrayBuffer, transferred,
   * then wakes the worker as {@link send} does. Dropped after close.
   */
  sendFrame(frame: ArrayBuffer): void {
    if (this.state !== "open") return;
    this.port.postMessage(frame, [frame]);
    this.wake();
  }

  /** @internal Sends a bridge-channel message. */
  sendChannel(ch: string, body: unknown, transfer: readonly MessagePort[] = []): void {
    const msg: ChannelMsg = { t: "ch", ch, body };
    this.send(msg, transfer);
  }

  /**
   * Closes the session: runs cleanups (LIFO), releases the loop ref, wakes a worker blocked on
   * this loop (its wait fails with DisconnectedError), closes the port. Idempotent. Handlers
   * still running finish and see `isClosed`; their replies are dropped.
   */
  async close(reason?: Error): Promise<void> {
    if (this.state !== "open") return this.closedDeferred.promise;
    this.state = "closing";
    const why = reason ?? new DisconnectedError(`worker session "${this.name}" closed`);
    this.closeReason = why;
    this.host.hooks.sessionClosing?.(this);
    // Tell a live worker first, while the port still works, then set the flag it polls.
    try {
      this.port.postMessage({ t: "bye", reason: encodeError(why) } satisfies ToWorker);
    } catch {
      // port already closed: the worker is gone
    }
    Atomics.store(this.shared, CLOSED, 1);
    Atomics.add(this.shared, WAKE, 1);
    Atomics.notify(this.shared, WAKE);
    while (this.cleanups.length > 0) {
      // Detach before running (as ~Connection splices), so a running cleanup may unregister
      // others, and nobody can unregister the one that runs.
      const entry = this.cleanups.pop()!;
      this.runCleanup(entry.fn, why);
    }
    try {
      this.loopRef?.[Symbol.dispose]();
    } catch (e) {
      this.host.log("error", `WorkerSession "${this.name}": releasing loop ref threw: ${String(e)}`);
    }
    this.loopRef = undefined;
    this.port.close();
    this.host.forget(this);
    this.state = "closed";
    this.host.hooks.sessionClosed?.(this);
    this.closedDeferred.resolve();
    return this.closedDeferred.promise;
  }

  private runCleanup(fn: (reason: Error) => void, why: Error): void {
    try {
      fn(why);
    } catch (e) {
      // Cleanup never throws (STYLE point 5): log and go on with the next one.
      this.host.log("error", `WorkerSession "${this.name}": cleanup threw: ${String(e)}`);
    }
  }

  private onMessage(m: ToLoop | ArrayBuffer): void {
    // A bare ArrayBuffer is an RPC frame (protocol.ts, "flat frames"): no other message is one.
    if (m instanceof ArrayBuffer) {
      this.toChannel(RPC_CHANNEL, m);
      return;
    }
    switch (m.t) {
      case "post":
      case "sync":
        this.runHandler(m.name, m.data, m.t === "sync" ? m.id : undefined);
        return;
      case "detach":
        void this.close(new DisconnectedError(`worker "${this.name}" detached`));
        return;
      case "ch":
        this.toChannel(m.ch, m.body);
        return;
      default:
        this.host.log("error", `WorkerSession "${this.name}": unknown message ${JSON.stringify((m as { t?: unknown }).t)}`);
    }
  }

  private toChannel(ch: string, body: unknown): void {
    const l = this.host.channelFor(ch);
    if (l === undefined) {
      this.host.log("warning", `WorkerSession "${this.name}": message for unknown channel "${ch}"`);
      return;
    }
    try {
      l(body, this);
    } catch (e) {
      this.host.log("error", `WorkerSession "${this.name}": channel "${ch}" listener threw: ${String(e)}`);
    }
  }

  // Handlers start in arrival order (messages on one port are FIFO, and each starts in the turn
  // its message arrives). An async handler does not hold up the next one: a handler that awaits
  // something only the same worker can do (a callback it runs while blocked in sync) must not
  // deadlock. So `sync` returning means its own handler has settled and every earlier post's
  // handler has started (and, if synchronous, finished).
  private runHandler(name: string, data: unknown, replyId: number | undefined): void {
    let result: Promise<unknown>;
    try {
      const fn = this.host.handlerFor(name);
      this.host.hooks.handlerStart?.(name, this);
      if (fn !== undefined) result = Promise.resolve(fn(data, this));
      else if (this.host.fallbackDispatch !== undefined) result = this.host.fallbackDispatch(name, data, this);
      else throw new Error(`no handler "${name}" is registered on loop "${this.host.name}"`);
    } catch (e) {
      result = Promise.reject(e);
    }
    result.then(
      (value) => {
        if (replyId !== undefined) this.reply(replyId, true, value);
      },
      (e: unknown) => {
        if (replyId !== undefined) this.reply(replyId, false, e);
        else this.host.log("error", `post "${name}" from worker "${this.name}" failed: ${String(e)}`);
      },
    );
  }

  private reply(id: number, ok: boolean, value: unknown): void {
    if (ok) {
      try {
        const ports = checkTransferable(value, `reply to worker "${this.name}"`);
        this.send({ t: "reply", id, ok: true, value }, ports);
        return;
      } catch (e) {
        ok = false;
        value = e;
      }
    }
    try {
      this.send({ t: "reply", id, ok: false, error: encodeError(value) });
    } catch (e) {
      this.host.log("error", `WorkerSession "${this.name}": could not send reply: ${String(e)}`);
    }
  }
}

const hosts = new WeakMap<object, WorkerHost>();

/** What `workerHost()` needs from a runtime EventLoop. */
export interface LoopLike {
  readonly name?: string;
  ref(): Disposable;
  /** The runtime EventLoop's handler registry, used for names the host does not know. */
  dispatch?(name: string, data: unknown): Promise<unknown>;
}

/**
 * The WorkerHost of `loop`, created on first use; each attached worker holds a `loop.ref()` while
 * its session is open, and requests for handlers registered with `loop.handle(name, fn)` run
 * through `loop.dispatch`. Loop thread only.
 */
export function workerHost(loop: LoopLike, opts: Omit<WorkerHostOptions, "ref"> = {}): WorkerHost {
  let h = hosts.get(loop);
  if (h === undefined || h.isClosed) {
    const dispatch = loop.dispatch === undefined ? undefined : (n: string, d: unknown) => loop.dispatch!(n, d);
    h = new WorkerHost({ name: loop.name, ...opts, ref: () => loop.ref(), dispatch });
    hosts.set(loop, h);
  }
  return h;
}
