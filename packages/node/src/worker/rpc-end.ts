/**
 * One end of the RPC bridge between a loop thread and a worker, written once for both mirrored
 * halves: the loop's per-session end (`SessionRpc` in loop-bridge.ts) and the worker's
 * (`WorkerRpc` in worker-bridge.ts) extend {@link RpcEnd}. The messages and their encoding are in
 * protocol.ts; each half adds only what is its own (the loop: shared names, Context filling and
 * relays; the worker: `get`, Context detection, keep-alive).
 *
 * A call forwarded to the other side takes one engine pass per thread: the worker's stand-ins
 * are `forwardingCapability`s ({@link RpcEnd.forwardRemote}: sent from the caller's params, the
 * results read in place), and the calls an end makes for the other side go out with `sendCall`
 * (the outcome to a callback, no PendingCall). The loop's stand-ins for worker callbacks are
 * engine servers ({@link RpcEnd.callRemote}). A forwarded call and a return with no capability in
 * their content cross as flat frames (protocol.ts), every other message as an RpcMsg object.
 *
 * Owns, per end: its table of entries (capabilities the other side holds descriptors for, one
 * reference each), its questions (calls it forwarded, waiting for a return), its answers (calls
 * the other side made, running here), its stand-ins ({@link RemoteObjectServer}: capabilities
 * of the other side, one per descriptor received) and the buffer of the last call it answered
 * once the params are copied out (reused for a return).
 *
 * Threading: each end lives on one thread (the loop end on the loop thread, the worker end on its
 * worker thread) and is only touched there; the two talk over the session's MessagePort.
 */
import {
  RpcError,
  deferred,
  localCapability,
  sendCall,
  type Capability,
  type ForwardTarget,
  type ForwardedCall,
  type IncomingCall,
  type SentCall,
  type SentCallResult,
} from "@multiprocess-ts/capnp";
import type * as capnp from "capnp-ts";
import { SlotMap } from "@multiprocess-ts/runtime";
import { Holder, mapCaps } from "./copy.js";
import {
  callFrame,
  decodeError,
  decodeFrame,
  decodePayloadInto,
  encodeError,
  encodeFramed,
  encodePayload,
  framable,
  payloadContent,
  returnFrame,
  type CallMsg,
  type CallTag,
  type CapDesc,
  type Payload,
  type RpcMsg,
} from "./protocol.js";

/** An entry of an end's own table: a capability the other side names by id. */
export interface TableEntry {
  cap: Capability;
  /** The loop Connection the capability belongs to (loop end only; undefined in a worker). */
  connection: unknown;
  /** Loop end only: the entry is one holder of a shared client (see LoopBridge.share). */
  share?: ShareHold;
}

/** The share counting of one holder entry (loop end). */
export interface ShareHold {
  holders: { join(): void; leave(): boolean };
  /** The shared interface's `destroy` method, if it declares one. */
  destroy: { interfaceId: bigint; methodId: number } | undefined;
  /** Whether this holder has left already (destroy call or release). */
  left: boolean;
}

/**
 * Stand-in for a capability that lives on the other side: its calls are forwarded there and run
 * there. Released: the other side drops its table entry. After the end has closed, calls fail
 * with the end's "gone" error.
 */
export class RemoteObjectServer implements ForwardTarget {
  /** The end closed (the other side went away). */
  gone = false;
  released = false;
  constructor(
    readonly rpc: RpcEnd,
    readonly id: number,
  ) {}

  dispatch(call: IncomingCall): Promise<void> {
    return this.rpc.callRemote(this.id, call);
  }

  forward(call: ForwardedCall): void {
    this.rpc.forwardRemote(this.id, call);
  }

  onRelease(): void {
    this.released = true;
    this.rpc.standIns.delete(this);
    if (this.gone || this.rpc.closed) return;
    try {
      this.rpc.send({ op: "release", id: this.id });
    } catch {
      // the port is gone: the other side released everything already
    }
  }
}

/** A call this end forwarded, waiting for the other side's return. */
export interface Question {
  resolve(results: Payload): void;
  reject(e: unknown): void;
}

/** The method a call is for (what the Context lookups need of a call). */
export interface MethodOf {
  readonly interfaceId: bigint;
  readonly methodId: number;
}

/**
 * A struct view of the struct pointer `p` for copying it as it is: unlike `readStruct`, never a
 * widened copy (the bridge reads no field of it by the Holder's size).
 */
function holderAt(p: capnp.Pointer): Holder {
  return new Holder(p.segment, p.byteOffset, p._capnp.depthLimit);
}

/** Largest call buffer kept for reuse by a return (see `RpcEnd.#spare`). */
const SPARE_MAX = 1024;

/** An answer registered while its call is being sent (see answerCall). */
const NO_ANSWER: SentCall = { cancel() {} };

/** See the module comment. */
export abstract class RpcEnd {
  /** Which side's ids descriptors name as ours: "l" on the loop end, "w" on a worker end. */
  protected abstract readonly side: "l" | "w";
  /** Our table: capabilities the other side holds descriptors for. */
  readonly entries = new Map<number, TableEntry>();
  #nextEntry = 1;
  /**
   * Calls we forwarded to the other side, waiting for its return. Questions and answers are
   * {@link SlotMap}s: sequential calls go through a table holding zero or one entry, where a
   * plain `Map` costs V8 a new hash table per call (bench/README.md, ninth session).
   */
  readonly questions: Map<number, Question> = new SlotMap<number, Question>();
  /** Calls the other side made, running here. */
  readonly answers: Map<number, SentCall> = new SlotMap<number, SentCall>();
  /** Live stand-ins for the other side's capabilities. */
  readonly standIns = new Set<RemoteObjectServer>();
  #nextQ = 1;
  closed = false;
  /**
   * The buffer of the last call the other side made, once its params were copied out: nothing
   * reads it any more, so the return of a call goes back in it instead of a new ArrayBuffer
   * (0.5-1 µs each on Node 20). At most {@link SPARE_MAX} bytes; one at a time.
   */
  #spare: ArrayBuffer | undefined = undefined;

  /** Posts `m` to the other side (never called once closed). */
  protected abstract post(m: RpcMsg, transfer: ArrayBuffer[]): void;
  /** Posts a flat frame (protocol.ts) to the other side, transferred (never called once closed). */
  protected abstract postFrame(frame: ArrayBuffer): void;
  /** The error for a call made after this end closed. */
  protected abstract goneError(): Error;

  /** Throws the error a call on `target` gets without being made (its connection is gone). */
  protected checkTarget(_target: TableEntry): void {}
  /** Makes the stand-in for the other side's capability `id`. */
  protected abstract newStandIn(id: number): RemoteObjectServer;
  /** Handles the messages only one side receives (`get` on the loop, `got` in a worker). */
  protected abstract onOwnMessage(m: RpcMsg): void;
  /** Text for a descriptor or call naming an entry we do not have. */
  protected abstract unknownEntry(id: number, how: "named" | "called"): string;

  /**
   * Held once per call pending on this end, let go once when it settled (a worker keeps its
   * thread alive meanwhile); no-ops on the loop end.
   */
  protected hold(): void {}
  protected letGo(): void {}
  /** Adjusts an outgoing call's params; returns the pointer index of its Proxy.Context, or -1. */
  /**
   * How the other side should fill the Context of an outgoing call: worker side, the lane / pool
   * of a call the worker makes; loop side, the lane of a callback into the worker. `ctx`: the
   * Context's pointer index when known, else -1.
   */
  protected outgoingTag(_params: capnp.Struct, _ctx: number): CallTag | undefined {
    return undefined;
  }

  protected prepareOutgoing(_params: capnp.Struct, _call: MethodOf): number {
    return -1;
  }
  /** Adjusts an incoming call's params before it is sent to `target`. */
  protected prepareIncoming(_params: capnp.Struct, _m: CallMsg, _iid: bigint, _target: TableEntry): void {}
  /** A new reference for our entry `e`, sent back to us (`into`: the Connection it goes into). */
  protected dupEntry(e: TableEntry, _into: unknown): Capability {
    return e.cap.dup();
  }
  /** An entry the other side released (or this end closed): hook for share counting. */
  protected entryReleased(_e: TableEntry): void {}
  /** A call on `target` this end answers itself instead of forwarding; true when it did. */
  protected interceptCall(_m: CallMsg, _target: TableEntry): boolean {
    return false;
  }
  /** Reports a capability that threw while being released at close. */
  protected releaseFailed(_e: unknown): void {}

  protected nextQuestion(): number {
    return this.#nextQ++;
  }

  send(m: RpcMsg, transfer: ArrayBuffer[] = []): void {
    if (this.closed) return;
    this.post(m, transfer);
  }

  sendFrame(frame: ArrayBuffer): void {
    if (this.closed) return;
    this.postFrame(frame);
  }

  /** Descriptor for sending `cap` (borrowed) to the other side; `connection` goes in a new entry. */
  describe(cap: Capability | null, connection?: unknown): CapDesc {
    if (cap === null || cap.isNull) return null;
    const server = cap.localServer();
    if (server instanceof RemoteObjectServer && server.rpc === this && !server.gone && !server.released) {
      return this.side === "l" ? { w: server.id } : { l: server.id };
    }
    const id = this.#nextEntry++;
    this.entries.set(id, { cap: cap.dup(), connection });
    return this.side === "l" ? { l: id } : { w: id };
  }

  /** Capability for a descriptor from the other side (a new reference the caller owns). */
  importDesc(d: CapDesc, into?: unknown): Capability | null {
    if (d === null) return null;
    const own = this.side === "l" ? ("l" in d ? d.l : undefined) : "w" in d ? d.w : undefined;
    if (own !== undefined) {
      const e = this.entries.get(own);
      if (e === undefined) throw new RpcError("failed", this.unknownEntry(own, "named"));
      return this.dupEntry(e, into);
    }
    const server = this.newStandIn("l" in d ? d.l : d.w);
    this.standIns.add(server);
    return this.standInCapability(server);
  }

  /**
   * The capability of a new stand-in: an engine server (calls dispatched from a microtask, the
   * general path: `callRemote`), unless an end forwards its calls directly (`forwardRemote`).
   */
  protected standInCapability(server: RemoteObjectServer): Capability {
    return localCapability(server);
  }

  /** A message from the other side: an {@link RpcMsg}, or a flat frame standing for one. */
  onMessage(msg: RpcMsg | ArrayBuffer): void {
    if (this.closed) return;
    const m = msg instanceof ArrayBuffer ? decodeFrame(msg) : msg;
    switch (m.op) {
      case "call":
        this.answerCall(m);
        return;
      case "return": {
        const d = this.questions.get(m.q);
        if (d === undefined) return;
        this.questions.delete(m.q);
        if (m.error !== undefined) d.reject(decodeError(m.error));
        else d.resolve(m.results!);
        return;
      }
      case "cancel":
        this.answers.get(m.q)?.cancel();
        return;
      case "release": {
        const e = this.entries.get(m.id);
        if (e === undefined) return;
        this.entries.delete(m.id);
        this.entryReleased(e);
        e.cap.close();
        return;
      }
      default:
        this.onOwnMessage(m);
    }
  }

  /** Forwards `call` to the other side's capability `target`; resolves when it returned. */
  async callRemote(target: number, call: IncomingCall): Promise<void> {
    if (this.closed) throw this.goneError();
    const q = this.nextQuestion();
    const d = deferred<Payload>();
    this.questions.set(q, d);
    this.hold();
    let settled = false;
    const onAbort = (): void => {
      if (!settled) this.send({ op: "cancel", q });
    };
    // The engine's cancel hook when it has one: no AbortSignal made per forwarded call.
    const viaSignal = call.whenCanceled === undefined;
    if (viaSignal) call.signal.addEventListener("abort", onAbort, { once: true });
    else call.whenCanceled!(onAbort);
    try {
      const p = call.params(Holder);
      const ctx = this.prepareOutgoing(p, call);
      const params = encodePayload(p, (c) => this.describe(c));
      const msg: CallMsg = { op: "call", q, target, iid: call.interfaceId, mid: call.methodId, ctx, params };
      const tag = this.outgoingTag(p, ctx);
      if (tag !== undefined) msg.tag = tag;
      this.send(msg, [params.buf]);
      const results = await d.promise;
      decodePayloadInto(results, call.results(Holder), (c) => this.importDesc(c));
    } finally {
      settled = true;
      if (viaSignal) call.signal.removeEventListener("abort", onAbort);
      this.questions.delete(q);
      this.letGo();
    }
  }

  /**
   * {@link callRemote} for a stand-in made by `forwardingCapability` (one engine pass): the call
   * is sent from the caller's own params, synchronously, and completed with the results read in
   * place from the bytes the other side returns (no results message built and copied into).
   */
  forwardRemote(target: number, call: ForwardedCall): void {
    if (this.closed) throw this.goneError();
    const p = holderAt(call.content);
    const ctx = this.prepareOutgoing(p, call);
    const params = encodeFramed(call.content, (c) => this.describe(c));
    const q = this.nextQuestion();
    const tag = this.outgoingTag(p, ctx);
    this.questions.set(q, {
      resolve: (results) => {
        this.letGo();
        let caps: (Capability | null)[];
        try {
          caps = mapCaps(results.caps, (c) => this.importDesc(c));
        } catch (e) {
          call.fail(e);
          return;
        }
        call.complete(payloadContent(results), caps);
      },
      reject: (e) => {
        this.letGo();
        call.fail(e);
      },
    });
    this.hold();
    try {
      // A capability-free call with no tag goes as a flat frame; any other as a CallMsg.
      if (tag === undefined && framable(params)) this.sendFrame(callFrame(params, q, target, call.interfaceId, call.methodId, ctx));
      else {
        const msg: CallMsg = { op: "call", q, target, iid: call.interfaceId, mid: call.methodId, ctx, params };
        if (tag !== undefined) msg.tag = tag;
        this.send(msg, [params.buf]);
      }
    } catch (e) {
      // Not sent (the port is gone, or the content cannot be cloned): the call fails, nothing waits.
      this.questions.delete(q);
      this.letGo();
      throw e;
    }
    call.whenCanceled(() => {
      if (this.questions.has(q)) this.send({ op: "cancel", q });
    });
  }

  /** A call the other side makes on our entry `m.target`: made here, its results sent back. */
  private answerCall(m: CallMsg): void {
    const fail = (e: unknown): void => this.send({ op: "return", q: m.q, error: encodeError(e) });
    const target = this.entries.get(m.target);
    if (target === undefined) {
      fail(new RpcError("failed", this.unknownEntry(m.target, "called")));
      return;
    }
    if (target.share !== undefined && this.interceptCall(m, target)) return;
    let sent: SentCall;
    try {
      this.checkTarget(target);
      const iid = m.iid;
      const req = target.cap.newCall(iid, m.mid, Holder);
      decodePayloadInto(m.params, req.params, (d) => this.importDesc(d, target.connection));
      // Copied out (both copies write into the engine's message): the buffer is free for a return.
      if (m.params.buf.byteLength <= SPARE_MAX) this.#spare = m.params.buf;
      this.prepareIncoming(req.params, m, iid, target);
      // Registered before the call is sent: a call that fails at once completes inside sendCall.
      this.answers.set(m.q, NO_ANSWER);
      this.hold();
      sent = sendCall(req, (r) => this.returnAnswer(m.q, r, target));
    } catch (e) {
      if (this.answers.get(m.q) === NO_ANSWER) {
        this.answers.delete(m.q);
        this.letGo();
      }
      fail(e);
      return;
    }
    if (this.answers.get(m.q) === NO_ANSWER) this.answers.set(m.q, sent);
  }

  /** Sends the return of the call the other side made as question `q` (run once it completed). */
  private returnAnswer(q: number, r: SentCallResult, target: TableEntry): void {
    this.answers.delete(q);
    this.letGo();
    if (this.closed) {
      r.close();
      return;
    }
    if (r.error !== null) {
      r.close();
      this.send({ op: "return", q, error: encodeError(r.error) });
      return;
    }
    let results: Payload;
    try {
      const content = r.content;
      const spare = this.#spare;
      this.#spare = undefined;
      results = encodeFramed(content === null ? r.results(Holder) : content, (c) => this.describe(c, target.connection), spare);
    } catch (e) {
      this.send({ op: "return", q, error: encodeError(e) });
      return;
    } finally {
      r.close();
    }
    if (framable(results)) this.sendFrame(returnFrame(results, q));
    else this.send({ op: "return", q, results }, [results.buf]);
  }

  /**
   * Closes this end: pending questions reject with `err`, answers are canceled (the engine sends
   * Finish), stand-ins are marked gone, every entry is released. Idempotent.
   */
  protected closeTables(err: Error): void {
    this.closed = true;
    for (const d of this.questions.values()) d.reject(err);
    this.questions.clear();
    for (const p of [...this.answers.values()]) p.cancel();
    this.answers.clear();
    for (const s of this.standIns) s.gone = true;
    const entries = [...this.entries.values()];
    this.entries.clear();
    for (const e of entries) {
      try {
        this.entryReleased(e);
        e.cap.close();
      } catch (x) {
        this.releaseFailed(x);
      }
    }
  }
}
