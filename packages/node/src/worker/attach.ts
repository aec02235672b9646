/**
 * Worker side of worker attachment: `attachLoop(handle)` → {@link WorkerLoop}, whose `post` and
 * `sync` run handlers registered on the loop thread, and whose {@link Waiter} blocks the worker
 * (Atomics.wait) while still running what the loop posts to it. The loop half is host.ts.
 *
 * Owns: the worker's end of the session port and the shared state words it reads; its channel
 * listeners, pending sync requests, keep-alive count. Threading: the worker thread that attached.
 */
import { receiveMessageOnPort, type MessagePort } from "node:worker_threads";
import { CanceledError, DisconnectedError } from "@multiprocess-ts/capnp";
import {
  CLOSED,
  INTERRUPT,
  RPC_CHANNEL,
  WAITERS,
  WAKE,
  checkTransferable,
  cloneError,
  decodeError,
  isLoopHandle,
  type LoopHandle,
  type ToLoop,
  type ToWorker,
} from "./protocol.js";
import { assertMayBlock, runPromiseJobs } from "./blocking.js";

/**
 * Blocks the worker thread until a condition holds, running meanwhile every message the loop
 * posts to it (replies, callbacks). Upstream `Waiter` (proxy-io.h): there a mutex + condvar with
 * a one-slot function queue; here the Int32 wake counter the loop bumps after each message, and
 * `receiveMessageOnPort`.
 *
 * Lost wake-ups cannot happen: the counter is read *before* the port is drained, and
 * `Atomics.wait` returns at once when it moved since, so a message that lands between the drain
 * and the wait is picked up by the next round (the `while (m_fn)` of upstream #295).
 *
 * Threads: one per WorkerLoop, used only on its worker thread; never on a loop thread.
 */
export class Waiter {
  private depth = 0;

  /** @internal */
  constructor(
    private readonly port: MessagePort,
    private readonly state: Int32Array,
    private readonly dispatch: (m: ToWorker | ArrayBuffer) => void,
  ) {}

  /** How many `wait` calls are active on this thread (nested waits from callbacks count). */
  get waiting(): number {
    return this.depth;
  }

  /**
   * Runs messages from the loop (and, when `promiseJobs` is set and possible, the thread's promise
   * jobs) until `pred()` is true. `since`: the interrupt count to compare with (default: now). Throws DisconnectedError if the loop closes the session first,
   * CanceledError if the loop interrupts it (`WorkerSession.interrupt()`), and an Error on a loop
   * thread.
   */
  wait(pred: () => boolean, opts: { what?: string; promiseJobs?: boolean; since?: number } = {}): void {
    const what = opts.what ?? "Waiter.wait";
    assertMayBlock(what);
    const interrupts = opts.since ?? this.interrupts();
    this.depth++;
    // Before the first read of WAKE: from now on the loop notifies after each message it posts.
    Atomics.add(this.state, WAITERS, 1);
    try {
      for (;;) {
        const seen = Atomics.load(this.state, WAKE);
        this.drain();
        if (opts.promiseJobs === true) runPromiseJobs();
        if (pred()) return;
        if (Atomics.load(this.state, CLOSED) === 1) {
          this.drain(); // take the bye message so the WorkerLoop knows why
          throw new DisconnectedError(`${what}: loop closed the worker session while waiting`);
        }
        if (Atomics.load(this.state, INTERRUPT) !== interrupts) {
          throw new CanceledError(`${what}: interrupted by the loop`);
        }
        Atomics.wait(this.state, WAKE, seen);
      }
    } finally {
      Atomics.sub(this.state, WAITERS, 1);
      this.depth--;
    }
  }

  /**
   * The interrupt count now. A blocking call reads it *before* it sends its request and passes it
   * as `since`, so an interrupt the loop makes after seeing the request always cancels the wait.
   */
  interrupts(): number {
    return Atomics.load(this.state, INTERRUPT);
  }

  /** Runs every message already queued on the port. */
  drain(): void {
    for (;;) {
      const r = receiveMessageOnPort(this.port);
      if (r === undefined) return;
      this.dispatch(r.message as ToWorker | ArrayBuffer);
    }
  }
}

/** @internal A bridge module's receiver for its channel. */
export type WorkerChannelListener = (body: unknown) => void;

let attached: WorkerLoop | undefined;
const usedPorts = new WeakSet<MessagePort>();

/**
 * A worker's connection to a loop thread.
 *
 * Threads: the worker thread that called `attachLoop`. `post` never blocks; `sync` and
 * `callSync` block this thread (never allowed on a loop thread) and run callbacks the loop sends
 * meanwhile. After the loop closes the session (or `close()`), every method throws
 * DisconnectedError, and blocked calls wake up with it.
 *
 * Ordering: posts and syncs from one WorkerLoop start on the loop in call order, so `sync`
 * returning means its handler has settled and every earlier `post` handler has started (and, if
 * synchronous, finished): the barrier.
 */
export class WorkerLoop {
  /** Name of the loop this worker is attached to. */
  readonly loopName: string;
  /** Loop-side session id. */
  readonly session: number;
  /** Loop-side session name. */
  readonly name: string;
  readonly waiter: Waiter;
  private readonly port: MessagePort;
  private readonly state: Int32Array;
  private nextId = 1;
  private readonly pending = new Map<number, { done: boolean; ok: boolean; value: unknown }>();
  private readonly channels = new Map<string, WorkerChannelListener>();
  private readonly closeCbs = new Set<(e: Error) => void>();
  private refs = 0;
  private closeError: Error | undefined;

  /** @internal use {@link attachLoop} */
  constructor(handle: LoopHandle) {
    this.loopName = handle.loopName;
    this.session = handle.session;
    this.name = handle.name;
    this.port = handle.port;
    this.state = new Int32Array(handle.shared);
    this.waiter = new Waiter(this.port, this.state, (m) => this.onMessage(m));
    this.port.on("message", (m: ToWorker | ArrayBuffer) => this.onMessage(m));
    this.port.on("close", () => this.markClosed(new DisconnectedError(`loop "${this.loopName}" went away`)));
    // Attachment alone does not keep the worker alive; pending calls do (see keepAlive).
    this.port.unref();
  }

  get isClosed(): boolean {
    return this.closeError !== undefined;
  }

  /**
   * Runs handler `name` on the loop with `data`, without waiting. `data` holds plain data and
   * MessagePorts (transferred); a function anywhere in it is a TypeError. Handler errors are
   * logged on the loop.
   */
  post(name: string, data?: unknown): void {
    const what = `WorkerLoop.post("${name}")`;
    const ports = checkTransferable(data, what);
    this.send({ t: "post", name, data }, ports, what);
  }

  /**
   * Runs handler `name` on the loop with `data` and blocks until it has run (and its returned
   * promise settled); returns its result or throws its error. While blocked, callbacks the loop
   * sends to this worker still run. Throws on a loop thread.
   */
  sync<T = unknown>(name: string, data?: unknown): T {
    const what = `WorkerLoop.sync("${name}")`;
    assertMayBlock(what);
    const ports = checkTransferable(data, what);
    const id = this.nextId++;
    const slot = { done: false, ok: false, value: undefined as unknown };
    this.pending.set(id, slot);
    const since = this.waiter.interrupts();
    try {
      this.send({ t: "sync", id, name, data }, ports, what);
      // Promise jobs run too when possible, so callbacks (whose servers are async) can finish.
      this.waiter.wait(() => slot.done, { what, promiseJobs: true, since });
    } finally {
      this.pending.delete(id);
    }
    if (!slot.ok) throw slot.value;
    return slot.value as T;
  }

  /**
   * Blocks until the promise `fn()` returns settles, and returns its value (or throws its error):
   * the synchronous way to call a proxy from a worker, e.g. `loop.callSync(() => foo.add(1, 2))`.
   * While blocked, the worker runs what the loop posts to it (callbacks, replies) and its own
   * promise jobs; timers and other I/O stay paused until it returns.
   *
   * Must be called from a macrotask (an event handler, timer or setImmediate callback), not from
   * a promise job or the top level of an ES module: Node runs no promise jobs inside a promise
   * job, so the call could never finish. That case, and a call on a loop thread, throw at once.
   */
  callSync<T>(fn: () => T | PromiseLike<T>): T {
    const what = "callSync";
    assertMayBlock(what);
    this.checkOpen(what);
    if (!runPromiseJobs()) {
      throw new Error(
        "callSync: cannot block inside a promise job (after an `await`, in a .then callback, or at " +
          "the top level of an ES module). Call it from an event handler, a timer or a setImmediate " +
          "callback, or use `await` instead.",
      );
    }
    const since = this.waiter.interrupts();
    const r = fn();
    if (!isThenable(r)) return r;
    let state = 0;
    let value: unknown;
    r.then(
      (v) => {
        state = 1;
        value = v;
      },
      (e: unknown) => {
        state = 2;
        value = e;
      },
    );
    this.waiter.wait(() => state !== 0, { what, promiseJobs: true, since });
    if (state === 2) throw value;
    return value as T;
  }

  /**
   * Keeps the worker thread alive (its port ref'd) until the returned Disposable is disposed.
   * Bridges hold one per in-flight call.
   */
  keepAlive(): Disposable {
    let done = false;
    this.hold();
    return {
      [Symbol.dispose]: () => {
        if (done) return;
        done = true;
        this.letGo();
      },
    };
  }

  /**
   * @internal {@link keepAlive} without the Disposable: each `hold` is matched by one `letGo`.
   * The port is ref'd while the count is above zero and unref'd when it drops to zero, at once:
   * a ref/unref pair is two native calls (~0.1 µs), cheaper than the `nextTick` a deferred unref
   * would schedule for every sequential call (and the tick-queue pass that tick costs the turn).
   * Liveness is only looked at when the turn ends, so a call that settles and the next one that
   * starts in the same turn never let the thread exit in between.
   */
  hold(): void {
    if (this.refs++ === 0) this.port.ref();
  }

  /** @internal See {@link hold}. */
  letGo(): void {
    if (--this.refs === 0) this.port.unref();
  }

  /** Runs `cb` once when the session closes (loop side closed it, or `close()`). */
  onClose(cb: (e: Error) => void): () => void {
    if (this.closeError !== undefined) {
      cb(this.closeError);
      return () => {};
    }
    this.closeCbs.add(cb);
    return () => this.closeCbs.delete(cb);
  }

  /** Detaches from the loop: the loop disposes this worker's state. Idempotent. */
  close(): void {
    if (this.closeError !== undefined) return;
    try {
      this.port.postMessage({ t: "detach" } satisfies ToLoop);
    } catch {
      // already gone
    }
    this.markClosed(new DisconnectedError(`worker detached from loop "${this.loopName}"`));
    this.port.close();
  }

  /** @internal */
  listen(ch: string, fn: WorkerChannelListener): () => void {
    if (this.channels.has(ch)) throw new Error(`WorkerLoop.listen: channel "${ch}" is taken`);
    this.channels.set(ch, fn);
    return () => {
      if (this.channels.get(ch) === fn) this.channels.delete(ch);
    };
  }

  /** @internal Throws DisconnectedError after close, TypeError on uncloneable data. */
  sendChannel(ch: string, body: unknown, transfer: readonly MessagePort[] = []): void {
    this.send({ t: "ch", ch, body }, transfer, ch);
  }

  /**
   * @internal Sends an RPC frame (protocol.ts, "flat frames"): a bare ArrayBuffer, transferred.
   * Throws DisconnectedError after close.
   */
  sendFrame(frame: ArrayBuffer): void {
    if (this.closeError !== undefined) this.checkOpen(`channel "${RPC_CHANNEL}"`);
    this.port.postMessage(frame, [frame]);
  }

  /** @internal */
  checkOpen(what: string): void {
    if (this.closeError !== undefined) {
      throw new DisconnectedError(`${what}: worker is not attached to loop "${this.loopName}" any more`, {
        cause: this.closeError,
      });
    }
  }

  // `what` names the request in errors; a channel message passes its channel's name only (the
  // text is made on failure, not per message: RPC calls go through here).
  private send(msg: ToLoop, transfer: readonly MessagePort[], what: string): void {
    if (this.closeError !== undefined) this.checkOpen(msg.t === "ch" ? `channel "${what}"` : what);
    try {
      this.port.postMessage(msg, transfer as MessagePort[]);
    } catch (e) {
      throw cloneError(e, msg.t === "ch" ? `channel "${what}"` : what);
    }
  }

  private onMessage(m: ToWorker | ArrayBuffer): void {
    // A bare ArrayBuffer is an RPC frame (protocol.ts, "flat frames"): no other message is one.
    if (m instanceof ArrayBuffer) {
      this.channels.get(RPC_CHANNEL)?.(m);
      return;
    }
    switch (m.t) {
      case "reply": {
        const slot = this.pending.get(m.id);
        if (slot === undefined) return; // its sync gave up (session closed)
        slot.done = true;
        slot.ok = m.ok;
        slot.value = m.ok ? m.value : decodeError(m.error!);
        return;
      }
      case "bye":
        this.markClosed(
          m.reason !== undefined ? decodeError(m.reason) : new DisconnectedError(`loop "${this.loopName}" closed`),
        );
        return;
      case "ch": {
        const l = this.channels.get(m.ch);
        if (l !== undefined) l(m.body);
        return;
      }
    }
  }

  private markClosed(e: Error): void {
    if (this.closeError !== undefined) return;
    this.closeError = e;
    if (attached === this) attached = undefined;
    for (const cb of [...this.closeCbs]) {
      try {
        cb(e);
      } catch {
        // cleanup never throws
      }
    }
    this.closeCbs.clear();
  }
}

function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return (typeof v === "object" || typeof v === "function") && v !== null && typeof (v as PromiseLike<T>).then === "function";
}

/**
 * Attaches this worker to the loop that created `handle` (received in `workerData`). A handle
 * attaches once. The returned WorkerLoop becomes this thread's current loop (see
 * {@link currentLoop}).
 */
export function attachLoop(handle: LoopHandle): WorkerLoop {
  if (!isLoopHandle(handle)) throw new TypeError("attachLoop: not a LoopHandle (pass WorkerHost.handle() in workerData)");
  if (usedPorts.has(handle.port)) throw new Error("attachLoop: this handle is already attached");
  usedPorts.add(handle.port);
  const loop = new WorkerLoop(handle);
  attached = loop;
  return loop;
}

/** The WorkerLoop this thread attached last and that is still open; throws if there is none. */
export function currentLoop(): WorkerLoop {
  if (attached === undefined) throw new Error("no loop attached to this thread (call attachLoop(handle) first)");
  return attached;
}

/** `currentLoop().callSync(fn)`. */
export function callSync<T>(fn: () => T | PromiseLike<T>): T {
  return currentLoop().callSync(fn);
}
