/**
 * ProxyServerBase: the base of generated servers (docs/contracts.md §2), after upstream's
 * `ProxyServerBase` (proxy-io.h) and `serverInvoke` + `PassField` (proxy-types.h,
 * type-context.h). It dispatches incoming calls through a per-class method table; a call with a
 * `Proxy.Context` runs as a task on the server Thread its Context selects.
 *
 * Server implementations are disposed exactly once, when their last reference goes: by `destroy`
 * when the caller holds the only reference (synchronously: the reply is sent after disposal),
 * otherwise through the async-cleanup queue when the server is released (`Server.onRelease`,
 * which includes the connection ending); a `destroy` while other references exist (other
 * clients, local handles, further receipts of the export: the engine's `serverHolders`) only
 * says the caller is done. See dispose.ts for the owner count across servers of one impl.
 *
 * Owns: its impl (unless disowned), an EventLoopRef until the impl is disposed; module-wide, the
 * method tables (weak, per server class). Threading: loop thread only.
 */
import { RpcError, readCap, serverHolders, writeCap, type FlatParamsReader, type IncomingCall, type Server } from "@multiprocess-ts/capnp";
import type { Struct } from "capnp-ts";
import type { Connection } from "../connection.js";
import type { EventLoop, EventLoopRef } from "../event-loop.js";
import { FifoExecutor, type TaskControl } from "../threads/executor.js";
import { leaveFrame, openFrame, type TaskFrame } from "../threads/frame.js";
import { readContext, selectThreadIn, selectThreadNow } from "../threads/proxy-context.js";
import { makeThreadMap, ThreadServer } from "../threads/servers.js";
import type { ThreadClient } from "../threads/thread-client.js";
import type { ThreadContext } from "../threads/thread-context.js";
import { errorText, isThenable } from "../util.js";
import { ServerCallIO } from "./call-io.js";
import { ProxyClientBase } from "./client.js";
import { decrementOwner, disposedImpls, disposeObjectNow, implOwners, isObject } from "./dispose.js";
import { DISOWN, RELAY } from "./marks.js";
import { traceServerClass } from "./trace.js";
import type { ProxyMethod, ProxyServerCtor, ServerMethod } from "./seam.js";

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
  /**
   * The last interface called and its slots: most servers are called on one interface. Starts as
   * a BigInt no interface has (ids are unsigned), so `dispatch`'s comparison always compares two
   * BigInts: a server made for a new connection in a warm process keeps its optimised code.
   */
  #lastIid = -1n;
  #lastSlots: (MethodSlot | undefined)[] | undefined;
  /** Debug lines per call (the loop's level is fixed when it is made; at trace level the engine's lines say it all). */
  readonly #debug: boolean;
  /**
   * Whether the engine may read this server's calls with their methods' flat params readers
   * ({@link flatParams}): only when `dispatch` is this class's, which reads them from
   * `IncomingCall.flatParams` (a subclass's own `dispatch` may read `call.params()`).
   */
  readonly #flatOk: boolean;

  /** Owns `impl` (see {@link disposeObject}) unless the runtime disowns it (serveTransport's Init). */
  constructor(impl: I, connection: Connection) {
    this.connection = connection;
    this.#impl = impl;
    this.#ref = connection.loop.ref();
    this.#debug = connection.loop.logEnabled("debug") && !connection.loop.logEnabled("trace");
    this.#flatOk = this.dispatch === ProxyServerBase.prototype.dispatch;
    if (isObject(impl)) implOwners.set(impl, (implOwners.get(impl) ?? 0) + 1);
    // A server of one interface starts with its slots cached: `dispatch` never takes its lookup
    // branch for it, so a server made in a warm process (a new connection's bootstrap) does not
    // reach code the optimised `dispatch` never ran, which would throw that code away.
    const table = methodTable(this.constructor as ProxyServerCtor<unknown>);
    this.#table = table;
    if (table.size === 1) {
      for (const [iid, slots] of table) {
        this.#lastIid = iid;
        this.#lastSlots = slots;
      }
    }
    // Tracing: the engine writes the Call / Return lines, naming the method from this table.
    if (connection.loop.logEnabled("trace")) traceServerClass(this.constructor as ProxyServerCtor);
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

  /**
   * Server.flatParams: the method's flat params reader (mpgen's `ServerMethod.read`), if it has
   * one, for the engine to read a call's params from its bytes (docs/rpc.md "Flat params on the
   * server"); `dispatch` then finds them in `IncomingCall.flatParams`.
   */
  flatParams(interfaceId: bigint, methodId: number): FlatParamsReader | undefined {
    if (!this.#flatOk) return undefined;
    const slots = interfaceId === this.#lastIid ? this.#lastSlots : this.#table?.get(interfaceId);
    return slots?.[methodId]?.entry.read;
  }

  dispatch(call: IncomingCall): void | Promise<void> {
    // A Map lookup by BigInt hashes the key: compare with the last interface first.
    const iid = call.interfaceId;
    let slots = this.#lastSlots;
    if (iid !== this.#lastIid || slots === undefined) {
      let table = this.#table;
      if (table === undefined) table = this.#table = methodTable(this.constructor as ProxyServerCtor<unknown>);
      slots = table.get(iid);
      if (slots !== undefined) {
        this.#lastIid = iid;
        this.#lastSlots = slots;
      }
    }
    const slot = slots?.[call.methodId];
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
   * unresolved), then run it there as a task. The usual case reads the Context in place (no
   * capability handle: `selectThreadIn`); the general one through handles (`readContext`).
   */
  #dispatchOnThread(call: IncomingCall, slot: MethodSlot): void | Promise<void> {
    const conn = this.connection;
    const params: Struct = call.params(slot.m.Params);
    const now = selectThreadIn(conn, params, slot.m.context);
    if (now !== undefined) return this.#runOnThread(now, call, slot, params, false);
    const { thread: threadCap, callbackThread } = readContext(params, slot.m.context);
    callbackThread?.close(); // the task reads it again (ThreadServer.enterCallback)
    let thread: ThreadServer | Promise<ThreadServer>;
    try {
      thread = selectThreadNow(conn, threadCap);
    } catch (e) {
      threadCap?.close();
      throw e;
    }
    if (thread instanceof ThreadServer) {
      threadCap?.close();
      return this.#runOnThread(thread, call, slot, params, false);
    }
    return thread.then(
      (t) => {
        threadCap?.close();
        return this.#runOnThread(t, call, slot, params, true);
      },
      (e: unknown) => {
        threadCap?.close();
        throw e;
      },
    );
  }

  #runOnThread(thread: ThreadServer, call: IncomingCall, slot: MethodSlot, params: Struct, late: boolean): void | Promise<void> {
    // A task that starts inside this call to run() from dispatch() started in the same turn the
    // engine dispatched the call, right after it checked the call was not canceled: only a queued
    // (or late: the Thread had to resolve first) task needs to look at the call's lazily created
    // signal. An idle FIFO executor starts it at once (`startNow`), and its result goes back as is
    // (no promise when the method returns a value).
    const ex = thread.context.executor;
    if (!late && ex instanceof FifoExecutor && ex.idle) {
      return this.#runTask(ex.startNow(), thread, call, slot, params, false, true);
    }
    let queued = late;
    const p = ex.run((task) => this.#runTask(task, thread, call, slot, params, queued, false));
    queued = true;
    return p;
  }

  /**
   * One task on `thread`. `owns`: the task came from `startNow`, so this ends it too (`done`). A
   * method that returns a promise gets no reaction of its own for the task's whole ending (its
   * frame, the request-Thread entry, the done hook, the executor): the engine runs it when that
   * promise settles (`IncomingCall.whenSettled`, in the reaction that builds the Return); a queued
   * task, whose executor chains onto what this returns, gets one reaction, not one per layer.
   */
  #runTask(
    task: TaskControl & { done?(): void },
    thread: ThreadServer,
    call: IncomingCall,
    slot: MethodSlot,
    params: Struct,
    queued: boolean,
    owns: boolean,
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
      loop.log("info", `IPC server request ${slot.m.name} canceled before it could be executed`);
      endTask(thread, null, loop, owns ? task : undefined);
      throw reason;
    }
    // Nested calls made while serving this one go back to the caller's thread (upstream
    // PassField): unless an entry exists (a recursive call), use callbackThread meanwhile.
    const inserted = thread.enterCallback(params, slot.m.context);
    const frame = new ServerTask(thread, task, inserted, owns);
    let r: void | Promise<void>;
    try {
      r = openFrame(frame, () => this.#invoke(call, slot, params, frame));
    } catch (e) {
      endTask(thread, inserted, loop, owns ? task : undefined);
      throw e;
    }
    if (!isThenable(r)) {
      leaveFrame();
      endTask(thread, inserted, loop, owns ? task : undefined);
      return;
    }
    // An owned task was ended by #invoke (in the engine's own reaction to the method's promise,
    // or chained onto it). A queued task's executor chains onto the promise we return.
    if (owns) return r;
    return r.then(
      () => frame.end(),
      (e: unknown) => {
        frame.end();
        throw e;
      },
    );
  }

  /**
   * Runs the method: synchronously as far as the generated `invoke` goes. When it returns a
   * promise: the results writer the generated code left on the IO (`thenWrite`) and, for a task
   * started at once (`task.owns`), the task's ending run in the engine's own reaction to that
   * promise (`IncomingCall.whenSettled`), and the promise goes back to the engine as is, unless
   * something must be released after it (then one reaction does it all). A queued task's writer
   * is chained onto the promise (its executor waits for what this returns); so is its ending, by
   * the caller.
   */
  #invoke(call: IncomingCall, slot: MethodSlot, params: Struct | undefined, task?: ServerTask): void | Promise<void> {
    const m = slot.m;
    const loop = this.connection.loop;
    if (slot.special === "destroy") {
      // Only the caller's reference left: dispose now, before the reply (upstream's destroy).
      // Other holders (other clients, local handles, other receipts of this export): the caller
      // is done, not the object; onRelease disposes it when the last reference goes.
      if (serverHolders(this) > 1) {
        loop.log("debug", `IPC server destroy ${m.name}: other references remain, disposal deferred to the last release`);
        return;
      }
      loop.log("debug", `IPC server destroy ${m.name}`);
      const d = this.#disposeImplNow(true);
      if (d === undefined || task?.owns !== true) return d;
      // A destroy with a Context, run as a task: it ends when the disposal has (it never rejects).
      if (call.whenSettled !== undefined) call.whenSettled(settledFn(undefined, task));
      else return d.then(() => task.end());
      return d;
    }
    const impl = this.#impl;
    if (impl === undefined || this.#disposed) throw new RpcError("failed", `IPC server object already destroyed (${m.name})`);
    const entry = slot.entry as ServerMethod<I>;
    if (!entry.invoke) throw new RpcError("unimplemented", `Method not implemented: ${m.name}`);
    // Debug lines name each call; at trace level the engine's one line per message says it all.
    const debug = this.#debug;
    if (debug) loop.log("debug", `IPC server recv ${m.name}`);
    const io = new ServerCallIO(this.connection, call);
    let r: void | Promise<void>;
    try {
      r = entry.invoke(impl, params ?? call.flatParams ?? call.params(m.Params), call.results(m.Results), io);
    } catch (e) {
      io.release();
      if (debug) loop.log("debug", `IPC server ${m.name} threw: ${errorText(e)}`);
      throw e;
    }
    if (!isThenable(r)) {
      io.release();
      return;
    }
    const write = io.takeWrite();
    const end = task?.owns === true ? task : undefined;
    if (!debug && !io.holds) {
      io.watch(r);
      if (write === undefined && end === undefined) return r;
      // What the engine gets is `r` itself: its reaction writes the results and ends the task.
      if (call.whenSettled !== undefined && (end !== undefined || params === undefined)) {
        call.whenSettled(settledFn(write, end));
        return r;
      }
    }
    return r.then(
      (v: unknown) => {
        try {
          if (write !== undefined) write(v);
        } catch (e) {
          this.#failed(io, end, m, e);
        }
        io.release();
        end?.end();
      },
      (e: unknown) => this.#failed(io, end, m, e),
    );
  }

  #failed(io: ServerCallIO, end: ServerTask | undefined, m: ProxyMethod, e: unknown): never {
    io.release();
    end?.end();
    if (this.#debug) this.connection.loop.log("debug", `IPC server ${m.name} threw: ${errorText(e)}`);
    throw e;
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
    return this.#disposeImplNow(viaDestroy);
  }

  /**
   * {@link $disposeImpl}, done synchronously when nothing is to be waited for (the impl has no
   * `[Symbol.asyncDispose]` or `close`, or is not disposed by this server): a `destroy` call, e.g.
   * of a callback the peer is done with, then ends without a promise (no task reaction, no engine
   * reaction, its Return in the same turn). Never throws; the promise, if any, never rejects.
   */
  #disposeImplNow(viaDestroy: boolean): void | Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const impl = this.#impl;
    this.#impl = undefined;
    let r: unknown;
    try {
      if (this.#owned && isObject(impl) && decrementOwner(impl) === 0 && !disposedImpls.has(impl)) {
        disposedImpls.add(impl);
        if (this.#relay && impl instanceof ProxyClientBase) r = viaDestroy ? impl.close() : impl.$release();
        else r = disposeObjectNow(impl);
      }
    } catch (e) {
      this.#disposeFailed(e);
    }
    if (!isThenable(r)) {
      this.#ref.reset();
      return;
    }
    return Promise.resolve(r).then(
      () => this.#ref.reset(),
      (e: unknown) => {
        this.#disposeFailed(e);
        this.#ref.reset();
      },
    );
  }

  #disposeFailed(e: unknown): void {
    this.connection.loop.log("error", `IPC server implementation dispose failed: ${errorText(e)}`);
  }
}

/**
 * The frame of a server Thread task (what proxy calls made from it find, threads/frame.ts) and its
 * ending: `owns` when it was started at once (`FifoExecutor.startNow`), so ending it also ends the
 * executor's task.
 */
class ServerTask implements TaskFrame {
  readonly context: ThreadContext;
  waits = 0;
  constructor(
    readonly thread: ThreadServer,
    readonly task: TaskControl & { done?(): void },
    readonly inserted: ThreadClient | null,
    readonly owns: boolean,
  ) {
    this.context = thread.context;
  }

  /** Leaves the frame, then {@link endTask}. Once. */
  end(): void {
    leaveFrame();
    endTask(this.thread, this.inserted, this.thread.connection.loop, this.owns ? this.task : undefined);
  }
}

/** The `whenSettled` callback of a method's promise: the results writer (not on failure), then the task's ending. */
function settledFn(write: ((v: unknown) => void) | undefined, end: ServerTask | undefined): (failed: boolean, v: unknown) => void {
  if (end === undefined) return (failed, v) => {
    if (!failed) write!(v);
  };
  return (failed, v) => {
    try {
      if (!failed && write !== undefined) write(v);
    } finally {
      end.end();
    }
  };
}

/** A server Thread task's ending, after its frame: its request-Thread entry, the done hook, the executor's task (when started with `startNow`). */
function endTask(thread: ThreadServer, inserted: ThreadClient | null, loop: EventLoop, task: { done?(): void } | undefined): void {
  if (inserted !== null) thread.endCallback(inserted);
  loop.hooks.asyncRequestDone?.();
  if (task !== undefined) task.done!();
}

/** @internal used by serveTransport */
export function disownImpl<I>(server: ProxyServerBase<I>): void {
  server[DISOWN]();
}
