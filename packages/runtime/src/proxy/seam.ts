/**
 * The seam between generated proxies and the runtime (docs/contracts.md §2): the static method
 * descriptions mpgen emits, the IO helpers generated code calls while building params / reading
 * results, and the constructor shapes of generated clients and servers. Types only.
 *
 * Owns: nothing (types). Threading: loop thread (the objects these describe live there).
 */
import type { Capability } from "@multiprocess-ts/capnp";
import type { StructCtor } from "capnp-ts";
import type { Connection } from "../connection.js";
import type { ProxyServerBase } from "./server.js";

/** Static description of one capnp method, emitted by mpgen. */
export interface ProxyMethod {
  name: string;
  interfaceId: bigint;
  methodId: number;
  Params: StructCtor<any>;
  Results: StructCtor<any>;
  /** Pointer index of the `Proxy.Context` param, or -1. */
  context: number;
  /** True for a method named `destroy`. */
  destroy: boolean;
  special?: "construct" | "destroy";
  /**
   * Generated methods: whether the generated client method's `build` or `read` takes a ClientIO.
   * Unset: `$invoke` looks at their arity (a caller passing its own `build`/`read` with an `io`
   * parameter must use a descriptor where this is unset or true).
   */
  clientIo?: boolean;
}

/** One server-side method of a generated ProxyServer. `construct`/`destroy` have no `invoke`. */
export interface ServerMethod<I> {
  method: ProxyMethod;
  special?: "construct" | "destroy";
  /**
   * The flat params reader mpgen emits for a method whose params are plain numbers in the data
   * section (the client's flat writer's condition): the parameters read from the params struct's
   * data section (byte `at` of `dv`, `words` data words; a field beyond them reads as its default),
   * as the object `invoke` reads them from. The engine runs it on an incoming call's bytes instead
   * of making a reader's message (Server.flatParams; docs/rpc.md "Flat params on the server").
   */
  read?(dv: DataView, at: number, words: number): object;
  invoke?(impl: I, params: any, results: any, io: ServerIO): void | Promise<void>;
}

/** Helpers generated code uses while building params / reading results (and the server mirror). */
export interface ClientIO {
  readonly connection: Connection;
  /**
   * A capability for `obj` to write into the message:
   *  - a ProxyClientBase of this IO's Connection passes its own capability through (a new
   *    reference: capability identity is kept, the caller keeps its client);
   *  - a ProxyClientBase of another Connection is relayed (upstream wraps it in a ProxyServer whose
   *    implementation is the ProxyClient): a new `ServerCtor` on this Connection that calls it, so
   *    each hop fills its own Context (see `relayServer`). In params the caller keeps its client
   *    (the relay uses its own client over a new reference); in a server's results the returned
   *    client is handed over to the relay;
   *  - any other object is wrapped in a new `ServerCtor` (which then owns it: it is disposed when
   *    the peer releases it).
   * The IO keeps the returned handle and closes it once the message is built (writeCap copies it),
   * so callers need not close it.
   */
  exportObject(obj: object | null | undefined, ServerCtor: ProxyServerCtor): Capability | null;
  /** Wraps a received capability (takes ownership of `cap`) in a `ClientCtor`; null stays null. */
  importObject<C>(cap: Capability | null, ClientCtor: ProxyClientCtor<C>): C | null;
  /** Like exportObject for a function: served as `{ call: fn }` (upstream ProxyCallback<std::function>). */
  exportFunction(fn: Function | null | undefined, ServerCtor: ProxyServerCtor): Capability | null;
  /** A function calling the received callback's `call` method; `fn[Symbol.asyncDispose]` releases it. */
  importFunction<F>(cap: Capability | null, ClientCtor: ProxyClientCtor<any>): F | null;
  /**
   * Our ThreadMap for this connection, for a `Proxy.ThreadMap` field being built (upstream
   * type-threadmap.h; e.g. foo.capnp `initThreadMap`). Owned by the IO like exportObject's result.
   */
  threadMap(): Capability;
  /** Stores a received `Proxy.ThreadMap` as the connection's peer ThreadMap (takes ownership). */
  setPeerThreadMap(cap: Capability | null): void;
}

export type ServerIO = ClientIO & { readonly signal: AbortSignal };

export interface ProxyClientOptions {
  /** Close the Connection when this client is closed (the Init client made by connectTransport). */
  destroyConnection?: boolean;
}

/** Constructor shape of generated clients. */
export interface ProxyClientCtor<C = unknown> {
  new (cap: Capability, connection: Connection, opts?: ProxyClientOptions): C;
  readonly interfaceId: bigint;
  readonly $construct?: ProxyMethod | undefined;
  readonly $destroy?: ProxyMethod | undefined;
}

/** Constructor shape of generated servers. */
export interface ProxyServerCtor<I = any> {
  new (impl: I, connection: Connection): ProxyServerBase<I>;
  readonly interfaceId: bigint;
  readonly methods: readonly ServerMethod<I>[];
}
