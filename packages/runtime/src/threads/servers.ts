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
  writeCap,
  type Capability,
  type IncomingCall,
  type Server,
} from "@multiprocess-ts/capnp";
import type { Connection } from "../connection.js";
import { longThreadName } from "../log.js";
import { runInFrame } from "./frame.js";
import { ThreadContext } from "./thread-context.js";
import {
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
  /** See {@link holdPeerCallback}. */
  #peerCallback: Capability | null = null;
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
   * @internal Keeps one reference to the `Context.callbackThread` of the call this Thread is about
   * to serve (borrowed `cap`; a dup is kept), dropping the one kept before. The caller's callback
   * Thread arrives with every call and is released when the call ends; as long as we hold a
   * reference, the import stays alive, so its release costs no `Release` message per call (the
   * engine counts the references and sends one Release when the last handle goes). A Thread is
   * usually called by one client thread, so this is nearly always the same import. Dropped when
   * this Thread is released (the peer let it go, or the connection ended), and every 2^20 uses so
   * the peer's reference count stays far below the UInt32 of `Release.referenceCount`.
   */
  holdPeerCallback(cap: Capability): void {
    if (this.#released) return;
    const old = this.#peerCallback;
    if (++this.#peerCallbackUses > 0x100000) {
      this.#peerCallbackUses = 0;
      this.#peerCallback = null;
    } else {
      this.#peerCallback = cap.dup();
    }
    old?.close();
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
    held?.close();
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
