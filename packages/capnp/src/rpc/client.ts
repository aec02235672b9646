/**
 * The caller's side of the engine: {@link CapHandle} (the user's {@link Capability}, one
 * reference to a hook), {@link RequestImpl} (a call being built), {@link PendingCallImpl} (the
 * sink of a call made through a handle) and {@link ResponseImpl} (its results); and
 * {@link DirectCall}, the same call path for a caller that builds and sends in one go and takes
 * the outcome itself (the runtime's generated clients: one object per call, no engine promise).
 * A request goes straight to its target hook: `hook.call(d)` (local.ts, promise.ts or imports.ts).
 *
 * Threading: belongs to the thread (event loop) that created it.
 */

import * as capnp from "capnp-ts";
import { CanceledError, RpcError } from "../errors.js";
import { CALL, callMessage, dataViewOf, newCallMessage, pointerAt } from "../fastpath.js";
import { MAX_DEPTH } from "capnp-ts/src/constants.js";
import { unadoptMessage } from "../adopt.js";
import { CallData, errOutcome, releaseOutcome } from "./hook.js";
import type { FlatCall, Hook, Outcome } from "./hook.js";
import { emptyStruct, readStruct } from "./message.js";
import { Sink } from "./sink.js";
import type { Capability, PendingCall, Request, Response, Server, Struct, StructCtor } from "./types.js";

const NOOP = (): void => {};

/** Registry that closes leaked Responses of PendingCalls nobody awaited. */
const pendingRegistry = new FinalizationRegistry<{ resp: ResponseImpl | null; taken: boolean }>((box) => {
  if (!box.taken) box.resp?.close();
});

/** The caller's side of a call made through a Capability. */
class PendingCallImpl extends Sink implements PendingCall {
  /** Made on the first then()/settled(): a call nobody awaits allocates no promise. */
  private p: Promise<Response> | null = null;
  private res: ((r: Response) => void) | null = null;
  private rej: ((e: unknown) => void) | null = null;
  private resp: ResponseImpl | null = null;
  private err: RpcError | null = null;
  private taken = false;

  protected onComplete(o: Outcome): void {
    if (o.err !== null) {
      this.err = o.err;
      const rej = this.rej;
      this.res = this.rej = null;
      rej?.(o.err);
      return;
    }
    unadoptMessage(o.msg); // results of a server in this vat: no view of its buffers (adopt.ts)
    const r = new ResponseImpl(o);
    this.resp = r;
    // The GC safety net only matters when there are caps to release and nobody took the Response.
    if (!this.taken && o.caps.length > 0) {
      const box = { resp: r, taken: false };
      this.box = box;
      pendingRegistry.register(this, box);
    }
    const res = this.res;
    this.res = this.rej = null;
    res?.(r);
  }

  private box: { resp: ResponseImpl | null; taken: boolean } | null = null;

  private promise(): Promise<Response> {
    let p = this.p;
    if (p === null) {
      if (this.outcome === null) {
        p = new Promise<Response>((res, rej) => {
          this.res = res;
          this.rej = rej;
        });
      } else p = this.err !== null ? Promise.reject(this.err) : Promise.resolve(this.resp!);
      this.p = p;
    }
    return p;
  }

  then<A = Response, B = never>(
    onfulfilled?: ((value: Response) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    this.taken = true;
    if (this.box !== null) this.box.taken = true;
    return this.promise().then(onfulfilled, onrejected);
  }

  pipeline(...path: number[]): Capability {
    return new CapHandle(this.pipelineHook(path));
  }

  /** Settles with the call, without taking the Response (the GC safety net stays). */
  settled(): Promise<unknown> {
    return this.promise().then(NOOP, NOOP);
  }

  override cancel(): void {
    if (this.outcome !== null) return;
    super.cancel();
    this.complete(errOutcome(new CanceledError()));
  }
}

/** Results of a call made through a Capability. */
class ResponseImpl implements Response {
  private closedFlag = false;
  private empty: capnp.Struct | null = null;
  constructor(private readonly o: Outcome) {}

  results<T extends Struct>(ctor: StructCtor<T>): T {
    if (this.closedFlag) throw new RpcError("failed", "Response used after close()");
    const p = this.o.content;
    if (p === null || capnp.Pointer.isNull(p)) {
      if (this.empty === null || !(this.empty instanceof ctor)) this.empty = emptyStruct(ctor);
      return this.empty as T;
    }
    return readStruct(p, ctor);
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    releaseOutcome(this.o);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Releases the target and the `writeCap` references of Requests garbage-collected unsent. */
const requestRegistry = new FinalizationRegistry<{ hook: Hook; caps: (Hook | null)[] }>((box) => {
  for (const h of box.caps) h?.release();
  box.caps.length = 0;
  box.hook.release();
});

/**
 * Requests made since the last microtask checkpoint. Most are built and sent in one synchronous
 * go (generated clients do), and registering each with {@link requestRegistry} costs about as
 * much as the rest of the request: so a microtask registers only those still unsent by then.
 * Until it runs, this list keeps them reachable, so none can be collected unregistered.
 */
let unsent: RequestImpl<Struct>[] = [];
let unsentSpare: RequestImpl<Struct>[] = [];

function registerUnsent(): void {
  const list = unsent;
  unsent = unsentSpare;
  unsentSpare = list;
  for (let i = 0; i < list.length; i++) list[i]!.registerIfUnsent();
  if (list.length !== 0) list.length = 0;
}

export class RequestImpl<P extends Struct> implements Request<P> {
  readonly params: P;
  private readonly msg: capnp.Message;
  private hook: Hook | null;

  constructor(
    hook: Hook,
    private readonly interfaceId: bigint,
    private readonly methodId: number,
    Params: StructCtor<P>,
  ) {
    this.hook = hook;
    const { msg: m, params } = newCallMessage(interfaceId, methodId, Params);
    m._capnp.capTable = [];
    this.params = params;
    this.msg = m;
    if (unsent.push(this as unknown as RequestImpl<Struct>) === 1) queueMicrotask(registerUnsent);
  }

  /** Registered with requestRegistry (it was still unsent at the first microtask checkpoint). */
  private registered = false;

  /** Called by {@link registerUnsent}: the GC safety net for a request kept unsent past this turn. */
  registerIfUnsent(): void {
    if (this.hook === null) return;
    this.registered = true;
    requestRegistry.register(this, { hook: this.hook, caps: this.msg._capnp.capTable as unknown as (Hook | null)[] }, this);
  }

  /** The target (our reference, now the caller's); the request is spent. */
  private takeHook(): Hook {
    const hook = this.hook;
    if (hook === null) throw new RpcError("failed", "Request already sent");
    this.hook = null;
    if (this.registered) requestRegistry.unregister(this);
    return hook;
  }

  private callData(sink: Sink): CallData {
    const caps = this.msg._capnp.capTable as (Hook | null)[];
    return new CallData(this.interfaceId, this.methodId, this.msg, true, this.params, caps, sink);
  }

  send(opts?: { signal?: AbortSignal }): PendingCall {
    const hook = this.takeHook();
    const pc = new PendingCallImpl();
    const d = this.callData(pc);
    hook.call(d);
    hook.release();
    const signal = opts?.signal;
    if (signal !== undefined) {
      if (signal.aborted) pc.cancel();
      else {
        const onAbort = (): void => pc.cancel();
        signal.addEventListener("abort", onAbort, { once: true });
        this.d2(pc, signal, onAbort);
      }
    }
    return pc;
  }

  private d2(pc: PendingCallImpl, signal: AbortSignal, onAbort: () => void): void {
    void pc.settled().then(() => signal.removeEventListener("abort", onAbort));
  }

  /** Deliver as the tail call of a call whose outcome goes to `sink`. */
  sendAsTail(sink: Sink): void {
    const h = sink.tailHandler();
    if (h !== null) {
      const ignore = new TailSink();
      const hook = this.takeHook();
      const d = this.callData(ignore);
      if (h.tryTailCall(sink, hook, d)) {
        hook.release();
        return;
      }
      // Not possible: deliver with the original sink instead.
      const d2 = new CallData(d.interfaceId, d.methodId, d.msg, d.own, d.content, d.caps, sink);
      hook.call(d2);
      hook.release();
      return;
    }
    const hook = this.takeHook();
    const d = this.callData(sink);
    hook.call(d);
    hook.release();
  }
}

/**
 * A call built and sent in one synchronous go, whose outcome goes straight to the subclass (the
 * runtime's generated clients, proxy/client.ts): no Request, PendingCall, Response or promise of
 * the engine's, and none of their GC safety nets, since the caller sends or drops the call before
 * it returns to the event loop and always consumes the outcome. Use: {@link begin} (the params to
 * fill), then {@link sendCall}, or {@link drop} if filling them failed; `cancel()` cancels a sent
 * call (Finish before the Return; the call settles at once with CanceledError). The subclass's
 * {@link settle} runs exactly once, possibly from inside `sendCall` (a call that could not be
 * sent), otherwise from the connection's dispatch of the Return: it must not throw, and it reads
 * the results ({@link results}) and lets them go ({@link releaseResults}) when it wants. A
 * subclass whose results are flat may set `flatRead` (Sink; hook.ts FlatRead) before sending and
 * override `onCompleteFlat`: a connection's Return it can read with no message then reaches
 * `onCompleteFlat` with the value instead of {@link settle} (questions.ts handleFlatResults).
 */
export abstract class DirectCall extends Sink {
  private dHook: Hook | null = null;
  private dMsg: capnp.Message | null = null;
  private dParams: Struct | null = null;
  private dIid = 0n;
  private dMid = 0;
  private dOut: Outcome | null = null;

  /** Starts a call of `cap` (a Capability of this engine; throws if it is closed): its params to fill. */
  begin<P extends Struct>(cap: Capability, interfaceId: bigint, methodId: number, Params: StructCtor<P>): P {
    const hook = hookOf(cap);
    const msg = callMessage(interfaceId, methodId, Params._capnp.size);
    const params = pointerAt(Params, msg._capnp.segments[0]!, CALL.contentPtr, MAX_DEPTH);
    msg._capnp.capTable = [];
    this.dHook = hook.addRef();
    this.dMsg = msg;
    this.dParams = params;
    this.dIid = interfaceId;
    this.dMid = methodId;
    return params;
  }

  /** Sends the call begun by {@link begin} (once). */
  sendCall(): void {
    const hook = this.dHook!;
    const msg = this.dMsg!;
    const d = new CallData(this.dIid, this.dMid, msg, true, this.dParams!, msg._capnp.capTable as (Hook | null)[], this);
    this.dHook = null;
    this.dMsg = null;
    this.dParams = null;
    hook.call(d);
    hook.release();
  }

  /**
   * Builds and sends a call whose params struct `Params` is flat (data words only: no pointer,
   * so no capability and no Context), its data written by `write(dv, at)` (zeroed, at byte `at`
   * of `dv`; it must not call out). To an import, or a promise routed or resolved to one, it goes
   * out as bytes with no capnp-ts message (questions.ts sendFlat); to anything else (a local
   * server, a queued promise, a traced or ended connection) the way {@link begin} and
   * {@link sendCall} send it, with the same bytes. Throws what `hookOf` or `write` throws (then
   * nothing was sent; call {@link drop}).
   */
  sendFlat(cap: Capability, interfaceId: bigint, methodId: number, Params: StructCtor<Struct>, write: (dv: DataView, at: number) => void): void {
    const hook = hookOf(cap);
    const size = Params._capnp.size;
    const c = FLAT;
    c.sink = this;
    c.interfaceId = interfaceId;
    c.methodId = methodId;
    c.dataWords = (size.dataByteLength + 7) >>> 3;
    c.write = write;
    let sent: boolean;
    try {
      sent = size.pointerLength === 0 && hook.callFlat(c);
    } finally {
      c.sink = NO_SINK;
      c.write = NOOP_WRITE;
    }
    if (sent) return;
    const params = this.begin(cap, interfaceId, methodId, Params);
    write(dataViewOf(params.segment), CALL.envelopeBytes);
    this.sendCall();
  }

  /**
   * {@link sendFlat} for params whose only non-null pointer (`capStruct`, of `Params`' pointers)
   * is a struct of `capStructPtrs` pointers holding capabilities: `caps[i]` (borrowed, open) at its
   * pointer `slots[i]`, cap table entry i (twelfth session: a method's `Proxy.Context`, runtime
   * proxy/client.ts). The data section is written by `write` as for {@link sendFlat}. To an
   * import, or a promise routed or resolved to one, it goes out as bytes (questions.ts sendFlat,
   * flat-call.ts encodeFlatCapsCall), the cap table's descriptors written by the export table as
   * the general path writes them: true. False when it did not (nothing was done: a local
   * target, a promisedAnswer route, a descriptor that needs a pointer, a traced or ended
   * connection, ...): the caller then builds the call with {@link begin} and {@link sendCall}.
   */
  sendFlatCaps(
    cap: Capability,
    interfaceId: bigint,
    methodId: number,
    Params: StructCtor<Struct>,
    write: (dv: DataView, at: number) => void,
    capStruct: number,
    capStructPtrs: number,
    caps: readonly Capability[],
    slots: readonly number[],
    n: number,
  ): boolean {
    const hook = hookOf(cap);
    const size = Params._capnp.size;
    const hooks = capsOfLength(n);
    for (let i = 0; i < n; i++) hooks[i] = hookOf(caps[i]!);
    const c = FLAT;
    c.sink = this;
    c.interfaceId = interfaceId;
    c.methodId = methodId;
    c.dataWords = (size.dataByteLength + 7) >>> 3;
    c.write = write;
    c.capCount = n;
    c.ptrWords = size.pointerLength;
    c.capStruct = capStruct;
    c.capStructPtrs = capStructPtrs;
    c.caps = hooks;
    c.capSlots = slots;
    try {
      return hook.callFlat(c);
    } finally {
      c.sink = NO_SINK;
      c.write = NOOP_WRITE;
      c.capCount = 0;
      c.ptrWords = 0;
      c.caps = NO_HOOKS;
      c.capSlots = NO_SLOTS;
      hooks.fill(NO_HOOK);
    }
  }

  /** Drops a call begun but not sent: releases its target and the caps written into its params. */
  drop(): void {
    const hook = this.dHook;
    const msg = this.dMsg;
    this.dHook = null;
    this.dMsg = null;
    this.dParams = null;
    if (msg !== null) for (const h of msg._capnp.capTable as (Hook | null)[]) h?.release();
    hook?.release();
  }

  protected onComplete(o: Outcome): void {
    if (o.err === null) unadoptMessage(o.msg); // results of a server in this vat (adopt.ts)
    this.dOut = o;
    this.settle(o.err);
  }


  /** The outcome: `err` null on success (read it with {@link results}). Must not throw. */
  protected abstract settle(err: RpcError | null): void;

  /** How many capabilities the results carry (0 after an error). */
  protected resultCaps(): number {
    const o = this.dOut;
    return o === null ? 0 : o.caps.length;
  }

  /** The results as `ctor` (after a successful {@link settle}, before {@link releaseResults}). */
  protected results<T extends Struct>(ctor: StructCtor<T>): T {
    const p = this.dOut === null ? null : this.dOut.content;
    if (p === null) return emptyStruct(ctor);
    // A near struct pointer at least as big as `ctor`'s struct (the common case): read in place.
    const dv = dataViewOf(p.segment);
    const lo = dv.getUint32(p.byteOffset, true);
    const hi = dv.getUint32(p.byteOffset + 4, true);
    if ((lo & 3) === 0 && (lo !== 0 || hi !== 0)) {
      const want = ctor._capnp.size;
      if ((hi & 0xffff) * 8 >= want.dataByteLength && hi >>> 16 >= want.pointerLength) {
        return pointerAt(ctor, p.segment, p.byteOffset, p._capnp.depthLimit);
      }
    }
    return capnp.Pointer.isNull(p) ? emptyStruct(ctor) : readStruct(p, ctor);
  }

  /** Lets the outcome go: the capabilities of the results nobody took are released. */
  protected releaseResults(): void {
    const o = this.dOut;
    if (o === null) return;
    this.dOut = null;
    releaseOutcome(o);
  }

  override cancel(): void {
    if (this.outcome !== null) return;
    super.cancel();
    this.complete(errOutcome(new CanceledError()));
  }
}

/** The sink {@link FLAT} holds between calls (never completed: it is nobody's call). */
class NoSink extends Sink {
  protected onComplete(o: Outcome): void {
    releaseOutcome(o);
  }
}
const NO_SINK: Sink = new NoSink();
const NOOP_WRITE = (): void => {};
/** The one FlatCall of this thread, filled for each {@link DirectCall.sendFlat} (no object per call). */
const NO_HOOKS: readonly Hook[] = [];
const NO_SLOTS: readonly number[] = [];
const FLAT: { -readonly [K in keyof FlatCall]: FlatCall[K] } = {
  sink: NO_SINK,
  interfaceId: 0n,
  methodId: 0,
  dataWords: 0,
  write: NOOP_WRITE,
  capCount: 0,
  ptrWords: 0,
  capStruct: 0,
  capStructPtrs: 0,
  caps: NO_HOOKS,
  capSlots: NO_SLOTS,
};
/** What {@link capsOfLength}'s arrays hold between calls (no hook kept alive by them). */
const NO_HOOK = null as unknown as Hook;
/** {@link DirectCall.sendFlatCaps}' hooks: one reused array per length (needsPointers reads its length). */
const HOOKS_BY_LENGTH: Hook[][] = [];
function capsOfLength(n: number): Hook[] {
  let a = HOOKS_BY_LENGTH[n];
  if (a === undefined) HOOKS_BY_LENGTH[n] = a = new Array<Hook>(n).fill(NO_HOOK);
  return a;
}

/** Sink of a `sendResultsTo.yourself` question: the results stay with the peer. */
class TailSink extends Sink {
  protected onComplete(o: Outcome): void {
    releaseOutcome(o);
  }
}

const handleRegistry = new FinalizationRegistry<Hook>((hook) => {
  hook.handles--;
  hook.release();
});

/** The user-facing handle: one reference to a hook. */
export class CapHandle implements Capability {
  private hook: Hook | null;
  constructor(hook: Hook) {
    this.hook = hook;
    hook.handles++;
    handleRegistry.register(this, hook, this);
  }

  /** The hook (not a new reference). Throws if closed. */
  hookRef(): Hook {
    if (this.hook === null) throw new RpcError("failed", "Capability used after close()");
    return this.hook;
  }

  newCall<P extends Struct>(interfaceId: bigint, methodId: number, Params: StructCtor<P>): Request<P> {
    return new RequestImpl(this.hookRef().addRef(), interfaceId, methodId, Params);
  }
  dup(): Capability {
    return new CapHandle(this.hookRef().addRef());
  }
  close(): void {
    const h = this.hook;
    if (h === null) return;
    this.hook = null;
    handleRegistry.unregister(this);
    h.handles--;
    h.release();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  whenResolved(): Promise<void> {
    return this.hookRef().whenResolved();
  }
  get isNull(): boolean {
    return this.hook !== null && this.hook.resolved().isNullCap();
  }
  get closed(): boolean {
    return this.hook === null;
  }
  localServer(): Server | undefined {
    return this.hook?.resolved().localServer();
  }
}

/**
 * True when `cap` is not the only holder of what it points at in this vat: other handles, or
 * exports of it to other connections, exist (see Hook.holders). A runtime asks before a
 * remote `destroy`, which the peer cannot attribute to one of several local holders.
 */
export function capabilityShared(cap: Capability): boolean {
  return cap instanceof CapHandle && !cap.closed && cap.hookRef().holders() > 1;
}

/** The hook behind a Capability (not a new reference). */
export function hookOf(cap: Capability): Hook {
  if (cap instanceof CapHandle) return cap.hookRef();
  throw new TypeError("not a Capability of this engine");
}

