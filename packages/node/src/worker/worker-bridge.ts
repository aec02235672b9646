/**
 * Worker side of the RPC bridge (see loop-bridge.ts): capabilities of the loop thread appear in
 * the worker as ordinary engine capabilities (`forwardingCapability` of a {@link LoopObjectServer}:
 * each call is sent over the loop port from the params the caller built, inside `send()`, and its
 * results are read in place from the bytes the loop returns: one engine pass in the worker), so
 * `newCall`, `writeCap`/`readCap`, pipelining of local promises and generated proxies work
 * unchanged. Capabilities the worker passes in params (callbacks) are exported: the loop calls
 * them through the port and they run here.
 *
 * The table and call logic both halves share is in rpc-end.ts, the messages in protocol.ts.
 *
 * Owns: the worker end's tables (exports, stand-ins, questions, answers, pending `get`s).
 * Threads: the worker thread that attached the WorkerLoop. Calls do not block; block on one with
 * `WorkerLoop.callSync`, during which callbacks the loop sends still run (the Waiter).
 */
import { DisconnectedError, RpcError, deferred, forwardingCapability, type Capability } from "@multiprocess-ts/capnp";
import type * as capnp from "capnp-ts";
import type { WorkerLoop } from "./attach.js";
import { erasePointerField, pointerField } from "./copy.js";
import { eraseCapFieldRaw } from "./raw-copy.js";
import { RPC_CHANNEL, decodeError, type CallMsg, type CallTag, type CapDesc, type RpcMsg } from "./protocol.js";
import { RemoteObjectServer, RpcEnd, type MethodOf, type TableEntry } from "./rpc-end.js";

/** Something with generated `ServerMethod`s: a generated `…Server` class. */
export interface ProxyMethodsSource {
  readonly methods: readonly { readonly method: { interfaceId: bigint; methodId: number; context: number } }[];
}

/**
 * Extension points the runtime glue (worker-connection.ts) fills; the bridge itself knows only capabilities.
 */
export interface WorkerRpcHooks {
  /** Pointer index of the Proxy.Context in the params of an outgoing call, or -1. */
  detectContext?: (params: capnp.Struct, interfaceId: bigint, methodId: number) => number;
  /** Adjusts an incoming call (from the loop) before it is delivered to `target` here. */
  prepareIncoming?: (target: Capability, interfaceId: bigint, methodId: number, params: capnp.Struct, tag: CallTag | undefined) => void;
}

/**
 * The worker end of the RPC bridge for one WorkerLoop (the loop end is loop-bridge.ts; the shared
 * table and call logic is rpc-end.ts). Get it with {@link workerRpc}.
 */
export class WorkerRpc extends RpcEnd {
  protected readonly side = "w";
  private readonly gets = new Map<number, (r: { desc?: CapDesc; error?: unknown }) => void>();
  /** Context param index per interface id and method id (registered or found once). */
  private readonly contextIndexes = new Map<bigint, Map<number, number>>();
  private closeError: Error | undefined;
  readonly hooks: WorkerRpcHooks = {};
  /** Calls made from a lane or with `thread: "pool"`, by params message (see {@link tagCall}). */
  private readonly tags = new WeakMap<object, CallTag>();
  private tagged = false;

  /** @internal use {@link workerRpc} */
  constructor(readonly loop: WorkerLoop) {
    super();
    loop.listen(RPC_CHANNEL, (body) => this.onMessage(body as RpcMsg));
    loop.onClose((e) => this.close(e));
  }

  /**
   * Tells the bridge where the `Proxy.Context` param of each method is, from generated server
   * classes (`FooInterfaceServer`), so the loop fills it with this worker's thread. Without it the
   * loop's own registry (if any) decides.
   */
  registerInterfaces(...sources: ProxyMethodsSource[]): void {
    for (const s of sources) {
      for (const { method } of s.methods) {
        if (method.context >= 0) this.setContextIndex(method.interfaceId, method.methodId, method.context);
      }
    }
  }

  /**
   * A new reference to the capability the loop shares under `name` (`LoopBridge.share`). Resolves
   * when the loop answered; rejects if nothing is shared under that name.
   */
  get(name: string): Promise<Capability> {
    const d = deferred<Capability>();
    this.requestGet(name, (r) => {
      if (r.error !== undefined) d.reject(r.error);
      else {
        try {
          const cap = this.importDesc(r.desc ?? null);
          if (cap === null) d.reject(new RpcError("failed", `"${name}" is a null capability`));
          else d.resolve(cap);
        } catch (e) {
          d.reject(e);
        }
      }
    });
    return d.promise;
  }

  /**
   * {@link get}, blocking the worker until the loop answered (never on a loop thread). The answer
   * is taken straight from the port, so this works inside a promise job too.
   */
  getSync(name: string): Capability {
    let result: { desc?: CapDesc; error?: unknown } | undefined;
    const since = this.loop.waiter.interrupts();
    this.requestGet(name, (r) => (result = r));
    this.loop.waiter.wait(() => result !== undefined, { what: `getSync("${name}")`, since });
    if (result!.error !== undefined) throw result!.error;
    const cap = this.importDesc(result!.desc ?? null);
    if (cap === null) throw new RpcError("failed", `"${name}" is a null capability`);
    return cap;
  }

  /** Table sizes: what leak checks compare with zero. */
  stats(): { imports: number; exports: number; questions: number; answers: number } {
    return { imports: this.standIns.size, exports: this.entries.size, questions: this.questions.size, answers: this.answers.size };
  }

  // `done` runs synchronously when the answer is read from the port (or at close).
  private requestGet(name: string, done: (r: { desc?: CapDesc; error?: unknown }) => void): void {
    if (this.closed) {
      done({ error: this.goneError() });
      return;
    }
    const q = this.nextQuestion();
    const keep = this.loop.keepAlive();
    this.gets.set(q, (r) => {
      this.gets.delete(q);
      keep[Symbol.dispose]();
      done(r);
    });
    this.send({ op: "get", q, name });
  }

  /** @internal */
  contextIndex(iid: bigint, mid: number): number {
    return this.contextIndexes.get(iid)?.get(mid) ?? -1;
  }

  private setContextIndex(iid: bigint, mid: number, index: number): void {
    let m = this.contextIndexes.get(iid);
    if (m === undefined) this.contextIndexes.set(iid, (m = new Map()));
    m.set(mid, index);
  }

  /** @internal */
  get isClosed(): boolean {
    return this.closed;
  }

  protected post(m: RpcMsg, transfer: ArrayBuffer[]): void {
    this.loop.sendChannel(RPC_CHANNEL, m, transfer as never[]);
  }

  protected postFrame(frame: ArrayBuffer): void {
    this.loop.sendFrame(frame);
  }

  protected goneError(): DisconnectedError {
    return new DisconnectedError(`worker is not attached to loop "${this.loop.loopName}" any more`, { cause: this.closeError });
  }

  protected newStandIn(id: number): RemoteObjectServer {
    return new LoopObjectServer(this, id);
  }

  // One engine pass in the worker: a call on a loop capability is sent from the params the
  // worker's runtime built (no server dispatch here), its results read in place (rpc/forward.ts).
  protected override standInCapability(server: RemoteObjectServer): Capability {
    return forwardingCapability(server);
  }

  protected unknownEntry(id: number, how: "named" | "called"): string {
    return `loop ${how} unknown worker export ${id}`;
  }

  protected override hold(): void {
    this.loop.hold();
  }

  protected override letGo(): void {
    this.loop.letGo();
  }

  protected onOwnMessage(m: RpcMsg): void {
    if (m.op !== "got") return; // "get" is never sent to a worker
    const done = this.gets.get(m.q);
    if (done === undefined) return;
    if (m.error !== undefined) done({ error: decodeError(m.error) });
    else done({ desc: m.cap ?? null });
  }

  /**
   * Marks the call whose params live in `message` (the worker runtime's Connection.contextHook,
   * while it fills the Context): the loop fills that call's Context from the worker's lane
   * `tag.lane` and/or leaves `thread` to the peer's pool. Untagged calls cost one flag check.
   */
  tagCall(message: object, tag: CallTag): void {
    this.tags.set(message, tag);
    this.tagged = true;
  }

  protected override outgoingTag(params: capnp.Struct, ctx: number): CallTag | undefined {
    if (!this.tagged || ctx < 0) return undefined;
    const m = params.segment.message;
    const tag = this.tags.get(m);
    if (tag !== undefined) this.tags.delete(m);
    return tag;
  }

  /**
   * A call this worker makes: the loop fills callbackThread with this worker's thread, so
   * whatever the worker-side runtime put there would only be exported for nothing. A set `thread`
   * is kept: it is the peer's thread of a callback we are serving (recursion goes back to it).
   */
  protected override prepareOutgoing(params: capnp.Struct, call: MethodOf): number {
    let ctx = this.contextIndex(call.interfaceId, call.methodId);
    if (ctx < 0 && this.hooks.detectContext !== undefined) {
      ctx = this.hooks.detectContext(params, call.interfaceId, call.methodId);
      // A Context found once is at the same index in every call of that method (its schema
      // says so): later calls skip the search. A miss is not kept (a call may leave it null).
      if (ctx >= 0) this.setContextIndex(call.interfaceId, call.methodId, ctx);
    }
    if (ctx >= 0 && !eraseCapFieldRaw(params, ctx, 1)) {
      const cp = pointerField(params, ctx);
      if (cp !== null) erasePointerField(cp, 1);
    }
    return ctx;
  }

  // A call the loop makes on a capability this worker exported (a callback). It runs right here:
  // from the port's message event normally, or from the Waiter while this worker is blocked.
  protected override prepareIncoming(params: capnp.Struct, m: CallMsg, iid: bigint, target: TableEntry): void {
    this.hooks.prepareIncoming?.(target.cap, iid, m.mid, params, m.tag);
  }

  private close(e: Error): void {
    if (this.closed) return;
    this.closeError = e;
    rpcs.delete(this.loop);
    const gone = this.goneError();
    this.closed = true;
    for (const done of [...this.gets.values()]) done({ error: gone });
    this.gets.clear();
    this.closeTables(gone);
  }
}

/**
 * Worker-side stand-in for a loop capability: each call is forwarded to the loop and runs there
 * (and from there, possibly, on the peer). Released: the loop drops its table entry.
 */
export class LoopObjectServer extends RemoteObjectServer {}

const rpcs = new WeakMap<WorkerLoop, WorkerRpc>();

/** The RPC bridge of `loop` (created on first use). */
export function workerRpc(loop: WorkerLoop): WorkerRpc {
  let r = rpcs.get(loop);
  if (r === undefined) {
    loop.checkOpen("workerRpc");
    r = new WorkerRpc(loop);
    rpcs.set(loop, r);
  }
  return r;
}
