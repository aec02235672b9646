/**
 * Thread mapping with worker_threads: the glue between the worker bridge and the runtime
 * (EventLoop, Connection, ThreadContext, generated proxies).
 *
 * Loop side, {@link attachWorkers}(loop): one WorkerHost + LoopBridge per EventLoop. Each
 * attached worker gets a loop-side {@link ThreadContext} (created at its first call, disposed when
 * its session closes). A call a worker makes with a `Proxy.Context` param is filled with that
 * context (`fillContext`): per Connection, the request Thread (peer `makeThread(<worker name>)`,
 * pipelined, once) and the callback Thread, so the peer runs it on the worker's own server
 * thread and sends callbacks back to the worker's callback Thread.
 *
 * Worker side, {@link workerConnection}(handle or WorkerLoop): a runtime EventLoop and Connection
 * in the worker (over a transport that carries nothing: calls go through the bridge), so generated
 * `…Client` classes work unchanged: `await wc.get("init", InitClient)`. Capabilities the worker
 * passes (callbacks, `…Server` objects) run on the worker; when the peer calls one with a Context,
 * it runs on the worker's Thread for that Connection, and nested calls it makes go back to the
 * peer thread that is waiting for it (upstream recursion).
 *
 * Threads: `attachWorkers` and everything it returns: loop thread only. `workerConnection` and
 * its result: the worker thread that attached.
 */
import * as capnp from "capnp-ts";
import {
  DisconnectedError,
  localCapability,
  readCap,
  writeCap,
  type Capability,
  type Transport,
  type TransportSink,
} from "@multiprocess-ts/capnp";
import {
  Connection,
  EventLoop,
  ProxyClientBase,
  ThreadContext,
  ThreadServer,
  fillContext,
  longThreadName,
  type ProxyClientCtor,
  type ProxyServerCtor,
} from "@multiprocess-ts/runtime";
import { attachLoop, WorkerLoop } from "./attach.js";
import { workerHost, type WorkerHost, type WorkerSession } from "./host.js";
import { ContextView, loopBridge, type LoopBridge } from "./loop-bridge.js";
import { isLoopHandle, type LoopHandle } from "./protocol.js";
import { workerRpc, type WorkerRpc } from "./worker-bridge.js";
import { erasePointerField, pointerField } from "./copy.js";
import { getTargetPointerType as pointerType } from "capnp-ts/src/serialization/pointers/pointer.js";
import { PointerType } from "capnp-ts/src/serialization/pointers/pointer-type.js";

// ---------------------------------------------------------------------------------------------
// Loop side

/** What {@link attachWorkers} returns. Loop thread only. */
export interface WorkerSupport {
  readonly loop: EventLoop;
  readonly host: WorkerHost;
  readonly bridge: LoopBridge;
  /** A handle for a new worker (`workerData`, transfer list `loopHandleTransferList(handle)`). */
  handle(opts?: { name?: string }): LoopHandle;
  /**
   * Shares a proxy client (e.g. the Init client from `connectTransport`) under `name`; workers
   * get their own client for it with `workerConnection(...).get(name, Ctor)`. Calls they make are
   * filled with their own ThreadContext for `client.$connection`. Returns unshare.
   */
  share(name: string, client: ProxyClientBase): () => void;
  /** Shares a raw capability; `connection` (if any) is the Connection it belongs to. */
  shareCapability(name: string, cap: Capability, connection?: Connection): () => void;
  /** The loop-side ThreadContext of an attached worker (created on first use). */
  threadContext(session: WorkerSession): ThreadContext;
  /** Loop-side ThreadContexts currently alive (one per attached worker that made a call). */
  readonly threadContexts: ReadonlyMap<WorkerSession, ThreadContext>;
}

const supports = new WeakMap<EventLoop, WorkerSupport>();

/** Worker support for `loop`, created on first use. Loop thread only. */
export function attachWorkers(loop: EventLoop): WorkerSupport {
  const existing = supports.get(loop);
  if (existing !== undefined && !existing.host.isClosed) return existing;
  const host = workerHost(loop, { log: (level, msg) => loop.log(level, msg) });
  const contexts = new Map<WorkerSession, ThreadContext>();
  const threadContext = (session: WorkerSession): ThreadContext => {
    let tc = contexts.get(session);
    if (tc === undefined) {
      if (session.isClosed) throw new DisconnectedError(`worker "${session.name}" went away`);
      tc = new ThreadContext(loop, longThreadName(session.name));
      contexts.set(session, tc);
      const made = tc;
      // The worker exited (or detached): release its Threads on every Connection and unregister
      // their disconnect callbacks. Runs on the loop thread, before or after any Connection's
      // teardown; ThreadEntry makes either order safe (libmultiprocess.md §5).
      session.onClose(() => {
        contexts.delete(session);
        made.close();
      });
    }
    return tc;
  };
  const bridge = loopBridge(host, {
    fillContext(ctx, session, connection) {
      if (!(connection instanceof Connection) || connection.state !== "open" || session.isClosed) return;
      fillContext(ctx, connection, threadContext(session));
    },
    // A worker passed a client of Connection `to` into a call on `from`: the bridge relays it
    // (RelayServer). A Context in the relayed call was filled by `from`'s peer: its thread is one
    // of our ThreadServers on `from`. Refill it for `to` with the worker's threads there.
    relayContext(params, session, from, to) {
      if (!(to instanceof Connection) || !(from instanceof Connection)) return;
      for (let i = 0; ; i++) {
        const p = pointerField(params, i);
        if (p === null) return;
        if (capnp.Pointer.isNull(p) || pointerType(p) !== PointerType.STRUCT) continue;
        const view = new ContextView(p.segment, p.byteOffset, p._capnp.depthLimit);
        const tp = pointerField(view, 0);
        if (tp === null || capnp.Pointer.isNull(tp) || pointerType(tp) !== PointerType.OTHER) continue;
        let server: unknown;
        try {
          const t = readCap(view, 0);
          server = t?.localServer();
          t?.close();
        } catch {
          continue;
        }
        if (!(server instanceof ThreadServer) || server.connection !== from) continue;
        erasePointerField(view, 0);
        erasePointerField(view, 1);
        if (to.state === "open" && !session.isClosed) fillContext(view, to, threadContext(session));
        return;
      }
    },
  });
  const support: WorkerSupport = {
    loop,
    host,
    bridge,
    handle: (opts) => host.handle(opts),
    share: (name, client) => bridge.share(name, client.$cap, { connection: client.$connection }),
    shareCapability: (name, cap, connection) => bridge.share(name, cap, { connection }),
    threadContext,
    threadContexts: contexts,
  };
  supports.set(loop, support);
  return support;
}

// ---------------------------------------------------------------------------------------------
// Worker side

/** A transport that carries nothing: the worker's Connection only anchors runtime state. */
function inertTransport(): Transport {
  let sink: TransportSink | undefined;
  let ended = false;
  const end = (err?: Error): void => {
    if (ended) return;
    ended = true;
    sink?.closed(err);
  };
  return {
    start: (s) => void (sink = s),
    send: () => {},
    close: () => {
      end();
      return Promise.resolve();
    },
    destroy: (err) => end(err),
  };
}

/** What {@link workerConnection} returns. Worker thread only. */
export interface WorkerConnection {
  readonly loop: WorkerLoop;
  /** The worker's runtime EventLoop (named after its loop-side session). */
  readonly eventLoop: EventLoop;
  /** The Connection generated clients in this worker are bound to; ends with the session. */
  readonly connection: Connection;
  readonly rpc: WorkerRpc;
  /** A client for the object the loop shares under `name`. */
  get<C>(name: string, Client: ProxyClientCtor<C>): Promise<C>;
  /** {@link get}, blocking until the loop answered (never on a loop thread). */
  getSync<C>(name: string, Client: ProxyClientCtor<C>): C;
  /** `get("init", Client)`: the conventional name for a connection's Init client (`share("init", init)`). */
  getInit<C>(Client: ProxyClientCtor<C>): Promise<C>;
  /** Closes the Connection (clients become disconnected) and detaches from the loop. */
  close(): Promise<void>;
}

const connections = new WeakMap<WorkerLoop, WorkerConnection>();

/**
 * The runtime side of a worker attached to a loop: pass the LoopHandle from `workerData` (it is
 * attached here) or an attached WorkerLoop. One per WorkerLoop.
 */
export function workerConnection(handleOrLoop: LoopHandle | WorkerLoop): WorkerConnection {
  const loop = isLoopHandle(handleOrLoop) ? attachLoop(handleOrLoop) : (handleOrLoop as WorkerLoop);
  const existing = connections.get(loop);
  if (existing !== undefined) return existing;
  loop.checkOpen("workerConnection");
  const eventLoop = new EventLoop(loop.name);
  const connection = new Connection(eventLoop, inertTransport(), { name: `${loop.name}→${loop.loopName}` });
  const rpc = workerRpc(loop);
  const threadCaps = new Map<Connection, Capability>();

  // Calls this worker makes: the Context the runtime filled here is recognized by its
  // callbackThread, a ThreadServer of this worker's Connection.
  rpc.hooks.detectContext = (params) => {
    for (let i = 0; ; i++) {
      const p = pointerField(params, i);
      if (p === null) return -1;
      if (capnp.Pointer.isNull(p) || pointerType(p) !== PointerType.STRUCT) continue;
      const view = new ContextView(p.segment, p.byteOffset, p._capnp.depthLimit);
      const cbp = pointerField(view, 1);
      if (cbp === null || capnp.Pointer.isNull(cbp) || pointerType(cbp) !== PointerType.OTHER) continue;
      let cb: Capability | null = null;
      try {
        cb = readCap(view, 1);
      } catch {
        continue;
      }
      const server = cb?.localServer();
      cb?.close();
      if (server instanceof ThreadServer && server.connection === connection) return i;
    }
  };

  // Calls the loop makes into this worker (the peer calling a callback we passed): a method with
  // a Context runs on this worker's Thread for the target's Connection.
  rpc.hooks.prepareIncoming = (target, iid, mid, params) => {
    const server = target.localServer() as { connection?: unknown; constructor: unknown } | undefined;
    const ctor = server?.constructor as Partial<ProxyServerCtor> | undefined;
    const entry = ctor?.methods?.find((e) => e.method.interfaceId === iid && e.method.methodId === mid);
    if (entry === undefined || entry.method.context < 0 || !(server?.connection instanceof Connection)) return;
    const conn = server.connection;
    let cap = threadCaps.get(conn);
    if (cap === undefined) {
      cap = localCapability(new ThreadServer(conn, eventLoop.threadName, eventLoop.threadContext));
      threadCaps.set(conn, cap);
      const made = cap;
      conn.addSyncCleanup(() => {
        threadCaps.delete(conn);
        made.close();
      });
    }
    writeCap(capnp.Struct.getStruct(entry.method.context, ContextView, params), 0, cap);
  };

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await connection.close();
      loop.close();
    })();
    return closing;
  };
  loop.onClose((e) => {
    closing ??= connection.close(e);
  });

  const wc: WorkerConnection = {
    loop,
    eventLoop,
    connection,
    rpc,
    async get<C>(name: string, Client: ProxyClientCtor<C>): Promise<C> {
      const cap = await rpc.get(name);
      return new Client(cap, connection);
    },
    getSync<C>(name: string, Client: ProxyClientCtor<C>): C {
      return new Client(rpc.getSync(name), connection);
    },
    getInit<C>(Client: ProxyClientCtor<C>): Promise<C> {
      return this.get("init", Client);
    },
    close,
  };
  connections.set(loop, wc);
  return wc;
}
