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
  type Server,
} from "@multiprocess-ts/capnp";
import { Struct, type StructCtor } from "capnp-ts";
import type { Connection } from "./connection.js";
import { fillContext, readContext, selectThread } from "./context.js";
import { IntRangeError, IpcCalledAfterDisconnectError, IpcClientClosedError, IpcInterruptedError } from "./errors.js";
import { describe, type EventLoopRef } from "./event-loop.js";
import { currentFrame, ThreadContext } from "./thread-context.js";
import { makeThreadMap } from "./threads.js";
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
   * A capability for `obj` to write into the message: a ProxyClientBase passes its own capability
   * through; any other object is wrapped in a new `ServerCtor` (which then owns it: it is disposed
   * when the peer releases it). The IO keeps the returned handle and closes it once the message is
   * built (writeCap copies it), so callers need not close it.
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
  #owned: Capability[] = [];

  constructor(connection: Connection) {
    this.connection = connection;
  }

  exportObject(obj: object | null | undefined, ServerCtor: ProxyServerCtor): Capability | null {
    if (obj === null || obj === undefined) return null;
    let cap: Capability;
    if (obj instanceof ProxyClientBase) {
      cap = obj.$dupCap();
    } else {
      cap = localCapability(new ServerCtor(obj, this.connection));
    }
    this.#owned.push(cap);
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
    this.#owned.push(cap);
    return cap;
  }

  setPeerThreadMap(cap: Capability | null): void {
    this.connection.setPeerThreadMap(cap);
  }

  /** Closes the handles exportObject/exportFunction returned (the message holds its own). */
  release(): void {
    const caps = this.#owned;
    this.#owned = [];
    for (const c of caps) c.close();
  }
}

class ServerCallIO extends CallIO implements ServerIO {
  readonly signal: AbortSignal;
  constructor(connection: Connection, signal: AbortSignal) {
    super(connection);
    this.signal = signal;
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
    if (!this.#closing) this.#closing = this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const ctor = this.constructor as ProxyClientCtor;
    const loop = this.$connection.loop;
    if (this.#state === "open" && ctor.$destroy && this.$connection.state === "open") {
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

async function invokeOn<R>(
  client: ProxyClientBase,
  m: ProxyMethod,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  build: (p: any, io: ClientIO) => void,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  read: (r: any, io: ClientIO) => R,
): Promise<R> {
  client.$checkOpen();
  const connection = client.$connection;
  const loop = connection.loop;
  // Inside a server Thread task: that Thread's context; anywhere else: the loop thread's.
  const frame = currentFrame();
  const thread = ThreadContext.current(loop);
  const io = new CallIO(connection);
  let pending;
  try {
    pending = loop.sync(() => {
      const req = client.$cap.newCall(m.interfaceId, m.methodId, m.Params);
      build(req.params, io);
      if (m.context >= 0) fillContext(Struct.initStructAt(m.context, Context, req.params), connection, thread);
      if (loop.logEnabled("trace")) loop.log("trace", `IPC client send ${m.name} ${loop.truncate(String(req.params))}`);
      return req.send();
    });
  } finally {
    io.release();
  }
  // While waiting, let the thread run other tasks (callbacks from the peer), as Waiter::wait does.
  const waiter = frame && frame.context === thread && frame.task ? frame : undefined;
  if (waiter && waiter.waits++ === 0) waiter.task!.enterWait();
  let response;
  try {
    response = await pending;
  } catch (e) {
    if (e instanceof RpcError && e.kind === "disconnected") throw new IpcInterruptedError(e);
    throw e;
  } finally {
    if (waiter && --waiter.waits === 0) waiter.task!.exitWait();
  }
  try {
    return read(response.results(m.Results), io);
  } finally {
    io.release();
    response.close();
  }
}

// -----------------------------------------------------------------------------------------------
// Server

const methodTables = new WeakMap<object, Map<string, ServerMethod<unknown>>>();

function methodTable(ctor: ProxyServerCtor<unknown>): Map<string, ServerMethod<unknown>> {
  let table = methodTables.get(ctor);
  if (!table) {
    table = new Map();
    for (const entry of ctor.methods) table.set(`${entry.method.interfaceId}:${entry.method.methodId}`, entry);
    methodTables.set(ctor, table);
  }
  return table;
}

/** How many live owning servers wrap each impl object: it is disposed when the count reaches 0. */
const implOwners = new WeakMap<object, number>();
/** Impl objects already disposed: a later export of the same object is never disposed again. */
const disposedImpls = new WeakSet<object>();
const DISOWN: unique symbol = Symbol("mp.disown");

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
  #disposed = false;
  #released = false;
  #ref: EventLoopRef;

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

  dispatch(call: IncomingCall): void | Promise<void> {
    const ctor = this.constructor as ProxyServerCtor<I>;
    const entry = methodTable(ctor as ProxyServerCtor<unknown>).get(`${call.interfaceId}:${call.methodId}`) as
      | ServerMethod<I>
      | undefined;
    if (!entry) {
      throw new RpcError(
        "unimplemented",
        `Method not implemented: interface ${call.interfaceId.toString(16)} method ${call.methodId}`,
      );
    }
    const special = entry.special ?? entry.method.special ?? (entry.method.destroy ? "destroy" : undefined);
    if (special === "construct") {
      this.#construct(call, entry.method);
      return;
    }
    if (entry.method.context >= 0) return this.#dispatchOnThread(call, entry, special);
    return this.#invoke(call, entry, special);
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

  async #dispatchOnThread(call: IncomingCall, entry: ServerMethod<I>, special: string | undefined): Promise<void> {
    const conn = this.connection;
    const loop = conn.loop;
    const { thread: threadCap, callbackThread } = readContext(call.params(entry.method.Params), entry.method.context);
    let cb = callbackThread;
    try {
      const thread = await selectThread(conn, threadCap);
      threadCap?.close();
      await thread.run(async () => {
        const signal = callSignal(call, conn);
        if (signal.aborted) {
          loop.log("info", `IPC server request ${entry.method.name} canceled before it could be executed`);
          throw signal.reason;
        }
        loop.hooks.asyncRequestStart?.();
        // Nested calls made while serving this one go back to the caller's thread (upstream
        // PassField): unless an entry exists (a recursive call), use callbackThread meanwhile.
        const inserted = cb && !cb.isNull ? thread.context.setRequestThread(conn, cb) : undefined;
        if (cb && cb.isNull) cb.close();
        cb = null;
        try {
          await this.#invoke(call, entry, special);
        } finally {
          inserted?.destroy();
          loop.hooks.asyncRequestDone?.();
        }
      });
    } finally {
      threadCap?.close();
      cb?.close();
    }
  }

  async #invoke(call: IncomingCall, entry: ServerMethod<I>, special: string | undefined): Promise<void> {
    const loop = this.connection.loop;
    const m = entry.method;
    if (special === "destroy") {
      loop.log("debug", `IPC server destroy ${m.name}`);
      await this.$disposeImpl();
      return;
    }
    const impl = this.#impl;
    if (impl === undefined || this.#disposed) throw new RpcError("failed", `IPC server object already destroyed (${m.name})`);
    if (!entry.invoke) throw new RpcError("unimplemented", `Method not implemented: ${m.name}`);
    const io = new ServerCallIO(this.connection, callSignal(call, this.connection));
    try {
      if (loop.logEnabled("debug")) loop.log("debug", `IPC server recv ${m.name}`);
      await entry.invoke(impl, call.params(m.Params), call.results(m.Results), io);
    } catch (e) {
      loop.log("debug", `IPC server ${m.name} threw: ${describe(e)}`);
      throw e;
    } finally {
      io.release();
    }
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
   * errors; releases this server's loop reference. Used by `destroy` and by the async cleanup.
   */
  async $disposeImpl(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const impl = this.#impl;
    this.#impl = undefined;
    try {
      if (this.#owned && isObject(impl) && decrementOwner(impl) === 0 && !disposedImpls.has(impl)) {
        disposedImpls.add(impl);
        await disposeObject(impl);
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

function callSignal(call: IncomingCall, conn: Connection): AbortSignal {
  return AbortSignal.any([call.signal, conn.signal]);
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
