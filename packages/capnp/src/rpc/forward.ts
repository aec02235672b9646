/**
 * Two seams for code that relays calls between threads (the worker bridge, packages/node
 * src/worker), so that a relayed call makes one engine pass per thread instead of two:
 *
 * - {@link forwardingCapability}: a capability whose calls are handed, synchronously and as the
 *   caller built them, to a {@link ForwardTarget} (a stand-in for an object on another thread).
 *   Unlike `localCapability`, no server call is made for them: no dispatch microtask, no
 *   IncomingCall, no Return message built and filled. The target reads the params in place and
 *   completes the call with results it read from another thread's bytes, which the caller then
 *   reads in place (its Response is a view of them).
 * - {@link sendCall}: sends a Request and hands its outcome to a callback synchronously when it
 *   arrives (no PendingCall promise, no microtask), with a handle to cancel it.
 *
 * Both keep the engine's semantics: capabilities in params and results are reference counted as
 * in any call (the cap tables of the messages), cancellation goes through the call's Sink, and
 * pipelined capabilities on a forwarded call resolve when it completes.
 *
 * Threading: belongs to the thread (event loop) that created it, as everything in the engine.
 */

import * as capnp from "capnp-ts";
import { CanceledError, RpcError, toRpcError } from "../errors.js";
import { Hook, errOutcome, runCancelFns, releaseOutcome } from "./hook.js";
import type { CallData, Outcome } from "./hook.js";
import { emptyStruct, readStruct } from "./message.js";
import { CapHandle, RequestImpl, hookOf } from "./client.js";
import { Sink } from "./sink.js";
import type { Capability, Request, Server, Struct, StructCtor } from "./types.js";

/** One call on a {@link forwardingCapability}, as its target sees it. */
export interface ForwardedCall {
  readonly interfaceId: bigint;
  readonly methodId: number;
  /**
   * The params as the caller built them (read and written in place; capabilities through
   * `readCap`). Valid only during {@link ForwardTarget.forward}: the caller's references to the
   * params' capabilities are released when it returns.
   */
  params<T extends Struct>(ctor: StructCtor<T>): T;
  /**
   * The params' struct pointer itself (no reader made, none widened to a schema's size): for
   * code that copies the params as they are. Same validity as {@link params}.
   */
  readonly content: capnp.Pointer;
  /** Runs `fn` once if the caller cancels before the call completes (at once if it has). */
  whenCanceled(fn: () => void): void;
  /**
   * Completes the call with the struct `content` points at (null: empty results), read in
   * place by the caller. `caps` become its message's cap table (indexes as in the content); the
   * call takes ownership of them. Once: a later complete or fail, or one after the caller
   * canceled, only releases `caps`.
   */
  complete(content: capnp.Pointer | null, caps: (Capability | null)[]): void;
  /** Completes the call with an error (thrown to the caller as an RpcError). */
  fail(e: unknown): void;
}

/** What a {@link forwardingCapability} hands its calls to. */
export interface ForwardTarget extends Server {
  /** Takes one call; it completes later through `call`. A throw fails the call. */
  forward(call: ForwardedCall): void;
}

/**
 * A capability whose calls go to `target.forward` synchronously, in the order they are sent.
 * `localServer()` is `target`; `target.onRelease` runs once, when the last reference is gone.
 */
export function forwardingCapability(target: ForwardTarget): Capability {
  return new CapHandle(new ForwardHook(target));
}

class ForwardHook extends Hook {
  private released = false;
  constructor(readonly target: ForwardTarget) {
    super();
  }
  protected destroy(): void {
    if (this.released) return;
    this.released = true;
    const f = this.target.onRelease;
    if (f === undefined) return;
    try {
      f.call(this.target);
    } catch (e) {
      console.error("multiprocess-ts: Server.onRelease threw:", e);
    }
  }
  call(d: CallData): void {
    if (d.sink.canceled || d.sink.outcome !== null) {
      d.releaseCaps();
      d.sink.complete(errOutcome(new CanceledError("call canceled before delivery")));
      return;
    }
    const c = new ForwardedCallImpl(d);
    d.sink.cancelHandler = c;
    try {
      this.target.forward(c);
    } catch (e) {
      c.fail(e);
    } finally {
      d.releaseCaps();
    }
  }
  override localServer(): Server {
    return this.target;
  }
}

class ForwardedCallImpl implements ForwardedCall {
  private cancelFns: (() => void)[] | null = null;
  private canceled = false;
  constructor(private readonly d: CallData) {}

  get interfaceId(): bigint {
    return this.d.interfaceId;
  }
  get methodId(): number {
    return this.d.methodId;
  }
  get content(): capnp.Pointer {
    return this.d.content;
  }

  params<T extends Struct>(ctor: StructCtor<T>): T {
    const p = this.d.content;
    if (capnp.Pointer.isNull(p)) return emptyStruct(ctor);
    return readStruct(p, ctor);
  }

  whenCanceled(fn: () => void): void {
    if (this.canceled) fn();
    else (this.cancelFns ??= []).push(fn);
  }

  /** The sink's cancel handler: the caller canceled. */
  onCancel(): void {
    this.canceled = true;
    const fns = this.cancelFns;
    if (fns === null) return;
    this.cancelFns = null;
    runCancelFns(fns);
  }

  complete(content: capnp.Pointer | null, caps: (Capability | null)[]): void {
    const hooks: (Hook | null)[] = new Array(caps.length);
    for (let i = 0; i < caps.length; i++) {
      const c = caps[i]!;
      if (c === null) hooks[i] = null;
      else {
        hooks[i] = hookOf(c).addRef();
        c.close();
      }
    }
    const sink = this.d.sink;
    if (sink.cancelHandler === this) sink.cancelHandler = null;
    if (content === null) {
      for (const h of hooks) h?.release();
      sink.complete({ err: null, msg: null, content: null, caps: [], ret: false });
      return;
    }
    const msg = content.segment.message;
    msg._capnp.capTable = hooks as never;
    sink.complete({ err: null, msg, content, caps: hooks, ret: false });
  }

  fail(e: unknown): void {
    const sink = this.d.sink;
    if (sink.cancelHandler === this) sink.cancelHandler = null;
    sink.complete(errOutcome(toRpcError(e)));
  }
}

/** The outcome of a call sent with {@link sendCall}: an error, or results to read, then close. */
export interface SentCallResult {
  /** The call's error (null when it returned results). */
  readonly error: RpcError | null;
  /**
   * The results' struct pointer itself (null: error or empty results), for code that copies
   * the results as they are (no reader made, none widened to a schema's size).
   */
  readonly content: capnp.Pointer | null;
  /** The results reader (an empty struct on error or empty results); capabilities through `readCap`. */
  results<T extends Struct>(ctor: StructCtor<T>): T;
  /** Releases the results' capabilities; idempotent. */
  close(): void;
}

/** The handle of a call sent with {@link sendCall}. */
export interface SentCall {
  /** Cancels the call (the engine sends Finish); `done` then gets a CanceledError at once. No-op once settled. */
  cancel(): void;
}

/**
 * Sends `req` (a Request made by this engine) and calls `done` with its outcome once, as soon as
 * it is known (possibly before `sendCall` returns, for a call that fails at once). `done` must
 * close the result; an error thrown by `done` is rethrown from a microtask.
 */
export function sendCall(req: Request<Struct>, done: (r: SentCallResult) => void): SentCall {
  if (!(req instanceof RequestImpl)) throw new TypeError("sendCall() needs a Request made by this engine");
  const sink = new CallbackSink(done);
  req.sendAsTail(sink);
  return sink;
}

class CallbackSink extends Sink implements SentCall {
  constructor(private readonly done: (r: SentCallResult) => void) {
    super();
  }
  protected onComplete(o: Outcome): void {
    try {
      this.done(new SentResult(o));
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }
  override cancel(): void {
    if (this.outcome !== null) return;
    super.cancel();
    this.complete(errOutcome(new CanceledError()));
  }
}

class SentResult implements SentCallResult {
  private closed = false;
  constructor(private readonly o: Outcome) {}
  get error(): RpcError | null {
    return this.o.err;
  }
  get content(): capnp.Pointer | null {
    if (this.closed) throw new RpcError("failed", "results used after close()");
    const p = this.o.content;
    return p === null || capnp.Pointer.isNull(p) ? null : p;
  }
  results<T extends Struct>(ctor: StructCtor<T>): T {
    if (this.closed) throw new RpcError("failed", "results used after close()");
    const p = this.o.content;
    if (p === null || capnp.Pointer.isNull(p)) return emptyStruct(ctor);
    return readStruct(p, ctor);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    releaseOutcome(this.o);
  }
}
