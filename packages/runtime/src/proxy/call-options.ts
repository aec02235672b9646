/**
 * Per-call options of generated client methods (the trailing `options?: CallOptions` argument),
 * the per-client defaults ({@link setCallDefaults}), and the server-side {@link CallContext} a
 * generated server passes to implementation methods as their trailing argument.
 *
 * A canceled call (its `signal` aborted, or its `timeout` elapsed) is canceled in the engine
 * (`PendingCall.cancel()`: Finish is sent if the Return has not come) and the caller is rejected
 * at once with `CanceledError` (`MP_ERR_CANCELED`, `cause` = the signal's reason) or
 * {@link TimeoutError} (`MP_ERR_TIMEOUT`). A signal whose reason is a DOMException named
 * "TimeoutError" (`AbortSignal.timeout(ms)`) rejects with TimeoutError too.
 *
 * Owns: per call, one abort listener and/or one timer, removed when the call settles.
 * Threading: any thread whose proxies call through this runtime (the loop thread, or a worker
 * thread's worker-side capabilities).
 */
import { CanceledError } from "@multiprocess-ts/capnp";
import { TimeoutError } from "../errors.js";

/** Options of one client call: the trailing argument of every generated client method. */
export interface CallOptions {
  /** Cancels the call when it aborts: Finish is sent and the call rejects with CanceledError. */
  readonly signal?: AbortSignal | undefined;
  /** Milliseconds before the call is canceled and rejects with TimeoutError (no limit if unset). */
  readonly timeout?: number | undefined;
  /**
   * Which server Thread runs a call of a method with a `Proxy.Context`: by default the Thread the
   * peer made for this JS thread (one FIFO queue per calling thread, as upstream); `"pool"` leaves
   * `Context.thread` unset so the peer's pool (made with `makePool`) serves it.
   */
  readonly thread?: "pool" | undefined;
}

/**
 * What a generated server passes to an implementation method as its trailing argument. `signal`
 * aborts when the caller cancels (its Finish arrives before our Return) or the connection ends.
 * It is assignable to {@link CallOptions}: pass it on to nested calls to cancel them too.
 */
export interface CallContext {
  readonly signal: AbortSignal;
}

const DEFAULTS: unique symbol = Symbol("mp.callDefaults");

interface WithDefaults {
  [DEFAULTS]?: CallOptions | undefined;
}

/**
 * Sets the default options of every call made through `client` (a generated client or a function
 * imported from a callback capability); a call's own options override them field by field
 * (a per-call `signal` and a default `signal` both cancel the call). Returns `client`.
 */
export function setCallDefaults<C extends object>(client: C, defaults: CallOptions | undefined): C {
  (client as WithDefaults)[DEFAULTS] = defaults;
  return client;
}

/** The defaults set on `client` with {@link setCallDefaults}. */
export function callDefaults(client: object): CallOptions | undefined {
  return (client as WithDefaults)[DEFAULTS];
}

/** The options of one call: `own` over `client`'s defaults (undefined when neither has any). */
export function effectiveOptions(client: object, own: CallOptions | undefined): CallOptions | undefined {
  const d = (client as WithDefaults)[DEFAULTS];
  if (d === undefined) return own;
  if (own === undefined) return d;
  const signal =
    own.signal !== undefined && d.signal !== undefined ? AbortSignal.any([own.signal, d.signal]) : (own.signal ?? d.signal);
  return { signal, timeout: own.timeout ?? d.timeout, thread: own.thread ?? d.thread };
}

/** The error a call canceled by `signal` rejects with. */
export function abortError(signal: AbortSignal): CanceledError {
  const reason: unknown = signal.reason;
  if (reason instanceof CanceledError) return reason;
  if (reason instanceof Error && reason.name === "TimeoutError") return new TimeoutError(undefined, reason);
  return new CanceledError("IPC client method call canceled.", { cause: reason });
}

/** Throws {@link RangeError} for a `timeout` that is not a non-negative finite number. */
export function checkTimeout(timeout: number | undefined): void {
  if (timeout !== undefined && !(typeof timeout === "number" && timeout >= 0 && Number.isFinite(timeout))) {
    throw new RangeError(`CallOptions.timeout must be a non-negative finite number of milliseconds, got ${String(timeout)}`);
  }
}

/** What a Canceler cancels: a sent call (the runtime's ClientCall, or an engine PendingCall). */
export interface Cancelable {
  cancel(): void;
}

/**
 * Arms `opts` on a sent call: on abort / timeout, records the error (read by {@link Canceler.error})
 * and cancels `pending`. Call {@link Canceler.done} when the call settles.
 */
export class Canceler {
  error: CanceledError | undefined;
  readonly #pending: Cancelable;
  readonly #signal: AbortSignal | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(pending: Cancelable, opts: CallOptions) {
    this.#pending = pending;
    const signal = opts.signal;
    if (signal !== undefined) {
      this.#signal = signal;
      signal.addEventListener("abort", this);
    }
    const timeout = opts.timeout;
    if (timeout !== undefined) {
      this.#timer = setTimeout(() => this.#cancel(new TimeoutError(timeout)), timeout);
    }
  }

  /** The signal's abort listener (an EventListenerObject: no closure per call). */
  handleEvent(): void {
    this.#cancel(abortError(this.#signal!));
  }

  #cancel(e: CanceledError): void {
    if (this.error !== undefined) return;
    this.error = e;
    this.done();
    this.#pending.cancel();
  }

  /** Removes the listener and the timer. Idempotent. */
  done(): void {
    this.#signal?.removeEventListener("abort", this);
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }
}
