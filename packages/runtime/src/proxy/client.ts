/**
 * ProxyClientBase: the base of generated clients (docs/contracts.md §2), after upstream's
 * `ProxyClientBase` (proxy-io.h) and `clientInvoke` (proxy-types.h).
 *
 * `release()` drops the client's reference without the remote `destroy`; a client shared with
 * workers (`$holders`) sends `destroy` only when its last holder closes, and `close()` sends it
 * only while no other reference to the same capability exists in this vat (`capabilityShared`).
 *
 * Two shutdown sequences, as upstream:
 *  - normal (client closed first): `close()` calls the remote `destroy` if the interface declares
 *    one (a failure is logged, never thrown), then in `loop.sync` unregisters the client's
 *    disconnect callback and releases the capability (and closes the Connection if it owns it);
 *  - disconnect first: the disconnect callback (a Connection sync cleanup) marks the client
 *    disconnected and releases the capability; later calls reject with "IPC client method called
 *    after disconnect."; calls in flight reject with "IPC client method call interrupted by
 *    disconnect.". A later `close()` has nothing left to do.
 *
 * A failed call's RemoteError gets its stack captured again when it reaches the caller, so it
 * names the caller's async frames (no cost on the success path).
 *
 * A call is one {@link ClientCall}: the engine's sink of the call (capnp `DirectCall`) and the
 * caller's promise; cap-free results are read in the Return's dispatch and the promise resolved
 * with the value (docs/design.md, "One call, file by file").
 *
 * Owns: one Capability reference, one EventLoopRef, one sync cleanup on its Connection.
 * Threading: loop thread only (on a worker, generated code talks to a worker-side Capability that
 * forwards to the loop; this class is the same there).
 */
import { capabilityShared, DirectCall, DisconnectedError, dispatchPending, RemoteError, type Capability, type FlatRead, type RpcError } from "@multiprocess-ts/capnp";
import type { Connection } from "../connection.js";
import { IpcCalledAfterDisconnectError, IpcClientClosedError, IpcDisconnectedError, IpcInterruptedError } from "../errors.js";
import type { EventLoop, EventLoopRef } from "../event-loop.js";
import { currentFrame, type TaskFrame } from "../threads/frame.js";
import { laneContext } from "../threads/lanes.js";
import { fillContextAt, sendContextCall } from "../threads/proxy-context.js";
import type { ThreadContext } from "../threads/thread-context.js";
import { errorText } from "../util.js";
import { CallIO } from "./call-io.js";
import { abortError, Canceler, checkTimeout, effectiveOptions, type CallOptions } from "./call-options.js";
import { PROXY_CLIENT } from "./marks.js";
import { traceMethod } from "./trace.js";
import type { ClientIO, ProxyClientCtor, ProxyClientOptions, ProxyMethod } from "./seam.js";

type ClientState = "open" | "disconnected" | "closed";

/**
 * How many holders share one remote object (the client that was shared plus every worker-side
 * client of it): the remote `destroy` is sent by the last holder that closes. Loop thread only.
 */
export class SharedHolders {
  count = 1;

  /** One more holder (a worker got the shared client). */
  join(): void {
    this.count++;
  }

  /** A holder goes; true while others remain (so it must not destroy). */
  leave(): boolean {
    if (this.count > 0) this.count--;
    return this.count > 0;
  }
}

/** Base of generated clients: see the module comment. */
export abstract class ProxyClientBase implements AsyncDisposable {
  /** The capability this client calls (owned; released by close() or the disconnect callback). */
  readonly $cap: Capability;
  readonly $connection: Connection;
  #state: ClientState = "open";
  #destroyConnection: boolean;
  #cleanup: ReturnType<Connection["addSyncCleanup"]> | undefined;
  #ref: EventLoopRef;
  #closing: Promise<void> | undefined;
  /** The loop logs at trace level (its level is fixed when it is made): calls name their method. */
  readonly #trace: boolean;

  /** Takes ownership of `cap`. Loop thread only. */
  constructor(cap: Capability, connection: Connection, opts: ProxyClientOptions = {}) {
    this.$cap = cap;
    this.$connection = connection;
    this.#destroyConnection = opts.destroyConnection ?? false;
    this.#ref = connection.loop.ref();
    this.#trace = connection.loop.logEnabled("trace");
    if (connection.state !== "open") {
      this.#disconnect();
    } else {
      this.#cleanup = connection.loop.sync(() =>
        connection.addSyncCleanup(() => {
          // Disconnect first. The Connection has unlinked this entry, so close() must not remove it.
          this.#cleanup = undefined;
          this.#disconnect();
        }),
      );
    }
  }

  /** "open", "disconnected" (its connection went away first) or "closed" (close() ran). */
  get $state(): ClientState {
    return this.#state;
  }

  /** @internal A new reference to this client's capability, for passing it in another call. */
  $dupCap(): Capability {
    if (this.#state === "disconnected") throw new IpcCalledAfterDisconnectError(disconnectReason(this.$connection));
    if (this.#state === "closed") throw new IpcClientClosedError();
    return this.$cap.dup();
  }

  #disconnect(): void {
    if (this.#state !== "open") return;
    this.#state = "disconnected";
    this.$cap.close();
    this.#ref.reset();
  }

  /**
   * Calls method `m`: builds params with `build` (plus the Context when `m.context >= 0`), sends,
   * reads results with `read` and lets them go. `options`: the caller's {@link CallOptions}
   * (over this client's defaults, see call-options.ts). See the module comment for the errors.
   * Everything up to the send runs synchronously, in one {@link ClientCall}; `build` and `read`
   * get a CallIO only when they declare a second parameter. `readFlat` (mpgen emits it for a
   * results struct of data fields only, read as one plain value or none): the same value as
   * `read`, from the results' data section (capnp FlatRead), which the engine reads from a
   * connection's Return with no message (capnp questions.ts handleFlatResults); not used for a
   * call with a CallIO.
   */
  protected $invoke<R>(
    m: ProxyMethod,
    build: (p: any, io: ClientIO) => void,
    read: (r: any, io: ClientIO) => R,
    options?: CallOptions,
    readFlat?: FlatRead,
  ): Promise<R> {
    // A CallIO only when build or read takes one (generated code declares `io` when it uses it,
    // and says so in `m.clientIo`: reading a fresh closure's `length` costs more than the flag).
    const io = (m.clientIo ?? (build.length > 1 || read.length > 1)) ? new CallIO(this.$connection) : null;
    return this.#call(m, build, null, read, io, options, readFlat);
  }

  /**
   * {@link $invoke} for a method whose params struct is flat (data fields only: no pointer, so
   * no capability and no Context; mpgen emits it for such methods): `write(dv, at)` writes the
   * params' data section at byte `at` of `dv` (`DataView` set calls only, nothing else: it must
   * not call out), and the engine sends the Call as bytes when the target is across a
   * connection (capnp DirectCall.sendFlat). `readFlat`: as for {@link $invoke}.
   */
  protected $invokeFlat<R>(
    m: ProxyMethod,
    write: (dv: DataView, at: number) => void,
    read: (r: any, io: ClientIO) => R,
    options?: CallOptions,
    readFlat?: FlatRead,
  ): Promise<R> {
    const io = (m.clientIo ?? read.length > 1) ? new CallIO(this.$connection) : null;
    return this.#call(m, null, write, read, io, options, readFlat);
  }

  /** The body of {@link $invoke} (`build`) and {@link $invokeFlat} (`write`). */
  #call<R>(
    m: ProxyMethod,
    build: ((p: any, io: ClientIO) => void) | null,
    write: ((dv: DataView, at: number) => void) | null,
    read: (r: any, io: ClientIO) => R,
    io: CallIO | null,
    options: CallOptions | undefined,
    readFlat: FlatRead | undefined,
  ): Promise<R> {
    const connection = this.$connection;
    const promise = new Promise<R>(EXECUTOR);
    const call = new ClientCall<R>(m, read, io, nextResolve!, nextReject!);
    if (readFlat !== undefined && io === null) call.flatRead = readFlat;
    try {
      this.$checkOpen();
      const opts = effectiveOptions(this, options);
      if (opts !== undefined) {
        checkTimeout(opts.timeout);
        if (opts.signal?.aborted) throw abortError(opts.signal);
      }
      // Inside a server Thread task: that Thread's context; anywhere else: the current lane's
      // context (threads/lanes.ts), else the loop thread's. Only needed for a Context or a task.
      const frame = currentFrame();
      const thread = frame === undefined && m.context < 0 ? undefined : threadFor(frame, connection.loop);
      if (write !== null) {
        // Tracing: the engine writes the Call / Return lines, naming the method from this table.
        if (this.#trace) traceMethod(m, this.constructor);
        call.sendFlat(this.$cap, m.interfaceId, m.methodId, m.Params, write);
      } else if (io !== null || m.context !== 0 || !this.#sendContext(call, m, build!, thread!, opts)) {
        const params = call.begin(this.$cap, m.interfaceId, m.methodId, m.Params);
        build!(params, io as CallIO);
        if (m.context >= 0) fillContextAt(params, m.context, connection, thread!, opts?.thread === "pool");
        if (this.#trace) traceMethod(m, this.constructor);
        call.sendCall();
      }
      if (opts !== undefined && (opts.signal !== undefined || opts.timeout !== undefined)) call.canceler = new Canceler(call, opts);
      // While waiting, let the thread run other tasks (callbacks from the peer), as Waiter::wait does.
      if (frame !== undefined && frame.context === thread && frame.task !== undefined) {
        call.waiter = frame;
        if (frame.waits++ === 0) frame.task.enterWait();
      }
    } catch (e) {
      call.drop();
      io?.release();
      return Promise.reject(e);
    }
    io?.release();
    call.sent();
    return promise;
  }

  /**
   * A call whose params are data fields and the Context, sent without a capnp-ts message when it
   * can be (threads/proxy-context.ts sendContextCall); false, with nothing run, when not.
   */
  #sendContext(call: ClientCall<any>, m: ProxyMethod, build: (p: any, io: ClientIO) => void, thread: ThreadContext, opts: CallOptions | undefined): boolean {
    if (this.#trace) traceMethod(m, this.constructor);
    return sendContextCall(call, this.$cap, m, build, this.$connection, thread, opts?.thread === "pool");
  }

  /** @internal {@link $invoke} without the `protected` (construct / destroy from the runtime). */
  $call<R>(
    m: ProxyMethod,
    build: (p: any, io: ClientIO) => void,
    read: (r: any, io: ClientIO) => R,
    options?: CallOptions,
  ): Promise<R> {
    return this.$invoke(m, build, read, options);
  }

  /** @internal */
  $checkOpen(): void {
    if (this.#state === "disconnected" || this.$connection.state !== "open") {
      throw new IpcCalledAfterDisconnectError(disconnectReason(this.$connection));
    }
    if (this.#state === "closed") throw new IpcClientClosedError();
  }

  /**
   * Normal shutdown: remote `destroy` if declared (failure logged, never thrown), then unregister
   * the disconnect callback and release the capability in `loop.sync`, then close the Connection
   * if this client owns it. Idempotent; never rejects.
   */
  close(): Promise<void> {
    if (!this.#closing) this.#closing = this.#close(true);
    return this.#closing;
  }

  /**
   * Drops this client's reference without calling the remote `destroy`: the remote object lives on
   * while other references to it remain (capnp Release once no other local reference does).
   * Use it for an object you do not own, or that others still use. Idempotent; never rejects; a
   * later close() does nothing more.
   */
  release(): Promise<void> {
    if (!this.#closing) this.#closing = this.#close(false);
    return this.#closing;
  }

  /** @internal Old name of {@link release} (relay servers). */
  $release(): Promise<void> {
    return this.release();
  }

  /**
   * @internal Holders of this client's remote object beyond this client: set once the client is
   * shared (`workers.share()`), counted by the worker bridge. close() calls the remote `destroy`
   * only as the last holder (docs/usage.md, "Sharing clients").
   */
  $holders: SharedHolders | undefined = undefined;

  async #close(destroy: boolean): Promise<void> {
    const ctor = this.constructor as ProxyClientCtor;
    const loop = this.$connection.loop;
    // A shared client: only the last holder to go destroys (and only if it closes).
    if (this.$holders !== undefined && this.$holders.leave()) destroy = false;
    // Other references to the same object in this vat (another client of the same capability,
    // a copy in flight, an export of it to another connection): the peer cannot tell them apart
    // from ours, so our `destroy` would end the object for them too. Only release; the object is
    // disposed when its last reference goes (docs/usage.md, "Sharing clients").
    if (destroy && capabilityShared(this.$cap)) destroy = false;
    if (destroy && this.#state === "open" && ctor.$destroy && this.$connection.state === "open") {
      try {
        await this.$call(ctor.$destroy, () => {}, () => undefined);
      } catch (e) {
        loop.log("warning", `IPC client destroy failed: ${errorText(e)}`);
      }
    }
    loop.sync(() => {
      if (this.#cleanup !== undefined) {
        this.$connection.removeSyncCleanup(this.#cleanup);
        this.#cleanup = undefined;
      }
      if (this.#state === "open") {
        this.#state = "closed";
        this.$cap.close();
        this.#ref.reset();
      } else {
        this.#state = "closed";
      }
    });
    if (this.#destroyConnection) await this.$connection.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Why `connection` ended: the reason its signal aborted with (a DisconnectedError). */
function disconnectReason(connection: Connection): unknown {
  const s = connection.signal;
  return s.aborted ? s.reason : new DisconnectedError("connection closed");
}

// The brand `isProxyClient` checks (marks.ts): one data property on the prototype.
Object.defineProperty(ProxyClientBase.prototype, PROXY_CLIENT, { value: true });

/** A settled promise: {@link ClientCall.later}'s reactions hang on it. */
const RESOLVED = Promise.resolve();

/** The resolvers of the promise being made, set by {@link EXECUTOR} and taken at once: no closure per call. */
let nextResolve: ((v: any) => void) | undefined;
let nextReject: ((e: unknown) => void) | undefined;
const EXECUTOR = (res: (v: any) => void, rej: (e: unknown) => void): void => {
  nextResolve = res;
  nextReject = rej;
};

/** {@link ClientCall}'s value before (or without) flat results. */
const NOT_FLAT: unknown = Symbol("not flat");

/** {@link ClientCall.phase}: building and sending; sent; settled while it was being sent. */
const SENDING = 0;
const SENT = 1;
const SETTLED_EARLY = 2;

/**
 * One call of a generated client method: the engine's sink of the call (DirectCall) and the
 * caller's promise in one object. The Return's outcome reaches {@link settle} from the
 * connection's dispatch; results without capabilities are read there and the caller's promise
 * resolved with the value (one microtask hop to the caller, no engine promise). Results with
 * capabilities, and calls made from a server Thread's task while an incoming call waits for its
 * dispatch microtask (the task must leave its wait after that dispatch), are read a microtask
 * later, after the Return's dispatch (its Finish queued first), as the engine's PendingCall did.
 */
class ClientCall<R> extends DirectCall {
  canceler: Canceler | undefined = undefined;
  waiter: TaskFrame | undefined = undefined;
  phase = SENDING;
  private early: RpcError | null = null;
  /** The results' value when they came flat (capnp Sink.flatRead), else NOT_FLAT. */
  private value: unknown = NOT_FLAT;

  constructor(
    private readonly m: ProxyMethod,
    private readonly read: (r: any, io: ClientIO) => R,
    private readonly io: CallIO | null,
    private readonly resolve: (v: R) => void,
    readonly reject: (e: unknown) => void,
  ) {
    super();
  }

  /** After the send and the caller's bookkeeping: an outcome that came during them is handled now. */
  sent(): void {
    if (this.phase === SETTLED_EARLY) this.later(this.early);
    this.phase = SENT;
  }

  protected settle(err: RpcError | null): void {
    if (this.phase === SENDING) {
      this.phase = SETTLED_EARLY;
      this.early = err;
    } else if (this.waiter !== undefined) {
      // A server Thread task waits for this call. It leaves its wait (and reads the outcome) now,
      // in the Return's dispatch, unless an incoming call is still queued for its dispatch
      // microtask (e.g. a callback that arrived ahead of the Return in the same read): that call
      // must find the Thread still waiting, so it starts rather than queues behind the task
      // (upstream's Waiter runs it first). Then, and for results with capabilities, a microtask
      // later, after that dispatch, as before.
      if (dispatchPending() || (err === null && this.resultCaps() > 0)) this.later(err);
      else this.finish(err);
    } else if (err === null && this.resultCaps() > 0) this.later(err);
    else this.finish(err);
  }

  /**
   * Flat results (capnp Sink.completeFlat, from the Return's dispatch): their value, read by the
   * generated flat reader, resolves the caller now, or in {@link finish} when {@link settle}
   * defers it (during the send, or for a server Thread's task). No CallIO (the flat reader is
   * set only without one), no results to release.
   */
  protected override onCompleteFlat(value: unknown): void {
    if (this.phase === SENT && this.waiter === undefined) {
      this.canceler?.done();
      this.resolve(value as R);
      return;
    }
    this.value = value;
    this.settle(null);
  }

  private later(err: RpcError | null): void {
    // A reaction on a settled promise, not queueMicrotask: the same microtask slot, but while the
    // task frames' storage has Node's async hooks on, queueMicrotask makes an AsyncResource (and
    // runs the callback through runInAsyncScope) per call, ~80 ns more than a reaction.
    void RESOLVED.then(() => this.finish(err));
  }

  private finish(err: RpcError | null): void {
    const w = this.waiter;
    if (w !== undefined && --w.waits === 0) w.task!.exitWait();
    if (err === null) {
      this.canceler?.done();
      try {
        const v = this.value;
        this.resolve(v !== NOT_FLAT ? (v as R) : this.read(this.results(this.m.Results), this.io!));
      } catch (e) {
        // A declared exception (or a bad value) read from the results: made here, in the dispatch.
        this.rejectFromReaction(e);
      } finally {
        this.io?.release();
        this.releaseResults();
      }
      return;
    }
    this.releaseResults();
    const c = this.canceler;
    if (c !== undefined) {
      c.done();
      if (c.error !== undefined) {
        this.reject(c.error);
        return;
      }
    }
    // Already one of upstream's two errors (a worker-side call relayed by the loop): keep it.
    if (err instanceof IpcDisconnectedError) this.reject(err);
    else if (err.kind === "disconnected") this.reject(new IpcInterruptedError(err));
    else if (err instanceof RemoteError) this.rejectFromReaction(err);
    else this.reject(err);
  }

  /**
   * The peer's error, or one `read` threw, was made in the Return's dispatch: its stack holds
   * engine frames only. It is captured again in a promise reaction chained to the caller's
   * promise, where V8 appends the async frames of whoever awaits the call, i.e. the caller's own
   * frames (docs/errors.md, "Remote errors"). Only on failure: the caller's promise adopts a
   * promise rejected one microtask later, once the adoption is in place.
   */
  private rejectFromReaction(e: unknown): void {
    let fail!: (e: unknown) => void;
    const inner = new Promise<never>((_res, rej) => {
      fail = rej;
    });
    this.resolve(inner.then(undefined, recapture) as R);
    queueMicrotask(() => fail(e));
  }
}

function recapture(e: unknown): never {
  if (e instanceof Error) Error.captureStackTrace(e);
  throw e;
}

function threadFor(frame: TaskFrame | undefined, loop: EventLoop): ThreadContext {
  return frame !== undefined && frame.context.loop === loop ? frame.context : laneContext(loop) ?? loop.threadContext;
}
