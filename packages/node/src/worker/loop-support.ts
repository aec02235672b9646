/**
 * Thread mapping with worker_threads, loop side: {@link attachWorkers}(loop) gives an EventLoop one
 * WorkerHost + LoopBridge. Each attached worker gets a loop-side {@link ThreadContext} (created at
 * its first call, closed when its session closes). A call a worker makes with a `Proxy.Context`
 * param is filled with that context (`fillContext`): per Connection, the request Thread (peer
 * `makeThread(<worker name>)`, pipelined, once) and the callback Thread, so the peer runs it on
 * the worker's own server thread and sends callbacks back to the worker's callback Thread. The
 * worker side is worker-connection.ts.
 *
 * Owns: per EventLoop, the WorkerSupport (host, bridge) and the attached workers' ThreadContexts
 * (one per worker, plus one per lane a worker used).
 * Threads: `attachWorkers` and everything it returns: loop thread only.
 */
import type { Capability } from "@multiprocess-ts/capnp";
import {
  Connection,
  IpcCalledAfterDisconnectError,
  ThreadContext,
  ThreadServer,
  fillContext,
  traceName,
  SharedHolders,
  longThreadName,
  type EventLoop,
  type ProxyClientBase,
} from "@multiprocess-ts/runtime";
import { DisconnectedError } from "@multiprocess-ts/capnp";
import { findContext } from "./context-view.js";
import { erasePointerField } from "./copy.js";
import { workerHost, type WorkerHost, type WorkerSession } from "./host.js";
import { loopBridge, type LoopBridge } from "./loop-bridge.js";
import { TRACE_CHANNEL, type LoopHandle, type TraceNameMsg } from "./protocol.js";

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
   * filled with their own ThreadContext for `client.$connection`. The shared client and every
   * worker-side client of it are holders of one remote object: `close()` sends the remote
   * `destroy` only from the last holder (earlier ones release), `release()` never does. Returns
   * unshare.
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

/**
 * A worker's lane (runInLane on the worker): one more ThreadContext per (worker, lane) in `lanes`,
 * so the peer runs each lane's calls on their own Thread; closed with the worker's session.
 */
function workerLaneContext(
  loop: EventLoop,
  lanes: Map<WorkerSession, Map<string, ThreadContext>>,
  session: WorkerSession,
  lane: string,
): ThreadContext {
  let byName = lanes.get(session);
  if (byName === undefined) {
    byName = new Map();
    lanes.set(session, byName);
    const made = byName;
    session.onClose(() => {
      lanes.delete(session);
      for (const tc of made.values()) tc.close();
    });
  }
  let tc = byName.get(lane);
  if (tc === undefined) {
    tc = new ThreadContext(loop, longThreadName(`${session.name}/lane:${lane}`));
    tc.lane = lane;
    byName.set(lane, tc);
  }
  return tc;
}

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
      // teardown; ThreadClient makes either order safe (upstream #189; docs/threading.md).
      session.onClose(() => {
        contexts.delete(session);
        made.close();
      });
    }
    return tc;
  };
  const lanes = new Map<WorkerSession, Map<string, ThreadContext>>();
  const laneContext = (session: WorkerSession, lane: string): ThreadContext => {
    threadContext(session); // throws for a closed session
    return workerLaneContext(loop, lanes, session, lane);
  };
  const bridge = loopBridge(host, {
    fillContext(ctx, session, connection, tag) {
      if (!(connection instanceof Connection) || connection.state !== "open" || session.isClosed) return;
      if (tag === undefined) fillContext(ctx, connection, threadContext(session));
      else fillContext(ctx, connection, tag.lane === undefined ? threadContext(session) : laneContext(session, tag.lane), tag.pool === true);
    },
    // A worker passed a client of Connection `to` into a call on `from`: the bridge relays it
    // (RelayServer). A Context in the relayed call was filled by `from`'s peer: its thread is one
    // of our ThreadServers on `from`. Refill it for `to` with the worker's threads there.
    // A peer calling back a worker's object on a lane's callback Thread: the worker runs it on
    // that lane. Nothing to look at until a worker used a lane.
    callbackTag(params) {
      if (lanes.size === 0) return undefined;
      let lane: string | undefined;
      findContext(params, 0, (server) => {
        if (!(server instanceof ThreadServer) || server.context.lane === undefined) return false;
        lane = server.context.lane;
        return true;
      });
      return lane === undefined ? undefined : { lane };
    },
    callRefused(connection) {
      if (!(connection instanceof Connection) || connection.state === "open") return undefined;
      return new IpcCalledAfterDisconnectError(connection.signal.reason);
    },
    relayContext(params, session, from, to) {
      if (!(to instanceof Connection) || !(from instanceof Connection)) return;
      const found = findContext(params, 0, (server) => server instanceof ThreadServer && server.connection === from);
      if (found === undefined) return;
      erasePointerField(found.view, 0);
      erasePointerField(found.view, 1);
      if (to.state === "open" && !session.isClosed) fillContext(found.view, to, threadContext(session));
    },
  });
  host.listen(TRACE_CHANNEL, (body) => {
    const m = body as Partial<TraceNameMsg>;
    if (typeof m.iid === "bigint" && typeof m.mid === "number" && typeof m.label === "string") traceName(m.iid, m.mid, m.label);
  });
  const support: WorkerSupport = {
    loop,
    host,
    bridge,
    // A worker of a tracing loop names the methods it calls (docs/usage.md, "Tracing").
    handle: (opts) => (loop.logEnabled("trace") ? { ...host.handle(opts), trace: true } : host.handle(opts)),
    share: (name, client) => {
      const d = (client.constructor as { $destroy?: { interfaceId: bigint; methodId: number } }).$destroy;
      // `$holders` is @internal on ProxyClientBase (stripped from the runtime's .d.ts), hence the view.
      const shared = client as unknown as { $holders: SharedHolders | undefined };
      const holders = (shared.$holders ??= new SharedHolders());
      return bridge.share(name, client.$cap, {
        connection: client.$connection,
        share: { holders, destroy: d === undefined ? undefined : { interfaceId: d.interfaceId, methodId: d.methodId } },
      });
    },
    shareCapability: (name, cap, connection) => bridge.share(name, cap, { connection }),
    threadContext,
    threadContexts: contexts,
  };
  supports.set(loop, support);
  return support;
}
