/**
 * Capabilities, calls and results of the RPC engine, independent of any connection.
 *
 * Internally every capability is a {@link Hook} (the C++ `ClientHook`): a reference-counted
 * object that knows how to deliver a call. User-facing handles ({@link Capability}) hold exactly
 * one reference each. Hooks:
 *  - {@link LocalHook}: a {@link Server} in this vat; `onRelease` runs once when the last reference goes.
 *  - {@link PromiseHook}: a capability that is not known yet (local promise, pipelined result,
 *    promise import, embargo). Calls queue (or go over its remote route) until it resolves.
 *  - `ImportHook` (connection.ts): a capability hosted by the peer of one connection.
 *  - {@link BrokenHook}, {@link NullHook}: every call fails.
 *
 * A call in flight is a {@link CallData} (params message + cap table + the {@link Sink} that
 * receives the outcome). Sinks are: a local {@link PendingCall}, a connection's Answer (the call
 * came from the peer), a bootstrap/tail sink.
 *
 * Threading: everything here belongs to the thread (event loop) that created it.
 */

import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import { dataViewOf, messageOver, newCallMessage, newReturnMessage } from "../fastpath.js";
import {
  getTargetPointerType,
  getTargetStructSize,
  setInterfacePointer,
  getCapabilityId,
  erase,
} from "capnp-ts/src/serialization/pointers/pointer.js";
import { PointerType } from "capnp-ts/src/serialization/pointers/pointer-type.js";
import { getSize as getStructSize, getDataSection } from "capnp-ts/src/serialization/pointers/struct.js";
import { CanceledError, ProtocolError, RpcError, deferred, toRpcError } from "../errors.js";
import type { Deferred } from "../errors.js";

export type Struct = capnp.Struct;
export type StructCtor<T extends capnp.Struct> = capnp.StructCtor<T>;

// ---------------------------------------------------------------------------------------------
// Public types (docs/contracts.md §1)

/** A capability implementation in this vat. */
export interface Server {
  /** Handle one call. Throw (or reject) to send `Return.exception`. */
  dispatch(call: IncomingCall): void | Promise<void>;
  /** Exactly once, when the last reference (local handle, export, message) is gone, including at connection end. */
  onRelease?(): void;
}

/** One call delivered to a {@link Server}. */
export interface IncomingCall {
  readonly interfaceId: bigint;
  readonly methodId: number;
  /** The params reader. Its caps: `readCap()` (new references, the server closes them). */
  params<T extends Struct>(ctor: StructCtor<T>): T;
  /** The results builder (the same object on each call). */
  results<T extends Struct>(ctor: StructCtor<T>): T;
  /** Aborts when the caller cancels (Finish before Return) or the connection ends. */
  readonly signal: AbortSignal;
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

// ---------------------------------------------------------------------------------------------
// Internal machinery

/** Where a promise sends its calls while unresolved: over `conn`, to an import or a promised answer. */
export interface Route {
  readonly conn: RouteConn;
  /** Target `importedCap` (owned reference), or null for `promisedAnswer(qid, path)`. */
  readonly importHook: Hook | null;
  readonly importId: number;
  readonly qid: number;
  readonly path: readonly number[];
}

/** What capability.ts needs from a connection (implemented by RpcConnection). */
export interface RouteConn {
  /** Send `d` to the route's target. Takes ownership of `d`. */
  sendCall(d: CallData, route: Route): void;
  /** Start an embargo for a promise that resolved to `target` (owned); returns the hook to use (owned). */
  startEmbargo(route: Route, target: Hook): Hook;
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
    for (let i = 0; i < caps.length; i++) caps[i]?.release();
    caps.length = 0;
  }
}

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

export function errOutcome(err: RpcError): Outcome {
  return { err, msg: null, content: null, caps: [], ret: false };
}

export function releaseOutcome(o: Outcome): void {
  const caps = o.caps;
  for (let i = 0; i < caps.length; i++) caps[i]?.release();
  caps.length = 0;
}

/**
 * A new message whose first segment is `bytes` long (capnp-ts's default is 4 KiB, zero-filled
 * for every message: too much for Finish/Release-sized messages). An allocation that does not
 * fit goes to a new segment (no grow-and-copy of the first one).
 */
export function newMessage(bytes: number): capnp.Message {
  return new capnp.Message(new MultiSegmentArena([new ArrayBuffer(bytes)]), false);
}

/** Copy a message's segments (byte copy) into a new message. */
export function cloneMessage(msg: capnp.Message): capnp.Message {
  const segs = msg._capnp.segments;
  const bufs: ArrayBuffer[] = new Array(segs.length);
  for (let i = 0; i < segs.length; i++) bufs[i] = segs[i]!.buffer.slice(0, segs[i]!.byteLength);
  return messageFromBuffers(bufs);
}

export function messageFromBuffers(bufs: ArrayBuffer[]): capnp.Message {
  return messageOver(bufs);
}

/** A copy of an outcome whose results message was a Return (ours or the peer's): new message, new refs. */
export function cloneOutcome(o: Outcome): Outcome {
  if (o.err !== null) return errOutcome(o.err);
  const caps = o.caps.map((h) => (h === null ? null : h.addRef()));
  if (o.msg === null || o.content === null) return { err: null, msg: null, content: null, caps, ret: false };
  const m = cloneMessage(o.msg);
  m._capnp.capTable = caps as never;
  const root = new rpc.Message(m.getSegment(0), 0);
  const ret = root.getReturn();
  return { err: null, msg: m, content: capnp.Struct.getPointer(0, ret.getResults()), caps, ret: false };
}

/** Segments of an outgoing message (views; no copy). */
export function segmentsOf(msg: capnp.Message): Uint8Array[] {
  const segs = msg._capnp.segments;
  const out: Uint8Array[] = new Array(segs.length);
  for (let i = 0; i < segs.length; i++) out[i] = new Uint8Array(segs[i]!.buffer, 0, segs[i]!.byteLength);
  return out;
}

/** Segments of an outgoing message as copies (when we keep reading the original). */
export function segmentCopiesOf(msg: capnp.Message): Uint8Array[] {
  const segs = msg._capnp.segments;
  const out: Uint8Array[] = new Array(segs.length);
  for (let i = 0; i < segs.length; i++) out[i] = new Uint8Array(segs[i]!.buffer.slice(0, segs[i]!.byteLength));
  return out;
}

let onReleaseErrorLogger: ((e: unknown) => void) | null = null;
/** @internal Where errors thrown by Server.onRelease go (default: swallowed). */
export function setOnReleaseErrorLogger(f: ((e: unknown) => void) | null): void {
  onReleaseErrorLogger = f;
}

export abstract class Hook {
  /** References held (handles, cap tables, exports, promise resolutions). */
  refs = 1;

  addRef(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0) this.destroy();
  }

  protected abstract destroy(): void;
  /** Deliver a call; takes ownership of `d`. */
  abstract call(d: CallData): void;
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

/** A Server in this vat. Calls are dispatched from a microtask, in the order they arrive (E-order). */
/** Local calls waiting for the dispatch microtask: hook, call, hook, call... (FIFO over all hooks). */
let dispatchQueue: (LocalHook | CallData)[] = [];

function drainDispatchQueue(): void {
  const q = dispatchQueue;
  dispatchQueue = [];
  for (let i = 0; i < q.length; i += 2) {
    try {
      new IncomingCallImpl(q[i + 1] as CallData, q[i] as LocalHook).run();
    } catch (e) {
      // As if each call had its own microtask: report it, and still run the others.
      queueMicrotask(() => {
        throw e;
      });
    }
  }
}

export class LocalHook extends Hook {
  private released = false;
  constructor(readonly server: Server) {
    super();
  }
  protected destroy(): void {
    if (this.released) return;
    this.released = true;
    if (liveLocalHooks.get(this.server) === this) liveLocalHooks.delete(this.server);
    const f = this.server.onRelease;
    if (f === undefined) return;
    try {
      f.call(this.server);
    } catch (e) {
      onReleaseErrorLogger?.(e);
    }
  }
  call(d: CallData): void {
    // Never dispatch synchronously: the caller must get its PendingCall before the server runs.
    // One microtask per batch of calls made together (no closure per call), in call order.
    if (dispatchQueue.push(this, d) === 2) queueMicrotask(drainDispatchQueue);
  }
  override localServer(): Server {
    return this.server;
  }
}

/** A capability that is not known yet. */
export class PromiseHook extends Hook {
  resolution: Hook | null = null;
  route: Route | null = null;
  private queue: CallData[] = [];
  private sentViaRoute = false;
  private waiters: Deferred<void> | null = null;
  private listeners: ((h: Hook) => void)[] | null = null;

  protected destroy(): void {
    const r = this.resolution;
    if (r !== null) {
      this.resolution = null;
      r.release();
    }
    const route = this.route;
    if (route !== null) {
      this.route = null;
      route.importHook?.release();
    }
    // Calls queued on a promise nobody can resolve any more fail.
    const q = this.queue;
    this.queue = [];
    for (const d of q) {
      d.releaseCaps();
      d.sink.complete(errOutcome(new RpcError("failed", "promise capability released before it resolved")));
    }
  }

  call(d: CallData): void {
    if (this.resolution !== null) this.resolution.call(d);
    else if (this.route !== null) {
      this.sentViaRoute = true;
      this.route.conn.sendCall(d, this.route);
    } else this.queue.push(d);
  }

  /** Send calls (queued and later) over `route` until resolved. Takes ownership of route.importHook. */
  setRoute(route: Route): void {
    if (this.resolution !== null) {
      route.importHook?.release();
      return;
    }
    this.route = route;
    const q = this.queue;
    this.queue = [];
    if (q.length > 0) this.sentViaRoute = true;
    for (const d of q) route.conn.sendCall(d, route);
  }

  /** Resolve to `h` (we take our own reference; the caller keeps its own). */
  resolve(h: Hook): void {
    if (this.resolution !== null || this.refs <= 0) return;
    let target: Hook = h.addRef();
    const route = this.route;
    if (route !== null && this.sentViaRoute && needsEmbargo(target, route.conn)) {
      target = route.conn.startEmbargo(route, target);
    }
    this.resolution = target;
    this.route = null;
    route?.importHook?.release();
    const q = this.queue;
    this.queue = [];
    for (const d of q) target.call(d);
    const ls = this.listeners;
    this.listeners = null;
    if (ls !== null) for (const l of ls) l(target);
    const w = this.waiters;
    this.waiters = null;
    w?.resolve();
  }

  /** Called once with the resolution (not a new reference). */
  onResolved(l: (h: Hook) => void): void {
    if (this.resolution !== null) l(this.resolution);
    else (this.listeners ??= []).push(l);
  }

  override resolved(): Hook {
    return this.resolution === null ? this : this.resolution.resolved();
  }
  override remoteConn(): RouteConn | null {
    if (this.resolution !== null) return this.resolution.remoteConn();
    return this.route === null ? null : this.route.conn;
  }
  override whenResolved(): Promise<void> {
    if (this.resolution !== null) return this.resolution.whenResolved();
    if (this.waiters === null) this.waiters = deferred<void>();
    return this.waiters.promise.then(() => this.resolved().whenResolved());
  }
  override isNullCap(): boolean {
    return this.resolution !== null && this.resolution.isNullCap();
  }
  override brokenError(): RpcError | null {
    return this.resolution === null ? null : this.resolution.brokenError();
  }
  override localServer(): Server | undefined {
    return this.resolution === null ? undefined : this.resolution.localServer();
  }
}

function needsEmbargo(target: Hook, conn: RouteConn): boolean {
  const r = target.resolved();
  if (r.brokenError() !== null || r.isNullCap()) return false;
  return r.remoteConn() !== conn;
}

// ---------------------------------------------------------------------------------------------
// Sinks

/** Receives the outcome of one call, exactly once. Also serves pipelined caps on that outcome. */
export abstract class Sink {
  outcome: Outcome | null = null;
  canceled = false;
  /** Set by whoever executes the call; run once on cancel. */
  cancelHandler: { onCancel(): void } | null = null;
  route: { conn: RouteConn; qid: number } | null = null;
  private pipes: Map<string, PromiseHook> | null = null;

  /** Deliver the outcome (takes ownership). A second outcome is released. */
  complete(o: Outcome): void {
    if (this.outcome !== null) {
      releaseOutcome(o);
      return;
    }
    this.outcome = o;
    this.cancelHandler = null;
    const pipes = this.pipes;
    if (pipes !== null) {
      this.pipes = null;
      for (const [key, p] of pipes) {
        const h = capAt(o, key === "" ? [] : key.split(",").map(Number));
        p.resolve(h);
        h.release();
        p.release();
      }
    }
    this.onComplete(o);
  }

  protected abstract onComplete(o: Outcome): void;

  /** A new reference to the cap at `path` in the (future) results. */
  pipelineHook(path: readonly number[]): Hook {
    if (this.outcome !== null) return capAt(this.outcome, path);
    const key = path.join(",");
    let p = (this.pipes ??= new Map()).get(key);
    if (p === undefined) {
      p = new PromiseHook();
      if (this.route !== null) p.setRoute({ conn: this.route.conn, importHook: null, importId: 0, qid: this.route.qid, path: path.slice() });
      this.pipes.set(key, p);
    }
    return p.addRef();
  }

  /** The call now runs as question `qid` on `conn`: pipelined calls go there as promisedAnswer. */
  setRoute(conn: RouteConn, qid: number): void {
    this.route = { conn, qid };
    if (this.pipes !== null) {
      for (const [key, p] of this.pipes) {
        p.setRoute({ conn, importHook: null, importId: 0, qid, path: key === "" ? [] : key.split(",").map(Number) });
      }
    }
  }

  hasPipes(): boolean {
    return this.pipes !== null;
  }

  /** Drop the pipeline promises that never resolved (our references). */
  dropPipes(err: RpcError): void {
    const pipes = this.pipes;
    if (pipes === null) return;
    this.pipes = null;
    for (const p of pipes.values()) {
      const b = new BrokenHook(err);
      p.resolve(b);
      b.release();
      p.release();
    }
  }

  /** Cancel the call (caller lost interest). */
  cancel(): void {
    if (this.outcome !== null || this.canceled) return;
    this.canceled = true;
    const h = this.cancelHandler;
    this.cancelHandler = null;
    h?.onCancel();
  }
}

const NOOP = (): void => {};

/** The cap at `path` inside an outcome (new reference; null cap / broken as appropriate). */
export function capAt(o: Outcome, path: readonly number[]): Hook {
  if (o.err !== null) return new BrokenHook(o.err);
  let p = o.content;
  if (p === null) return new NullHook();
  try {
    for (let i = 0; i < path.length; i++) {
      if (capnp.Pointer.isNull(p)) return new NullHook();
      if (getTargetPointerType(p) !== PointerType.STRUCT) {
        return new BrokenHook(new RpcError("failed", "pipelined path does not lead through a struct"));
      }
      const s = new capnp.Struct(p.segment, p.byteOffset, p._capnp.depthLimit);
      const idx = path[i]!;
      if (idx >= getStructSize(s).pointerLength) return new NullHook();
      p = capnp.Struct.getPointer(idx, s);
    }
    if (capnp.Pointer.isNull(p)) return new NullHook();
    if (getTargetPointerType(p) !== PointerType.OTHER) {
      return new BrokenHook(new RpcError("failed", "pipelined path does not lead to a capability"));
    }
    const id = getCapabilityId(p);
    const h = o.caps[id];
    if (h === undefined) return new BrokenHook(new RpcError("failed", `capability index ${id} out of range`));
    return h === null ? new NullHook() : h.addRef();
  } catch (e) {
    return new BrokenHook(new ProtocolError(`bad pipelined path: ${(e as Error).message}`, { cause: e }));
  }
}

/** Registry that closes leaked Responses of PendingCalls nobody awaited. */
const pendingRegistry = new FinalizationRegistry<{ resp: ResponseImpl | null; taken: boolean }>((box) => {
  if (!box.taken) box.resp?.close();
});

/** The caller's side of a call made through a Capability. */
export class PendingCallImpl extends Sink implements PendingCall {
  /** Made on the first then()/settled(): a call nobody awaits allocates no promise. */
  private p: Promise<Response> | null = null;
  private res: ((r: Response) => void) | null = null;
  private rej: ((e: unknown) => void) | null = null;
  private resp: ResponseImpl | null = null;
  private err: RpcError | null = null;
  private taken = false;

  protected onComplete(o: Outcome): void {
    if (o.err !== null) {
      this.err = o.err;
      const rej = this.rej;
      this.res = this.rej = null;
      rej?.(o.err);
      return;
    }
    const r = new ResponseImpl(o);
    this.resp = r;
    // The GC safety net only matters when there are caps to release and nobody took the Response.
    if (!this.taken && o.caps.length > 0) {
      const box = { resp: r, taken: false };
      this.box = box;
      pendingRegistry.register(this, box);
    }
    const res = this.res;
    this.res = this.rej = null;
    res?.(r);
  }

  private box: { resp: ResponseImpl | null; taken: boolean } | null = null;

  private promise(): Promise<Response> {
    let p = this.p;
    if (p === null) {
      if (this.outcome === null) {
        p = new Promise<Response>((res, rej) => {
          this.res = res;
          this.rej = rej;
        });
      } else p = this.err !== null ? Promise.reject(this.err) : Promise.resolve(this.resp!);
      this.p = p;
    }
    return p;
  }

  then<A = Response, B = never>(
    onfulfilled?: ((value: Response) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    this.taken = true;
    if (this.box !== null) this.box.taken = true;
    return this.promise().then(onfulfilled, onrejected);
  }

  pipeline(...path: number[]): Capability {
    return new CapHandle(this.pipelineHook(path));
  }

  /** @internal Settles with the call, without taking the Response (the GC safety net stays). */
  settled(): Promise<unknown> {
    return this.promise().then(NOOP, NOOP);
  }

  override cancel(): void {
    if (this.outcome !== null) return;
    super.cancel();
    this.complete(errOutcome(new CanceledError()));
  }
}

/** Results of a call made through a Capability. */
export class ResponseImpl implements Response {
  private closedFlag = false;
  private empty: capnp.Struct | null = null;
  constructor(private readonly o: Outcome) {}

  results<T extends Struct>(ctor: StructCtor<T>): T {
    if (this.closedFlag) throw new RpcError("failed", "Response used after close()");
    const p = this.o.content;
    if (p === null || capnp.Pointer.isNull(p)) {
      if (this.empty === null || !(this.empty instanceof ctor)) this.empty = emptyStruct(ctor);
      return this.empty as T;
    }
    return readStruct(p, ctor);
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    releaseOutcome(this.o);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A reader for the struct at `p` as `ctor`. capnp-ts throws when a field lies beyond the struct
 * it received (Cap'n Proto says: read the default), which breaks schema evolution (a peer with
 * an older schema sends smaller structs). When the received struct is smaller than `ctor`'s, we
 * read a copy widened to `ctor`'s size (its caps keep their indices into the same cap table).
 * Nested structs are not widened; if the copy is impossible (a capability nested below the top
 * level), the original struct is returned.
 */
function readStruct<T extends Struct>(p: capnp.Pointer, ctor: StructCtor<T>): T {
  const s = new ctor(p.segment, p.byteOffset, p._capnp.depthLimit);
  const want = ctor._capnp.size;
  // Fast check of a near struct pointer that is big enough (the common case).
  const dv = dataViewOf(p.segment);
  const lo = dv.getUint32(p.byteOffset, true);
  if ((lo & 3) === 0) {
    const hi = dv.getUint32(p.byteOffset + 4, true);
    if ((hi & 0xffff) * 8 >= want.dataByteLength && hi >>> 16 >= want.pointerLength) return s;
  }
  try {
    if (getTargetPointerType(p) !== PointerType.STRUCT) return s;
    const have = getTargetStructSize(p);
    if (have.dataByteLength >= want.dataByteLength && have.pointerLength >= want.pointerLength) return s;
    // The copy keeps every section the sender wrote: each section is the larger of the two sizes.
    const size = new capnp.ObjectSize(
      Math.max(have.dataByteLength, want.dataByteLength),
      Math.max(have.pointerLength, want.pointerLength),
    );
    const m = newMessage(64 + size.dataByteLength + size.pointerLength * 8);
    m._capnp.capTable = p.segment.message._capnp.capTable;
    const dst = new ctor(m.getSegment(0), 0);
    capnp.Struct.initStruct(size, dst);
    const src = getDataSection(s);
    const out = getDataSection(dst);
    for (let i = 0; i < have.dataByteLength; i++) {
      out.segment.setUint8(out.byteOffset + i, src.segment.getUint8(src.byteOffset + i));
    }
    for (let i = 0; i < have.pointerLength; i++) {
      const sp = capnp.Struct.getPointer(i, s);
      if (capnp.Pointer.isNull(sp)) continue;
      const dp = capnp.Struct.getPointer(i, dst);
      if (getTargetPointerType(sp) === PointerType.OTHER) setInterfacePointer(getCapabilityId(sp), dp);
      else capnp.Pointer.copyFrom(sp, dp);
    }
    return dst;
  } catch {
    return s;
  }
}

function emptyStruct<T extends Struct>(ctor: StructCtor<T>): T {
  const m = newMessage(64);
  return m.initRoot(ctor);
}

// ---------------------------------------------------------------------------------------------
// Incoming calls to local servers

class IncomingCallImpl implements IncomingCall {
  private resMsg: capnp.Message | null = null;
  private res: capnp.Struct | null = null;
  private ctrl: AbortController | null = null;
  private abortedEarly = false;
  private done = false;
  private tailed = false;

  constructor(
    private readonly d: CallData,
    private readonly hook: LocalHook,
  ) {}

  get interfaceId(): bigint {
    return this.d.interfaceId;
  }
  get methodId(): number {
    return this.d.methodId;
  }

  params<T extends Struct>(ctor: StructCtor<T>): T {
    const p = this.d.content;
    if (capnp.Pointer.isNull(p)) return emptyStruct(ctor);
    return readStruct(p, ctor);
  }

  results<T extends Struct>(ctor: StructCtor<T>): T {
    if (this.res === null) {
      const { msg, results } = newReturnMessage(ctor);
      msg._capnp.capTable = [];
      this.res = results;
      this.resMsg = msg;
    }
    return this.res as T;
  }

  get signal(): AbortSignal {
    if (this.ctrl === null) {
      this.ctrl = new AbortController();
      if (this.abortedEarly) this.ctrl.abort(new CanceledError("call canceled by the caller"));
    }
    return this.ctrl.signal;
  }

  /** The caller canceled (the sink's cancel handler). */
  onCancel(): void {
    if (this.ctrl !== null) {
      if (!this.ctrl.signal.aborted) this.ctrl.abort(new CanceledError("call canceled by the caller"));
    } else this.abortedEarly = true;
  }

  tailCall(req: Request<Struct>): void {
    if (this.done || this.tailed) throw new RpcError("failed", "tailCall() after the call returned or twice");
    if (!(req instanceof RequestImpl)) throw new TypeError("tailCall() needs a Request made by this engine");
    this.tailed = true;
    req.sendAsTail(this.d.sink);
  }

  run(): void {
    const d = this.d;
    if (d.sink.canceled || d.sink.outcome !== null) {
      d.releaseCaps();
      d.sink.complete(errOutcome(new CanceledError("call canceled before delivery")));
      return;
    }
    d.sink.cancelHandler = this;
    let r: void | Promise<void>;
    try {
      r = this.hook.server.dispatch(this);
    } catch (e) {
      this.finish(e, true);
      return;
    }
    if (r !== undefined && typeof (r as Promise<void>).then === "function") {
      (r as Promise<void>).then(
        () => this.finish(undefined, false),
        (e: unknown) => this.finish(e, true),
      );
    } else this.finish(undefined, false);
  }

  private finish(e: unknown, failed: boolean): void {
    if (this.done) return;
    this.done = true;
    const d = this.d;
    const resCaps = (this.resMsg?._capnp.capTable ?? []) as (Hook | null)[];
    if (this.tailed) {
      for (const h of resCaps) h?.release();
      resCaps.length = 0;
    } else {
      if (d.sink.cancelHandler !== null) d.sink.cancelHandler = null;
      if (failed) {
        for (const h of resCaps) h?.release();
        resCaps.length = 0;
        d.sink.complete(errOutcome(toRpcError(e)));
      } else if (this.res === null) {
        d.sink.complete({ err: null, msg: null, content: null, caps: [], ret: false });
      } else {
        d.sink.complete({ err: null, msg: this.resMsg, content: this.res, caps: resCaps, ret: true });
      }
    }
    d.releaseCaps();
  }
}

// ---------------------------------------------------------------------------------------------
// Requests and handles

/** Extra hook for tail calls: a connection may send the call with `sendResultsTo.yourself`. */
export interface TailCallHandler {
  /** Try to send `d` (whose sink is ignored) as a tail call on behalf of `answerSink`; true if done. */
  tryTailCall(answerSink: Sink, target: Hook, d: CallData): boolean;
}

let tailHandlerOf: ((sink: Sink) => TailCallHandler | null) | null = null;
/** @internal Set by connection.ts: finds the connection that owns an Answer sink. */
export function setTailHandlerLookup(f: (sink: Sink) => TailCallHandler | null): void {
  tailHandlerOf = f;
}

/** Releases the target and the `writeCap` references of Requests garbage-collected unsent. */
const requestRegistry = new FinalizationRegistry<{ hook: Hook; caps: (Hook | null)[] }>((box) => {
  for (const h of box.caps) h?.release();
  box.caps.length = 0;
  box.hook.release();
});

export class RequestImpl<P extends Struct> implements Request<P> {
  readonly params: P;
  private readonly msg: capnp.Message;
  private hook: Hook | null;

  constructor(
    hook: Hook,
    private readonly interfaceId: bigint,
    private readonly methodId: number,
    Params: StructCtor<P>,
  ) {
    this.hook = hook;
    const { msg: m, params } = newCallMessage(interfaceId, methodId, Params);
    m._capnp.capTable = [];
    this.params = params;
    this.msg = m;
    requestRegistry.register(this, { hook, caps: m._capnp.capTable as unknown as (Hook | null)[] }, this);
  }

  /** The target (our reference, now the caller's); the request is spent. */
  private takeHook(): Hook {
    const hook = this.hook;
    if (hook === null) throw new RpcError("failed", "Request already sent");
    this.hook = null;
    requestRegistry.unregister(this);
    return hook;
  }

  private callData(sink: Sink): CallData {
    const caps = this.msg._capnp.capTable as (Hook | null)[];
    return new CallData(this.interfaceId, this.methodId, this.msg, true, this.params, caps, sink);
  }

  send(opts?: { signal?: AbortSignal }): PendingCall {
    const hook = this.takeHook();
    const pc = new PendingCallImpl();
    const d = this.callData(pc);
    hook.call(d);
    hook.release();
    const signal = opts?.signal;
    if (signal !== undefined) {
      if (signal.aborted) pc.cancel();
      else {
        const onAbort = (): void => pc.cancel();
        signal.addEventListener("abort", onAbort, { once: true });
        this.d2(pc, signal, onAbort);
      }
    }
    return pc;
  }

  private d2(pc: PendingCallImpl, signal: AbortSignal, onAbort: () => void): void {
    void pc.settled().then(() => signal.removeEventListener("abort", onAbort));
  }

  /** Deliver as the tail call of a call whose outcome goes to `sink`. */
  sendAsTail(sink: Sink): void {
    const h = tailHandlerOf?.(sink) ?? null;
    if (h !== null) {
      const ignore = new TailSink();
      const hook = this.takeHook();
      const d = this.callData(ignore);
      if (h.tryTailCall(sink, hook, d)) {
        hook.release();
        return;
      }
      // Not possible: deliver with the original sink instead.
      const d2 = new CallData(d.interfaceId, d.methodId, d.msg, d.own, d.content, d.caps, sink);
      hook.call(d2);
      hook.release();
      return;
    }
    const hook = this.takeHook();
    const d = this.callData(sink);
    hook.call(d);
    hook.release();
  }
}

/** Sink of a `sendResultsTo.yourself` question: the results stay with the peer. */
export class TailSink extends Sink {
  protected onComplete(o: Outcome): void {
    releaseOutcome(o);
  }
}

const handleRegistry = new FinalizationRegistry<Hook>((hook) => hook.release());

/** The user-facing handle: one reference to a hook. */
export class CapHandle implements Capability {
  private hook: Hook | null;
  constructor(hook: Hook) {
    this.hook = hook;
    handleRegistry.register(this, hook, this);
  }

  /** @internal The hook (not a new reference). Throws if closed. */
  hookRef(): Hook {
    if (this.hook === null) throw new RpcError("failed", "Capability used after close()");
    return this.hook;
  }

  newCall<P extends Struct>(interfaceId: bigint, methodId: number, Params: StructCtor<P>): Request<P> {
    return new RequestImpl(this.hookRef().addRef(), interfaceId, methodId, Params);
  }
  dup(): Capability {
    return new CapHandle(this.hookRef().addRef());
  }
  close(): void {
    const h = this.hook;
    if (h === null) return;
    this.hook = null;
    handleRegistry.unregister(this);
    h.release();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  whenResolved(): Promise<void> {
    return this.hookRef().whenResolved();
  }
  get isNull(): boolean {
    return this.hook !== null && this.hook.resolved().isNullCap();
  }
  get closed(): boolean {
    return this.hook === null;
  }
  localServer(): Server | undefined {
    return this.hook?.resolved().localServer();
  }
}

/** @internal The hook behind a Capability (not a new reference). */
export function hookOf(cap: Capability): Hook {
  if (cap instanceof CapHandle) return cap.hookRef();
  throw new TypeError("not a Capability of this engine");
}

/** The live hook of each Server, so that every handle to one Server shares one reference count. */
const liveLocalHooks = new WeakMap<Server, LocalHook>();

/**
 * A capability for `server`. Handles made by repeated calls for the same Server object (while
 * any reference to it is alive) share one reference count, so `onRelease` runs once, after the
 * last of them is gone. After that, a new call starts a new lifetime.
 */
export function localCapability(server: Server): Capability {
  const h = liveLocalHooks.get(server);
  if (h !== undefined && h.refs > 0) return new CapHandle(h.addRef());
  const n = new LocalHook(server);
  liveLocalHooks.set(server, n);
  return new CapHandle(n);
}

export function nullCapability(): Capability {
  return new CapHandle(new NullHook());
}

export function brokenCapability(err: Error): Capability {
  return new CapHandle(new BrokenHook(toRpcError(err)));
}

/**
 * A local promise capability. Calls queue until `p` settles; then they go to the resolved
 * capability (we take ownership of it and close it once we hold our own reference), or fail with
 * the rejection.
 */
export function promiseCapability(p: Promise<Capability>): Capability {
  const hook = new PromiseHook();
  hook.addRef(); // held by the resolver below
  p.then(
    (cap) => {
      let h: Hook;
      try {
        h = hookOf(cap);
      } catch (e) {
        h = new BrokenHook(toRpcError(e));
        hook.resolve(h);
        h.release();
        hook.release();
        return;
      }
      hook.resolve(h);
      cap.close();
      hook.release();
    },
    (e: unknown) => {
      const b = new BrokenHook(toRpcError(e));
      hook.resolve(b);
      b.release();
      hook.release();
    },
  );
  return new CapHandle(hook);
}

// ---------------------------------------------------------------------------------------------
// Caps inside messages

/** Store a capability in pointer `ptrIndex` of `s` (the message keeps its own reference). */
export function writeCap(s: Struct, ptrIndex: number, cap: Capability | null): void {
  const p = capnp.Struct.getPointer(ptrIndex, s);
  if (cap === null) {
    erase(p);
    return;
  }
  const m = s.segment.message;
  const table = (m._capnp.capTable ??= []) as unknown as (Hook | null)[];
  const hook = hookOf(cap).addRef();
  const id = table.push(hook) - 1;
  setInterfacePointer(id, p);
}

/** Read the capability in pointer `ptrIndex` of `s`: a new handle the caller closes, or null. */
export function readCap(s: Struct, ptrIndex: number): Capability | null {
  let p: capnp.Pointer;
  try {
    if (ptrIndex >= getStructSize(s).pointerLength) return null;
    p = capnp.Struct.getPointer(ptrIndex, s);
  } catch {
    return null;
  }
  if (capnp.Pointer.isNull(p)) return null;
  if (getTargetPointerType(p) !== PointerType.OTHER) {
    throw new ProtocolError(`pointer ${ptrIndex} is not a capability`);
  }
  const id = getCapabilityId(p);
  const table = s.segment.message._capnp.capTable as unknown as (Hook | null)[] | undefined;
  const h = table?.[id];
  if (h === undefined) throw new ProtocolError(`capability index ${id} is not in the message's cap table`);
  if (h === null) return null;
  return new CapHandle(h.addRef());
}
