/**
 * ProxyClientBase / ProxyServerBase: the bases of generated proxies (contracts.md §2), after
 * upstream's `ProxyClientBase` / `ProxyServerBase` (proxy-io.h) and `clientInvoke` /
 * `serverInvoke` (proxy-types.h).
 *
 * Two shutdown sequences, as upstream:
 *  - normal (client closed first): `close()` calls the remote `destroy` if the interface declares
 *    one (a failure is logged, never thrown), then in `loop.sync` unregisters the client's
 *    disconnect callback and releases the capability (and closes the Connection if it owns it);
 *  - disconnect first: the disconnect callback (a Connection sync cleanup) marks the client
 *    disconnected and releases the capability; later calls reject with "IPC client method called
 *    after disconnect."; calls in flight reject with "IPC client method call interrupted by
 *    disconnect.". A later `close()` has nothing left to do.
 * Server implementations are disposed exactly once: by `destroy` (synchronously: the reply is sent
 * after disposal), otherwise through the async-cleanup queue when the server is released
 * (`Server.onRelease`, which includes the connection ending).
 *
 * Threading: loop thread only (on a worker, generated code talks to a worker-side Capability that
 * forwards to the loop; these classes are the same).
 */
import {
  RpcError,
  localCapability,
  readCap,
  writeCap,
  type Capability,
  type IncomingCall,
  type PendingCall,
  type Response,
  type Server,
} from "@multiprocess-ts/capnp";
import { Struct, type StructCtor } from "capnp-ts";
import type { Connection } from "./connection.js";
import { fillContext, readContext, selectThreadNow } from "./context.js";
import { IntRangeError, IpcCalledAfterDisconnectError, IpcClientClosedError, IpcInterruptedError } from "./errors.js";
import { describe, type EventLoopRef } from "./event-loop.js";
import {
  currentFrame,
  enterFrame,
  isThenable,
  type TaskControl,
  type TaskFrame,
  type ThreadEntry,
} from "./thread-context.js";
import { makeThreadMap, ThreadServer } from "./threads.js";
import { Context } from "./types/proxy-capnp.js";

// -----------------------------------------------------------------------------------------------
// Seam types (contracts.md §2)

/** Static description of one capnp method, emitted by mpgen. */
export interface ProxyMethod {
  name: string;
  interfaceId: bigint;
  methodId: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  Params: StructCtor<any>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  Results: StructCtor<any>;
  /** Pointer index of the `Proxy.Context` param, or -1. */
  context: number;
  /** True for a method named `destroy`. */
  destroy: boolean;
  special?: "construct" | "destroy";
}

/** One server-side method of a generated ProxyServer. `construct`/`destroy` have no `invoke`. */
export interface ServerMethod<I> {
  method: ProxyMethod;
  special?: "construct" | "destroy";
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  invoke?(impl: I, params: any, results: any, io: ServerIO): void | Promise<void>;
}

/** Helpers generated code uses while building params / reading results (and the server mirror). */
export interface ClientIO {
  readonly connection: Connection;
  /**
   * A capability for `obj` to write into the message:
   *  - a ProxyClientBase of this IO's Connection passes its own capability through (a new
   *    reference: capability identity is kept, the caller keeps its client);
   *  - a ProxyClientBase of another Connection is relayed (upstream wraps it in a ProxyServer whose
   *    implementation is the ProxyClient): a new `ServerCtor` on this Connection that calls it, so
   *    each hop fills its own Context (see `relayServer`). In params the caller keeps its client
   *    (the relay uses its own client over a new reference); in a server's results the returned
   *    client is handed over to the relay;
   *  - any other object is wrapped in a new `ServerCtor` (which then owns it: it is disposed when
   *    the peer releases it).
   * The IO keeps the returned handle and closes it once the message is built (writeCap copies it),
   * so callers need not close it.
   */
  exportObject(obj: object | null | undefined, ServerCtor: ProxyServerCtor): Capability | null;
  /** Wraps a received capability (takes ownership of `cap`) in a `ClientCtor`; null stays null. */
  importObject<C>(cap: Capability | null, ClientCtor: ProxyClientCtor<C>): C | null;
  /** Like exportObject for a function: served as `{ call: fn }` (upstream ProxyCallback<std::function>). */
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  exportFunction(fn: Function | null | undefined, ServerCtor: ProxyServerCtor): Capability | null;
  /** A function calling the received callback's `call` method; `fn[Symbol.asyncDispose]` releases it. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  importFunction<F>(cap: Capability | null, ClientCtor: ProxyClientCtor<any>): F | null;
  /**
   * Our ThreadMap for this connection, for a `Proxy.ThreadMap` field being built (upstream
   * type-threadmap.h; e.g. foo.capnp `initThreadMap`). Owned by the IO like exportObject's result.
   */
  threadMap(): Capability;
  /** Stores a received `Proxy.ThreadMap` as the connection's peer ThreadMap (takes ownership). */
  setPeerThreadMap(cap: Capability | null): void;
}

export type ServerIO = ClientIO & { readonly signal: AbortSignal };

export interface ProxyClientOptions {
  /** Close the Connection when this client is closed (the Init client made by connectTransport). */
  destroyConnection?: boolean;
}

/** Constructor shape of generated clients. */
export interface ProxyClientCtor<C = unknown> {
  new (cap: Capability, connection: Connection, opts?: ProxyClientOptions): C;
  readonly interfaceId: bigint;
  readonly hasDestroy?: boolean;
  readonly $construct?: ProxyMethod | undefined;
  readonly $destroy?: ProxyMethod | undefined;
}

/** Constructor shape of generated servers. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface ProxyServerCtor<I = any> {
  new (impl: I, connection: Connection): ProxyServerBase<I>;
  readonly interfaceId: bigint;
  readonly methods: readonly ServerMethod<I>[];
}

// -----------------------------------------------------------------------------------------------
// ClientIO / ServerIO

const FN_CLIENT: unique symbol = Symbol("mp.functionClient");

class CallIO implements ClientIO {
  readonly connection: Connection;
  /**
   * Whether objects passed to exportObject are handed over to the runtime. A call's params are
   * lent by the caller (false); a server's results were returned by its implementation and are
   * handed over (true, see ServerCallIO). Only matters for relayed clients (see `relayServer`).
   */
  protected get transfers(): boolean {
    return false;
  }
  /** Handles to close once the message is built (allocated on first use: most calls need none). */
  #owned: Capability[] | null = null;

  constructor(connection: Connection) {
    this.connection = connection;
  }

  exportObject(obj: object | null | undefined, ServerCtor: ProxyServerCtor): Capability | null {
    if (obj === null || obj === undefined) return null;
    let cap: Capability;
    if (obj instanceof ProxyClientBase) {
      cap = obj.$connection === this.connection ? obj.$dupCap() : localCapability(relayServer(obj, ServerCtor, this.connection, this.transfers));
    } else {
      cap = localCapability(new ServerCtor(obj, this.connection));
    }
    this.own(cap);
    return cap;
  }

  importObject<C>(cap: Capability | null, ClientCtor: ProxyClientCtor<C>): C | null {
    if (!cap) return null;
    if (cap.isNull) {
      cap.close();
      return null;
    }
    return new ClientCtor(cap, this.connection);
  }

  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  exportFunction(fn: Function | null | undefined, ServerCtor: ProxyServerCtor): Capability | null {
    if (fn === null || fn === undefined) return null;
    const client = (fn as { [FN_CLIENT]?: ProxyClientBase })[FN_CLIENT];
    if (client) return this.exportObject(client, ServerCtor);
    return this.exportObject({ call: (...args: unknown[]) => fn(...args) }, ServerCtor);
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  importFunction<F>(cap: Capability | null, ClientCtor: ProxyClientCtor<any>): F | null {
    const client = this.importObject(cap, ClientCtor) as (ProxyClientBase & { call(...a: unknown[]): unknown }) | null;
    if (!client) return null;
    const fn = (...args: unknown[]) => client.call(...args);
    Object.defineProperty(fn, FN_CLIENT, { value: client });
    Object.defineProperty(fn, Symbol.asyncDispose, { value: () => client.close() });
    return fn as F;
  }

  threadMap(): Capability {
    const cap = this.connection.threadMapCap(makeThreadMap);
    this.own(cap);
    return cap;
  }

  setPeerThreadMap(cap: Capability | null): void {
    this.connection.setPeerThreadMap(cap);
  }

  /** Keeps `cap` until {@link release}. */
  protected own(cap: Capability): void {
    if (this.#owned === null) this.#owned = [cap];
    else this.#owned.push(cap);
  }

  /** True while it holds something {@link release} must let go of. */
  get holds(): boolean {
    return this.#owned !== null;
  }

  /** Closes the handles exportObject/exportFunction returned (the message holds its own). */
  release(): void {
    const caps = this.#owned;
    if (caps === null) return;
    this.#owned = null;
    for (const c of caps) c.close();
  }
}

/**
 * The IO of one incoming call. `signal` is made on first read only (most implementations never
 * look at it): it aborts when the call is canceled (Finish before Return) or the Connection is torn
 * down, and its listeners are removed when the call ends, so nothing of the call stays registered
 * on the Connection's signal.
 *
 * Releasing: the dispatcher calls {@link release} when the invoke settles. When the invoke returned
 * a promise while the IO held nothing, the dispatcher hands that promise to {@link watch} and
 * returns it to the engine as is (no extra promise per call); if the IO acquires something later
 * (a capability exported into the results after an await, or the signal), the release is chained
 * onto the watched promise then.
 */
class ServerCallIO extends CallIO implements ServerIO {
  readonly #call: IncomingCall;
  #signal: AbortSignal | undefined;
  #unlisten: (() => void) | undefined;
  #watched: PromiseLike<unknown> | undefined;

  constructor(connection: Connection, call: IncomingCall) {
    super(connection);
    this.#call = call;
  }

  /** Results: the implementation returned the object, so the runtime owns it now. */
  protected override get transfers(): boolean {
    return true;
  }

  get signal(): AbortSignal {
    let s = this.#signal;
    if (s === undefined) s = this.#signal = this.#makeSignal();
    return s;
  }

  #makeSignal(): AbortSignal {
    const callSignal = this.#call.signal;
    const connSignal = this.connection.signal;
    if (callSignal.aborted) return callSignal;
    if (connSignal.aborted) return connSignal;
    const ctrl = new AbortController();
    const onAbort = (ev: Event): void => ctrl.abort((ev.target as AbortSignal).reason);
    callSignal.addEventListener("abort", onAbort);
    connSignal.addEventListener("abort", onAbort);
    this.#unlisten = () => {
      callSignal.removeEventListener("abort", onAbort);
      connSignal.removeEventListener("abort", onAbort);
    };
    this.#acquired();
    return ctrl.signal;
  }

  protected override own(cap: Capability): void {
    super.own(cap);
    this.#acquired();
  }

  override get holds(): boolean {
    return super.holds || this.#unlisten !== undefined;
  }

  /** See the class comment: `p` is the invoke's promise, already returned to the engine. */
  watch(p: PromiseLike<unknown>): void {
    this.#watched = p;
  }

  #acquired(): void {
    const p = this.#watched;
    if (p === undefined) return;
    this.#watched = undefined;
    const release = (): void => this.release();
    p.then(release, release);
  }

  override release(): void {
    super.release();
    const unlisten = this.#unlisten;
    if (unlisten !== undefined) {
      this.#unlisten = undefined;
      unlisten();
    }
  }
}

// -----------------------------------------------------------------------------------------------
// Client

type ClientState = "open" | "disconnected" | "closed";

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
    if (this.#state === "disconnected") throw new IpcCalledAfterDisconnectError();
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
   * reads results with `read`, closes the Response. See the module comment for the errors.
   */
  protected $invoke<R>(
    m: ProxyMethod,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    build: (p: any, io: ClientIO) => void,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    read: (r: any, io: ClientIO) => R,
  ): Promise<R> {
    return invokeOn(this, m, build, read);
  }

  /** @internal {@link $invoke} without the `protected` (construct / destroy from the runtime). */
  $call<R>(
    m: ProxyMethod,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    build: (p: any, io: ClientIO) => void,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    read: (r: any, io: ClientIO) => R,
  ): Promise<R> {
    return invokeOn(this, m, build, read);
  }

  /** @internal */
  $checkOpen(): void {
    if (this.#state === "disconnected" || this.$connection.state !== "open") throw new IpcCalledAfterDisconnectError();
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
   * @internal Like {@link close} but never calls the remote `destroy`: only this client's reference
   * is released (a capnp Release once no other local reference remains). Used by relay servers
   * when their peer released them without `destroy`.
   */
  $release(): Promise<void> {
    if (!this.#closing) this.#closing = this.#close(false);
    return this.#closing;
  }

  async #close(destroy: boolean): Promise<void> {
    const ctor = this.constructor as ProxyClientCtor;
    const loop = this.$connection.loop;
    if (destroy && this.#state === "open" && ctor.$destroy && this.$connection.state === "open") {
      try {
        await this.$call(ctor.$destroy, () => {}, () => undefined);
      } catch (e) {
        loop.log("warning", `IPC client destroy failed: ${describe(e)}`);
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

/**
 * `$invoke`: everything up to `send` runs synchronously; the result comes from one `then` on the
 * engine's promise (no async function layer, no extra microtask hops).
 */
function invokeOn<R>(
  client: ProxyClientBase,
  m: ProxyMethod,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  build: (p: any, io: ClientIO) => void,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  read: (r: any, io: ClientIO) => R,
): Promise<R> {
  const connection = client.$connection;
  const loop = connection.loop;
  const io = new CallIO(connection);
  let pending: PendingCall;
  let waiter: TaskFrame | undefined;
  try {
    client.$checkOpen();
    // Inside a server Thread task: that Thread's context; anywhere else: the loop thread's.
    const frame = currentFrame();
    const thread = frame !== undefined && frame.context.loop === loop ? frame.context : loop.threadContext;
    const req = client.$cap.newCall(m.interfaceId, m.methodId, m.Params);
    build(req.params, io);
    if (m.context >= 0) fillContext(Struct.initStructAt(m.context, Context, req.params), connection, thread);
    if (loop.logEnabled("trace")) loop.log("trace", `IPC client send ${m.name} ${loop.truncate(String(req.params))}`);
    pending = req.send();
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
      if (e instanceof RpcError && e.kind === "disconnected") throw new IpcInterruptedError(e);
      throw e;
    },
  );
  // The engine's PendingCall.then returns a native promise; anything else is adopted.
  return result instanceof Promise ? result : Promise.resolve(result);
}

// -----------------------------------------------------------------------------------------------
// Server

/** One dispatchable method of a server class, with its special kind resolved once. */
interface MethodSlot {
  entry: ServerMethod<unknown>;
  m: ProxyMethod;
  special: "construct" | "destroy" | undefined;
}
/** interfaceId → (methodId → slot). Built once per server class. */
type MethodTable = Map<bigint, (MethodSlot | undefined)[]>;

const methodTables = new WeakMap<object, MethodTable>();

function methodTable(ctor: ProxyServerCtor<unknown>): MethodTable {
  let table = methodTables.get(ctor);
  if (!table) {
    table = new Map();
    for (const entry of ctor.methods) {
      const m = entry.method;
      let slots = table.get(m.interfaceId);
      if (!slots) table.set(m.interfaceId, (slots = []));
      const special = entry.special ?? m.special ?? (m.destroy ? "destroy" : undefined);
      slots[m.methodId] = { entry, m, special };
    }
    methodTables.set(ctor, table);
  }
  return table;
}

/** How many live owning servers wrap each impl object: it is disposed when the count reaches 0. */
const implOwners = new WeakMap<object, number>();
/** Impl objects already disposed: a later export of the same object is never disposed again. */
const disposedImpls = new WeakSet<object>();
const DISOWN: unique symbol = Symbol("mp.disown");
const RELAY: unique symbol = Symbol("mp.relay");

/**
 * A server on `connection` relaying every call to `client`, a proxy client of ANOTHER Connection
 * (upstream: `ProxyServer<I>` whose implementation is a `ProxyClient<I>`, type-interface.h). The
 * middle process then makes each call itself: the incoming call runs on a Thread of `connection`
 * (selected from its own Context), and the outgoing one gets a Context filled for the client's
 * Connection. Passing the raw capability instead would make the engine forward the call, with a
 * Context whose Thread capabilities belong to the wrong Connection ("invalid thread handle").
 *
 * Ownership. The relay's impl is a proxy client the relay owns:
 *  - params (`transfer` false): the caller only lends `client` (it keeps using and closing it, as
 *    after a same-Connection export, which hands out a new reference). The relay's impl is a NEW
 *    client of the same class over a new reference to the same capability; the caller's client is
 *    never closed by the relay, and the caller may close it at any time without affecting it;
 *  - results (`transfer` true): the server implementation returned `client`, handing it to the
 *    runtime (as for any returned object, which the new server owns); the relay owns that client
 *    itself (shared with other relays of the same object by the owner count, like any impl).
 * The relay disposes its client like the pass-through reference it stands for:
 *  - the peer calls `destroy` on the relay → the client is closed with a remote `destroy` before
 *    the relay replies (upstream's synchronous destroy chain);
 *  - the peer only releases the relay (or its Connection ends) → the client releases its
 *    reference without `destroy`: the object lives on while others reference it.
 */
function relayServer(
  client: ProxyClientBase,
  ServerCtor: ProxyServerCtor,
  connection: Connection,
  transfer: boolean,
): ProxyServerBase<unknown> {
  let own: ProxyClientBase;
  if (transfer) {
    client.$checkOpen(); // the usual errors for a closed / disconnected client
    own = client;
  } else {
    const cap = client.$dupCap(); // throws the usual errors for a closed / disconnected client
    try {
      own = new (client.constructor as ProxyClientCtor<ProxyClientBase>)(cap, client.$connection);
    } catch (e) {
      cap.close();
      throw e;
    }
  }
  const server = new ServerCtor(own, connection);
  server[RELAY]();
  return server;
}

/**
 * Disposes `obj` with `[Symbol.asyncDispose]`, else `[Symbol.dispose]`, else `close()`, whichever
 * exists first. Errors propagate (callers log them).
 */
export async function disposeObject(obj: unknown): Promise<void> {
  if (obj === null || (typeof obj !== "object" && typeof obj !== "function")) return;
  const o = obj as { [Symbol.asyncDispose]?: () => unknown; [Symbol.dispose]?: () => unknown; close?: () => unknown };
  if (typeof o[Symbol.asyncDispose] === "function") await o[Symbol.asyncDispose]!();
  else if (typeof o[Symbol.dispose] === "function") o[Symbol.dispose]!();
  else if (typeof o.close === "function") await o.close();
}

/**
 * Base of generated servers: see the module comment.
 *
 * Ownership: a server owns its impl. When several servers wrap the same object (it was exported
 * more than once), the object is disposed when the last of them lets go, and an object is never
 * disposed twice (a WeakSet remembers disposed objects), so "exactly once" holds per object.
 */
export abstract class ProxyServerBase<I> implements Server {
  readonly connection: Connection;
  #impl: I | undefined;
  #owned = true;
  /** True for a relay server (its impl is a proxy client it owns: see `relayServer`). */
  #relay = false;
  #disposed = false;
  #released = false;
  #ref: EventLoopRef;
  #table: MethodTable | undefined;

  /** Owns `impl` (see {@link disposeObject}) unless the runtime disowns it (serveTransport's Init). */
  constructor(impl: I, connection: Connection) {
    this.connection = connection;
    this.#impl = impl;
    this.#ref = connection.loop.ref();
    if (isObject(impl)) implOwners.set(impl, (implOwners.get(impl) ?? 0) + 1);
  }

  /** The implementation; undefined once disposed. */
  get impl(): I | undefined {
    return this.#impl;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** @internal The application keeps ownership of the impl (upstream's no-op deleter for Init). */
  [DISOWN](): void {
    if (!this.#owned) return;
    this.#owned = false;
    const impl = this.#impl;
    if (isObject(impl)) decrementOwner(impl);
  }

  /** @internal Marks this server as a relay (see `relayServer`). */
  [RELAY](): void {
    this.#relay = true;
  }

  dispatch(call: IncomingCall): void | Promise<void> {
    let table = this.#table;
    if (table === undefined) table = this.#table = methodTable(this.constructor as ProxyServerCtor<unknown>);
    const slot = table.get(call.interfaceId)?.[call.methodId];
    if (slot === undefined) {
      throw new RpcError(
        "unimplemented",
        `Method not implemented: interface ${call.interfaceId.toString(16)} method ${call.methodId}`,
      );
    }
    if (slot.special === "construct") {
      this.#construct(call, slot.m);
      return;
    }
    if (slot.m.context >= 0) return this.#dispatchOnThread(call, slot);
    return this.#invoke(call, slot, undefined);
  }

  /** construct: keep the peer ThreadMap (param ptr 0), answer with ours (result ptr 0). */
  #construct(call: IncomingCall, m: ProxyMethod): void {
    const conn = this.connection;
    conn.setPeerThreadMap(readCap(call.params(m.Params), 0));
    const ours = conn.threadMapCap(makeThreadMap);
    try {
      writeCap(call.results(m.Results), 0, ours);
    } finally {
      ours.close();
    }
  }

  /**
   * A call with a Context: pick its Thread (synchronously unless a pipelined Thread is still
   * unresolved), then run it there as a task.
   */
  #dispatchOnThread(call: IncomingCall, slot: MethodSlot): void | Promise<void> {
    const conn = this.connection;
    const params: Struct = call.params(slot.m.Params);
    const { thread: threadCap, callbackThread } = readContext(params, slot.m.context);
    let thread: ThreadServer | Promise<ThreadServer>;
    try {
      thread = selectThreadNow(conn, threadCap);
    } catch (e) {
      threadCap?.close();
      callbackThread?.close();
      throw e;
    }
    if (thread instanceof ThreadServer) {
      threadCap?.close();
      return this.#runOnThread(thread, call, slot, params, callbackThread, false);
    }
    return thread.then(
      (t) => {
        threadCap?.close();
        return this.#runOnThread(t, call, slot, params, callbackThread, true);
      },
      (e: unknown) => {
        threadCap?.close();
        callbackThread?.close();
        throw e;
      },
    );
  }

  #runOnThread(
    thread: ThreadServer,
    call: IncomingCall,
    slot: MethodSlot,
    params: Struct,
    cb: Capability | null,
    late: boolean,
  ): Promise<void> {
    // A task that starts inside this call to run() from dispatch() started in the same turn the
    // engine dispatched the call, right after it checked the call was not canceled: only a queued
    // (or late: the Thread had to resolve first) task needs to look at the call's lazily created
    // signal.
    let queued = late;
    const p = thread.context.executor.run((task) => this.#runTask(task, thread, call, slot, params, cb, queued));
    queued = true;
    return p;
  }

  #runTask(
    task: TaskControl,
    thread: ThreadServer,
    call: IncomingCall,
    slot: MethodSlot,
    params: Struct,
    cb: Capability | null,
    queued: boolean,
  ): void | Promise<void> {
    const conn = this.connection;
    const loop = conn.loop;
    // As upstream (type-context.h): the start hook runs first, then the cancel check, and the done
    // hook runs on every path after the start hook (upstream's KJ_DEFER).
    const startHook = loop.hooks.asyncRequestStart;
    if (startHook !== undefined) startHook();
    // A hook may do anything (tear the connection down): only then, or for a queued task, can the
    // call's own signal have changed since the engine checked it.
    const reason = conn.signal.aborted
      ? conn.signal.reason
      : (queued || startHook !== undefined) && call.signal.aborted
        ? call.signal.reason
        : undefined;
    if (reason !== undefined) {
      cb?.close();
      loop.log("info", `IPC server request ${slot.m.name} canceled before it could be executed`);
      loop.hooks.asyncRequestDone?.();
      throw reason;
    }
    // Nested calls made while serving this one go back to the caller's thread (upstream
    // PassField): unless an entry exists (a recursive call), use callbackThread meanwhile.
    let inserted: ThreadEntry | undefined;
    if (cb !== null) {
      if (cb.isNull) cb.close();
      else {
        thread.holdPeerCallback(cb);
        inserted = thread.context.setRequestThread(conn, cb);
      }
    }
    let r: void | Promise<void>;
    try {
      r = enterFrame({ context: thread.context, task, waits: 0 }, () => this.#invoke(call, slot, params));
    } catch (e) {
      inserted?.destroy();
      loop.hooks.asyncRequestDone?.();
      throw e;
    }
    if (!isThenable(r)) {
      inserted?.destroy();
      loop.hooks.asyncRequestDone?.();
      return;
    }
    return r.then(
      () => {
        inserted?.destroy();
        loop.hooks.asyncRequestDone?.();
      },
      (e: unknown) => {
        inserted?.destroy();
        loop.hooks.asyncRequestDone?.();
        throw e;
      },
    );
  }

  /**
   * Runs the method: synchronously as far as the generated `invoke` goes; the promise it returns
   * (if any) goes back to the engine as is unless something must be released after it.
   */
  #invoke(call: IncomingCall, slot: MethodSlot, params: Struct | undefined): void | Promise<void> {
    const m = slot.m;
    const loop = this.connection.loop;
    if (slot.special === "destroy") {
      loop.log("debug", `IPC server destroy ${m.name}`);
      return this.$disposeImpl(true);
    }
    const impl = this.#impl;
    if (impl === undefined || this.#disposed) throw new RpcError("failed", `IPC server object already destroyed (${m.name})`);
    const entry = slot.entry as ServerMethod<I>;
    if (!entry.invoke) throw new RpcError("unimplemented", `Method not implemented: ${m.name}`);
    const debug = loop.logEnabled("debug");
    if (debug) loop.log("debug", `IPC server recv ${m.name}`);
    const io = new ServerCallIO(this.connection, call);
    let r: void | Promise<void>;
    try {
      r = entry.invoke(impl, params ?? call.params(m.Params), call.results(m.Results), io);
    } catch (e) {
      io.release();
      if (debug) loop.log("debug", `IPC server ${m.name} threw: ${describe(e)}`);
      throw e;
    }
    if (!isThenable(r)) {
      io.release();
      return;
    }
    if (!debug && !io.holds) {
      io.watch(r);
      return r;
    }
    return r.then(
      () => io.release(),
      (e: unknown) => {
        io.release();
        if (debug) loop.log("debug", `IPC server ${m.name} threw: ${describe(e)}`);
        throw e;
      },
    );
  }

  /** Last reference gone (or connection ended): dispose the impl on the async-cleanup queue. */
  onRelease(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#disposed) return;
    if (!this.#owned) {
      this.#disposed = true;
      this.#impl = undefined;
      this.#ref.reset();
      return;
    }
    this.connection.addAsyncCleanup(() => this.$disposeImpl());
  }

  /**
   * Disposes the implementation exactly once (when this is its last owning server), logging
   * errors; releases this server's loop reference. Used by `destroy` (`viaDestroy`) and by the
   * async cleanup. A relay's impl (its own proxy client) is closed with a remote `destroy` only
   * when the peer called `destroy`; a plain release only releases its reference.
   */
  async $disposeImpl(viaDestroy = false): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const impl = this.#impl;
    this.#impl = undefined;
    try {
      if (this.#owned && isObject(impl) && decrementOwner(impl) === 0 && !disposedImpls.has(impl)) {
        disposedImpls.add(impl);
        if (this.#relay && impl instanceof ProxyClientBase) await (viaDestroy ? impl.close() : impl.$release());
        else await disposeObject(impl);
      }
    } catch (e) {
      this.connection.loop.log("error", `IPC server implementation dispose failed: ${describe(e)}`);
    } finally {
      this.#ref.reset();
    }
  }
}

/** @internal used by serveTransport */
export function disownImpl<I>(server: ProxyServerBase<I>): void {
  server[DISOWN]();
}

function isObject(v: unknown): v is object {
  return (typeof v === "object" && v !== null) || typeof v === "function";
}

function decrementOwner(impl: object): number {
  const n = (implOwners.get(impl) ?? 1) - 1;
  if (n <= 0) implOwners.delete(impl);
  else implOwners.set(impl, n);
  return Math.max(n, 0);
}

// -----------------------------------------------------------------------------------------------
// Integer checks (upstream "out of bound int received"; ours throw RangeError)

function checkRange(v: number, min: number, max: number, type: string): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new IntRangeError(`value ${v} out of range for ${type}`);
  return v;
}
export const checkInt8 = (v: number): number => checkRange(v, -0x80, 0x7f, "Int8");
export const checkInt16 = (v: number): number => checkRange(v, -0x8000, 0x7fff, "Int16");
export const checkInt32 = (v: number): number => checkRange(v, -0x80000000, 0x7fffffff, "Int32");
export const checkUint8 = (v: number): number => checkRange(v, 0, 0xff, "UInt8");
export const checkUint16 = (v: number): number => checkRange(v, 0, 0xffff, "UInt16");
export const checkUint32 = (v: number): number => checkRange(v, 0, 0xffffffff, "UInt32");
