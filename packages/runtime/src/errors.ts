/**
 * Runtime errors (documented in docs/errors.md, "Runtime errors"). They extend the capnp layer's
 * {@link RpcError} classes so callers branch on `kind`/`code`, never on message text; the two
 * disconnect messages are upstream's exact strings (proxy-types.h clientInvoke).
 *
 * Owns: nothing (error classes). Threading: any thread.
 */
import { CanceledError, DisconnectedError, RpcError } from "@multiprocess-ts/capnp";

/** Base class of errors the runtime raises for proxy calls after/around a disconnect. */
export class IpcDisconnectedError extends DisconnectedError {
  constructor(message: string, code: string, cause?: unknown) {
    super(message, cause === undefined ? { code } : { code, cause });
  }
}

/**
 * A proxy method was called after its connection was lost (the client's disconnect callback ran).
 * Thrown (as a rejected promise) without sending anything. Code `MP_ERR_CALLED_AFTER_DISCONNECT`;
 * `cause` is why the connection ended (a DisconnectedError), on the loop thread and on workers.
 */
export class IpcCalledAfterDisconnectError extends IpcDisconnectedError {
  constructor(cause?: unknown) {
    super("IPC client method called after disconnect.", "MP_ERR_CALLED_AFTER_DISCONNECT", cause);
  }
}

/**
 * A proxy call was in flight when the connection was lost (or the peer answered `disconnected`).
 * `cause` is the engine's DisconnectedError. Code `MP_ERR_INTERRUPTED_BY_DISCONNECT`.
 */
export class IpcInterruptedError extends IpcDisconnectedError {
  constructor(cause?: unknown) {
    super("IPC client method call interrupted by disconnect.", "MP_ERR_INTERRUPTED_BY_DISCONNECT", cause);
  }
}

/** A proxy method was called after the client's own `close()`. Code `MP_ERR_CLIENT_CLOSED`. */
export class IpcClientClosedError extends RpcError {
  constructor() {
    super("failed", "IPC client method called after close.", { code: "MP_ERR_CLIENT_CLOSED" });
  }
}

/**
 * Server-side thread selection failed: "invalid thread handle" (`MP_ERR_INVALID_THREAD`) or
 * "no thread specified and no pool configured" (`MP_ERR_NO_THREAD`), upstream's messages.
 * Sent to the peer as a `failed` exception.
 */
export class ThreadSelectionError extends RpcError {
  constructor(message: string, code: string) {
    super("failed", message, { code });
  }
}

/** A value did not fit the capnp integer field it was meant for (`checkInt32` etc.). */
export class IntRangeError extends RangeError {
  readonly code = "MP_ERR_INT_RANGE";
}

/**
 * A generated writer was given a union value it cannot write: `which` is a number (a member this
 * schema does not know, as a reader yields it for a newer peer's member; its value was not kept,
 * so it cannot be written back) or names no member (possible from JS). Thrown before anything is
 * sent (client: while building params; server: while building results, sent as `failed`).
 * `type` is the struct's schema name (`Shape`, `Shape.style`), `which` the offending tag.
 */
export class UnknownUnionMemberError extends RangeError {
  readonly code = "MP_ERR_UNKNOWN_MEMBER";
  readonly type: string;
  readonly which: unknown;
  constructor(type: string, which: unknown) {
    super(
      typeof which === "number"
        ? `mpgen: cannot write union member ${which} of ${type}: this schema does not know it (read from a peer with a newer schema), so its value was not kept`
        : `mpgen: ${String(which)} is not a union member of ${type} in this schema`,
    );
    this.type = type;
    this.which = which;
  }
}

/**
 * A proxy call's `timeout` (per call or from the client's defaults) elapsed before it returned:
 * the caller was rejected at once and Finish was sent. A {@link CanceledError} (a timeout is a
 * cancel), with its own code `MP_ERR_TIMEOUT`; `timeout` is the limit in milliseconds.
 */
export class TimeoutError extends CanceledError {
  readonly timeout: number | undefined;
  constructor(timeout: number | undefined, cause?: unknown) {
    const what = timeout === undefined ? "timed out" : `timed out after ${timeout} ms`;
    super(`IPC client method call ${what}.`, cause === undefined ? { code: "MP_ERR_TIMEOUT" } : { code: "MP_ERR_TIMEOUT", cause });
    this.timeout = timeout;
  }
}

const MESSAGE_FIELDS = ["message", "what", "reason"] as const;

/**
 * The message of a generated `$Proxy.exception` error class made from its value (only the value
 * crosses the wire, as upstream): a non-empty Text value itself, else a struct's non-empty
 * `message` / `what` / `reason` text field, else the C++ type name `cxx`. Used as the default
 * message on both sides, so "key not found: missing-key" reads the same for server and client.
 */
export function exceptionMessage(value: unknown, cxx: string): string {
  if (typeof value === "string") return value !== "" ? value : cxx;
  if (typeof value === "object" && value !== null) {
    for (const f of MESSAGE_FIELDS) {
      const v = (value as Record<string, unknown>)[f];
      if (typeof v === "string" && v !== "") return v;
    }
  }
  return cxx;
}
