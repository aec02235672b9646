/**
 * The IO objects generated code gets while building params / reading results
 * ({@link ClientIO}, the seam in seam.ts): `CallIO` for an outgoing call, `ServerCallIO` (plus
 * the call's lazily made `signal`) for an incoming one. They turn objects into capabilities
 * (export: pass-through, relay or a new server) and capabilities into clients (import).
 *
 * Owns: the capability handles it exported into one message, until the message is built.
 * Threading: loop thread only.
 */
import { localCapability, type Capability, type IncomingCall } from "@multiprocess-ts/capnp";
import type { Connection } from "../connection.js";
import { makeThreadMap } from "../threads/servers.js";
import type { ProxyClientBase } from "./client.js";
import { isProxyClient } from "./marks.js";
import { relayServer } from "./relay.js";
import type { ClientIO, ProxyClientCtor, ProxyServerCtor, ServerIO } from "./seam.js";

const FN_CLIENT: unique symbol = Symbol("mp.functionClient");

export class CallIO implements ClientIO {
  readonly connection: Connection;
  /**
   * Whether objects passed to exportObject are handed over to the runtime. A call's params are
   * lent by the caller (false); a server's results were returned by its implementation and are
   * handed over (true, see ServerCallIO). Only matters for relayed clients (see `relayServer`).
   */
  protected get transfers(): boolean {
    return false;
  }
  /** Handles to close once the message is built (allocated on first use: most calls need none). */
  #owned: Capability[] | null = null;

  constructor(connection: Connection) {
    this.connection = connection;
  }

  exportObject(obj: object | null | undefined, ServerCtor: ProxyServerCtor): Capability | null {
    if (obj === null || obj === undefined) return null;
    let cap: Capability;
    if (isProxyClient(obj)) {
      const client = obj as ProxyClientBase;
      cap =
        client.$connection === this.connection
          ? client.$dupCap()
          : localCapability(relayServer(client, ServerCtor, this.connection, this.transfers));
    } else {
      cap = localCapability(new ServerCtor(obj, this.connection));
    }
    this.own(cap);
    return cap;
  }

  importObject<C>(cap: Capability | null, ClientCtor: ProxyClientCtor<C>): C | null {
    if (!cap) return null;
    if (cap.isNull) {
      cap.close();
      return null;
    }
    return new ClientCtor(cap, this.connection);
  }

  exportFunction(fn: Function | null | undefined, ServerCtor: ProxyServerCtor): Capability | null {
    if (fn === null || fn === undefined) return null;
    const client = (fn as { [FN_CLIENT]?: ProxyClientBase })[FN_CLIENT];
    if (client) return this.exportObject(client, ServerCtor);
    return this.exportObject({ call: (...args: unknown[]) => fn(...args) }, ServerCtor);
  }

  importFunction<F>(cap: Capability | null, ClientCtor: ProxyClientCtor<any>): F | null {
    const client = this.importObject(cap, ClientCtor) as (ProxyClientBase & { call(...a: unknown[]): unknown }) | null;
    if (!client) return null;
    const fn = (...args: unknown[]) => client.call(...args);
    Object.defineProperty(fn, FN_CLIENT, { value: client });
    Object.defineProperty(fn, Symbol.asyncDispose, { value: () => client.close() });
    return fn as F;
  }

  threadMap(): Capability {
    const cap = this.connection.threadMapCap(makeThreadMap);
    this.own(cap);
    return cap;
  }

  setPeerThreadMap(cap: Capability | null): void {
    this.connection.setPeerThreadMap(cap);
  }

  /** Keeps `cap` until {@link release}. */
  protected own(cap: Capability): void {
    if (this.#owned === null) this.#owned = [cap];
    else this.#owned.push(cap);
  }

  /** True while it holds something {@link release} must let go of. */
  get holds(): boolean {
    return this.#owned !== null;
  }

  /** Closes the handles exportObject/exportFunction returned (the message holds its own). */
  release(): void {
    const caps = this.#owned;
    if (caps === null) return;
    this.#owned = null;
    for (const c of caps) c.close();
  }
}

/**
 * The IO of one incoming call. `signal` is made on first read only (most implementations never
 * look at it): it aborts when the call is canceled (Finish before Return) or the Connection is torn
 * down, and its listeners are removed when the call ends, so nothing of the call stays registered
 * on the Connection's signal.
 *
 * Releasing: the dispatcher calls {@link release} when the invoke settles. When the invoke returned
 * a promise while the IO held nothing, the dispatcher hands that promise to {@link watch} and
 * returns it to the engine as is (no extra promise per call); if the IO acquires something later
 * (a capability exported into the results after an await, or the signal), the release is chained
 * onto the watched promise then.
 */
export class ServerCallIO extends CallIO implements ServerIO {
  readonly #call: IncomingCall;
  #signal: AbortSignal | undefined;
  #unlisten: (() => void) | undefined;
  #watched: PromiseLike<unknown> | undefined;
  #write: ((v: unknown) => void) | undefined;

  constructor(connection: Connection, call: IncomingCall) {
    super(connection);
    this.#call = call;
  }

  /** Results: the implementation returned the object, so the runtime owns it now. */
  protected override get transfers(): boolean {
    return true;
  }

  get signal(): AbortSignal {
    let s = this.#signal;
    if (s === undefined) s = this.#signal = this.#makeSignal();
    return s;
  }

  #makeSignal(): AbortSignal {
    const callSignal = this.#call.signal;
    const connSignal = this.connection.signal;
    if (callSignal.aborted) return callSignal;
    if (connSignal.aborted) return connSignal;
    const ctrl = new AbortController();
    const onAbort = (ev: Event): void => ctrl.abort((ev.target as AbortSignal).reason);
    callSignal.addEventListener("abort", onAbort);
    connSignal.addEventListener("abort", onAbort);
    this.#unlisten = () => {
      callSignal.removeEventListener("abort", onAbort);
      connSignal.removeEventListener("abort", onAbort);
    };
    this.#acquired();
    return ctrl.signal;
  }

  protected override own(cap: Capability): void {
    super.own(cap);
    this.#acquired();
  }

  override get holds(): boolean {
    return super.holds || this.#unlisten !== undefined;
  }

  /**
   * @internal Generated servers (through `thenWrite`): the implementation returned `out`; its
   * results are written by `write` once it resolves. The dispatcher takes `write` back
   * ({@link takeWrite}) and runs it in the engine's own reaction to `out` (`IncomingCall.whenSettled`)
   * when it can, instead of a reaction of the generated code's own. Returns `out` as a promise.
   */
  later<T>(out: PromiseLike<T>, write: (v: T) => void): Promise<void> {
    this.#write = write as (v: unknown) => void;
    return (out instanceof Promise ? out : Promise.resolve(out)) as Promise<void>;
  }

  /** @internal The writer {@link later} was given for this call, if any (once). */
  takeWrite(): ((v: unknown) => void) | undefined {
    const w = this.#write;
    if (w !== undefined) this.#write = undefined;
    return w;
  }

  /** See the class comment: `p` is the invoke's promise, already returned to the engine. */
  watch(p: PromiseLike<unknown>): void {
    this.#watched = p;
  }

  #acquired(): void {
    const p = this.#watched;
    if (p === undefined) return;
    this.#watched = undefined;
    const release = (): void => this.release();
    p.then(release, release);
  }

  override release(): void {
    super.release();
    const unlisten = this.#unlisten;
    if (unlisten !== undefined) {
      this.#unlisten = undefined;
      unlisten();
    }
  }
}

/**
 * Generated server `invoke`: the implementation returned the thenable `out`; `write` writes the
 * results from its value. Returns the promise `invoke` hands back. Under the runtime's dispatcher
 * (a {@link ServerCallIO}) the write runs in the engine's own reaction to `out`, right before the
 * Return is built: no promise and no reaction of the generated code's own (docs/contracts.md §2).
 * Anywhere else (an `invoke` called directly) it is `Promise.resolve(out).then(write)`.
 */
export function thenWrite<T>(io: ServerIO | undefined, out: PromiseLike<T>, write: (v: T) => void): Promise<void> {
  if (io instanceof ServerCallIO) return io.later(out, write);
  return Promise.resolve(out).then(write);
}
