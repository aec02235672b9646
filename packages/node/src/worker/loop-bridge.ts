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
 * Threads: loop thread only; never blocks.
 */
import * as capnp from "capnp-ts";
import {
  DisconnectedError,
  RpcError,
  deferred,
  localCapability,
  readCap,
  writeCap,
  type Capability,
  type Deferred,
  type IncomingCall,
  type PendingCall,
  type Server,
} from "@multiprocess-ts/capnp";
import type { WorkerHost, WorkerSession } from "./host.js";
import { Holder, capFromTable, mapCaps, packStruct, unpackStructInto } from "./copy.js";
import { RPC_CHANNEL, decodeError, encodeError, type CapDesc, type Payload, type RpcMsg } from "./protocol.js";



/** A two-pointer struct view: the shape of proxy.capnp `Context` (thread, callbackThread). */
export class ContextView extends capnp.Struct {
  static readonly _capnp = { displayName: "ContextView", id: "0", size: new capnp.ObjectSize(0, 2) };
}

export interface LoopBridgeOptions {
  /**
   * Fills the Proxy.Context of a call a worker makes (`ctx` is the Context struct builder inside
   * the params, created if the worker left it null). `connection` is what the target was shared
   * with (see `share`), inherited by capabilities returned from its calls. The runtime glue
   * (`attachRuntime`) passes `fillContext(ctx, connection, <the worker's ThreadContext>)`.
   */
  fillContext?: (ctx: capnp.Struct, session: WorkerSession, connection: unknown) => void;
  /** Pointer index of the Context param of (interfaceId, methodId), or -1; used when the worker sent none. */
  contextIndex?: (interfaceId: bigint, methodId: number) => number;
  /**
   * Refills the Proxy.Context inside `params` (a call a {@link RelayServer} makes on `to`) that the
   * peer of `from` filled for `from`, with `session`'s threads on `to`; a no-op when `params` has
   * no such Context. The runtime glue passes one (see `attachWorkers`).
   */
  relayContext?: (params: capnp.Struct, session: WorkerSession, from: unknown, to: unknown) => void;
}

interface Entry {
  cap: Capability;
  connection: unknown;
}

/** Per-session state of the bridge. */
class SessionRpc {
  readonly caps = new Map<number, Entry>();
  private nextCap = 1;
  /** Calls from the worker, running on the loop. */
  readonly answers = new Map<number, PendingCall>();
  /** Calls into the worker, waiting for its return. */
  readonly questions = new Map<number, Deferred<Payload>>();
  private nextQ = 1;
  readonly objects = new Set<WorkerObjectServer>();
  closed = false;

  constructor(
    readonly bridge: LoopBridge,
    readonly session: WorkerSession,
  ) {
    session.onClose((why) => this.close(why));
  }

  send(m: RpcMsg, transfer: ArrayBuffer[] = []): void {
    if (this.closed) return;
    this.session.sendChannel(RPC_CHANNEL, m, transfer as never[]);
  }

  /** A new loop-side entry (takes ownership of `cap`). */
  addCap(cap: Capability, connection: unknown): number {
    const id = this.nextCap++;
    this.caps.set(id, { cap, connection });
    return id;
  }

  /** Descriptor for sending `cap` (borrowed) to the worker. */
  describe(cap: Capability | null, connection: unknown): CapDesc {
    if (cap === null || cap.isNull) return null;
    const server = cap.localServer();
    if (server instanceof WorkerObjectServer && server.rpc === this && !server.gone) return { w: server.id };
    return { l: this.addCap(cap.dup(), connection) };
  }

  /**
   * Capability for a descriptor the worker sent (a new reference the caller owns). `into` is the
   * Connection the capability is being sent on, when known: a loop capability of another
   * Connection is then wrapped in a {@link RelayServer} (as `exportObject` does on the loop
   * thread), so each hop gets its own Context instead of forwarding the peer's thread handles.
   */
  resolve(d: CapDesc, into?: unknown): Capability | null {
    if (d === null) return null;
    if ("l" in d) {
      const e = this.caps.get(d.l);
      if (e === undefined) throw new RpcError("failed", `worker named unknown loop capability ${d.l}`);
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
    const server = new WorkerObjectServer(this, d.w);
    this.objects.add(server);
    return localCapability(server);
  }

  pack(s: capnp.Struct, connection: unknown): Payload {
    const table = s.segment.message;
    const caps: CapDesc[] = [];
    const buf = packStruct(s, (i) => {
      const c = capFromTable(table, i);
      try {
        caps.push(this.describe(c, connection));
      } finally {
        c?.close();
      }
    });
    return { buf, caps };
  }

  onMessage(m: RpcMsg): void {
    if (this.closed) return;
    switch (m.op) {
      case "get": {
        const shared = this.bridge.sharedEntry(m.name);
        if (shared === undefined) {
          this.send({ op: "got", q: m.q, error: encodeError(new RpcError("failed", `nothing is shared under "${m.name}"`)) });
        } else {
          this.send({ op: "got", q: m.q, cap: this.describe(shared.cap, shared.connection) });
        }
        return;
      }
      case "call":
        this.onCall(m);
        return;
      case "cancel":
        this.answers.get(m.q)?.cancel();
        return;
      case "return": {
        const d = this.questions.get(m.q);
        if (d === undefined) return;
        this.questions.delete(m.q);
        if (m.error !== undefined) d.reject(decodeError(m.error));
        else d.resolve(m.results!);
        return;
      }
      case "release": {
        const e = this.caps.get(m.id);
        if (e === undefined) return;
        this.caps.delete(m.id);
        e.cap.close();
        return;
      }
      case "got":
        return; // never sent to the loop
    }
  }

  private onCall(m: Extract<RpcMsg, { op: "call" }>): void {
    const fail = (e: unknown): void => this.send({ op: "return", q: m.q, error: encodeError(e) });
    const target = this.caps.get(m.target);
    if (target === undefined) {
      fail(new RpcError("failed", `worker called unknown loop capability ${m.target}`));
      return;
    }
    let pending: PendingCall;
    try {
      const iid = BigInt(m.iid);
      const req = target.cap.newCall(iid, m.mid, Holder);
      const caps = mapCaps(m.params.caps, (d) => this.resolve(d, target.connection));
      unpackStructInto(m.params.buf, req.params, caps);
      const ctx = m.ctx >= 0 ? m.ctx : (this.bridge.opts.contextIndex?.(iid, m.mid) ?? -1);
      const fill = this.bridge.opts.fillContext;
      if (ctx >= 0 && fill !== undefined) {
        const c = capnp.Struct.getStruct(ctx, ContextView, req.params);
        // A thread the worker set is the peer's thread of a callback it is serving: keep it, so
        // a nested call goes back to the peer thread that waits for that callback (recursion).
        const kept = readCap(c, 0);
        try {
          fill(c, this.session, target.connection);
          if (kept !== null) writeCap(c, 0, kept);
        } finally {
          kept?.close();
        }
      }
      pending = req.send();
    } catch (e) {
      fail(e);
      return;
    }
    this.answers.set(m.q, pending);
    pending.then(
      (resp) => {
        this.answers.delete(m.q);
        if (this.closed) {
          resp.close();
          return;
        }
        let results: Payload;
        try {
          results = this.pack(resp.results(Holder), target.connection);
        } catch (e) {
          fail(e);
          return;
        } finally {
          resp.close();
        }
        this.send({ op: "return", q: m.q, results }, [results.buf]);
      },
      (e: unknown) => {
        this.answers.delete(m.q);
        fail(e);
      },
    );
  }

  /** Forwards `call` to worker export `id`; resolves when the worker returned. */
  async callWorker(id: number, call: IncomingCall): Promise<void> {
    if (this.closed) throw new DisconnectedError(`worker "${this.session.name}" is gone`);
    const q = this.nextQ++;
    const d = deferred<Payload>();
    this.questions.set(q, d);
    const params = this.pack(call.params(Holder), undefined);
    const onAbort = (): void => this.send({ op: "cancel", q });
    call.signal.addEventListener("abort", onAbort, { once: true });
    try {
      this.send(
        { op: "call", q, target: id, iid: call.interfaceId.toString(), mid: call.methodId, ctx: -1, params },
        [params.buf],
      );
      const results = await d.promise;
      const caps = mapCaps(results.caps, (c) => this.resolve(c));
      unpackStructInto(results.buf, call.results(Holder), caps);
    } finally {
      call.signal.removeEventListener("abort", onAbort);
      this.questions.delete(q);
    }
  }

  close(why: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.bridge.forget(this.session);
    const gone = new DisconnectedError(`worker "${this.session.name}" went away`, { cause: why });
    for (const d of this.questions.values()) d.reject(gone);
    this.questions.clear();
    // The worker cannot receive results any more: cancel what it started (the engine sends Finish).
    for (const p of [...this.answers.values()]) p.cancel();
    this.answers.clear();
    for (const o of this.objects) o.gone = true;
    this.objects.clear();
    const entries = [...this.caps.values()];
    this.caps.clear();
    for (const e of entries) {
      try {
        e.cap.close();
      } catch (err) {
        this.bridge.host.log("error", `LoopBridge: releasing a capability of "${this.session.name}" threw: ${String(err)}`);
      }
    }
  }

  stats(): { caps: number; answers: number; questions: number; objects: number } {
    return { caps: this.caps.size, answers: this.answers.size, questions: this.questions.size, objects: this.objects.size };
  }
}

/**
 * Loop-side stand-in for a capability hosted by a worker: calls are forwarded to that worker and
 * run there. After the worker is gone, calls fail with DisconnectedError.
 */
export class WorkerObjectServer implements Server {
  gone = false;
  constructor(
    readonly rpc: SessionRpc,
    readonly id: number,
  ) {}

  dispatch(call: IncomingCall): Promise<void> {
    if (this.gone) return Promise.reject(new DisconnectedError(`worker "${this.rpc.session.name}" is gone`));
    return this.rpc.callWorker(this.id, call);
  }

  onRelease(): void {
    this.rpc.objects.delete(this);
    if (!this.gone) this.rpc.send({ op: "release", id: this.id });
  }
}

/**
 * Stands on Connection `from` for `cap`, a loop capability of Connection `to` that a worker
 * passed in a call on `from` (inside a worker all clients share one Connection, so only the loop
 * can tell them apart). Each call is copied into a new call on `cap` whose Proxy.Context is
 * refilled for `to` with the worker's threads there (`relayContext`), like the runtime's relay
 * server (proxy.ts `relayServer`): forwarding the raw capability would hand `to`'s peer thread
 * handles of `from` ("invalid thread handle"). Other capabilities in params and results pass
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
  private readonly shared = new Map<string, Entry>();
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
   * capabilities its calls return. Returns the unshare function.
   */
  share(name: string, cap: Capability, opts: { connection?: unknown } = {}): () => void {
    if (this.shared.has(name)) throw new Error(`LoopBridge.share: "${name}" is already shared`);
    const entry = { cap: cap.dup(), connection: opts.connection };
    this.shared.set(name, entry);
    return () => {
      if (this.shared.get(name) !== entry) return;
      this.shared.delete(name);
      entry.cap.close();
    };
  }

  /** @internal */
  sharedEntry(name: string): Entry | undefined {
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
