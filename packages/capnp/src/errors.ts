/**
 * Typed errors of the Cap'n Proto layer. Every error the engine produces or relays is an
 * {@link RpcError} carrying one of rpc.capnp's `Exception.Type` kinds and a stable `MP_ERR_*`
 * code (documented in docs/errors.md), so callers decide by kind/code, never by message text.
 * A peer's `failed` / `overloaded` / `unimplemented` answer arrives as a {@link RemoteError}
 * (the wire form of names, codes and stacks is in rpc/exception.ts).
 *
 * Owns: nothing (error classes). Threading: any thread.
 */

/** rpc.capnp `Exception.Type`, in TypeScript spelling. */
export type ErrorKind = "failed" | "overloaded" | "disconnected" | "unimplemented";

export interface RpcErrorOptions {
  /** Stable code; defaults to one derived from the kind. */
  code?: string;
  /** True when the error came from the peer (a Return.exception, an Abort, a Resolve.exception). */
  remote?: boolean;
  cause?: unknown;
}

const DEFAULT_CODES: Record<ErrorKind, string> = {
  failed: "MP_ERR_FAILED",
  overloaded: "MP_ERR_OVERLOADED",
  disconnected: "MP_ERR_DISCONNECTED",
  unimplemented: "MP_ERR_UNIMPLEMENTED",
};

export class RpcError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly remote: boolean;

  constructor(kind: ErrorKind, message: string, opts: RpcErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.kind = kind;
    this.code = opts.code ?? DEFAULT_CODES[kind];
    this.remote = opts.remote ?? false;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** The connection ended (closed, aborted, transport error) or the peer reported `disconnected`. */
export class DisconnectedError extends RpcError {
  constructor(message = "connection closed", opts: RpcErrorOptions = {}) {
    super("disconnected", message, { code: "MP_ERR_DISCONNECTED", ...opts });
  }
}

/** The peer sent something that breaks the protocol (malformed frame, bad id, wrong state). */
export class ProtocolError extends RpcError {
  constructor(message: string, opts: RpcErrorOptions = {}) {
    super("failed", message, { code: "MP_ERR_PROTOCOL", ...opts });
  }
}

/** A reader limit (segments, bytes, traversal words, nesting depth) was exceeded. */
export class LimitError extends ProtocolError {
  constructor(message: string, opts: RpcErrorOptions = {}) {
    super(message, { code: "MP_ERR_LIMIT", ...opts });
  }
}

/** Our own call was canceled before it returned (cancel() or an aborted signal). */
export class CanceledError extends RpcError {
  constructor(message = "call canceled", opts: RpcErrorOptions = {}) {
    super("failed", message, { code: "MP_ERR_CANCELED", ...opts });
  }
}

/**
 * An exception the peer answered (kind `failed`, `overloaded` or `unimplemented`; a
 * `disconnected` answer is a {@link DisconnectedError} with `remote: true`). `message` is the
 * peer's message, `code` its code (`MP_ERR_FAILED` unless the peer said otherwise),
 * `remoteName` the class name of what the peer threw (`"TypeError"`, a custom class, or
 * undefined when the peer did not say: a C++ peer), `remoteStack` the peer's stack when the peer
 * sends stacks (`RpcConnectionOptions.errorStacks`). `stack` is the local one: it names the
 * caller's own async frames (see the runtime's client proxy). Deliberately not an
 * `instanceof TypeError` etc.: see docs/errors.md, "Remote errors".
 */
export class RemoteError extends RpcError {
  readonly remoteName: string | undefined;
  readonly remoteStack: string | undefined;

  constructor(kind: ErrorKind, message: string, opts: RpcErrorOptions & { remoteName?: string; remoteStack?: string } = {}) {
    super(kind, message, { ...opts, remote: true });
    this.remoteName = opts.remoteName;
    this.remoteStack = opts.remoteStack;
  }

  /** `RemoteError [TypeError]`: what the peer threw, in Node's `Name [detail]` style. */
  override get name(): string {
    const r = this.remoteName;
    return r === undefined || r === "Error" ? "RemoteError" : `RemoteError [${r}]`;
  }
}

/** Wraps anything thrown by a server implementation: RpcErrors pass through, others become `failed`. */
export function toRpcError(e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  if (e instanceof Error) return new RpcError("failed", e.message, { cause: e });
  return new RpcError("failed", String(e), { cause: e });
}

/** Replacement for `Promise.withResolvers`, which Node 20 lacks. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
