/**
 * TS implementations of the conformance interfaces (schema/conformance.capnp) on the engine's
 * `Server` seam, plus small typed call helpers for the client side. The C++ peer implements the
 * same behaviour (cpp/peer.c++); the two must stay in step.
 */
import {
  RpcError,
  deferred,
  localCapability,
  promiseCapability,
  readCap,
  writeCap,
  type Capability,
  type Deferred,
  type IncomingCall,
  type Server,
} from "@multiprocess-ts/capnp";
import type * as capnp from "capnp-ts";
import {
  Ack,
  CALC_ID,
  CALLBACK_ID,
  COUNTER_ID,
  CalcMethod,
  Calc_add$Params,
  Calc_add$Results,
  Calc_echo$Params,
  Calc_echo$Results,
  Calc_fail$Params,
  Calc_fire$Params,
  Calc_fire$Results,
  Calc_join$Params,
  Calc_join$Results,
  Calc_makeCounter$Params,
  Calc_makeCounterLater$Params,
  Calc_readCounter$Results,
  Calc_reflect$Params,
  Calc_resolvePending$Results,
  Calc_seq$Params,
  Calc_seq$Results,
  Calc_stats$Results,
  Calc_subscribe$Params,
  Calc_subscribe$Results,
  Calc_sum$Params,
  Calc_sum$Results,
  CallbackMethod,
  Callback_notify$Params,
  CounterMethod,
  Counter_inc$Params,
  Counter_value$Results,
  Empty,
  KIND_NAMES,
  OneCap,
} from "./schema.js";

type Ctor<T extends capnp.Struct> = capnp.StructCtor<T>;

/**
 * Live-object accounting of one side, for leak checks. `live` counts server objects besides
 * the bootstrap Calcs (Counters in a server, Callbacks in a client); `held` counts the peer's
 * capabilities kept beyond a call; `calcs` counts Calc servers not yet released.
 */
export class Tracker {
  live = 0;
  held = 0;
  calcs = 0;
  /** hang() calls started, and those whose signal aborted (cancel or connection end). */
  hangsStarted = 0;
  hangsAborted = 0;
  private zero: Deferred<void> | null = null;
  private idle: Deferred<void> | null = null;

  dec(): void {
    this.live--;
    this.changed();
  }
  unhold(): void {
    this.held--;
    this.changed();
  }
  private changed(): void {
    if (this.live === 0 && this.zero !== null) { this.zero.resolve(); this.zero = null; }
    if (this.live === 0 && this.held === 0 && this.idle !== null) { this.idle.resolve(); this.idle = null; }
  }
  /** Resolves when `live` is 0 (at once if it is). */
  liveZero(): Promise<void> {
    if (this.live === 0) return Promise.resolve();
    this.zero ??= deferred<void>();
    return this.zero.promise;
  }
  /** Resolves when `live` and `held` are both 0 (at once if they are). */
  whenIdle(): Promise<void> {
    if (this.live === 0 && this.held === 0) return Promise.resolve();
    this.idle ??= deferred<void>();
    return this.idle.promise;
  }
}

/** Makes a call and reads its results; closes the Response. */
export async function call<P extends capnp.Struct, R extends capnp.Struct, T>(
  cap: Capability, interfaceId: bigint, methodId: number,
  Params: Ctor<P>, build: (p: P) => void, Results: Ctor<R>, read: (r: R) => T,
  opts?: { signal?: AbortSignal },
): Promise<T> {
  const req = cap.newCall(interfaceId, methodId, Params);
  build(req.params);
  const resp = await req.send(opts);
  try {
    return read(resp.results(Results));
  } finally {
    resp.close();
  }
}

export function notify(cb: Capability, value: number, msg: string): Promise<number> {
  return call(cb, CALLBACK_ID, CallbackMethod.notify, Callback_notify$Params,
    (p) => { p.value = value; p.msg = msg; }, Ack, (r) => r.ack);
}

export function counterInc(c: Capability, by: number): Promise<number> {
  return call(c, COUNTER_ID, CounterMethod.inc, Counter_inc$Params, (p) => { p.by = by; },
    Counter_value$Results, (r) => r.value);
}

export function counterGet(c: Capability): Promise<number> {
  return call(c, COUNTER_ID, CounterMethod.get, Empty, () => {}, Counter_value$Results, (r) => r.value);
}

export function add(calc: Capability, a: number, b: number): Promise<number> {
  return call(calc, CALC_ID, CalcMethod.add, Calc_add$Params, (p) => { p.a = a; p.b = b; },
    Calc_add$Results, (r) => r.sum);
}

export function stats(calc: Capability): Promise<{ live: number; held: number }> {
  return call(calc, CALC_ID, CalcMethod.stats, Empty, () => {}, Calc_stats$Results,
    (r) => ({ live: r.live, held: r.held }));
}

function unimplemented(iface: bigint, method: number): RpcError {
  return new RpcError("unimplemented", `method ${iface.toString(16)}/${method} not implemented`);
}

/** The params' capability at `ptr`; throws if it is null. The caller closes it. */
function capParam(call: IncomingCall, Params: Ctor<capnp.Struct>, ptr: number, what: string): Capability {
  const cap = readCap(call.params(Params), ptr);
  if (cap === null) throw new RpcError("failed", `${what}: null capability`);
  return cap;
}

export class CounterServer implements Server {
  constructor(private value: number, private readonly tracker: Tracker) {
    tracker.live++;
  }
  dispatch(c: IncomingCall): void {
    if (c.interfaceId !== COUNTER_ID) throw unimplemented(c.interfaceId, c.methodId);
    switch (c.methodId) {
      case CounterMethod.inc:
        this.value = (this.value + c.params(Counter_inc$Params).by) | 0;
        c.results(Counter_value$Results).value = this.value;
        return;
      case CounterMethod.get:
        c.results(Counter_value$Results).value = this.value;
        return;
      default:
        throw unimplemented(c.interfaceId, c.methodId);
    }
  }
  onRelease(): void {
    this.tracker.dec();
  }
}

export class CalcServer implements Server {
  private registered: Capability | null = null;
  private pending: { start: number; d: Deferred<Capability> }[] = [];
  private lastSeq = 0;
  released = false;
  /** Resolves when onRelease has run. */
  readonly whenReleased = deferred<void>();

  constructor(private readonly tracker: Tracker) {
    tracker.calcs++;
  }

  async dispatch(c: IncomingCall): Promise<void> {
    if (c.interfaceId !== CALC_ID) throw unimplemented(c.interfaceId, c.methodId);
    switch (c.methodId) {
      case CalcMethod.add: {
        const p = c.params(Calc_add$Params);
        c.results(Calc_add$Results).sum = (p.a + p.b) | 0;
        return;
      }
      case CalcMethod.echo: {
        const p = c.params(Calc_echo$Params);
        const r = c.results(Calc_echo$Results);
        r.text = p.text;
        r.data = p.data;
        return;
      }
      case CalcMethod.join: {
        const parts = c.params(Calc_join$Params).parts;
        const r = c.results(Calc_join$Results);
        r.joined = parts.join(",");
        r.count = parts.length;
        return;
      }
      case CalcMethod.sum: {
        const values = c.params(Calc_sum$Params).values;
        c.results(Calc_sum$Results).total = values.reduce((t, v) => t + BigInt(v), 0n);
        return;
      }
      case CalcMethod.subscribe: {
        const value = c.params(Calc_subscribe$Params).value;
        const cb = capParam(c, Calc_subscribe$Params, 0, "subscribe");
        try {
          c.results(Calc_subscribe$Results).ack = await notify(cb, value, "subscribe");
        } finally {
          cb.close();
        }
        return;
      }
      case CalcMethod.makeCounter: {
        const cap = localCapability(new CounterServer(c.params(Calc_makeCounter$Params).start, this.tracker));
        writeCap(c.results(OneCap), 0, cap);
        cap.close();
        return;
      }
      case CalcMethod.readCounter: {
        const counter = capParam(c, OneCap, 0, "readCounter");
        try {
          await counter.whenResolved(); // a receiverAnswer/promise param resolves first
          const local = counter.localServer() instanceof CounterServer;
          const value = await counterGet(counter);
          const r = c.results(Calc_readCounter$Results);
          r.value = value;
          r.local = local;
        } finally {
          counter.close();
        }
        return;
      }
      case CalcMethod.makeCounterLater: {
        const d = deferred<Capability>();
        this.pending.push({ start: c.params(Calc_makeCounterLater$Params).start, d });
        const cap = promiseCapability(d.promise);
        writeCap(c.results(OneCap), 0, cap);
        cap.close();
        return;
      }
      case CalcMethod.resolvePending: {
        const pending = this.pending;
        this.pending = [];
        for (const { start, d } of pending) d.resolve(localCapability(new CounterServer(start, this.tracker)));
        c.results(Calc_resolvePending$Results).count = pending.length;
        return;
      }
      case CalcMethod.identity: {
        const cb = readCap(c.params(OneCap), 0);
        writeCap(c.results(OneCap), 0, cb);
        cb?.close();
        return;
      }
      case CalcMethod.reflect: {
        const value = c.params(Calc_reflect$Params).value;
        const cb = capParam(c, Calc_reflect$Params, 0, "reflect");
        try {
          const req = cb.newCall(CALLBACK_ID, CallbackMethod.notify, Callback_notify$Params);
          req.params.value = value;
          req.params.msg = "reflect";
          c.tailCall(req);
        } finally {
          cb.close();
        }
        return;
      }
      case CalcMethod.register: {
        const cb = capParam(c, OneCap, 0, "register");
        this.dropRegistered();
        this.registered = cb;
        this.tracker.held++;
        return;
      }
      case CalcMethod.fire: {
        if (this.registered === null) throw new RpcError("failed", "fire: no callback registered");
        const value = c.params(Calc_fire$Params).value;
        c.results(Calc_fire$Results).ack = await notify(this.registered, value, "fire");
        return;
      }
      case CalcMethod.unregister:
        this.dropRegistered();
        return;
      case CalcMethod.fail: {
        const p = c.params(Calc_fail$Params);
        const kind = KIND_NAMES[p.kind];
        // Kind 8 (exception-typed): a TypeError, whose name must reach a C++ peer readably.
        if (p.kind === 8) throw new TypeError(p.msg);
        // Not a declared Kind: throw an untyped error (the engine must send it as "failed").
        if (kind === undefined) throw new Error(p.msg);
        throw new RpcError(kind, p.msg);
      }
      case CalcMethod.hang: {
        const watcher = capParam(c, OneCap, 0, "hang");
        this.tracker.held++;
        this.tracker.hangsStarted++;
        try {
          await notify(watcher, 1, "started");
          await new Promise<never>((_, reject) => {
            if (c.signal.aborted) reject(c.signal.reason);
            else c.signal.addEventListener("abort", () => reject(c.signal.reason), { once: true });
          });
        } finally {
          const drop = () => { watcher.close(); this.tracker.unhold(); };
          if (c.signal.aborted) {
            // Canceled by the caller (Finish) or the connection ended: tell the caller we saw it
            // (fails quietly if the connection is gone), then give up the watcher.
            this.tracker.hangsAborted++;
            notify(watcher, 2, "canceled").catch(() => {}).finally(drop);
          } else {
            drop();
          }
        }
        return;
      }
      case CalcMethod.seq: {
        const n = c.params(Calc_seq$Params).n;
        c.results(Calc_seq$Results).prev = this.lastSeq;
        this.lastSeq = n;
        return;
      }
      case CalcMethod.stats: {
        const r = c.results(Calc_stats$Results);
        r.live = this.tracker.live;
        r.held = this.tracker.held;
        return;
      }
      default:
        throw unimplemented(c.interfaceId, c.methodId);
    }
  }

  private dropRegistered(): void {
    if (this.registered !== null) {
      this.registered.close();
      this.registered = null;
      this.tracker.unhold();
    }
  }

  onRelease(): void {
    this.released = true;
    this.whenReleased.resolve();
    this.tracker.calcs--;
    this.dropRegistered();
    const pending = this.pending;
    this.pending = [];
    for (const { d } of pending) d.reject(new RpcError("disconnected", "Calc released before resolvePending"));
  }
}

/** A Callback that records its calls and answers ack = value + 1. */
export class CallbackServer implements Server {
  readonly calls: { value: number; msg: string }[] = [];
  constructor(private readonly tracker: Tracker) {
    tracker.live++;
  }
  dispatch(c: IncomingCall): void {
    if (c.interfaceId !== CALLBACK_ID || c.methodId !== CallbackMethod.notify) throw unimplemented(c.interfaceId, c.methodId);
    const p = c.params(Callback_notify$Params);
    this.calls.push({ value: p.value, msg: p.msg });
    c.results(Ack).ack = (p.value + 1) | 0;
  }
  onRelease(): void {
    this.tracker.dec();
  }
}

/** The watcher passed to hang(): `started`/`canceled` settle on notify(1)/notify(2). */
export class WatcherServer extends CallbackServer {
  readonly started = deferred<void>();
  readonly canceled = deferred<void>();
  override dispatch(c: IncomingCall): void {
    super.dispatch(c);
    const last = this.calls[this.calls.length - 1]!;
    if (last.value === 1) this.started.resolve();
    if (last.value === 2) this.canceled.resolve();
  }
}
