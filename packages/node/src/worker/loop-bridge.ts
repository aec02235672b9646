/**
 * Loop side of the RPC bridge: workers call capabilities that live on the loop thread (imports of
 * a peer Connection, local servers), and the loop calls capabilities hosted by workers (callbacks
 * they passed as arguments), all over the session's MessagePort.
 *
 * - A worker reaches an object the loop {@link LoopBridge.share}s by name. Each capability handed
 *   to a worker is a loop-side table entry holding one reference; the worker releases it when its
 *   last handle goes.
 * - A call from a worker becomes a real call on the loop (`newCall` + params copied over, caps
 *   renumbered). When the method has a `Proxy.Context` param, the loop fills it with *this
 *   worker's* ThreadContext (`fillContext` option), so the peer runs the call on the worker's
 *   server Thread and sends callbacks to the worker's callback Thread.
 * - A capability a worker passes to the loop becomes a {@link WorkerObjectServer} here: its
 *   dispatch forwards the call to that worker, so callbacks always run on the worker that created
 *   them, also while it is blocked waiting for the outer call (its Waiter runs them).
 *
 * Teardown: when the session closes (worker exit or terminate, port closed, detach, host close),
 * in-flight calls from the worker are canceled, calls into the worker reject with
 * DisconnectedError, and every table entry is released; in either order relative to Connection
 * teardown, since both run on the loop thread and each only releases references it owns.
 *
 * The table and call logic both halves share is in rpc-end.ts, the messages in protocol.ts; the
 * worker half is worker-bridge.ts.
 *
 * Owns: the shared names (one reference each), one {@link RpcEnd} per session.
 * Threads: loop thread only; never blocks.
 */
import * as capnp from "capnp-ts";
import {
  DisconnectedError,
  RpcError,
  localCapability,
  readCap,
  writeCap,
  type Capability,
  type IncomingCall,
  type Server,
} from "@multiprocess-ts/capnp";
import { ContextView } from "./context-view.js";
import { Holder, capFromTable, packStruct, unpackStructInto } from "./copy.js";
import type { WorkerHost, WorkerSession } from "./host.js";
import { RPC_CHANNEL, encodeError, type CallMsg, type CallTag, type RpcMsg } from "./protocol.js";
import { RemoteObjectServer, RpcEnd, type ShareHold, type TableEntry } from "./rpc-end.js";
import { pointerFieldNull, structFieldView } from "./raw-copy.js";
import { encodePayload } from "./protocol.js";

export interface LoopBridgeOptions {
  /**
   * Fills the Proxy.Context of a call a worker makes (`ctx` is the Context struct builder inside
   * the params, created if the worker left it null). `connection` is what the target was shared
   * with (see `share`), inherited by capabilities returned from its calls. The runtime glue
   * (`attachWorkers`, loop-support.ts) passes `fillContext(ctx, connection, <the worker's ThreadContext>)`,
   * or the worker's lane context / pool flag the worker's `tag` asks for.
   */
  fillContext?: (ctx: capnp.Struct, session: WorkerSession, connection: unknown, tag?: CallTag) => void;
  /**
   * The tag of a call the loop forwards into a worker (a peer calling back a worker's object):
   * the lane whose callback Thread the peer addressed, so the worker runs it on that lane.
   */
  callbackTag?: (params: capnp.Struct) => CallTag | undefined;
  /** Pointer index of the Context param of (interfaceId, methodId), or -1; used when the worker sent none. */
  contextIndex?: (interfaceId: bigint, methodId: number) => number;
  /**
   * Refills the Proxy.Context inside `params` (a call a {@link RelayServer} makes on `to`) that the
   * peer of `from` filled for `from`, with `session`'s threads on `to`; a no-op when `params` has
   * no such Context. The runtime glue passes one (see `attachWorkers`).
   */
  relayContext?: (params: capnp.Struct, session: WorkerSession, from: unknown, to: unknown) => void;
  /**
   * The error a worker's call on a capability shared with `connection` gets without being made,
   * or undefined to make it. The runtime glue returns upstream's "called after disconnect" error
   * once the Connection is gone, as a proxy call on the loop thread would.
   */
  callRefused?: (connection: unknown) => Error | undefined;
}


/** Per-session state of the bridge: the loop end of this session's RPC bridge. */
class SessionRpc extends RpcEnd {
  protected readonly side = "l";

  constructor(
    readonly bridge: LoopBridge,
    readonly session: WorkerSession,
  ) {
    super();
    session.onClose((why) => this.close(why));
  }

  protected post(m: RpcMsg, transfer: ArrayBuffer[]): void {
    this.session.sendChannel(RPC_CHANNEL, m, transfer as never[]);
  }

  protected postFrame(frame: ArrayBuffer): void {
    this.session.sendFrame(frame);
  }

  protected goneError(): Error {
    return new DisconnectedError(`worker "${this.session.name}" is gone`);
  }

  protected newStandIn(id: number): RemoteObjectServer {
    return new WorkerObjectServer(this, id);
  }

  protected unknownEntry(id: number, how: "named" | "called"): string {
    return `worker ${how} unknown loop capability ${id}`;
  }

  protected releaseFailed(err: unknown): void {
    this.bridge.host.log("error", `LoopBridge: releasing a capability of "${this.session.name}" threw: ${String(err)}`);
  }

  /**
   * `into` is the Connection the capability is being sent on, when known: a loop capability of
   * another Connection is then wrapped in a {@link RelayServer} (as `exportObject` does on the loop
   * thread), so each hop gets its own Context instead of forwarding the peer's thread handles.
   */
  protected override dupEntry(e: TableEntry, into: unknown): Capability {
    if (into !== undefined && e.connection !== undefined && e.connection !== into && !e.cap.isNull) {
      const cap = e.cap.dup();
      try {
        return localCapability(new RelayServer(this.bridge, this.session, cap, into, e.connection));
      } catch (err) {
        cap.close();
        throw err;
      }
    }
    return e.cap.dup();
  }

  protected onOwnMessage(m: RpcMsg): void {
    if (m.op !== "get") return; // "got" is never sent to the loop
    const shared = this.bridge.sharedEntry(m.name);
    if (shared === undefined) {
      this.send({ op: "got", q: m.q, error: encodeError(new RpcError("failed", `nothing is shared under "${m.name}"`)) });
    } else {
      const cap = this.describe(shared.cap, shared.connection);
      const share = shared.share;
      if (share !== undefined && cap !== null && "l" in cap) {
        const e = this.entries.get(cap.l);
        if (e !== undefined && e.share === undefined) {
          e.share = { holders: share.holders, destroy: share.destroy, left: false };
          share.holders.join();
        }
      }
      this.send({ op: "got", q: m.q, cap });
    }
  }

  /** A worker holder of a shared client released it: one holder less (no destroy). */
  protected override entryReleased(e: TableEntry): void {
    const h = e.share;
    if (h !== undefined && !h.left) {
      h.left = true;
      h.holders.leave();
    }
  }

  /**
   * A worker holder of a shared client calls `destroy`: it only leaves while other holders remain
   * (answered here with empty results); the last holder's destroy goes through.
   */
  protected override interceptCall(m: CallMsg, target: TableEntry): boolean {
    const h = target.share!;
    const d = h.destroy;
    if (d === undefined || m.mid !== d.methodId || m.iid !== d.interfaceId) return false;
    if (!h.left) {
      h.left = true;
      if (!h.holders.leave()) return false;
    }
    const results = encodePayload(new capnp.Message().initRoot(Holder), () => null);
    this.send({ op: "return", q: m.q, results }, [results.buf]);
    return true;
  }

  protected override outgoingTag(params: capnp.Struct): CallTag | undefined {
    const f = this.bridge.opts.callbackTag;
    return f === undefined ? undefined : f(params);
  }

  /** A call from the worker with a Proxy.Context: fill it with this worker's threads. */
  protected override checkTarget(target: TableEntry): void {
    const refused = target.connection === undefined ? undefined : this.bridge.opts.callRefused?.(target.connection);
    if (refused !== undefined) throw refused;
  }

  protected override prepareIncoming(params: capnp.Struct, m: CallMsg, iid: bigint, target: TableEntry): void {
    const ctx = m.ctx >= 0 ? m.ctx : (this.bridge.opts.contextIndex?.(iid, m.mid) ?? -1);
    const fill = this.bridge.opts.fillContext;
    if (ctx < 0 || fill === undefined) return;
    const c = structFieldView(ContextView, params, ctx) ?? capnp.Struct.getStruct(ctx, ContextView, params);
    // A thread the worker set is the peer's thread of a callback it is serving: keep it, so
    // a nested call goes back to the peer thread that waits for that callback (recursion).
    const kept = pointerFieldNull(c, 0) ? null : readCap(c, 0);
    try {
      fill(c, this.session, target.connection, m.tag);
      if (kept !== null) writeCap(c, 0, kept);
    } finally {
      kept?.close();
    }
  }

  close(why: Error): void {
    if (this.closed) return;
    this.bridge.forget(this.session);
    this.closeTables(new DisconnectedError(`worker "${this.session.name}" went away`, { cause: why }));
  }

  stats(): { caps: number; answers: number; questions: number; objects: number } {
    return { caps: this.entries.size, answers: this.answers.size, questions: this.questions.size, objects: this.standIns.size };
  }
}

/**
 * Loop-side stand-in for a capability hosted by a worker: calls are forwarded to that worker and
 * run there. After the worker is gone, calls fail with DisconnectedError.
 */
export class WorkerObjectServer extends RemoteObjectServer {}

/**
 * Stands on Connection `from` for `cap`, a loop capability of Connection `to` that a worker
 * passed in a call on `from` (inside a worker all clients share one Connection, so only the loop
 * can tell them apart). Each call is copied into a new call on `cap` whose Proxy.Context is
 * refilled for `to` with the worker's threads there (`relayContext`), like the runtime's relay
 * server (runtime proxy/relay.ts `relayServer`): forwarding the raw capability would hand `to`'s
 * peer thread handles of `from` ("invalid thread handle"). Other capabilities in params and results pass
 * through as they are. Owns its reference to `cap`, released when `from`'s peer releases it.
 */
export class RelayServer implements Server {
  #cap: Capability | null;
  constructor(
    readonly bridge: LoopBridge,
    readonly session: WorkerSession,
    cap: Capability,
    readonly from: unknown,
    readonly to: unknown,
  ) {
    this.#cap = cap;
  }

  async dispatch(call: IncomingCall): Promise<void> {
    const cap = this.#cap;
    if (cap === null) throw new DisconnectedError("relayed capability was released");
    const req = cap.newCall(call.interfaceId, call.methodId, Holder);
    copyStruct(call.params(Holder), req.params);
    this.bridge.opts.relayContext?.(req.params, this.session, this.from, this.to);
    const pending = req.send();
    const onAbort = (): void => pending.cancel();
    call.signal.addEventListener("abort", onAbort, { once: true });
    try {
      const resp = await pending;
      try {
        copyStruct(resp.results(Holder), call.results(Holder));
      } finally {
        resp.close();
      }
    } finally {
      call.signal.removeEventListener("abort", onAbort);
    }
  }

  onRelease(): void {
    const cap = this.#cap;
    this.#cap = null;
    cap?.close();
  }
}

/** Copies struct `src` over `dst` (another message), capabilities included (new references). */
function copyStruct(src: capnp.Struct, dst: capnp.Struct): void {
  const table = src.segment.message;
  const caps: (Capability | null)[] = [];
  let buf: ArrayBuffer;
  try {
    buf = packStruct(src, (i) => caps.push(capFromTable(table, i)));
  } catch (e) {
    for (const c of caps) c?.close();
    throw e;
  }
  unpackStructInto(buf, dst, caps);
}

/**
 * The bridge for one {@link WorkerHost}. Loop thread only.
 */
export class LoopBridge {
  private readonly sessions = new Map<WorkerSession, SessionRpc>();
  private readonly shared = new Map<string, TableEntry>();
  private readonly stopListening: () => void;
  private readonly stopSessions: () => void;

  constructor(
    readonly host: WorkerHost,
    readonly opts: LoopBridgeOptions = {},
  ) {
    this.stopListening = host.listen(RPC_CHANNEL, (body, from) => this.rpcFor(from).onMessage(body as RpcMsg));
    this.stopSessions = host.onSession((s) => void this.rpcFor(s));
  }

  /**
   * Shares `cap` with attached workers under `name` (the bridge keeps its own reference until
   * `unshare`/`close`). `connection` is passed to `fillContext` for calls on it and on the
   * capabilities its calls return. With `share`, every capability handed to a worker for `name`
   * is one more holder of the shared client: its `destroy` call only leaves while others remain
   * (docs/usage.md, "Sharing clients"). Returns the unshare function.
   */
  share(name: string, cap: Capability, opts: { connection?: unknown; share?: Omit<ShareHold, "left"> } = {}): () => void {
    if (this.shared.has(name)) throw new Error(`LoopBridge.share: "${name}" is already shared`);
    const entry: TableEntry = { cap: cap.dup(), connection: opts.connection };
    if (opts.share !== undefined) entry.share = { ...opts.share, left: true };
    this.shared.set(name, entry);
    return () => {
      if (this.shared.get(name) !== entry) return;
      this.shared.delete(name);
      entry.cap.close();
    };
  }

  /** @internal */
  sharedEntry(name: string): TableEntry | undefined {
    return this.shared.get(name);
  }

  /** @internal */
  forget(s: WorkerSession): void {
    this.sessions.delete(s);
  }

  /** Table sizes (all sessions, or one): what leak checks compare with zero. */
  stats(session?: WorkerSession): { caps: number; answers: number; questions: number; objects: number; sessions: number } {
    const out = { caps: 0, answers: 0, questions: 0, objects: 0, sessions: 0 };
    for (const [s, r] of this.sessions) {
      if (session !== undefined && s !== session) continue;
      const st = r.stats();
      out.caps += st.caps;
      out.answers += st.answers;
      out.questions += st.questions;
      out.objects += st.objects;
      out.sessions++;
    }
    return out;
  }

  /** Unshares everything and stops serving workers (their sessions stay open). Idempotent. */
  close(): void {
    this.stopListening();
    this.stopSessions();
    for (const e of this.shared.values()) e.cap.close();
    this.shared.clear();
    for (const r of [...this.sessions.values()]) r.close(new DisconnectedError("bridge closed"));
    this.sessions.clear();
  }

  private rpcFor(s: WorkerSession): SessionRpc {
    let r = this.sessions.get(s);
    if (r === undefined) {
      r = new SessionRpc(this, s);
      this.sessions.set(s, r);
    }
    return r;
  }
}

const bridges = new WeakMap<WorkerHost, LoopBridge>();

/** The LoopBridge of `host`, created on first use with `opts`. */
export function loopBridge(host: WorkerHost, opts?: LoopBridgeOptions): LoopBridge {
  let b = bridges.get(host);
  if (b === undefined) {
    b = new LoopBridge(host, opts);
    bridges.set(host, b);
  }
  return b;
}
