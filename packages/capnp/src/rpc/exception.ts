/**
 * The wire form of errors: rpc.capnp `Exception` <-> {@link RpcError}.
 *
 * A C++ peer (capnproto's `toException` / `fromException`) reads `reason` and `type` and keeps
 * `trace` as the "remote trace" text, so everything we add must stay readable there:
 *  - `reason`: the message; for an error that is not one of our RpcErrors (a TypeError, a custom
 *    class) it is prefixed with the class name, "TypeError: bad thing", as Node prints it;
 *  - `trace`: a first line `multiprocess-ts {"name":"TypeError","code":"MP_ERR_FAILED"}` carrying
 *    the class name and code, followed by the sender's stack only when the connection sends stacks
 *    (`RpcConnectionOptions.errorStacks`, off by default: a stack reveals file paths).
 * A TS peer strips the prefix again and rebuilds a {@link RemoteError} with `remoteName`, `code` and
 * `remoteStack`; a `trace` without our first line (a C++ peer's) becomes `remoteStack` as is.
 * See docs/errors.md, "Remote errors".
 *
 * Owns: nothing. Threading: loop thread (called by the engine's tables).
 */
import type * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { DisconnectedError, RemoteError, RpcError, toRpcError } from "../errors.js";
import type { ErrorKind } from "../errors.js";

const KINDS: readonly ErrorKind[] = ["failed", "overloaded", "disconnected", "unimplemented"];
/** First word of the `trace` line we write. */
export const TRACE_MARK = "multiprocess-ts ";
/** Names and codes longer than this (or not identifier-like) are ignored when read. */
const NAME_RE = /^[A-Za-z_$][\w$.:\- ]{0,127}$/;

interface Described {
  name: string | undefined;
  code: string;
  stack: string | undefined;
  /** Whether `reason` carries the `Name: ` prefix. */
  prefixed: boolean;
}

/** `toRpcError`'s wrap of a non-RpcError: describe what was thrown, not the wrap. */
function unwrap(err: Error): Error {
  const c = (err as { cause?: unknown }).cause;
  if (Object.getPrototypeOf(err) === RpcError.prototype && c instanceof Error && !(c instanceof RpcError) && c.message === err.message) return c;
  return err;
}

function describe(thrown: Error, e: RpcError): Described {
  const err = unwrap(thrown);
  if (err instanceof RemoteError) {
    // Relaying a peer's error: keep what that peer said.
    const n = err.remoteName;
    return { name: n, code: err.code, stack: err.remoteStack, prefixed: n !== undefined && n !== "Error" };
  }
  if (err instanceof RpcError) return { name: err.name, code: err.code, stack: err.stack, prefixed: false };
  const c = (err as { code?: unknown }).code;
  const code = typeof c === "string" && NAME_RE.test(c) ? c : e.code;
  const name = typeof err.name === "string" ? err.name : "Error";
  return { name, code, stack: err.stack, prefixed: name !== "Error" };
}

/** Fills `ex` from `err` (anything thrown; non-RpcErrors are `failed`). `stacks`: send the stack. */
export function writeException(ex: rpc.Exception, err: Error, stacks = false): void {
  const e = toRpcError(err);
  const d = describe(err, e);
  ex.setReason(d.prefixed ? `${d.name}: ${e.message}` : e.message);
  ex.setType(KINDS.indexOf(e.kind) as rpc.Exception_Type);
  const head = TRACE_MARK + JSON.stringify(d.name === undefined ? { code: d.code } : { name: d.name, code: d.code });
  ex.setTrace(stacks && d.stack !== undefined ? `${head}\n${d.stack}` : head);
}

/** The error a peer's Exception stands for (a Return, an Abort, a Resolve). */
export function errorFromException(ex: rpc.Exception): RpcError {
  const kind = KINDS[ex.getType()] ?? "failed";
  let reason = ex.getReason();
  const trace = ex.getTrace();
  let name: string | undefined;
  let code: string | undefined;
  let stack: string | undefined;
  if (trace.startsWith(TRACE_MARK)) {
    const nl = trace.indexOf("\n");
    const head = trace.slice(TRACE_MARK.length, nl < 0 ? trace.length : nl);
    try {
      const j = JSON.parse(head) as { name?: unknown; code?: unknown };
      if (typeof j.name === "string" && NAME_RE.test(j.name)) name = j.name;
      if (typeof j.code === "string" && NAME_RE.test(j.code)) code = j.code;
    } catch {
      // Not our format after all: keep the whole trace as text.
      stack = trace;
    }
    if (nl >= 0 && stack === undefined) stack = trace.slice(nl + 1);
  } else if (trace !== "") {
    stack = trace;
  }
  if (name !== undefined && reason.startsWith(`${name}: `)) reason = reason.slice(name.length + 2);
  if (kind === "disconnected") return new DisconnectedError(reason, code === undefined ? { remote: true } : { remote: true, code });
  const opts: { code?: string; remoteName?: string; remoteStack?: string } = {};
  if (code !== undefined) opts.code = code;
  if (name !== undefined) opts.remoteName = name;
  if (stack !== undefined) opts.remoteStack = stack;
  return new RemoteError(kind, reason, opts);
}
