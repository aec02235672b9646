/**
 * Servers in this vat: {@link LocalHook} (the hook of one {@link Server}; it owns the queue of
 * calls waiting for the server's dispatch microtask) and `IncomingCallImpl` (one call as the
 * server sees it: params, results builder, cancellation signal, tail call).
 *
 * Threading: belongs to the thread (event loop) that created it; servers run there.
 */

import * as capnp from "capnp-ts";
import { CanceledError, RpcError, toRpcError } from "../errors.js";
import { unadoptMessage } from "../adopt.js";
import { dataViewOf, newReturnMessage } from "../fastpath.js";
import { copyFlatResults, flatReturnMessage, releaseFlatResults, takeFlatResults } from "../flat-return.js";
import { Hook, errOutcome, runCancelFns } from "./hook.js";
import type { CallData, Outcome } from "./hook.js";
import type { Sink } from "./sink.js";
import { emptyStruct, readStruct } from "./message.js";
import { CapHandle, RequestImpl } from "./client.js";
import type { Capability, IncomingCall, Request, Server, Struct, StructCtor } from "./types.js";

/** Where errors thrown by `Server.onRelease` are reported (a connection that exported the server). */
export interface ReleaseErrorReporter {
  onReleaseError(e: unknown): void;
}

/** A Server in this vat. Calls are dispatched from a microtask, in the order they arrive (E-order). */
export class LocalHook extends Hook {
  private released = false;
  /**
   * Calls waiting for the dispatch microtask, in arrival order: the first one (null when no
   * dispatch is scheduled), then the others (an array only when a batch has more than one).
   */
  private first: IncomingCallImpl | null = null;
  private more: IncomingCallImpl[] | null = null;
  /**
   * @internal This hook as a settled promise, made at its first call: the dispatch microtask is a
   * reaction on it whose handler is a module function (DRAIN), not a closure per hook (one made
   * once in a process is optimised for its one context, and a new connection's server would run
   * a closure of its own unoptimised: bench/README "Cold start (eleventh session)").
   */
  settled: Promise<LocalHook> | null = null;
  /** Set by a connection while it drops one of its references (ConnCore.releaseRef). */
  reporter: ReleaseErrorReporter | null = null;
  /** The peers' references through its export entries: the sum of their refcounts (exports.ts). */
  exportRefs = 0;

  constructor(readonly server: Server) {
    super();
  }
  protected destroy(): void {
    if (this.released) return;
    this.released = true;
    if (liveLocalHooks.get(this.server) === this) liveLocalHooks.delete(this.server);
    const f = this.server.onRelease;
    if (f === undefined) return;
    try {
      f.call(this.server);
    } catch (e) {
      const r = this.reporter;
      if (r !== null) r.onReleaseError(e);
      else console.error("multiprocess-ts: Server.onRelease threw:", e);
    }
  }
  call(d: CallData): void {
    this.enqueue(new IncomingCallImpl(d.interfaceId, d.methodId, d.sink, d, undefined, this));
  }
  /**
   * @internal A call from a peer whose params the server's flat params reader read (`params`,
   * rpc/flat-params.ts): no CallData, no message, no cap table; `sink` is its Answer.
   */
  callRead(interfaceId: bigint, methodId: number, params: object, sink: Sink): void {
    this.enqueue(new IncomingCallImpl(interfaceId, methodId, sink, null, params, this));
  }
  private enqueue(c: IncomingCallImpl): void {
    // Never dispatch synchronously: the caller must get its PendingCall before the server runs.
    // One microtask per batch of calls made together (no closure per call), in call order.
    if (this.first !== null) {
      (this.more ??= []).push(c);
      return;
    }
    this.first = c;
    // A reaction on a settled promise, not queueMicrotask (which makes an AsyncResource and a
    // bound function per call); drain() throws nothing (each call's error is reported alone).
    // The promise exists or is made: a constant chosen by data, one call site (a new server's
    // first call makes it; rpc/dispatch.ts `hotMessage`).
    const settle = this.settled !== null ? settledHook : settleHook;
    drainsPending++;
    void settle(this).then(DRAIN);
  }
  /** @internal The dispatch microtask: the calls queued since it was scheduled, in order. */
  drain(): void {
    drainsPending--;
    const c = this.first!;
    const q = this.more;
    this.first = null;
    this.more = null;
    runOne(c);
    if (q !== null) for (let i = 0; i < q.length; i++) runOne(q[i]!);
  }
  override localServer(): Server {
    return this.server;
  }
}

/**
 * Dispatch microtasks {@link LocalHook.call} / {@link LocalHook.callRead} scheduled that have not
 * run yet (all hooks).
 */
let drainsPending = 0;

/**
 * True while an incoming call (from a connection or a local caller) is queued for its dispatch
 * microtask and has not been dispatched yet. A runtime uses it to tell whether settling a waiting
 * task's call now could let the task resume ahead of such a dispatch (runtime proxy/client.ts).
 */
export function dispatchPending(): boolean {
  return drainsPending !== 0;
}

/** One call of {@link LocalHook.drain}. */
function runOne(c: IncomingCallImpl): void {
  try {
    c.run();
  } catch (e) {
    // As if each call had its own microtask: report it, and still run the others.
    queueMicrotask(() => {
      throw e;
    });
  }
}

/** The live hook of each Server, so that every handle to one Server shares one reference count. */
const liveLocalHooks = new WeakMap<Server, LocalHook>();

/**
 * A capability for `server`. Handles made by repeated calls for the same Server object (while
 * any reference to it is alive) share one reference count, so `onRelease` runs once, after the
 * last of them is gone. After that, a new call starts a new lifetime.
 */
export function localCapability(server: Server): Capability {
  const h = liveLocalHooks.get(server);
  if (h !== undefined && h.refs > 0) return new CapHandle(h.addRef());
  const n = new LocalHook(server);
  liveLocalHooks.set(server, n);
  return new CapHandle(n);
}

/**
 * How many holders `server` has right now: local handles, plus, for each connection exporting
 * it, the number of times its peer received it and has not released (cap tables of messages in
 * flight are not holders). 0 once released (or never referenced). Runtimes use it to tell
 * whether the caller of a `destroy` is the object's only holder.
 */
export function serverHolders(server: Server): number {
  const h = liveLocalHooks.get(server);
  if (h === undefined || h.refs <= 0) return 0;
  return h.handles + h.exportRefs;
}

/**
 * One call as its server sees it, queued on its {@link LocalHook} until the dispatch microtask.
 * A call read flat (rpc/flat-params.ts) has no CallData: its params are `flatParams`, its sink
 * the Answer.
 */
class IncomingCallImpl implements IncomingCall {
  private resMsg: capnp.Message | null = null;
  private res: capnp.Struct | null = null;
  /** The results' class while `res` is the thread's flat Return (flat-return.ts), else null. */
  private flatCtor: StructCtor<capnp.Struct> | null = null;
  /** Cancellation (the signal, `whenCanceled` callbacks), made on first use: most calls never see it. */
  private cx: CallCancel | null = null;
  private done = false;
  private tailed = false;
  /** The `whenSettled` callback, if one was registered. */
  private settledFn: ((failed: boolean, value: unknown) => void) | null = null;

  constructor(
    readonly interfaceId: bigint,
    readonly methodId: number,
    private readonly sink: Sink,
    /** The call with its params message and cap table; null for a call read flat. */
    private readonly d: CallData | null,
    readonly flatParams: object | undefined,
    private readonly hook: LocalHook,
  ) {}

  params<T extends Struct>(ctor: StructCtor<T>): T {
    const d = this.d;
    if (d === null) throw new RpcError("failed", "params() of a call its server read with a flat params reader (IncomingCall.flatParams)");
    const p = d.content;
    // A null pointer is a zero word (capnp-ts's Pointer.isNull, read straight from the view).
    const dv = dataViewOf(p.segment);
    if (dv.getUint32(p.byteOffset, true) === 0 && dv.getUint32(p.byteOffset + 4, true) === 0) return emptyStruct(ctor);
    unadoptMessage(d.msg); // params of a caller in this vat: no view of its buffers (adopt.ts)
    return readStruct(p, ctor);
  }

  results<T extends Struct>(ctor: StructCtor<T>): T {
    if (this.res === null) {
      // Data-only results for the peer: the thread's flat Return, while no other call holds it.
      const flat = this.sink.flatResults() ? takeFlatResults(ctor) : null;
      if (flat !== null) {
        this.res = flat;
        this.flatCtor = ctor as StructCtor<capnp.Struct>;
        return flat;
      }
      const { msg, results } = newReturnMessage(ctor);
      msg._capnp.capTable = [];
      this.res = results;
      this.resMsg = msg;
    }
    return this.res as T;
  }

  get signal(): AbortSignal {
    const cx = (this.cx ??= newCancel());
    if (cx.ctrl === null) {
      cx.ctrl = new AbortController();
      if (cx.early) cx.ctrl.abort(new CanceledError("call canceled by the caller"));
    }
    return cx.ctrl.signal;
  }

  whenCanceled(fn: () => void): void {
    const cx = (this.cx ??= newCancel());
    if (cx.early || cx.ctrl?.signal.aborted === true) fn();
    else (cx.fns ??= []).push(fn);
  }

  /** The caller canceled (the sink's cancel handler). */
  onCancel(): void {
    const cx = (this.cx ??= newCancel());
    if (cx.ctrl !== null) {
      if (!cx.ctrl.signal.aborted) cx.ctrl.abort(new CanceledError("call canceled by the caller"));
    } else cx.early = true;
    const fns = cx.fns;
    if (fns === null) return;
    cx.fns = null;
    runCancelFns(fns);
  }

  tailCall(req: Request<Struct>): void {
    if (this.done || this.tailed) throw new RpcError("failed", "tailCall() after the call returned or twice");
    if (!(req instanceof RequestImpl)) throw new TypeError("tailCall() needs a Request made by this engine");
    this.tailed = true;
    req.sendAsTail(this.sink);
  }

  run(): void {
    const sink = this.sink;
    if (sink.canceled || sink.outcome !== null) {
      this.releaseCaps();
      sink.complete(errOutcome(new CanceledError("call canceled before delivery")));
      return;
    }
    sink.cancelHandler = this;
    let r: void | Promise<void>;
    try {
      r = this.hook.server.dispatch(this);
    } catch (e) {
      this.settle(e, true, undefined);
      return;
    }
    if (r !== undefined && typeof (r as Promise<void>).then === "function") {
      (r as Promise<unknown>).then(
        (v: unknown) => this.settle(undefined, false, v),
        (e: unknown) => this.settle(e, true, undefined),
      );
    } else if (this.settledFn === null) this.finish(undefined, false);
    else this.settle(undefined, false, undefined);
  }

  whenSettled(fn: (failed: boolean, value: unknown) => void): void {
    if (this.settledFn !== null) throw new Error("IncomingCall.whenSettled: one callback per call");
    this.settledFn = fn;
  }

  /** The dispatch has settled (with `value`, unless it failed): its `whenSettled` callback (a throw fails the call), then {@link finish}. */
  private settle(e: unknown, failed: boolean, value: unknown): void {
    const fn = this.settledFn;
    if (fn !== null) {
      this.settledFn = null;
      try {
        fn(failed, value);
      } catch (err) {
        if (!failed) {
          e = err;
          failed = true;
        }
      }
    }
    this.finish(e, failed);
  }

  private finish(e: unknown, failed: boolean): void {
    if (this.done) return;
    this.done = true;
    const sink = this.sink;
    if (this.flatCtor !== null && this.finishFlat(failed)) {
      this.releaseCaps();
      return;
    }
    const resCaps = (this.resMsg?._capnp.capTable ?? []) as (Hook | null)[];
    if (this.tailed) {
      for (const h of resCaps) h?.release();
      resCaps.length = 0;
    } else {
      if (sink.cancelHandler !== null) sink.cancelHandler = null;
      if (failed) {
        for (const h of resCaps) h?.release();
        resCaps.length = 0;
        sink.complete(errOutcome(toRpcError(e)));
      } else if (this.res === null) {
        sink.complete({ err: null, msg: null, content: null, caps: [], ret: false });
      } else {
        sink.complete({ err: null, msg: this.resMsg, content: this.res, caps: resCaps, ret: true });
      }
    }
    this.releaseCaps();
  }

  /** The params' capabilities (a call read flat has none). */
  private releaseCaps(): void {
    const d = this.d;
    if (d !== null) d.releaseCaps();
  }

  /**
   * {@link finish} of results in the thread's flat Return: sent from there (true) when the sink
   * is an answer to a peer that can take it (`Sink.flatResults`); else the buffer is
   * released (a failure, a tail call) or the results copied into an ordinary Return message for
   * the general path (false).
   */
  private finishFlat(failed: boolean): boolean {
    const res = this.res!;
    const ctor = this.flatCtor!;
    this.flatCtor = null;
    const sink = this.sink;
    if (!failed && !this.tailed && sink.flatResults()) {
      if (sink.cancelHandler !== null) sink.cancelHandler = null;
      // The thread's one flat outcome (see FLAT_RESULTS), unless pipelined calls wait on these
      // results (their capAt reads the outcome's content after the Return: an object of its own).
      const o: Outcome = sink.hasPipes() ? { err: null, msg: null, content: null, caps: NO_CAPS, ret: true } : FLAT_RESULTS;
      o.msg = flatReturnMessage();
      o.content = res;
      try {
        sink.complete(o);
      } finally {
        o.content = null;
        releaseFlatResults(res);
      }
      return true;
    }
    if (failed || this.tailed) {
      releaseFlatResults(res);
      this.res = null;
      return false;
    }
    const c = copyFlatResults(res, newReturnMessage, ctor);
    c.msg._capnp.capTable = [];
    this.res = c.results;
    this.resMsg = c.msg;
    return false;
  }
}

/** The empty cap table of every flat Return (nothing is ever added to it). */
const NO_CAPS: (Hook | null)[] = [];

/**
 * The outcome of every flat Return whose answer has no pipelined calls (finishFlat): one object
 * per thread, not one per call. Its content is the results struct only while `complete` runs
 * (the Return is written from it, answers.ts sendFlatReturnOf), null otherwise; its caps are
 * empty, so releasing it (the answer dropped, its Finish, connection end) does nothing, and an
 * answer that keeps it as its outcome reads as one whose flat results went out (content null).
 */
const FLAT_RESULTS: Outcome = { err: null, msg: null, content: null, caps: NO_CAPS, ret: true };

/** A call's cancellation state ({@link IncomingCallImpl}'s `cx`). */
interface CallCancel {
  ctrl: AbortController | null;
  /** Canceled before its signal was made. */
  early: boolean;
  /** `whenCanceled` callbacks (no AbortSignal is made for them). */
  fns: (() => void)[] | null;
}

function newCancel(): CallCancel {
  return { ctrl: null, early: false, fns: null };
}

/** {@link LocalHook.call}'s dispatch reaction and its settled promise (see `settled`). */
const DRAIN = (h: LocalHook): void => h.drain();
const settledHook = (h: LocalHook): Promise<LocalHook> => h.settled!;
const settleHook = (h: LocalHook): Promise<LocalHook> => (h.settled = Promise.resolve(h));
