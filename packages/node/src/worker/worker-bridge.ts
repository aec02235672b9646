/**
 * Worker side of the RPC bridge (see loop-bridge.ts): capabilities of the loop thread appear in
 * the worker as ordinary engine capabilities (`localCapability` of a {@link LoopObjectServer}
 * that forwards each call over the loop port), so `newCall`, `writeCap`/`readCap`, pipelining of
 * local promises and generated proxies work unchanged. Capabilities the worker passes in params
 * (callbacks) are exported: the loop calls them through the port and they run here.
 *
 * Threads: the worker thread that attached the WorkerLoop. Calls do not block; block on one with
 * `WorkerLoop.callSync`, during which callbacks the loop sends still run (the Waiter).
 */
import {
  DisconnectedError,
  RpcError,
  deferred,
  localCapability,
  type Capability,
  type Deferred,
  type IncomingCall,
  type PendingCall,
  type Server,
} from "@multiprocess-ts/capnp";
import type * as capnp from "capnp-ts";
import type { WorkerLoop } from "./attach.js";
import { Holder, capFromTable, erasePointerField, mapCaps, packStruct, pointerField, unpackStructInto } from "./copy.js";
import { RPC_CHANNEL, decodeError, encodeError, type CapDesc, type Payload, type RpcMsg } from "./protocol.js";

/** Something with generated `ServerMethod`s: a generated `…Server` class. */
export interface ProxyMethodsSource {
  readonly methods: readonly { readonly method: { interfaceId: bigint; methodId: number; context: number } }[];
}

/**
 * Extension points the runtime glue (runtime.ts) fills; the bridge itself knows only capabilities.
 */
export interface WorkerRpcHooks {
  /** Pointer index of the Proxy.Context in the params of an outgoing call, or -1. */
  detectContext?: (params: capnp.Struct, interfaceId: bigint, methodId: number) => number;
  /** Adjusts an incoming call (from the loop) before it is delivered to `target` here. */
  prepareIncoming?: (target: Capability, interfaceId: bigint, methodId: number, params: capnp.Struct) => void;
}

/**
 * The bridge state of one WorkerLoop. Get it with {@link workerRpc}.
 */
export class WorkerRpc {
  private readonly exports = new Map<number, Capability>();
  private nextExport = 1;
  /** Calls this worker made, waiting for the loop's return. */
  private readonly questions = new Map<number, Deferred<Payload>>();
  /** Calls the loop made into this worker, running here. */
  private readonly answers = new Map<number, PendingCall>();
  private readonly gets = new Map<number, (r: { desc?: CapDesc; error?: unknown }) => void>();
  private nextQ = 1;
  private imports = 0;
  private readonly contextIndexes = new Map<string, number>();
  private closeError: Error | undefined;
  readonly hooks: WorkerRpcHooks = {};

  /** @internal use {@link workerRpc} */
  constructor(readonly loop: WorkerLoop) {
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
        if (method.context >= 0) this.contextIndexes.set(`${method.interfaceId}:${method.methodId}`, method.context);
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
    return { imports: this.imports, exports: this.exports.size, questions: this.questions.size, answers: this.answers.size };
  }

  // `done` runs synchronously when the answer is read from the port (or at close).
  private requestGet(name: string, done: (r: { desc?: CapDesc; error?: unknown }) => void): void {
    if (this.closeError !== undefined) {
      done({ error: this.gone() });
      return;
    }
    const q = this.nextQ++;
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
    return this.contextIndexes.get(`${iid}:${mid}`) ?? -1;
  }

  /** @internal */
  send(m: RpcMsg, transfer: ArrayBuffer[] = []): void {
    this.loop.sendChannel(RPC_CHANNEL, m, transfer as never[]);
  }

  /** @internal A capability for a descriptor from the loop (a new reference). */
  importDesc(d: CapDesc): Capability | null {
    if (d === null) return null;
    if ("w" in d) {
      const c = this.exports.get(d.w);
      if (c === undefined) throw new RpcError("failed", `loop named unknown worker export ${d.w}`);
      return c.dup();
    }
    this.imports++;
    return localCapability(new LoopObjectServer(this, d.l));
  }

  /** @internal Descriptor for sending `cap` (borrowed) to the loop. */
  describe(cap: Capability | null): CapDesc {
    if (cap === null || cap.isNull) return null;
    const server = cap.localServer();
    if (server instanceof LoopObjectServer && server.rpc === this && !server.released) return { l: server.id };
    const id = this.nextExport++;
    this.exports.set(id, cap.dup());
    return { w: id };
  }

  /** @internal */
  pack(s: capnp.Struct): Payload {
    const m = s.segment.message;
    const caps: CapDesc[] = [];
    const buf = packStruct(s, (i) => {
      const c = capFromTable(m, i);
      try {
        caps.push(this.describe(c));
      } finally {
        c?.close();
      }
    });
    return { buf, caps };
  }

  /** @internal Forwards `call` to loop entry `id`. */
  async callLoop(id: number, call: IncomingCall): Promise<void> {
    if (this.closeError !== undefined) throw this.gone();
    const q = this.nextQ++;
    const d = deferred<Payload>();
    this.questions.set(q, d);
    const keep = this.loop.keepAlive();
    const onAbort = (): void => {
      if (this.closeError === undefined) this.send({ op: "cancel", q });
    };
    call.signal.addEventListener("abort", onAbort, { once: true });
    try {
      const p = call.params(Holder);
      let ctx = this.contextIndex(call.interfaceId, call.methodId);
      if (ctx < 0 && this.hooks.detectContext !== undefined) ctx = this.hooks.detectContext(p, call.interfaceId, call.methodId);
      // The loop fills callbackThread with this worker's thread; whatever the worker-side
      // runtime put there would only be exported for nothing. A set `thread` is kept: it is the
      // peer's thread of a callback we are serving (recursion goes back to it).
      if (ctx >= 0) {
        const cp = pointerField(p, ctx);
        if (cp !== null) erasePointerField(cp, 1);
      }
      const params = this.pack(p);
      this.send({ op: "call", q, target: id, iid: call.interfaceId.toString(), mid: call.methodId, ctx, params }, [params.buf]);
      const results = await d.promise;
      const caps = mapCaps(results.caps, (c) => this.importDesc(c));
      unpackStructInto(results.buf, call.results(Holder), caps);
    } finally {
      call.signal.removeEventListener("abort", onAbort);
      this.questions.delete(q);
      keep[Symbol.dispose]();
    }
  }

  /** @internal */
  released(): void {
    this.imports--;
  }

  /** @internal */
  get isClosed(): boolean {
    return this.closeError !== undefined;
  }

  private gone(): DisconnectedError {
    return new DisconnectedError(`worker is not attached to loop "${this.loop.loopName}" any more`, { cause: this.closeError });
  }

  private onMessage(m: RpcMsg): void {
    switch (m.op) {
      case "got": {
        const done = this.gets.get(m.q);
        if (done === undefined) return;
        if (m.error !== undefined) done({ error: decodeError(m.error) });
        else done({ desc: m.cap ?? null });
        return;
      }
      case "return": {
        const d = this.questions.get(m.q);
        if (d === undefined) return;
        this.questions.delete(m.q);
        if (m.error !== undefined) d.reject(decodeError(m.error));
        else d.resolve(m.results!);
        return;
      }
      case "call":
        this.onCall(m);
        return;
      case "cancel":
        this.answers.get(m.q)?.cancel();
        return;
      case "release": {
        const c = this.exports.get(m.id);
        if (c === undefined) return;
        this.exports.delete(m.id);
        c.close();
        return;
      }
      case "get":
        return; // never sent to a worker
    }
  }

  // A call the loop makes on a capability this worker exported (a callback). It runs right here:
  // from the port's message event normally, or from the Waiter while this worker is blocked.
  private onCall(m: Extract<RpcMsg, { op: "call" }>): void {
    const fail = (e: unknown): void => this.send({ op: "return", q: m.q, error: encodeError(e) });
    const target = this.exports.get(m.target);
    if (target === undefined) {
      fail(new RpcError("failed", `loop called unknown worker export ${m.target}`));
      return;
    }
    let pending: PendingCall;
    try {
      const iid = BigInt(m.iid);
      const req = target.newCall(iid, m.mid, Holder);
      unpackStructInto(m.params.buf, req.params, mapCaps(m.params.caps, (d) => this.importDesc(d)));
      this.hooks.prepareIncoming?.(target, iid, m.mid, req.params);
      pending = req.send();
    } catch (e) {
      fail(e);
      return;
    }
    this.answers.set(m.q, pending);
    const keep = this.loop.keepAlive();
    pending.then(
      (resp) => {
        this.answers.delete(m.q);
        keep[Symbol.dispose]();
        let results: Payload;
        try {
          results = this.pack(resp.results(Holder));
        } catch (e) {
          fail(e);
          return;
        } finally {
          resp.close();
        }
        if (this.closeError === undefined) this.send({ op: "return", q: m.q, results }, [results.buf]);
      },
      (e: unknown) => {
        this.answers.delete(m.q);
        keep[Symbol.dispose]();
        if (this.closeError === undefined) fail(e);
      },
    );
  }

  private close(e: Error): void {
    if (this.closeError !== undefined) return;
    this.closeError = e;
    rpcs.delete(this.loop);
    const gone = this.gone();
    for (const d of this.questions.values()) d.reject(gone);
    this.questions.clear();
    for (const done of [...this.gets.values()]) done({ error: gone });
    this.gets.clear();
    for (const p of [...this.answers.values()]) p.cancel();
    this.answers.clear();
    const ex = [...this.exports.values()];
    this.exports.clear();
    for (const c of ex) c.close();
  }
}

/**
 * Worker-side stand-in for a loop capability: each call is forwarded to the loop and runs there
 * (and from there, possibly, on the peer). Released: the loop drops its table entry.
 */
export class LoopObjectServer implements Server {
  released = false;
  constructor(
    readonly rpc: WorkerRpc,
    readonly id: number,
  ) {}

  dispatch(call: IncomingCall): Promise<void> {
    return this.rpc.callLoop(this.id, call);
  }

  onRelease(): void {
    this.released = true;
    this.rpc.released();
    if (!this.rpc.isClosed) {
      try {
        this.rpc.send({ op: "release", id: this.id });
      } catch {
        // the port is gone: the loop released everything already
      }
    }
  }
}

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
