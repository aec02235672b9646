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
 * Owns: one Capability reference, one EventLoopRef, one sync cleanup on its Connection.
 * Threading: loop thread only (on a worker, generated code talks to a worker-side Capability that
 * forwards to the loop; this class is the same there).
 */
import { capabilityShared, DisconnectedError, RemoteError, RpcError, type Capability, type PendingCall, type Response } from "@multiprocess-ts/capnp";
import { Struct } from "capnp-ts";
import type { Connection } from "../connection.js";
import { IpcCalledAfterDisconnectError, IpcClientClosedError, IpcDisconnectedError, IpcInterruptedError } from "../errors.js";
import type { EventLoopRef } from "../event-loop.js";
import { currentFrame, type TaskFrame } from "../threads/frame.js";
import { laneContext } from "../threads/lanes.js";
import { fillContext } from "../threads/proxy-context.js";
import { Context } from "../types/proxy-capnp.js";
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

  /** Takes ownership of `cap`. Loop thread only. */
  constructor(cap: Capability, connection: Connection, opts: ProxyClientOptions = {}) {
    this.$cap = cap;
    this.$connection = connection;
    this.#destroyConnection = opts.destroyConnection ?? false;
    this.#ref = connection.loop.ref();
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
   * reads results with `read`, closes the Response. `options`: the caller's {@link CallOptions}
   * (over this client's defaults, see call-options.ts). See the module comment for the errors.
   */
  protected $invoke<R>(
    m: ProxyMethod,
    build: (p: any, io: ClientIO) => void,
    read: (r: any, io: ClientIO) => R,
    options?: CallOptions,
  ): Promise<R> {
    return invokeOn(this, m, build, read, options);
  }

  /** @internal {@link $invoke} without the `protected` (construct / destroy from the runtime). */
  $call<R>(
    m: ProxyMethod,
    build: (p: any, io: ClientIO) => void,
    read: (r: any, io: ClientIO) => R,
    options?: CallOptions,
  ): Promise<R> {
    return invokeOn(this, m, build, read, options);
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

/**
 * `$invoke`: everything up to `send` runs synchronously; the result comes from one `then` on the
 * engine's promise (no async function layer, no extra microtask hops).
 */
function invokeOn<R>(
  client: ProxyClientBase,
  m: ProxyMethod,
  build: (p: any, io: ClientIO) => void,
  read: (r: any, io: ClientIO) => R,
  options?: CallOptions,
): Promise<R> {
  const connection = client.$connection;
  const loop = connection.loop;
  const io = new CallIO(connection);
  let pending: PendingCall;
  let waiter: TaskFrame | undefined;
  let canceler: Canceler | undefined;
  try {
    client.$checkOpen();
    const opts = effectiveOptions(client, options);
    if (opts !== undefined) {
      checkTimeout(opts.timeout);
      if (opts.signal?.aborted) throw abortError(opts.signal);
    }
    // Inside a server Thread task: that Thread's context; anywhere else: the loop thread's.
    const frame = currentFrame();
    // Outside a task: the current lane's context (threads/lanes.ts), else the loop thread's.
    const thread = frame !== undefined && frame.context.loop === loop ? frame.context : laneContext(loop) ?? loop.threadContext;
    const req = client.$cap.newCall(m.interfaceId, m.methodId, m.Params);
    build(req.params, io);
    if (m.context >= 0) fillContext(Struct.initStructAt(m.context, Context, req.params), connection, thread, opts?.thread === "pool");
    // Tracing: the engine writes the Call / Return lines, naming the method from this table.
    if (loop.logEnabled("trace")) traceMethod(m, client.constructor);
    pending = req.send();
    if (opts !== undefined && (opts.signal !== undefined || opts.timeout !== undefined)) canceler = new Canceler(pending, opts);
    // While waiting, let the thread run other tasks (callbacks from the peer), as Waiter::wait does.
    if (frame !== undefined && frame.context === thread && frame.task !== undefined) waiter = frame;
  } catch (e) {
    io.release();
    return Promise.reject(e);
  }
  io.release();
  if (waiter !== undefined && waiter.waits++ === 0) waiter.task!.enterWait();
  const result = pending.then(
    (response: Response) => {
      canceler?.done();
      if (waiter !== undefined && --waiter.waits === 0) waiter.task!.exitWait();
      try {
        return read(response.results(m.Results), io);
      } finally {
        io.release();
        response.close();
      }
    },
    (e: unknown) => {
      if (waiter !== undefined && --waiter.waits === 0) waiter.task!.exitWait();
      if (canceler !== undefined) {
        canceler.done();
        if (canceler.error !== undefined) throw canceler.error;
      }
      // Already one of upstream's two errors (a worker-side call relayed by the loop): keep it.
      if (e instanceof IpcDisconnectedError) throw e;
      if (e instanceof RpcError && e.kind === "disconnected") throw new IpcInterruptedError(e);
      // The peer's error was made while reading its Return: its stack holds engine frames only.
      // Capturing again here (only on failure) lets V8 append the async frames of whoever awaits
      // `result`, i.e. the caller's own frames (docs/errors.md, "Remote errors").
      if (e instanceof RemoteError) Error.captureStackTrace(e);
      throw e;
    },
  );
  // The engine's PendingCall.then returns a native promise; anything else is adopted.
  return result instanceof Promise ? result : Promise.resolve(result);
}
