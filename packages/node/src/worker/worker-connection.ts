/**
 * Thread mapping with worker_threads, worker side: {@link workerConnection}(handle or WorkerLoop)
 * makes a runtime EventLoop and Connection in the worker (over a transport that carries nothing:
 * calls go through the bridge), so generated `…Client` classes work unchanged:
 * `await wc.get("init", InitClient)`. Capabilities the worker passes (callbacks, `…Server`
 * objects) run on the worker; when the peer calls one with a Context, it runs on the worker's
 * Thread for that Connection, and nested calls it makes go back to the peer thread that is waiting
 * for it (upstream recursion). The loop side is loop-support.ts.
 *
 * Owns: per WorkerLoop, the worker's EventLoop, its Connection and its server Thread per
 * Connection. Threads: `workerConnection` and its result: the worker thread that attached.
 */
import * as capnp from "capnp-ts";
import { localCapability, writeCap, type Capability, type Transport, type TransportSink } from "@multiprocess-ts/capnp";
import {
  Connection,
  EventLoop,
  ThreadServer,
  envLogOptions,
  lane,
  setTraceListener,
  type ProxyClientCtor,
  type ProxyServerCtor,
  type ThreadContext,
} from "@multiprocess-ts/runtime";
import { attachLoop, type WorkerLoop } from "./attach.js";
import { ContextView, findContext } from "./context-view.js";
import { TRACE_CHANNEL, isLoopHandle, type LoopHandle, type TraceNameMsg } from "./protocol.js";
import { workerRpc, type WorkerRpc } from "./worker-bridge.js";

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

type ContextHook = (ctx: capnp.Struct, thread: ThreadContext, pool: boolean) => void;

/**
 * The runtime side of a worker attached to a loop: pass the LoopHandle from `workerData` (it is
 * attached here) or an attached WorkerLoop. One per WorkerLoop.
 */
export function workerConnection(handleOrLoop: LoopHandle | WorkerLoop): WorkerConnection {
  const loop = isLoopHandle(handleOrLoop) ? attachLoop(handleOrLoop) : (handleOrLoop as WorkerLoop);
  const existing = connections.get(loop);
  if (existing !== undefined) return existing;
  loop.checkOpen("workerConnection");
  // A tracing loop (`handle.trace`) learns the names of the methods this worker calls: its loop
  // then registers them (trace level, lines dropped unless MPTS_TRACE asks for them here too) and
  // each first use is sent ahead of the call (docs/usage.md, "Tracing").
  const traceLoop = isLoopHandle(handleOrLoop) && handleOrLoop.trace === true;
  const eventLoop = new EventLoop(loop.name, traceLoop ? { log: envLogOptions() ?? { level: "trace", logFn: () => {} } } : {});
  if (traceLoop) {
    setTraceListener((iid, mid, label) => {
      // Detached: the call this precedes fails on its own; the name is not needed any more.
      if (!loop.isClosed) loop.sendChannel(TRACE_CHANNEL, { iid, mid, label } satisfies TraceNameMsg);
    });
  }
  const connection = new Connection(eventLoop, inertTransport(), { name: `${loop.name}→${loop.loopName}` });
  const rpc = workerRpc(loop);
  const threadCaps = new Map<Connection, Map<string | undefined, Capability>>();
  /** This worker's Thread (or lane `laneName`'s) for calls into objects served on `conn`. */
  const threadCap = (conn: Connection, laneName: string | undefined): Capability => {
    let byLane = threadCaps.get(conn);
    if (byLane === undefined) {
      byLane = new Map();
      threadCaps.set(conn, byLane);
      const made = byLane;
      conn.addSyncCleanup(() => {
        threadCaps.delete(conn);
        for (const c of made.values()) c.close();
      });
    }
    let cap = byLane.get(laneName);
    if (cap === undefined) {
      const tc = laneName === undefined ? eventLoop.threadContext : lane(laneName).contextFor(eventLoop);
      cap = localCapability(new ThreadServer(conn, laneName === undefined ? eventLoop.threadName : tc.name, tc));
      byLane.set(laneName, cap);
    }
    return cap;
  };

  // Calls this worker makes: the Context the runtime filled here is recognized by its
  // callbackThread, a ThreadServer of this worker's Connection.
  rpc.hooks.detectContext = (params) =>
    findContext(params, 1, (server) => server instanceof ThreadServer && server.connection === connection)?.index ?? -1;

  // Calls this worker makes from a lane or with `thread: "pool"`: the loop fills their Context
  // from its lane context for this worker, or leaves `thread` to the peer's pool.
  // (`contextHook` is @internal on Connection, stripped from the runtime's .d.ts: hence the view.)
  (connection as unknown as { contextHook: ContextHook }).contextHook = (ctx, thread, pool) => {
    const lane = thread.lane;
    if (lane === undefined && !pool) return;
    rpc.tagCall(ctx.segment.message, lane === undefined ? { pool } : pool ? { lane, pool } : { lane });
  };

  // Calls the loop makes into this worker (the peer calling a callback we passed): a method with
  // a Context runs on this worker's Thread for the target's Connection.
  // A callback the peer addressed to one of our lanes (the loop's tag) runs on that lane's context.
  rpc.hooks.prepareIncoming = (target, iid, mid, params, tag) => {
    const server = target.localServer() as { connection?: unknown; constructor: unknown } | undefined;
    const ctor = server?.constructor as Partial<ProxyServerCtor> | undefined;
    const entry = ctor?.methods?.find((e) => e.method.interfaceId === iid && e.method.methodId === mid);
    if (entry === undefined || entry.method.context < 0 || !(server?.connection instanceof Connection)) return;
    const cap = threadCap(server.connection, tag?.lane);
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
