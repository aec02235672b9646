/**
 * Wire format between a loop thread and the worker threads attached to it, written once for both
 * halves: the LoopHandle, the shared-state words, the post/sync messages (host.ts ↔ attach.ts),
 * the RPC bridge messages (loop-bridge.ts ↔ worker-bridge.ts, both built on rpc-end.ts), and
 * their encode/decode: errors ({@link encodeError}/{@link decodeError}), message payloads with
 * capabilities ({@link encodePayload}/{@link decodePayloadInto}), the flat frames of
 * capability-free calls and returns ({@link callFrame}/{@link decodeFrame}), the closure check.
 *
 * Everything here crosses a `MessagePort` by structured clone, so it holds data and MessagePorts
 * only, never functions. The loop side and the worker side are compiled from the same file, so the
 * message shapes cannot drift apart; there is no versioning.
 *
 * Owns: nothing (shapes and pure functions). Threading: any thread (loop and worker alike).
 */
import { MessagePort } from "node:worker_threads";
import {
  CanceledError,
  DisconnectedError,
  LimitError,
  ProtocolError,
  RemoteError,
  RpcError,
  fastpath,
  type Capability,
  type ErrorKind,
} from "@multiprocess-ts/capnp";
import {
  IntRangeError,
  IpcCalledAfterDisconnectError,
  IpcClientClosedError,
  IpcInterruptedError,
  ThreadSelectionError,
  TimeoutError,
} from "@multiprocess-ts/runtime";
import * as capnp from "capnp-ts";
import { capFromTable, mapCaps, packStruct, packStructGeneral, unpackStructInto } from "./copy.js";
import { packRaw, packedBytes as used } from "./raw-copy.js";

/**
 * What a worker needs to reach a loop: pass it in `workerData` and list `port` in the
 * `transferList` of `new Worker(...)` (see {@link loopHandleTransferList}).
 *
 * A handle is a plain object so that it survives structured clone; it is good for exactly one
 * `attachLoop()` call (the port moves into the worker with it).
 *
 * Threads: created on the loop thread by `WorkerHost.handle()`; used on one worker thread.
 */
export interface LoopHandle {
  readonly kind: "multiprocess-ts/loop-handle";
  /** Name of the loop (for messages and thread names). */
  readonly loopName: string;
  /** Id of the loop-side session this handle belongs to (unique within its host). */
  readonly session: number;
  /** The session's name (the worker's thread name on the loop side). */
  readonly name: string;
  /** The loop traces: the worker sends it the names of the methods it calls (docs/usage.md, "Tracing"). */
  readonly trace?: boolean;
  /** The worker's end of the session's channel. */
  readonly port: MessagePort;
  /**
   * Shared state, an Int32Array view of `STATE_WORDS` words:
   * [WAKE] wake counter: the loop side adds 1 after each message it posts, and `Atomics.notify`s
   * when WAITERS is not 0;
   * [CLOSED] 1 once the loop side has closed the session;
   * [INTERRUPT] interrupt counter: the loop adds 1 (then bumps WAKE) to cancel the worker's
   * blocking waits that started before (`WorkerSession.interrupt()`);
   * [WAITERS] how many blocking waits (`Waiter.wait`) the worker is in: raised before the wait
   * reads WAKE, lowered after it. All four are sequentially consistent Atomics, so a loop that
   * reads WAITERS as 0 after its WAKE bump posted before a wait read WAKE, and that wait sees the
   * bump and the message: a notify nobody waits for (~0.5-1 µs) is skipped.
   */
  readonly shared: SharedArrayBuffer;
}

export const WAKE = 0;
export const CLOSED = 1;
export const INTERRUPT = 2;
export const WAITERS = 3;
export const STATE_WORDS = 4;

/** The transfer list `new Worker(file, { workerData: { handle }, transferList })` needs. */
export function loopHandleTransferList(handle: LoopHandle): MessagePort[] {
  return [handle.port];
}

/** True when `v` looks like a {@link LoopHandle} (after structured clone, so no instanceof). */
export function isLoopHandle(v: unknown): v is LoopHandle {
  return typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "multiprocess-ts/loop-handle";
}

/** An error in a form that survives structured clone with its class, kind, code and cause. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  kind?: ErrorKind;
  code?: string;
  remote?: boolean;
  /** The typed class to rebuild (see {@link errorClass}); absent for a plain RpcError / Error. */
  cls?: ErrorClass;
  /** TimeoutError's limit in milliseconds. */
  timeout?: number;
  /** RemoteError's peer-side class name and stack. */
  remoteName?: string;
  remoteStack?: string;
  /** The error's `cause` when it is an Error (one level: its own cause is dropped). */
  cause?: WireError;
}

/** Every typed error class a caller can see, by the tag the other thread rebuilds it from. */
type ErrorClass =
  | "Timeout"
  | "Canceled"
  | "CalledAfterDisconnect"
  | "Interrupted"
  | "Disconnected"
  | "ClientClosed"
  | "Remote"
  | "Limit"
  | "Protocol"
  | "ThreadSelection"
  | "IntRange";

/** The tag of `e`'s class, most derived first (TimeoutError is a CanceledError, etc.). */
function errorClass(e: Error): ErrorClass | undefined {
  if (e instanceof RpcError) {
    if (e instanceof TimeoutError) return "Timeout";
    if (e instanceof CanceledError) return "Canceled";
    if (e instanceof IpcCalledAfterDisconnectError) return "CalledAfterDisconnect";
    if (e instanceof IpcInterruptedError) return "Interrupted";
    if (e instanceof DisconnectedError) return "Disconnected";
    if (e instanceof IpcClientClosedError) return "ClientClosed";
    if (e instanceof RemoteError) return "Remote";
    if (e instanceof LimitError) return "Limit";
    if (e instanceof ProtocolError) return "Protocol";
    if (e instanceof ThreadSelectionError) return "ThreadSelection";
    return undefined;
  }
  return e instanceof IntRangeError ? "IntRange" : undefined;
}

export function encodeError(e: unknown, depth = 0): WireError {
  let w: WireError;
  if (e instanceof RpcError) {
    w = { name: e.name, message: e.message, stack: e.stack, kind: e.kind, code: e.code, remote: e.remote };
    const cls = errorClass(e);
    if (cls !== undefined) w.cls = cls;
    if (e instanceof TimeoutError && e.timeout !== undefined) w.timeout = e.timeout;
    if (e instanceof RemoteError) {
      if (e.remoteName !== undefined) w.remoteName = e.remoteName;
      if (e.remoteStack !== undefined) w.remoteStack = e.remoteStack;
    }
  } else if (e instanceof Error) {
    w = { name: e.name, message: e.message, stack: e.stack };
    if (e instanceof IntRangeError) w.cls = "IntRange";
  } else {
    return { name: "Error", message: String(e) };
  }
  if (depth === 0 && e.cause instanceof Error) w.cause = encodeError(e.cause, 1);
  return w;
}

/**
 * The RpcError class for a decoded error, so the same situation gives the same class, message,
 * code and cause on every thread (docs/errors.md, "Errors on worker threads").
 */
function rebuildRpcError(w: WireError & { kind: ErrorKind }, cause: Error | undefined): RpcError {
  const opts = { code: w.code, remote: w.remote, ...(cause === undefined ? {} : { cause }) };
  switch (w.cls) {
    case "Timeout":
      return new TimeoutError(w.timeout, cause);
    case "Canceled":
      return new CanceledError(w.message, opts);
    case "CalledAfterDisconnect":
      return new IpcCalledAfterDisconnectError(cause);
    case "Interrupted":
      return new IpcInterruptedError(cause);
    case "Disconnected":
      return new DisconnectedError(w.message, opts);
    case "ClientClosed":
      return new IpcClientClosedError();
    case "Remote":
      return new RemoteError(w.kind, w.message, { ...opts, remoteName: w.remoteName, remoteStack: w.remoteStack });
    case "Limit":
      return new LimitError(w.message, opts);
    case "Protocol":
      return new ProtocolError(w.message, opts);
    case "ThreadSelection":
      return new ThreadSelectionError(w.message, w.code ?? "MP_ERR_FAILED");
  }
  if (w.kind === "disconnected") return new DisconnectedError(w.message, opts);
  return new RpcError(w.kind, w.message, opts);
}

/** Rebuilds an error sent by the other thread: RpcErrors keep their class, kind, code and cause. */
export function decodeError(w: WireError): Error {
  const cause = w.cause === undefined ? undefined : decodeError(w.cause);
  let e: Error;
  if (w.kind !== undefined) {
    e = rebuildRpcError(w as WireError & { kind: ErrorKind }, cause);
  } else if (w.cls === "IntRange") {
    e = new IntRangeError(w.message);
  } else if (w.name === "TypeError") {
    e = new TypeError(w.message);
  } else if (w.name === "RangeError") {
    e = new RangeError(w.message);
  } else {
    e = new Error(w.message);
    if (w.name !== "Error") Object.defineProperty(e, "name", { value: w.name, configurable: true });
  }
  if (w.stack !== undefined) {
    // Keep our own stack first (where the error surfaced), then the thread it came from.
    e.stack = `${e.stack ?? ""}\n    --- on the other thread ---\n${w.stack}`;
  }
  return e;
}

// ---- messages, worker → loop ------------------------------------------------------------------

/** Run handler `name` on the loop; no reply. */
export interface PostMsg { t: "post"; name: string; data: unknown }
/** Run handler `name` on the loop; reply with `reply` id `id` once it has run. */
export interface SyncMsg { t: "sync"; id: number; name: string; data: unknown }
/** Worker is detaching on purpose (`WorkerLoop.close()`). */
export interface DetachMsg { t: "detach" }
/** A message for a bridge module (RPC forwarding); routed by `ch`. */
export interface ChannelMsg { t: "ch"; ch: string; body: unknown }

export type ToLoop = PostMsg | SyncMsg | DetachMsg | ChannelMsg;

// ---- messages, loop → worker ------------------------------------------------------------------

export interface ReplyMsg { t: "reply"; id: number; ok: boolean; value?: unknown; error?: WireError }
/** Loop side closed the session (loop shutting down, or the host was closed). */
export interface ByeMsg { t: "bye"; reason?: WireError }

export type ToWorker = ReplyMsg | ByeMsg | ChannelMsg;

// ---- the closure check ------------------------------------------------------------------------

/**
 * Checks that `data` can cross a thread boundary and collects the MessagePorts it holds (they are
 * transferred, not copied). Functions anywhere inside (including class instances' own properties)
 * are rejected with a TypeError that names the path, because a closure cannot run on another
 * thread: register a handler on the loop and send its name with data instead.
 *
 * Only own enumerable properties are walked, as structured clone does; cycles are fine.
 */
export function checkTransferable(data: unknown, what: string): MessagePort[] {
  const ports: MessagePort[] = [];
  const seen = new Set<object>();
  const walk = (v: unknown, path: string): void => {
    if (typeof v === "function") {
      throw new TypeError(
        `${what}: cannot send a function${path === "" ? "" : ` (at data${path})`} to another thread. ` +
          "Threads share data and MessagePorts, never closures: register a handler on the loop " +
          "(WorkerHost.register) and send its name and plain data instead.",
      );
    }
    if (typeof v === "symbol") {
      throw new TypeError(`${what}: cannot send a symbol${path === "" ? "" : ` (at data${path})`} to another thread.`);
    }
    if (typeof v !== "object" || v === null || seen.has(v)) return;
    seen.add(v);
    if (v instanceof MessagePort) {
      ports.push(v);
      return;
    }
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof SharedArrayBuffer) return;
    if (v instanceof Map) {
      let i = 0;
      for (const [k, x] of v) {
        walk(k, `${path}.<key ${i}>`);
        walk(x, `${path}.<value ${i}>`);
        i++;
      }
      return;
    }
    if (v instanceof Set) {
      let i = 0;
      for (const x of v) walk(x, `${path}.<item ${i++}>`);
      return;
    }
    if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${path}[${i}]`));
      return;
    }
    for (const k of Object.keys(v)) walk((v as Record<string, unknown>)[k], `${path}.${k}`);
  };
  walk(data, "");
  return ports;
}

/** Rewrites a DataCloneError from postMessage into the same clear TypeError. */
export function cloneError(e: unknown, what: string): unknown {
  if (e instanceof Error && e.name === "DataCloneError") {
    return new TypeError(`${what}: the data cannot be sent to another thread (${e.message}).`, { cause: e });
  }
  return e;
}

// ---- RPC bridge (channel "rpc") ---------------------------------------------------------------

/**
 * A capability crossing the thread boundary. `{ l: id }`: entry `id` of the loop side's table for
 * this session (the loop holds the real capability); `{ w: id }`: entry `id` of the worker's
 * export table (the worker holds it; calls on it run on that worker). `null`: a null capability.
 * Every descriptor sent carries one reference, which the receiver must eventually release
 * (`release` message) — except a `{ l }` sent by the worker or a `{ w }` sent by the loop, which
 * name the receiver's own entry and carry nothing: the receiver dups its entry.
 */
export type CapDesc = { l: number } | { w: number } | null;

/**
 * Packed struct content plus its capabilities, in the order of their renumbered indices. `size`:
 * the content's bytes at the start of `buf` when room for a frame trailer follows them (see
 * {@link encodeFramed}); absent, the whole buffer.
 */
export interface Payload { buf: ArrayBuffer; caps: CapDesc[]; size?: number }

export type RpcMsg =
  /** worker → loop: a new reference to the object shared under `name`. Reply: `got`. */
  | { op: "get"; q: number; name: string }
  | { op: "got"; q: number; cap?: CapDesc; error?: WireError }
  /**
   * A call on `target` (the receiver's own entry). `ctx`: pointer index of the Proxy.Context
   * param, or -1 (worker → loop only; the loop fills it with this worker's ThreadContext).
   */
  | { op: "call"; q: number; target: number; iid: bigint; mid: number; ctx: number; params: Payload; tag?: CallTag }
  | { op: "return"; q: number; results?: Payload; error?: WireError }
  /** The caller lost interest in call `q` (its signal aborted). */
  | { op: "cancel"; q: number }
  /** Drop one reference to the receiver's own entry `id`. */
  | { op: "release"; id: number };

/** The WorkerHost/WorkerLoop channel the RPC bridge uses. */
export const RPC_CHANNEL = "rpc";

/**
 * The channel on which a worker names a method it calls for the first time, when the loop traces
 * (`LoopHandle.trace`): sent before the call, on the same port, so the loop's trace line for the
 * relayed call already has the name.
 */
export const TRACE_CHANNEL = "trace";
export interface TraceNameMsg { iid: bigint; mid: number; label: string }

/** A call message (either direction). */
export type CallMsg = Extract<RpcMsg, { op: "call" }>;

/**
 * How a worker's call wants its Proxy.Context filled by the loop (absent: the worker's own
 * Thread): from the worker's lane `lane` (runInLane on the worker), and/or with `thread: "pool"`.
 */
export interface CallTag {
  lane?: string;
  pool?: boolean;
}

/**
 * Encodes struct `s` (borrowed) as a {@link Payload}: its content deep-copied into a standalone
 * message, and one descriptor per capability inside, made by `describe` (which gets each
 * capability borrowed: it dups what it keeps).
 */
export function encodePayload(s: capnp.Struct, describe: (cap: Capability | null) => CapDesc): Payload {
  const table = s.segment.message;
  const caps: CapDesc[] = [];
  const buf = packStruct(s, (i) => {
    const c = capFromTable(table, i);
    try {
      caps.push(describe(c));
    } finally {
      c?.close();
    }
  });
  return { buf, caps };
}

/**
 * The struct pointer of a {@link Payload}'s content, read in place: the buffer becomes the one
 * segment of a message (no copy). Its capability indexes are the payload's descriptor indexes;
 * the caller sets the message's cap table. The buffer is trusted (packed by the other end).
 */
export function payloadContent(p: Payload): capnp.Pointer {
  // The engine's fast constructors (one segment over the whole buffer, as `new Message(buf,
  // false, true)` makes, and a Pointer of the default depth limit): no capnp-ts debug-trace
  // argument arrays, no arena object of its own, no traversal accounting for the content pointer
  // itself (its reads still count). The buffer is the loop's copy of a validated message.
  const msg = fastpath.messageOver([p.buf]);
  return fastpath.pointerAt(capnp.Pointer, msg._capnp.segments[0]!, 8, 0x7fffffff);
}

/**
 * Decodes `p` over `dst` (a struct of a message the engine owns: request params, call results):
 * each descriptor becomes a capability through `resolve` (a new reference), all or nothing.
 */
export function decodePayloadInto(p: Payload, dst: capnp.Struct, resolve: (d: CapDesc) => Capability | null): void {
  unpackStructInto(p.buf, dst, mapCaps(p.caps, resolve), p.size);
}

// ---- flat frames: the hot RPC messages as one bare ArrayBuffer ---------------------------------

/**
 * A call or return with no capability in its content and nothing else to say (no CallTag) crosses
 * the port as a bare transferred ArrayBuffer: the packed content, then a {@link FRAME_TRAILER}
 * byte trailer (kind, question, target, Context index, method, a check word, interface id). No
 * object graph is cloned on either side: the receiving thread gets an ArrayBuffer, which no other
 * message on the port ever is, and routes it to the RPC channel. Every other RPC message (and any
 * call or return with capabilities) is an {@link RpcMsg} object on the same port, so the order of
 * calls, returns, cancels and releases is the port's FIFO order, as before.
 *
 * Trailer, little-endian, in the buffer's last {@link FRAME_TRAILER} bytes: u32 kind (1 call, 2
 * return), u32 q, u32 target (a return: the content's bytes, which may end before the trailer
 * when the loop reused a call frame's buffer for it, the gap zeroed), i32 ctx, u32 method id,
 * u32 {@link FRAME_CHECK}, u64 interface id. A call's content always ends at its trailer.
 */
export const FRAME_TRAILER = 32;
const FRAME_CALL = 1;
const FRAME_RETURN = 2;
const FRAME_CHECK = 0x6d70_7466; // "mptf"

/**
 * {@link encodePayload} with room for a frame trailer after the content when the raw copy applies
 * (`size` set); the general copy's buffer has none (no `size`: never sent as a frame). `into`: a
 * buffer this thread owns and no longer reads (a call frame whose params were copied out), reused
 * for the raw copy when it is large enough; the trailer then goes at its end, past zeroed bytes.
 */
export function encodeFramed(s: capnp.Pointer, describe: (cap: Capability | null) => CapDesc, into?: ArrayBuffer): Payload {
  const table = s.segment.message;
  const caps: CapDesc[] = [];
  const onCap = (i: number): void => {
    const c = capFromTable(table, i);
    try {
      caps.push(describe(c));
    } finally {
      c?.close();
    }
  };
  const raw = packRaw(s, onCap, FRAME_TRAILER, into);
  if (raw !== undefined) return { buf: raw, caps, size: used() - FRAME_TRAILER };
  return { buf: packStructGeneral(s, onCap), caps };
}

/** Whether `p` (from {@link encodeFramed}) can travel as a frame: trailer room, no capability. */
export function framable(p: Payload): boolean {
  return p.size !== undefined && p.caps.length === 0;
}

/** Writes the call trailer into `p.buf` (see {@link framable}); returns the frame to transfer. */
export function callFrame(p: Payload, q: number, target: number, iid: bigint, mid: number, ctx: number): ArrayBuffer {
  if (p.buf.byteLength !== p.size! + FRAME_TRAILER) throw new RangeError("worker bridge: a call frame's content must end at its trailer");
  const dv = new DataView(p.buf, p.size!, FRAME_TRAILER);
  dv.setUint32(0, FRAME_CALL, true);
  dv.setUint32(4, q, true);
  dv.setUint32(8, target, true);
  dv.setInt32(12, ctx, true);
  dv.setUint32(16, mid, true);
  dv.setUint32(20, FRAME_CHECK, true);
  dv.setBigUint64(24, iid, true);
  return p.buf;
}

/**
 * Writes the return trailer at the end of `p.buf` (see {@link framable}), with the content's size
 * (the buffer may be a reused one, longer than content + trailer); returns the frame to transfer.
 */
export function returnFrame(p: Payload, q: number): ArrayBuffer {
  const dv = new DataView(p.buf, p.buf.byteLength - FRAME_TRAILER, FRAME_TRAILER);
  dv.setUint32(0, FRAME_RETURN, true);
  dv.setUint32(4, q, true);
  dv.setUint32(8, p.size!, true);
  dv.setUint32(20, FRAME_CHECK, true);
  return p.buf;
}

const NO_CAPS: CapDesc[] = [];

/**
 * The {@link RpcMsg} a frame stands for (its payload is the frame itself, `size` set); a
 * ProtocolError for a buffer that is not one (the other end is our own code, so this is a bug).
 */
export function decodeFrame(buf: ArrayBuffer): RpcMsg {
  const end = buf.byteLength - FRAME_TRAILER;
  if (end < 16 || end % 8 !== 0) throw new ProtocolError(`worker bridge: a frame of ${buf.byteLength} bytes`);
  const dv = new DataView(buf, end, FRAME_TRAILER);
  if (dv.getUint32(20, true) !== FRAME_CHECK) throw new ProtocolError("worker bridge: a frame without its trailer");
  const kind = dv.getUint32(0, true);
  const q = dv.getUint32(4, true);
  if (kind === FRAME_RETURN) {
    // A return's content may be shorter than the space before the trailer (a reused buffer).
    const size = dv.getUint32(8, true);
    if (size < 16 || size % 8 !== 0 || size > end) throw new ProtocolError(`worker bridge: a return frame of ${size} content bytes in ${buf.byteLength}`);
    return { op: "return", q, results: { buf, caps: NO_CAPS, size } };
  }
  const payload: Payload = { buf, caps: NO_CAPS, size: end };
  if (kind !== FRAME_CALL) throw new ProtocolError(`worker bridge: a frame of kind ${kind}`);
  return {
    op: "call",
    q,
    target: dv.getUint32(8, true),
    iid: dv.getBigUint64(24, true),
    mid: dv.getUint32(16, true),
    ctx: dv.getInt32(12, true),
    params: payload,
  };
}
