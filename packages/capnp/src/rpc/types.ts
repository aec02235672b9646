/**
 * The public types of the RPC engine (docs/contracts.md §1): what users implement ({@link Server})
 * and what they hold ({@link Capability}, {@link Request}, {@link PendingCall}, {@link Response}).
 * Types only; the implementations live in client.ts (handles, requests, responses) and local.ts
 * (servers in this vat).
 *
 * Threading: every object of these types belongs to the thread (event loop) that created it.
 */

import type * as capnp from "capnp-ts";

export type Struct = capnp.Struct;
export type StructCtor<T extends capnp.Struct> = capnp.StructCtor<T>;

/** A capability implementation in this vat. */
export interface Server {
  /** Handle one call. Throw (or reject) to send `Return.exception`. */
  dispatch(call: IncomingCall): void | Promise<void>;
  /**
   * Exactly once, when the last reference (local handle, export, message) is gone, including at
   * connection end. An error it throws is logged, never propagated: through the `log` option of
   * the connection whose release (the peer's Release, connection end) ran it, else `console.error`.
   */
  onRelease?(): void;
  /**
   * The flat params reader of method (`interfaceId`, `methodId`), if it has one: the engine may
   * then deliver an incoming call of the hot shape (no cap table, params content null or a struct
   * without pointers) by running it on the params struct's data section (byte `at` of `dv`,
   * `words` data words; `at` = `words` = 0 for null content) before anything can await, instead
   * of making a reader's message; `dispatch` finds what it returned in
   * {@link IncomingCall.flatParams}, and such a call's `params()` throws. The reader must read
   * only the `words` words at `at` (the view may be a socket's reused buffer), never call out, and
   * return an object. Called per call: keep it a lookup (docs/rpc.md "Flat params on the server").
   */
  flatParams?(interfaceId: bigint, methodId: number): FlatParamsReader | undefined;
}

/** See {@link Server.flatParams}. */
export type FlatParamsReader = (dv: DataView, at: number, words: number) => object;

/** One call delivered to a {@link Server}. */
export interface IncomingCall {
  readonly interfaceId: bigint;
  readonly methodId: number;
  /** The params reader. Its caps: `readCap()` (new references, the server closes them). */
  params<T extends Struct>(ctor: StructCtor<T>): T;
  /**
   * What the server's flat params reader returned for this call when the engine read its params
   * with it ({@link Server.flatParams}); undefined otherwise (then read them with `params`).
   */
  readonly flatParams?: object | undefined;
  /** The results builder (the same object on each call). */
  results<T extends Struct>(ctor: StructCtor<T>): T;
  /** Aborts when the caller cancels (Finish before Return) or the connection ends. */
  readonly signal: AbortSignal;
  /**
   * Runs `fn` once when `signal` would abort (at once if it has): the same event without making
   * an AbortSignal, for forwarding servers on a hot path. Optional: servers fall back to `signal`.
   */
  whenCanceled?(fn: () => void): void;
  /**
   * Runs `fn` once when the server's `dispatch` has settled (the promise it returned settled, or it
   * returned or threw), right before the call's Return is built; a throw from `fn` fails a call
   * that had not failed. One callback per call. For a dispatcher that ends its own bookkeeping when
   * the method's promise settles, without a promise reaction of its own (the runtime's server
   * Thread tasks). Optional: dispatchers fall back to chaining onto their promise. `fn` is told
   * whether the dispatch failed and, when it did not, the value its promise resolved with
   * (undefined for a dispatch that returned): a dispatcher that returned the method's own promise
   * writes the results from it there (the runtime's generated servers), again without a reaction.
   */
  whenSettled?(fn: (failed: boolean, value: unknown) => void): void;
  /** Let `req` produce this call's results (a tail call). The results builder is then ignored. */
  tailCall(req: Request<Struct>): void;
}

/** One handle = one reference. */
export interface Capability extends Disposable {
  newCall<P extends Struct>(interfaceId: bigint, methodId: number, Params: StructCtor<P>): Request<P>;
  /** Another reference to the same capability. */
  dup(): Capability;
  /** Release this reference; idempotent. */
  close(): void;
  /** Resolves once this capability is no longer a promise; rejects if it resolved to an error. */
  whenResolved(): Promise<void>;
  readonly isNull: boolean;
  readonly closed: boolean;
  /** The Server if this (now) points at one in this vat. */
  localServer(): Server | undefined;
}

export interface Request<P extends Struct> {
  /** The params builder. */
  readonly params: P;
  /** Send the call; consumes the request. */
  send(opts?: { signal?: AbortSignal }): PendingCall;
}

export interface PendingCall extends PromiseLike<Response> {
  /** A capability inside the (future) results: pointer indices into the results struct, then nested structs. */
  pipeline(...path: number[]): Capability;
  /** Cancel: sends Finish; the promise rejects with CanceledError (no-op once settled). */
  cancel(): void;
}

export interface Response extends Disposable {
  results<T extends Struct>(ctor: StructCtor<T>): T;
  /** Releases the caps held by the results' cap table. */
  close(): void;
}
