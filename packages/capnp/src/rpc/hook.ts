/**
 * The engine's internal model of a capability and of a call in flight, independent of any
 * connection (the C++ `ClientHook` and its call context).
 *
 * Every capability is a {@link Hook}: a reference-counted object that knows how to deliver a
 * call. User-facing handles (client.ts) hold exactly one reference each. Kinds of hook:
 *  - `LocalHook` (local.ts): a Server in this vat;
 *  - `PromiseHook` (promise.ts): not known yet (local promise, pipelined result, promise import,
 *    embargo);
 *  - `ImportHook` (imports.ts): hosted by the peer of one connection;
 *  - {@link BrokenHook}, {@link NullHook} (here): every call fails.
 *
 * A call in flight is a {@link CallData}: params message + cap table + the Sink (sink.ts) that
 * receives its {@link Outcome}.
 *
 * Threading: everything here belongs to the thread (event loop) that created it.
 */

import type * as capnp from "capnp-ts";
import { RpcError } from "../errors.js";
import type { Server } from "./types.js";
import type { Sink } from "./sink.js";

/** Where a promise sends its calls while unresolved: over `conn`, to an import or a promised answer. */
export interface Route {
  readonly conn: RouteConn;
  /** Target `importedCap` (owned reference), or null for `promisedAnswer(qid, path)`. */
  readonly importHook: Hook | null;
  readonly importId: number;
  readonly qid: number;
  readonly path: readonly number[];
}

/** What promises and sinks need from a connection (its question table, questions.ts). */
export interface RouteConn {
  /** Send `d` to the route's target. Takes ownership of `d`. */
  sendCall(d: CallData, route: Route): void;
  /** {@link Hook.callFlat} over this route: true if sent (questions.ts sendFlat). */
  sendFlatCall(call: FlatCall, route: Route): boolean;
  /** Start an embargo for a promise that resolved to `target` (owned); returns the hook to use (owned). */
  startEmbargo(route: Route, target: Hook): Hook;
}

/** Lets a call run as a tail call of an incoming call (a connection's answer table, answers.ts). */
export interface TailCallHandler {
  /** Try to send `d` (whose sink is ignored) as a tail call on behalf of `answerSink`; true if done. */
  tryTailCall(answerSink: Sink, target: Hook, d: CallData): boolean;
}

/** A call on its way to a hook. The receiver of `CallData` owns its `caps` and `msg`. */
export class CallData {
  /** True once `msg`'s Call has been sent on a connection (a second send must copy). */
  sent = false;
  constructor(
    readonly interfaceId: bigint,
    readonly methodId: number,
    /** The message holding the params; root rpc.Message with `call` set. */
    readonly msg: capnp.Message,
    /** `msg` is our own Call built by newCallMessage (fast-path layout, sendable as is); false for an incoming message. */
    readonly own: boolean,
    /** The params struct pointer. */
    readonly content: capnp.Pointer,
    /** The params cap table (same array as msg._capnp.capTable). */
    readonly caps: (Hook | null)[],
    readonly sink: Sink,
  ) {}

  releaseCaps(): void {
    const caps = this.caps;
    if (caps.length === 0) return; // (setting an array's length is a slow runtime call, even to 0)
    for (let i = 0; i < caps.length; i++) caps[i]?.release();
    caps.length = 0;
  }
}

/**
 * A call whose params struct is flat (data words only: no pointer, no capability), built and
 * sent in one synchronous go (client.ts DirectCall.sendFlat): `write` fills the zeroed data
 * section at byte `at` of `dv` and must not call out. Sent as bytes, no CallData or message
 * (questions.ts sendFlat, flat-call.ts encodeFlatCall).
 */
export interface FlatCall {
  readonly sink: Sink;
  readonly interfaceId: bigint;
  readonly methodId: number;
  readonly dataWords: number;
  readonly write: (dv: DataView, at: number) => void;
  /**
   * Capabilities (twelfth session; 0 for a flat struct): the params struct also has `ptrWords`
   * pointers, all null except pointer `capStruct`, a struct of `capStructPtrs` pointers holding
   * `caps[i]` (borrowed, not null) at its pointer `capSlots[i]`, cap table entry i
   * (flat-call.ts encodeFlatCapsCall). Sent as bytes only to an importedCap.
   */
  readonly capCount: number;
  readonly ptrWords: number;
  readonly capStruct: number;
  readonly capStructPtrs: number;
  readonly caps: readonly Hook[];
  readonly capSlots: readonly number[];
}

/**
 * Reads a flat results struct (data words only) from its data section: `words` data words at byte
 * `at` of `dv` (`at` -1 and `words` 0 for a null content), a field beyond them reading as its
 * default, as capnp reads a struct of an older peer. It copies out what it returns (numbers: `dv`
 * may be a socket reader's slab, reused after the Return) and must not call out or throw. Set by
 * a {@link Sink} whose caller reads such results (client.ts DirectCall.readFlat): the Return's
 * dispatch then reads the value with it, no message (questions.ts handleFlatResults).
 */
export type FlatRead = (dv: DataView, at: number, words: number) => unknown;

/** The result of a call. Whoever holds an Outcome owns its caps. */
export interface Outcome {
  err: RpcError | null;
  msg: capnp.Message | null;
  /** The results struct pointer (null: empty results, or no longer readable). */
  content: capnp.Pointer | null;
  caps: (Hook | null)[];
  /** `msg` is our own Return built by newReturnMessage, sendable as is (false: must be copied). */
  ret: boolean;
}

/**
 * Runs a call's when-canceled callbacks in order. One that throws is rethrown from a microtask
 * (reported as uncaught, as if it had run on its own) and the others still run.
 */
export function runCancelFns(fns: (() => void)[]): void {
  for (const fn of fns) {
    try {
      fn();
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }
}

export function errOutcome(err: RpcError): Outcome {
  return { err, msg: null, content: null, caps: [], ret: false };
}

/** The outcome a sink holds after a flat Return (Sink.completeFlat): results with no message and no caps. */
export const FLAT_OUTCOME: Outcome = { err: null, msg: null, content: null, caps: [], ret: false };

export function releaseOutcome(o: Outcome): void {
  const caps = o.caps;
  if (caps.length === 0) return;
  for (let i = 0; i < caps.length; i++) caps[i]?.release();
  caps.length = 0;
}

export abstract class Hook {
  /** References held (handles, cap tables, exports, promise resolutions). */
  refs = 1;
  /** How many of `refs` are user-facing handles (client.ts CapHandle). */
  handles = 0;
  /** How many of `refs` are export-table entries, any connection (exports.ts). */
  exportEntries = 0;

  addRef(): this {
    this.refs++;
    return this;
  }

  release(): void {
    // The last reference or not: a constant chosen by data (a warm call loop's releases keep
    // their hooks; docs/rpc.md "A new connection keeps the optimised code").
    (--this.refs === 0 ? destroyHook : keptHook)(this);
  }

  /** @internal The last reference went (see {@link release}). */
  lastRefGone(): void {
    this.destroy();
  }

  protected abstract destroy(): void;
  /** Deliver a call; takes ownership of `d`. */
  abstract call(d: CallData): void;
  /**
   * Send `c` as bytes straight to the peer when this hook's calls go out over a connection now
   * (an import, or a promise routed or resolved to one): true if sent. False: nothing was done,
   * the caller delivers it through {@link call} as a CallData (local servers, queued promises).
   */
  callFlat(_c: FlatCall): boolean {
    return false;
  }
  /** The most-resolved hook right now (not a new reference). */
  resolved(): Hook {
    return this;
  }
  /** The connection this hook sends its calls over (imports, routed promises), if any. */
  remoteConn(): RouteConn | null {
    return null;
  }
  whenResolved(): Promise<void> {
    return Promise.resolve();
  }
  isNullCap(): boolean {
    return false;
  }
  brokenError(): RpcError | null {
    return null;
  }
  localServer(): Server | undefined {
    return undefined;
  }
  /**
   * Holders of this capability: handles plus exports to peers, along the resolution chain (a
   * promise adds its resolution's). Cap tables of messages in flight are not holders.
   */
  holders(): number {
    return this.handles + this.exportEntries;
  }
}

/** Fails every call. */
export class BrokenHook extends Hook {
  constructor(readonly err: RpcError) {
    super();
  }
  protected destroy(): void {}
  call(d: CallData): void {
    d.releaseCaps();
    d.sink.complete(errOutcome(this.err));
  }
  override whenResolved(): Promise<void> {
    return Promise.reject(this.err);
  }
  override brokenError(): RpcError {
    return this.err;
  }
}

export class NullHook extends Hook {
  protected destroy(): void {}
  call(d: CallData): void {
    d.releaseCaps();
    d.sink.complete(errOutcome(new RpcError("failed", "Called null capability.")));
  }
  override isNullCap(): boolean {
    return true;
  }
}

/** The outcomes of {@link Hook.release} (see there). */
const destroyHook = (h: Hook): void => h.lastRefGone();
const keptHook = (_h: Hook): void => {};
