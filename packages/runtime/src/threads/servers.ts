/**
 * Server side of thread mapping: `ProxyServer<ThreadMap>` and `ProxyServer<Thread>` (upstream
 * proxy.cpp). On the loop thread a server Thread is a logical executor: a FIFO queue of async tasks
 * (see {@link ThreadExecutor}); calls naming the same Thread run in arrival order, one at a time.
 *
 * Owns: the ThreadServers of a Connection (registered in `connection.threads`), each with its
 * ThreadContext when it made one. A Thread created by `makeThread` lives until the peer releases
 * its last reference or the connection ends; pool Threads live until the connection ends.
 * Threading: loop thread only.
 */
import {
  RpcError,
  localCapability,
  peekSameCap,
  readCap,
  writeCap,
  type Capability,
  type IncomingCall,
  type Server,
} from "@multiprocess-ts/capnp";
import { Pointer, Struct } from "capnp-ts";
import type { Connection } from "../connection.js";
import { longThreadName } from "../log.js";
import { runInFrame } from "./frame.js";
import { ThreadClient } from "./thread-client.js";
import { ThreadContext } from "./thread-context.js";
import {
  Context,
  THREAD_INTERFACE_ID,
  THREAD_MAP_INTERFACE_ID,
  ThreadMapMethod,
  ThreadMap_makePool$Params,
  ThreadMap_makeThread$Params,
  ThreadMap_makeThread$Results,
  ThreadMethod,
  Thread_getName$Results,
} from "../types/proxy-capnp.js";

let threadCounter = 0;

/** `ProxyServer<Thread>`: one server Thread, bound to the Connection it was created for. */
export class ThreadServer implements Server {
  readonly connection: Connection;
  /** The context its tasks run in (their nested proxy calls use its request Threads). */
  readonly context: ThreadContext;
  readonly #ownsContext: boolean;
  #released = false;
  /** See {@link callbackEntry}. */
  #peerCallback: ThreadClient | null = null;
  #peerCallbackUses = 0;

  /**
   * `context` given: a callback Thread standing for an existing context (not owned). Otherwise a new
   * context named `name` is created and closed when this Thread is released.
   */
  constructor(connection: Connection, name: string, context?: ThreadContext) {
    this.connection = connection;
    this.#ownsContext = context === undefined;
    this.context = context ?? new ThreadContext(connection.loop, name);
    connection.threads.add(this);
  }

  get name(): string {
    return this.context.name;
  }

  get released(): boolean {
    return this.#released;
  }

  /** Tasks queued or running on this Thread. */
  get load(): number {
    return this.context.executor.load;
  }

  /** Runs `fn` on this Thread (FIFO), inside its task frame. Takes ownership of `fn`. */
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.context.executor.run((task) => runInFrame(this.context, fn, task));
  }

  /**
   * @internal The request-Thread entry for the `Context.callbackThread` of the call this Thread is
   * about to serve (the Context at pointer `ctxIndex` of `params`), or null when the call names
   * none. The caller's callback Thread arrives with every call; this Thread keeps one entry (one
   * reference to it) and hands the same entry out again while calls name the same capability, so a
   * call costs neither a capability handle nor a new entry, and, since the import stays alive, no
   * `Release` message (the engine counts the references and sends one Release when the last
   * handle goes). A Thread is usually called by one client thread, so this is nearly always the
   * same import. A call naming another one gets a new entry; the old one is destroyed now, or by
   * {@link endCallback} when the task that inserted it ends. The entry is also replaced every 2^20
   * uses, so the peer's reference count stays far below the UInt32 of `Release.referenceCount`,
   * and destroyed when this Thread is released (the peer let it go, or the connection ended).
   */
  callbackEntry(params: Struct, ctxIndex: number): ThreadClient | null {
    const old = this.#peerCallback;
    const cap = old?.cap;
    if (cap != null && peekSameCap(params, ctxIndex, Context.CALLBACK_THREAD_PTR, cap) && ++this.#peerCallbackUses <= 0x100000) {
      return old;
    }
    if (Pointer.isNull(Struct.getPointer(ctxIndex, params))) return null;
    const cb = readCap(Struct.getStruct(ctxIndex, Context, params), Context.CALLBACK_THREAD_PTR);
    if (cb === null || cb.isNull || this.connection.state !== "open") {
      cb?.close();
      return null;
    }
    const entry = new ThreadClient(this.context.requestThreads, this.connection, cb);
    if (this.#released) return entry; // a task queued before the release: this call's entry only
    this.#peerCallbackUses = 0;
    this.#peerCallback = entry;
    if (old !== null && !this.context.hasRequestThread(this.connection, old)) old.destroy();
    return entry;
  }

  /**
   * @internal Sets the request Thread of this Thread's context for the task about to serve a call
   * (upstream PassField: nested calls go back to the caller's `callbackThread`) unless one is set:
   * the entry it inserted (hand it to {@link endCallback} when the task ends), or null.
   */
  enterCallback(params: Struct, ctxIndex: number): ThreadClient | null {
    const e = this.callbackEntry(params, ctxIndex);
    if (e === null) return null;
    if (this.context.insertRequestThread(this.connection, e)) return e;
    if (e !== this.#peerCallback) e.destroy();
    return null;
  }

  /**
   * @internal The task that inserted `entry` (from {@link callbackEntry}) as its context's request
   * Thread has ended: it leaves the map, and is destroyed unless it is still this Thread's entry.
   */
  endCallback(entry: ThreadClient): void {
    this.context.removeRequestThread(this.connection, entry);
    if (entry !== this.#peerCallback) entry.destroy();
  }

  dispatch(call: IncomingCall): void {
    if (call.interfaceId === THREAD_INTERFACE_ID && call.methodId === ThreadMethod.getName) {
      call.results(Thread_getName$Results).result = this.name;
      return;
    }
    throw new RpcError("unimplemented", `Thread method ${call.interfaceId.toString(16)}.${call.methodId} not implemented`);
  }

  onRelease(): void {
    if (this.#released) return;
    this.#released = true;
    this.connection.threads.delete(this);
    const held = this.#peerCallback;
    this.#peerCallback = null;
    held?.destroy();
    if (this.#ownsContext) this.context.close();
  }
}

/** `ProxyServer<ThreadMap>`: makeThread / makePool for one Connection. */
export class ThreadMapServer implements Server {
  readonly connection: Connection;

  constructor(connection: Connection) {
    this.connection = connection;
  }

  dispatch(call: IncomingCall): void {
    if (call.interfaceId !== THREAD_MAP_INTERFACE_ID) {
      throw new RpcError("unimplemented", `ThreadMap: unknown interface ${call.interfaceId.toString(16)}`);
    }
    const conn = this.connection;
    const loop = conn.loop;
    switch (call.methodId) {
      case ThreadMapMethod.makeThread: {
        loop.hooks.makeThread?.();
        const from = call.params(ThreadMap_makeThread$Params).name;
        const name = `${longThreadName(`${loop.name}-thread${++threadCounter}`)} (from ${from})`;
        const thread = new ThreadServer(conn, name);
        loop.hooks.makeThreadCreated?.();
        const cap = localCapability(thread);
        try {
          writeCap(call.results(ThreadMap_makeThread$Results), ThreadMap_makeThread$Results.RESULT_PTR, cap);
        } finally {
          cap.close();
        }
        loop.log("debug", `${conn.name}: makeThread created "${name}"`);
        return;
      }
      case ThreadMapMethod.makePool: {
        if (conn.pool !== undefined) throw new RpcError("failed", "makePool called on connection with existing pool");
        const count = call.params(ThreadMap_makePool$Params).count;
        const threads: ThreadServer[] = [];
        const caps: Capability[] = [];
        for (let i = 0; i < count; i++) {
          const t = new ThreadServer(conn, `${longThreadName(loop.name)} (pool/${i})`);
          threads.push(t);
          caps.push(localCapability(t));
        }
        conn.setPool(threads, caps);
        loop.log("debug", `${conn.name}: makePool created ${count} threads`);
        return;
      }
      default:
        throw new RpcError("unimplemented", `ThreadMap method ${call.methodId} not implemented`);
    }
  }
}

/** Makes our ThreadMap for `connection` (used through `connection.threadMapCap`). */
export function makeThreadMap(connection: Connection): { server: ThreadMapServer; cap: Capability } {
  const server = new ThreadMapServer(connection);
  return { server, cap: localCapability(server) };
}

/**
 * Picks the pool Thread for a call without `Context.thread`: least loaded, ties → lowest index
 * (upstream v11+). Undefined when the peer never called makePool.
 */
export function pickPoolThread(connection: Connection): ThreadServer | undefined {
  const pool = connection.pool;
  if (!pool || pool.length === 0) return undefined;
  let best = pool[0]!;
  for (const t of pool) if (t.load < best.load) best = t;
  return best;
}
