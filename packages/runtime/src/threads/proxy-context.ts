/**
 * The `Proxy.Context` parameter (upstream type-context.h): the client side fills it
 * ({@link fillContext}), the server side reads it ({@link readContext}) and picks the Thread a
 * call runs on ({@link selectThread}).
 *
 * Owns: nothing of its own; it creates a context's ThreadClients on first use (owned by the
 * context's maps). Threading: loop thread only.
 */
import { fastpath, localCapability, peekLocalServer, readCap, writeCap, type Capability, type DirectCall } from "@multiprocess-ts/capnp";
import { Message as CapnpMessage, Pointer, Struct } from "capnp-ts";
import { MAX_DEPTH } from "capnp-ts/src/constants.js";
import type { ProxyMethod } from "../proxy/seam.js";
import type { Connection } from "../connection.js";
import { ThreadSelectionError } from "../errors.js";
import { errorText } from "../util.js";
import { pickPoolThread, ThreadServer } from "./servers.js";
import { ThreadClient } from "./thread-client.js";
import type { ThreadContext } from "./thread-context.js";
import {
  Context,
  THREAD_MAP_INTERFACE_ID,
  ThreadMapMethod,
  ThreadMap_makeThread$Params,
  ThreadMap_makeThread$Results,
} from "../types/proxy-capnp.js";

/**
 * Fills a Context struct for a call made by `thread` on `connection`: `callbackThread` = this
 * context's callback Thread for the connection (a local server Thread, created once), `thread` =
 * its request Thread (peer `ThreadMap.makeThread(thread.name)`, pipelined, created once; left unset
 * when the peer gave us no ThreadMap, so the peer's pool, if any, serves the call).
 * `ctx` is the Context builder (borrowed); capabilities are copied into it. `pool`: leave
 * `thread` unset so the peer's pool serves the call (CallOptions `thread: "pool"`).
 */
export function fillContext(ctx: Struct, connection: Connection, thread: ThreadContext, pool = false): void {
  // A closed context (detached worker, released server Thread) gets no new entries: they would
  // only be dropped when the connection ends.
  if (connection.state !== "open" || thread.closed) return;
  const hook = connection.contextHook;
  if (hook !== undefined) hook(ctx, thread, pool);
  // Both entries made already (every call after a context's first on this connection): write
  // them; nothing of the Connection changes, so this needs no `loop.sync` (and no closure).
  const cb0 = thread.callbackThreads.get(connection);
  if (cb0 !== undefined && !cb0.destroyed && cb0.cap) {
    const rq0 = pool ? undefined : thread.requestThreads.get(connection);
    if (pool || (rq0 !== undefined && !rq0.destroyed)) {
      writeCap(ctx, Context.CALLBACK_THREAD_PTR, cb0.cap);
      if (rq0?.cap) writeCap(ctx, Context.THREAD_PTR, rq0.cap);
      return;
    }
  }
  connection.loop.sync(() => {
    let cb = thread.callbackThreads.get(connection);
    if (!cb || cb.destroyed) {
      const server = new ThreadServer(connection, thread.name, thread);
      cb = new ThreadClient(thread.callbackThreads, connection, localCapability(server));
      thread.callbackThreads.set(connection, cb);
    }
    if (cb.cap) writeCap(ctx, Context.CALLBACK_THREAD_PTR, cb.cap);

    if (pool) return;
    let rq = thread.requestThreads.get(connection);
    const threadMap = connection.peerThreadMap;
    if ((!rq || rq.destroyed) && threadMap) {
      const req = threadMap.newCall(THREAD_MAP_INTERFACE_ID, ThreadMapMethod.makeThread, ThreadMap_makeThread$Params);
      req.params.name = thread.name;
      const pending = req.send();
      const cap = pending.pipeline(ThreadMap_makeThread$Results.RESULT_PTR);
      pending.then(
        (r) => r.close(),
        (e: unknown) => connection.loop.log("debug", `${connection.name}: makeThread failed: ${errorText(e)}`),
      );
      rq = thread.setRequestThread(connection, cap);
    }
    if (rq?.cap) writeCap(ctx, Context.THREAD_PTR, rq.cap);
  });
}

/**
 * @internal Initialises the Context struct at pointer `index` of `params` (a call's params being
 * built) and fills it ({@link fillContext}): what `fillContext(Struct.initStructAt(index, Context,
 * params), ...)` does. The struct is written in place when `params` is a near struct whose pointer
 * `index` is still null and whose segment has room for the Context's two words (the usual case:
 * fresh params): one word for the pointer, two zeroed for the content, no capnp-ts Pointer objects,
 * `erase` or trace calls; and it is filled through one reused Context object (capnp-ts's
 * constructor traces each new struct object), which nothing keeps: fillContext and the
 * Connection's `contextHook` use it synchronously. Anything else goes through capnp-ts, with the
 * same bytes.
 */
export function fillContextAt(params: Struct, index: number, connection: Connection, thread: ThreadContext, pool: boolean): void {
  const q = scratch === null ? -1 : initContextIn(params, index);
  if (q < 0) {
    fillContext(Struct.initStructAt(index, Context, params), connection, thread, pool);
    return;
  }
  const ctx = scratch!;
  scratch = null; // a nested fill (none is known) makes its own object
  ctx.segment = params.segment;
  ctx.byteOffset = q;
  try {
    fillContext(ctx, connection, thread, pool);
  } finally {
    ctx.segment = EMPTY_SEGMENT; // keep no message alive
    scratch = ctx;
  }
}

/**
 * @internal A call of method `m` whose params are data fields and the Context (at pointer 0, its
 * only pointer), made by `thread` on `connection` (runtime proxy/client.ts, for a build that
 * takes no CallIO), sent without a capnp-ts message when it can be (issue 13, twelfth session):
 * `build` writes the data fields into a reused scratch struct; when the Context's two entries
 * exist already (what {@link fillContext} writes without `loop.sync`: every call after a
 * context's first on this connection, and no `contextHook`), the engine sends the Call as bytes
 * to an import (capnp `DirectCall.sendFlatCaps`: the data copied from the scratch struct, the
 * Context's capabilities and its cap table written in place, the same bytes as the general
 * path). When the engine declines (a local target, a traced connection, ...), the call is built
 * the general way here, its data copied from the scratch struct (`build` runs once). False, with
 * nothing run, when the params or the Context do not allow it: the caller builds the call.
 * Throws what `build` throws (nothing sent).
 */
export function sendContextCall(
  call: DirectCall,
  cap: Capability,
  m: ProxyMethod,
  build: (p: any, io: any) => void,
  connection: Connection,
  thread: ThreadContext,
  pool: boolean,
): boolean {
  const Params = m.Params;
  const size = Params._capnp.size;
  const dataWords = (size.dataByteLength + 7) >>> 3;
  if (m.context !== 0 || size.pointerLength !== 1 || scratchBusy || 16 + dataWords * 8 > SCRATCH_BYTES) return false;
  const n = contextCapsNow(connection, thread, pool);
  if (n === 0) return false;
  const dv = SCRATCH_DV;
  // The params struct: a pointer at byte 0 to its zeroed words at byte 8.
  dv.setUint32(0, 0, true);
  dv.setUint32(4, (dataWords | (1 << 16)) >>> 0, true);
  for (let at = 8; at < 16 + dataWords * 8; at += 4) dv.setUint32(at, 0, true);
  scratchWords = dataWords;
  scratchBusy = true;
  let params: Struct;
  try {
    build(fastpath.pointerAt(Params, SCRATCH_SEGMENT, 0, MAX_DEPTH), null);
    if (call.sendFlatCaps(cap, m.interfaceId, m.methodId, Params, copyScratch, 0, 2, CONTEXT_CAPS, CONTEXT_SLOTS, n)) return true;
    params = call.begin(cap, m.interfaceId, m.methodId, Params);
    copyScratch(fastpath.dataViewOf(params.segment), fastpath.CALL.envelopeBytes);
  } finally {
    scratchBusy = false;
    CONTEXT_CAPS[0] = CONTEXT_CAPS[1] = NO_CAP;
  }
  fillContextAt(params, 0, connection, thread, pool);
  call.sendCall();
  return true;
}

/**
 * The capabilities {@link fillContext} writes without changing anything (both entries made, no
 * `contextHook`), into {@link CONTEXT_CAPS} in the order it writes them (`callbackThread`, then
 * `thread` when set): how many, or 0 when fillContext must run.
 */
function contextCapsNow(connection: Connection, thread: ThreadContext, pool: boolean): number {
  if (connection.state !== "open" || thread.closed || connection.contextHook !== undefined) return 0;
  const cb = thread.callbackThreads.get(connection);
  if (cb === undefined || cb.destroyed || !cb.cap) return 0;
  const rq = pool ? undefined : thread.requestThreads.get(connection);
  if (!pool && (rq === undefined || rq.destroyed)) return 0;
  CONTEXT_CAPS[0] = cb.cap;
  if (!rq?.cap) return 1;
  CONTEXT_CAPS[1] = rq.cap;
  return 2;
}

/** {@link sendContextCall}'s Context capabilities and their pointers in the Context struct. */
const NO_CAP = null as unknown as Capability;
const CONTEXT_CAPS: Capability[] = [NO_CAP, NO_CAP];
const CONTEXT_SLOTS: readonly number[] = [Context.CALLBACK_THREAD_PTR, Context.THREAD_PTR];

/** {@link sendContextCall}'s scratch params: a struct pointer at byte 0, its words behind it. */
const SCRATCH_BYTES = 512;
let SCRATCH_SEGMENT: Context["segment"];
let SCRATCH_DV: DataView;
{
  const root = new CapnpMessage().initRoot(Context); // its segment: capnp-ts's first buffer (>= SCRATCH_BYTES)
  SCRATCH_SEGMENT = root.segment;
  SCRATCH_DV = (SCRATCH_SEGMENT as unknown as { _dv: DataView })._dv;
  if (SCRATCH_DV.byteLength < SCRATCH_BYTES) throw new Error("capnp-ts segment smaller than the scratch params need");
}
let scratchWords = 0;
let scratchBusy = false;
/** Copies the scratch params' data section to byte `at` of `dv` (hook.ts FlatCall `write`). */
const copyScratch = (dv: DataView, at: number): void => {
  const src = SCRATCH_DV;
  for (let i = 0, end = scratchWords * 8; i < end; i += 4) dv.setUint32(at + i, src.getUint32(8 + i, true), true);
};

/** The reused Context object of {@link fillContextAt}, null while it is in use. */
let scratch: Context | null = null;
/** What the idle {@link scratch} points into: a segment of an empty message of its own. */
let EMPTY_SEGMENT: Context["segment"];
{
  const m = new CapnpMessage();
  const root = m.initRoot(Context);
  EMPTY_SEGMENT = root.segment;
  scratch = new Context(EMPTY_SEGMENT, root.byteOffset);
}

/**
 * @internal Writes a null Context struct at pointer `index` of `params` in place and returns the
 * byte offset of that pointer in `params`' segment, or -1 (nothing written) when capnp-ts must do
 * it (see {@link fillContextAt}). The bytes are what capnp-ts's `initStructAt` writes.
 */
export function initContextIn(params: Struct, index: number): number {
  const seg = params.segment as unknown as { _dv: DataView; byteLength: number; buffer: ArrayBuffer };
  const at = seg.byteLength;
  if (params._capnp.compositeIndex !== undefined || seg.buffer.byteLength - at < 16) return -1;
  const dv = seg._dv;
  const p = params.byteOffset;
  const lo = dv.getUint32(p, true);
  const hi = dv.getUint32(p + 4, true);
  if ((lo & 3) !== 0 || (lo | hi) === 0 || index >= hi >>> 16) return -1;
  // The pointer slot: after the struct's data section, in words from the pointer's end.
  const q = p + 8 + ((lo | 0) >> 2) * 8 + (hi & 0xffff) * 8 + index * 8;
  if (dv.getUint32(q, true) !== 0 || dv.getUint32(q + 4, true) !== 0) return -1;
  seg.byteLength = at + 16;
  dv.setUint32(at, 0, true);
  dv.setUint32(at + 4, 0, true);
  dv.setUint32(at + 8, 0, true);
  dv.setUint32(at + 12, 0, true);
  dv.setUint32(q, ((at - q - 8) / 8) << 2, true); // a struct pointer to the content
  dv.setUint32(q + 4, 2 << 16, true); // no data words, two pointers (Context's size)
  return q;
}

/** What the server side read from a call's Context. The caller closes both handles. */
export interface ContextCaps {
  thread: Capability | null;
  callbackThread: Capability | null;
}

/** Reads the Context at pointer `index` of `params` (absent Context → both null). */
export function readContext(params: Struct, index: number): ContextCaps {
  if (Pointer.isNull(Struct.getPointer(index, params))) return { thread: null, callbackThread: null };
  const ctx = Struct.getStruct(index, Context, params);
  return { thread: readCap(ctx, Context.THREAD_PTR), callbackThread: readCap(ctx, Context.CALLBACK_THREAD_PTR) };
}

/**
 * @internal {@link selectThreadNow} for the Context at pointer `index` of `params`, read in place
 * (capnp `peekLocalServer`: no handle): the Thread, or a selection error thrown, when the Context
 * names one of our Threads, names none, or is absent; undefined when the general path must decide
 * (a Thread capability not resolved yet, or not a local one).
 */
export function selectThreadIn(connection: Connection, params: Struct, index: number): ThreadServer | undefined {
  const server = peekLocalServer(params, index, Context.THREAD_PTR);
  if (server === undefined) return undefined;
  if (server !== null) return checkThread(connection, server);
  const pooled = pickPoolThread(connection);
  if (pooled) return pooled;
  throw new ThreadSelectionError("no thread specified and no pool configured", "MP_ERR_NO_THREAD");
}

/**
 * Server side: the Thread a call with a Context runs on (upstream PassField). `threadCap` is
 * borrowed. A set `thread` must be a Thread created by this connection's ThreadMap (or one of our
 * callback Threads sent to this peer), found through `Capability.localServer()`, else
 * "invalid thread handle"; an unset one uses the pool (least loaded, ties → lowest index), else
 * "no thread specified and no pool configured".
 */
export async function selectThread(connection: Connection, threadCap: Capability | null): Promise<ThreadServer> {
  return selectThreadNow(connection, threadCap);
}

/**
 * @internal {@link selectThread} without the promise when the answer is known now (the usual case:
 * the Thread capability is already resolved): returns the ThreadServer, throws the selection
 * error, or returns a promise only while a pipelined `makeThread` result is still unresolved.
 */
export function selectThreadNow(connection: Connection, threadCap: Capability | null): ThreadServer | Promise<ThreadServer> {
  if (threadCap && !threadCap.isNull) {
    const server = threadCap.localServer();
    if (server === undefined) return selectResolved(connection, threadCap);
    return checkThread(connection, server);
  }
  const pooled = pickPoolThread(connection);
  if (pooled) return pooled;
  throw new ThreadSelectionError("no thread specified and no pool configured", "MP_ERR_NO_THREAD");
}

async function selectResolved(connection: Connection, threadCap: Capability): Promise<ThreadServer> {
  // A pipelined makeThread result may still be a promise; wait for it to resolve.
  try {
    await threadCap.whenResolved();
  } catch (e) {
    // Upstream's hint (type-context.h): the usual cause is a peer that never got our ThreadMap.
    connection.loop.log(
      "info",
      `${connection.name}: Context.thread failed to resolve (${errorText(e)}); did you forget to provide a ThreadMap to the client prior to this IPC call?`,
    );
    throw e;
  }
  return checkThread(connection, threadCap.localServer());
}

function checkThread(connection: Connection, server: unknown): ThreadServer {
  if (server instanceof ThreadServer && server.connection === connection && connection.threads.has(server)) {
    return server;
  }
  throw new ThreadSelectionError("invalid thread handle", "MP_ERR_INVALID_THREAD");
}
