/**
 * The question table of one connection: the calls we made (by our QuestionId), and its rules —
 * sending a Call (to an import or to a promised answer: pipelining), Bootstrap, Finish (after
 * the Return, or early to cancel), and the handling of the peer's Return. It is also the
 * {@link RouteConn} of the connection: promises and sinks route their calls through it.
 *
 * Threading: the connection's loop thread.
 */

import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { CanceledError, ProtocolError, RpcError, toRpcError } from "../errors.js";
import { CALL, dataViewOf, encodeFinish } from "../fastpath.js";
import { encodeFlatCall, encodeFlatCapsCall, flatCallBytes, flatCapsCallBytes } from "../flat-call.js";
import type { Envelope } from "../fastpath.js";
import { errOutcome, releaseOutcome } from "./hook.js";
import type { CallData, FlatCall, Hook, Outcome, Route, RouteConn } from "./hook.js";
import { cloneMessage, cloneOutcome, newMessage } from "./message.js";
import { Sink } from "./sink.js";
import { RETURN_WHICH, errorFromException, writePromisedAnswer } from "./core.js";
import type { ConnCore, TraceKey } from "./core.js";

/** A call we made. It is also its sink's cancel handler (no per-call closure). */
export class Question {
  returned = false;
  finishSent = false;
  /** We sent Finish before Return with releaseResultCaps: ignore the results' caps. */
  discardResults = false;
  /** The method, for the Return's trace line (set only while tracing). */
  traceKey: TraceKey | null = null;
  constructor(
    readonly table: QuestionTable,
    readonly id: number,
    readonly sink: Sink,
    /** Finish is held back until released (tail-call questions, held by their answer). */
    public holdFinish: boolean,
    /** We sent `sendResultsTo.yourself`. */
    readonly tail: boolean,
    /** Exports we added for the params' cap table (released if Return.releaseParamCaps). */
    public paramExports: number[] | null,
  ) {}
  onCancel(): void {
    this.table.cancel(this);
  }
}

/**
 * Where flat Calls are encoded (sendFlat): one buffer per thread (module state), reused for every
 * Call the transport copies into its batch (Transport.sendCopy), with the one-segment array
 * handed to it kept while the length stays the same (a call loop's).
 */
const FLAT_BYTES = 512;
let flatOut = new Uint8Array(FLAT_BYTES);
let flatView = new DataView(flatOut.buffer);
let flatSegs: Uint8Array[] = [flatOut.subarray(0, 0)];
/** A flat Call is being encoded (a `write` that called out and sent another one goes the general way). */
let flatBusy = false;
/**
 * The data words of the Call to an importedCap last encoded in `flatOut` (its envelope is still
 * there: the next one of the same shape patches the method, interface, target and data only),
 * else -1.
 */
let flatShape = -1;

/** Writes a flat Call's envelope into `out` / `dv` (see QuestionTable.sendFlat). */
type FlatEncoder = (out: Uint8Array, dv: DataView, c: FlatCall, len: number, importId: number, qid: number, path: readonly number[] | null) => void;
/** The envelope of the last Call is there: flat-call.ts encodeFlatCall's fields of a Call to `importId`. */
const patchFlat: FlatEncoder = (_out, dv, c, len, importId) => {
  dv.setUint16(CALL.methodId, c.methodId, true);
  dv.setBigUint64(CALL.interfaceId, c.interfaceId, true);
  dv.setUint32(CALL.importedCap, importId, true);
  for (let at = CALL.envelopeBytes; at < len; at += 4) dv.setUint32(at, 0, true);
};
const encodeFlat: FlatEncoder = (out, dv, c, _len, importId, qid, path) => {
  flatShape = -1;
  encodeFlatCall(out, dv, 0, c.interfaceId, c.methodId, c.dataWords, importId, qid, path);
  if (importId >= 0) flatShape = c.dataWords;
};

const sameFlatSegs = (_out: Uint8Array, _len: number): Uint8Array[] => flatSegs;
const newFlatSegs = (out: Uint8Array, len: number): Uint8Array[] => (flatSegs = [new Uint8Array(out.buffer, 0, len)]);

/** Sink of our Bootstrap question: resolves the bootstrap promise cap, then drops the results. */
class BootstrapSink extends Sink {
  protected onComplete(o: Outcome): void {
    releaseOutcome(o);
  }
}

export class QuestionTable implements RouteConn {
  /**
   * Our questions by ID. We allocate the IDs (freed ones are reused first), so they are
   * dense: an array indexed by ID (made on the first question) beats a Map on the hot path.
   */
  private byId: (Question | undefined)[] | null = null;
  private count = 0;
  private readonly freeIds: number[] = [];
  private nextId = 0;

  constructor(private readonly core: ConnCore) {}

  get size(): number {
    return this.count;
  }

  /** Ask for the peer's bootstrap capability: a promise hook (owned), pipelinable at once. */
  bootstrap(): Hook {
    const id = this.alloc();
    const sink = new BootstrapSink();
    this.add(new Question(this, id, sink, false, false, null));
    sink.setRoute(this, id);
    const hook = sink.pipelineHook([]);
    sink.cancelHandler = null;
    const m = newMessage(128);
    m.initRoot(rpc.Message).initBootstrap().setQuestionId(id);
    this.core.send(m);
    return hook;
  }

  /** RouteConn: send a call to a promise's route (import promise or promised answer). */
  sendCall(d: CallData, route: Route): void {
    if (route.importHook !== null) this.send(d, route.importId, -1, null, false);
    else this.send(d, -1, route.qid, route.path, false);
  }

  /** RouteConn: {@link sendFlat} to a promise's route. */
  sendFlatCall(c: FlatCall, route: Route): boolean {
    return route.importHook !== null ? this.sendFlat(c, route.importId, -1, null) : this.sendFlat(c, -1, route.qid, route.path);
  }

  /**
   * Send flat call `c` (hook.ts FlatCall) to importedCap `importId` (>= 0) or
   * promisedAnswer(qid, path) as bytes (flat-call.ts encodeFlatCall) copied into the transport's
   * batch: no message, CallData or cap table, the same bytes and bookkeeping as {@link send}.
   * False (nothing done: the caller takes the general path) when the connection has ended, its
   * transport does not copy (no sendCopy), tracing is on (the trace line reads the params
   * struct), or the Call is too large for the buffer. A throwing `write` throws from here, with
   * nothing allocated or sent.
   */
  sendFlat(c: FlatCall, importId: number, qid: number, path: readonly number[] | null): boolean {
    const core = this.core;
    const t = core.transport;
    const sink = c.sink;
    if (core.ended || core.traceOn || t.sendCopy === undefined || flatBusy || sink.canceled) return false;
    if (c.capCount > 0) return this.sendFlatCaps(c, importId);
    const len = flatCallBytes(c.dataWords, importId, path);
    if (len > FLAT_BYTES) return false;
    const out = flatOut;
    const dv = flatView;
    flatBusy = true;
    try {
      // The same layout as the last Call (a call loop's) is patched, any other encoded whole: a
      // constant chosen by data, one call site (a new connection's first Call, pipelined on the
      // bootstrap, is the other kind: rpc/dispatch.ts `hotMessage`).
      const encode = importId >= 0 && flatShape === c.dataWords ? patchFlat : encodeFlat;
      encode(out, dv, c, len, importId, qid, path);
      c.write(dv, CALL.envelopeBytes);
    } finally {
      flatBusy = false;
    }
    const id = this.alloc();
    dv.setUint32(CALL.qid, id, true);
    const q = new Question(this, id, sink, false, false, null);
    this.add(q);
    sink.setRoute(this, id);
    sink.cancelHandler = q;
    // The one-segment array of the last length, or a new one (a constant chosen by data, one call
    // site: a new connection's first Call, pipelined on the bootstrap, has a length of its own).
    const segsOf = flatSegs[0]!.byteLength === len ? sameFlatSegs : newFlatSegs;
    const segs = segsOf(out, len);
    if (!t.sendCopy(segs)) {
      // The transport kept the bytes (it did not copy them): the next Call gets a new buffer.
      flatOut = new Uint8Array(FLAT_BYTES);
      flatView = new DataView(flatOut.buffer);
      flatSegs = [flatOut.subarray(0, 0)];
      flatShape = -1;
    }
    return true;
  }

  /**
   * {@link sendFlat} of a flat call with capabilities (hook.ts FlatCall `capCount` > 0) to
   * importedCap `importId` (flat-call.ts encodeFlatCapsCall): the cap table's descriptors and
   * export references written by the export table as {@link send} writes them (ExportTable
   * writeCapList), the Question holding the exports it added. False (nothing done) for a
   * promisedAnswer target or a cap that needs a descriptor with a pointer (receiverAnswer), or a
   * Call too large for the buffer. The caller checked the connection, tracing and transport.
   */
  private sendFlatCaps(c: FlatCall, importId: number): boolean {
    const core = this.core;
    const n = c.capCount;
    if (importId < 0 || flatCapsCallBytes(c.dataWords, c.ptrWords, c.capStructPtrs, n) > FLAT_BYTES) return false;
    if (core.exports.needsPointers(c.caps)) return false;
    const out = flatOut;
    const dv = flatView;
    const sink = c.sink;
    flatShape = -1; // another envelope: the next call-loop Call is encoded whole
    flatBusy = true;
    let at: number;
    try {
      at = encodeFlatCapsCall(out, dv, 0, c.interfaceId, c.methodId, c.dataWords, c.ptrWords, c.capStruct, c.capStructPtrs, c.capSlots, n, importId);
      c.write(dv, CALL.envelopeBytes);
    } finally {
      flatBusy = false;
    }
    const paramExports = core.exports.writeCapList(dv, at, c.caps);
    const len = at + n * 16;
    const id = this.alloc();
    dv.setUint32(CALL.qid, id, true);
    const q = new Question(this, id, sink, false, false, paramExports);
    this.add(q);
    sink.setRoute(this, id);
    sink.cancelHandler = q;
    const segsOf = flatSegs[0]!.byteLength === len ? sameFlatSegs : newFlatSegs;
    if (!core.transport.sendCopy!(segsOf(out, len))) {
      flatOut = new Uint8Array(FLAT_BYTES);
      flatView = new DataView(flatOut.buffer);
      flatSegs = [flatOut.subarray(0, 0)];
    }
    return true;
  }

  /** RouteConn: a promise that sent calls over us resolved to `target` elsewhere. */
  startEmbargo(route: Route, target: Hook): Hook {
    return this.core.imports.startEmbargo(route, target);
  }

  /**
   * Send `d` as a Call to importedCap `importId` (>= 0) or promisedAnswer(qid, path), with
   * `sendResultsTo.yourself` if `yourself`. Owns `d`. Null if it could not be sent (`d`'s sink
   * then has its error outcome).
   */
  send(d: CallData, importId: number, qid: number, path: readonly number[] | null, yourself: boolean): Question | null {
    try {
      return this.sendUnguarded(d, importId, qid, path, yourself);
    } catch (e) {
      const core = this.core;
      core.log?.("error", `${core.name}: failed to send a Call: ${String(e)}`);
      d.releaseCaps();
      d.sink.complete(errOutcome(toRpcError(e)));
      return null;
    }
  }

  private sendUnguarded(d: CallData, importId: number, qid: number, path: readonly number[] | null, yourself: boolean): Question | null {
    const core = this.core;
    if (core.ended) {
      d.releaseCaps();
      d.sink.complete(errOutcome(core.disconnectedError()));
      return null;
    }
    if (d.sink.canceled) {
      d.releaseCaps();
      d.sink.complete(errOutcome(new CanceledError()));
      return null;
    }
    const id = this.alloc();
    let m: capnp.Message;
    let paramExports: number[] | null = null;
    try {
      if (d.own && !d.sent) {
        // Our own Call (fast-path layout): the target struct is already there.
        m = d.msg;
        const seg = m._capnp.segments[0]!;
        const dv = dataViewOf(seg);
        d.sent = true;
        if (importId >= 0) dv.setUint32(CALL.importedCap, importId, true);
        else writePromisedAnswer(new rpc.MessageTarget(seg, CALL.targetPtr).initPromisedAnswer(), qid, path!);
        if (yourself) dv.setUint16(CALL.sendResultsTo, rpc.Call_SendResultsTo.YOURSELF, true);
        dv.setUint32(CALL.qid, id, true);
        if (d.caps.length > 0) paramExports = core.exports.writeCapTableAt(seg, CALL.paramsPtr, d.caps);
      } else {
        m = cloneMessage(d.msg);
        const call = new rpc.Message(m.getSegment(0), 0).getCall();
        // An incoming Call: reset what we must not forward.
        if (!d.own) call.getSendResultsTo().setCaller();
        d.sent = true;
        const t = call.initTarget();
        if (importId >= 0) t.setImportedCap(importId);
        else writePromisedAnswer(t.initPromisedAnswer(), qid, path!);
        if (yourself) call.getSendResultsTo().setYourself();
        paramExports = core.exports.writeCapTable(call.getParams(), d.caps);
        call.setQuestionId(id);
      }
    } catch (e) {
      this.freeIds.push(id);
      throw e;
    } finally {
      if (d.caps.length > 0) d.releaseCaps();
    }
    const q = new Question(this, id, d.sink, yourself, yourself, paramExports);
    this.add(q);
    if (!yourself) {
      d.sink.setRoute(this, id);
      d.sink.cancelHandler = q;
    }
    if (core.traceOn) {
      q.traceKey = { interfaceId: d.interfaceId, methodId: d.methodId };
      core.trace(`-> call q${id}${core.callText(q.traceKey, false, d.content)}`);
    }
    // Our own Call or a copy: nobody reads it after this (its buffer may be recycled).
    core.sendOwn(m);
    return q;
  }

  /** The question with ID `id` (any number the peer sent), if we have it. */
  private question(id: number): Question | undefined {
    const byId = this.byId;
    return byId !== null && id < byId.length ? byId[id] : undefined;
  }

  private alloc(): number {
    const id = this.freeIds.pop();
    // A freed ID or a new one: a constant chosen by data, one call site (a warm call loop always
    // reuses an ID, a new connection's table starts empty: rpc/dispatch.ts `hotMessage`).
    const pick = id === undefined ? newQuestionId : freedQuestionId;
    return pick(this, id);
  }

  /** @internal The next never-used question ID. */
  newId(): number {
    return this.nextId++;
  }

  private add(q: Question): void {
    const byId = this.byId;
    // Into the table as it is, or a first / longer one: a constant chosen by data, one call site
    // (a warm call loop reuses its IDs, a new connection's table starts empty: growing it would
    // be an out-of-bounds store there, see rpc/dispatch.ts `hotMessage`).
    const put = byId !== null && q.id < byId.length ? putQuestion : growQuestions;
    put(this, q);
    this.count++;
  }

  /** @internal {@link add} into a new or longer table. */
  addGrowing(q: Question): void {
    (this.byId ??= [])[q.id] = q;
  }

  /** @internal {@link add} within the table. */
  addWithin(q: Question): void {
    this.byId![q.id] = q;
  }

  private removeIfDone(q: Question): void {
    const byId = this.byId;
    if (q.returned && q.finishSent && byId !== null && byId[q.id] === q) {
      byId[q.id] = undefined;
      this.count--;
      this.freeIds.push(q.id);
    }
  }

  /** The caller canceled: send Finish (releaseResultCaps) if the Return has not come. */
  cancel(q: Question): void {
    if (q.returned || q.finishSent) return;
    q.discardResults = true;
    this.sendFinish(q, true);
  }

  /**
   * Send Finish for `q`. `lazy` (a Finish after the Return, which nobody waits for): it may ride
   * with our next message (Transport.sendLazy); a cancel goes out at once.
   */
  sendFinish(q: Question, releaseResultCaps: boolean, lazy = false): void {
    if (q.finishSent) return;
    q.finishSent = true;
    const b = encodeFinish(q.id, releaseResultCaps);
    if (lazy) this.core.sendBytesLazy(b);
    else this.core.sendBytes(b);
    this.removeIfDone(q);
  }

  /**
   * The peer's Return for one of our questions. Results without a cap table (a call's) take
   * {@link returnResults}, anything else (the Bootstrap's, with its cap table; an exception)
   * {@link returnAny}: chosen as data and called from one call site, so that a new connection's
   * Bootstrap Return does not deoptimise the hot one (dispatch.ts `hotMessage`).
   */
  handleReturn(env: Envelope, m: capnp.Message): void {
    const h = env.retWhich === rpc.Return.RESULTS && !env.hasCapTable ? returnResults : returnAny;
    h(this, env, m);
  }

  /** @internal A Return with results and no cap table (see {@link handleReturn}). */
  handleResults(env: Envelope, m: capnp.Message): void {
    const core = this.core;
    const id = env.id;
    const q = this.question(id);
    if (q === undefined || q.returned) throw new ProtocolError(`Return for unknown question ID ${id}`);
    const noFinishNeeded = env.noFinishNeeded;
    const content = env.content;
    if (core.traceOn) {
      const key = q.traceKey;
      core.trace(`<- return q${id}${key === null ? " results" : core.callText(key, true, content)}`);
    }
    q.returned = true;
    if (env.releaseParamCaps && q.paramExports !== null) this.releaseParamExports(q);
    if (q.tail) throw new ProtocolError("Tail call `Return` must set `resultsSentElsewhere`, not `results`.");
    const caps: (Hook | null)[] = [];
    m._capnp.capTable = caps as never;
    q.sink.complete(q.discardResults ? errOutcome(new CanceledError()) : { err: null, msg: m, content, caps, ret: false });
    this.finishAfterReturn(q, noFinishNeeded);
  }

  /**
   * The question of a hot-shaped Return (dispatch.ts `routeReturn`: results, no cap table, a null
   * or pointer-free content struct; `env` from hot-shape.ts hotEnvelope) whose results its sink
   * reads flat (Sink.flatRead), so that {@link handleFlatResults} can take it with no message;
   * undefined for the general path ({@link handleReturn}), which also reports what is wrong with
   * the Return (an unknown or returned question, a tail call's), or when tracing is on (its line
   * reads the results struct), the call was canceled, or pipelined calls wait on its results.
   */
  flatQuestion(env: Envelope): Question | undefined {
    if (this.core.traceOn) return undefined;
    const q = this.question(env.id);
    if (q === undefined || q.returned || q.tail || q.discardResults) return undefined;
    const sink = q.sink;
    return sink.flatRead !== null && sink.outcome === null && !sink.hasPipes() ? q : undefined;
  }

  /**
   * {@link handleResults} of question `q` (from {@link flatQuestion}) read flat: its sink reads
   * the value from the content's data section in `dv` (`env.dataAt` / `env.dataWords`:
   * Sink.completeFlat), with no in-place message, content pointer or outcome; the same
   * bookkeeping otherwise (params' exports released, the Finish or the question freed).
   */
  handleFlatResults(q: Question, env: Envelope, dv: DataView): void {
    const noFinishNeeded = env.noFinishNeeded;
    q.returned = true;
    if (env.releaseParamCaps && q.paramExports !== null) this.releaseParamExports(q);
    q.sink.completeFlat(dv, env.dataAt, env.dataWords);
    this.finishAfterReturn(q, noFinishNeeded);
  }

  private releaseParamExports(q: Question): void {
    const pe = q.paramExports!;
    q.paramExports = null;
    for (const e of pe) this.core.exports.release(e, 1);
  }

  /** @internal Any Return (see {@link handleReturn}). */
  handleAnyReturn(env: Envelope, m: capnp.Message): void {
    const core = this.core;
    const id = env.id;
    const q = this.question(id);
    if (q === undefined || q.returned) throw new ProtocolError(`Return for unknown question ID ${id}`);
    const which = env.retWhich;
    const noFinishNeeded = env.noFinishNeeded;
    const content = env.content;
    const hasCapTable = env.hasCapTable;
    const takeFrom = env.takeFromOtherQuestion;
    // Everything is read from `env` before anything else runs (the connection reuses it).
    const ret = which !== rpc.Return.RESULTS || hasCapTable ? env.root().getReturn() : null;
    if (core.traceOn) {
      const key = q.traceKey;
      if (which === rpc.Return.RESULTS) {
        core.trace(`<- return q${id}${key === null ? " results" : core.callText(key, true, content)}`);
      } else {
        const ex = which === rpc.Return.EXCEPTION ? `: ${ret!.getException().getReason()}` : "";
        core.trace(`<- return q${id}${key === null ? "" : core.callText(key, true, null)} ${RETURN_WHICH[which] ?? "?"}${ex}`);
      }
    }
    q.returned = true;
    if (env.releaseParamCaps && q.paramExports !== null) this.releaseParamExports(q);
    let outcome: Outcome;
    switch (which) {
      case rpc.Return.RESULTS: {
        if (q.tail) throw new ProtocolError("Tail call `Return` must set `resultsSentElsewhere`, not `results`.");
        if (q.discardResults) {
          outcome = errOutcome(new CanceledError());
          break;
        }
        const caps = hasCapTable ? core.imports.readCapTable(ret!.getResults()) : [];
        m._capnp.capTable = caps as never;
        outcome = { err: null, msg: m, content, caps, ret: false };
        break;
      }
      case rpc.Return.EXCEPTION:
        outcome = errOutcome(errorFromException(ret!.getException()));
        break;
      case rpc.Return.CANCELED:
        outcome = errOutcome(new CanceledError("call canceled", { remote: true }));
        break;
      case rpc.Return.RESULTS_SENT_ELSEWHERE:
        if (!q.tail) throw new ProtocolError("Return.resultsSentElsewhere for a call without sendResultsTo.yourself");
        outcome = { err: null, msg: null, content: null, caps: [], ret: false };
        break;
      case rpc.Return.TAKE_FROM_OTHER_QUESTION: {
        const o = this.takeFromOtherQuestion(q, takeFrom);
        if (o === null) {
          this.finishAfterReturn(q, noFinishNeeded);
          return;
        }
        outcome = o;
        break;
      }
      default:
        core.sendUnimplemented(new rpc.Message(m.getSegment(0), m.getSegment(0).byteOffset));
        outcome = errOutcome(new RpcError("unimplemented", `Return kind ${which} is not supported`));
        break;
    }
    q.sink.complete(outcome);
    this.finishAfterReturn(q, noFinishNeeded);
  }

  /** The outcome of our answer `other` (a copy), or null when `q` now waits for it. */
  private takeFromOtherQuestion(q: Question, other: number): Outcome | null {
    const a = this.core.answers.get(other);
    if (a === undefined || !a.yourself) {
      throw new ProtocolError(`Return.takeFromOtherQuestion names question ${other}, which is not a sendResultsTo.yourself call`);
    }
    if (a.outcome !== null) return cloneOutcome(a.outcome);
    if (a.returned || a.finished) return errOutcome(new CanceledError("the other question was canceled"));
    (a.redirects ??= []).push(q.sink);
    return null;
  }

  /**
   * After `q`'s Return: its Finish (lazy), unless it was sent, is not needed, or is held. A
   * connection's first question (the Bootstrap's) needs its Finish while a warm call loop's
   * (`noFinishNeeded`) never do: the three outcomes are constants chosen from fields read on
   * every path, called from one call site (see {@link handleReturn}).
   */
  private finishAfterReturn(q: Question, noFinishNeeded: boolean): void {
    const sent = q.finishSent;
    const held = q.holdFinish;
    const f = sent || noFinishNeeded ? finishDone : held ? finishHeld : finishLazy;
    f(this, q);
  }

  /** @internal `q` needs no Finish (any more): it is forgotten once returned. */
  finished(q: Question): void {
    q.finishSent = true;
    this.removeIfDone(q);
  }

  /** The peer answered our Call/Bootstrap `id` with Unimplemented: the call fails. */
  handleUnimplemented(id: number, what: string): void {
    const q = this.question(id);
    if (q === undefined || q.returned) return;
    q.returned = true;
    q.finishSent = true; // the peer never created the answer
    const pe = q.paramExports;
    q.paramExports = null;
    if (pe !== null) for (const e of pe) this.core.exports.releaseIfPresent(e);
    q.sink.complete(errOutcome(new RpcError("unimplemented", `peer does not implement ${what}`, { remote: true })));
    this.removeIfDone(q);
  }

  /** Connection end: every pending call rejects with `dErr`. */
  shutdown(dErr: RpcError): void {
    const qs: Question[] = [];
    for (const q of this.byId ?? []) if (q !== undefined) qs.push(q);
    this.byId = null;
    this.count = 0;
    for (const q of qs) {
      if (!q.returned) {
        q.returned = true;
        q.sink.complete(errOutcome(dErr));
      }
    }
  }
}

/** The paths of {@link QuestionTable.handleReturn}, as module constants (see there). */
/** The question IDs of {@link QuestionTable.alloc} (see there). */
const putQuestion = (t: QuestionTable, q: Question): void => t.addWithin(q);
const growQuestions = (t: QuestionTable, q: Question): void => t.addGrowing(q);
const newQuestionId = (t: QuestionTable, _id: number | undefined): number => t.newId();
const freedQuestionId = (_t: QuestionTable, id: number | undefined): number => id!;
const returnResults = (t: QuestionTable, env: Envelope, m: capnp.Message): void => t.handleResults(env, m);
const returnAny = (t: QuestionTable, env: Envelope, m: capnp.Message): void => t.handleAnyReturn(env, m);
/** The outcomes of {@link QuestionTable.finishAfterReturn} (see there). */
const finishDone = (t: QuestionTable, q: Question): void => t.finished(q);
const finishHeld = (_t: QuestionTable, _q: Question): void => {};
const finishLazy = (t: QuestionTable, q: Question): void => t.sendFinish(q, false, true);
