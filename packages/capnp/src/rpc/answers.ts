/**
 * The answer table of one connection: the calls the peer made (by its QuestionId), and its
 * rules — delivering an incoming Call or Bootstrap to its target, sending the Return once (our
 * own results message as is when possible), Finish (cancel a running call, release result caps),
 * `sendResultsTo.yourself` / takeFromOtherQuestion, tail calls, and pipelined targets
 * (promisedAnswer) on answers.
 *
 * Threading: the connection's loop thread.
 */

import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { setInterfacePointer } from "capnp-ts/src/serialization/pointers/pointer.js";
import { CanceledError, LimitError, ProtocolError, RpcError } from "../errors.js";
import { RET, dataViewOf, newReturnMessage, setReturnHeader } from "../fastpath.js";
import { flatReturnMessage, sendFlatReturn } from "../flat-return.js";
import type { Envelope } from "../fastpath.js";
import { BrokenHook, CallData, errOutcome, releaseOutcome } from "./hook.js";
import type { Hook, Outcome, TailCallHandler } from "./hook.js";
import { cloneMessage, cloneOutcome, newMessage, segmentCopiesOf } from "./message.js";
import { PromiseHook } from "./promise.js";
import { Sink } from "./sink.js";
import { ImportHook } from "./imports.js";
import { EMPTY, RETURN_WHICH, writeException } from "./core.js";
import type { ConnCore, TraceKey } from "./core.js";
import type { Question } from "./questions.js";

/** A call the peer made (or its bootstrap request). */
export class Answer extends Sink {
  returned = false;
  finished = false;
  /** sendResultsTo.yourself: keep results for a later takeFromOtherQuestion. */
  yourself = false;
  /** Export ids added for the Return's cap table (released on Finish.releaseResultCaps). */
  resultExports: number[] | null = null;
  /** Sinks waiting for this (yourself) answer's outcome. */
  redirects: Sink[] | null = null;
  /** Our tail-call question whose Finish waits for this answer's Finish. */
  tailQuestion: Question | null = null;
  /** The method, for the Return's trace line (set only while tracing). */
  traceKey: TraceKey | null = null;
  constructor(
    readonly table: AnswerTable,
    readonly id: number,
  ) {
    super();
  }
  protected onComplete(o: Outcome): void {
    this.table.sendReturn(this, o);
  }
  /** Results to the peer (not `yourself`) on a transport that copies small messages (sendCopy). */
  override flatResults(): boolean {
    return !this.yourself && this.resultExports === null && this.table.core.transport.sendCopy !== undefined;
  }
  override tailHandler(): TailCallHandler {
    return this.table;
  }
}

/**
 * Question IDs below this are kept in a dense array indexed by ID; higher ones in a Map. The
 * peer picks the IDs, and every peer we know reuses the lowest free one (capnp-c++'s question
 * table, our QuestionTable), so they stay below the number of calls in flight. capnp-c++ keeps
 * the answers it serves the same way (`ImportTable` in rpc.c++: an array for low IDs, a hash map
 * for the rest). The bound caps what a peer picking sparse IDs can make us allocate (8 KiB).
 */
const DENSE_IDS = 1024;

export class AnswerTable implements TailCallHandler {
  /**
   * Answers by ID below {@link DENSE_IDS} (made on the first call, grown to the highest such ID
   * seen). Not a Map: a Map with calls in flight is set and deleted on every call, and V8 then
   * rebuilds its hash table every few dozen calls. Once the Map's table is in the old generation
   * (a Map that sat idle through two scavenges), V8 allocates every rebuilt table there too, and
   * each obsolete table keeps a link to its successor (for live iterators) and the entries it
   * held: the answers in flight and all they reference survive every scavenge until the next
   * full GC (bench/README "P2 depends on what ran before it": the server's pipelined CPU per call
   * doubled). An array slot is just overwritten.
   */
  private dense: (Answer | null | undefined)[] | null = null;
  // Starts as the shared EMPTY map (read-only); a Map of its own on the first entry.
  private sparse = EMPTY as Map<number, Answer>;
  private count = 0;

  constructor(
    /** @internal */
    readonly core: ConnCore,
    /** What we serve on Bootstrap (our own reference until the connection ends). */
    private bootstrapHook: Hook | null,
    /** Most outstanding answers before new calls are refused (RpcConnectionOptions.maxIncomingCalls). */
    private readonly maxAnswers: number,
  ) {}

  get size(): number {
    return this.count;
  }

  get(id: number): Answer | undefined {
    if (id < DENSE_IDS) {
      const d = this.dense;
      return d !== null && id < d.length ? (d[id] ?? undefined) : undefined;
    }
    return this.sparse.get(id);
  }

  /**
   * Whether `id` is a dense ID whose answer was dropped when its Return went out with
   * `noFinishNeeded` ({@link sendReturnUnguarded}): its slot holds null until the ID is used again
   * or a Finish for it comes (rpc.capnp: a caller may still send one; it is ignored).
   */
  private droppedEarly(id: number): boolean {
    const d = this.dense;
    return id < DENSE_IDS && d !== null && id < d.length && d[id] === null;
  }

  /** @internal A new answer for question `id` (handleCall; rpc/flat-params.ts). */
  newAnswer(id: number): Answer {
    if (this.get(id) !== undefined) throw new ProtocolError(`question ID ${id} is already in use`);
    const n = this.count;
    if (n >= this.maxAnswers * 2) {
      // Even the calls we refused stay until their Finish: this peer does not send Finish.
      throw new LimitError(`${n} calls from the peer are outstanding, twice the limit maxIncomingCalls = ${this.maxAnswers}`);
    }
    const a = new Answer(this, id);
    if (id < DENSE_IDS) {
      // Into the array as it is, or a first / longer one (a new connection's): a constant chosen
      // by data (docs/rpc.md "A new connection keeps the optimised code").
      const d = this.dense;
      (d !== null && id < d.length ? putAnswer : growAnswers)(this, a);
    } else (this.sparse === EMPTY ? (this.sparse = new Map()) : this.sparse).set(id, a);
    this.count++;
    return a;
  }

  /** @internal {@link newAnswer}'s `a` into a new or longer dense array. */
  addGrowing(a: Answer): void {
    const d = (this.dense ??= []);
    while (d.length < a.id) d.push(undefined); // no holes: the array stays packed
    d[a.id] = a;
  }

  /** @internal {@link newAnswer}'s `a` into its slot of the dense array. */
  addWithin(a: Answer): void {
    this.dense![a.id] = a;
  }

  /** A Call refused before it was decoded (a limit in its params, validate.ts): answered with `err`. */
  refuseCall(qid: number, err: RpcError): void {
    this.newAnswer(qid).complete(errOutcome(err));
  }

  /** @internal Over maxIncomingCalls (counting `a`): answer `a` with `overloaded` at once. */
  refused(a: Answer): boolean {
    if (this.size <= this.maxAnswers) return false;
    const msg = `too many calls in progress on this connection (limit maxIncomingCalls = ${this.maxAnswers}); retry later`;
    a.complete(errOutcome(new RpcError("overloaded", msg)));
    return true;
  }

  private removeIfDone(a: Answer): void {
    if (!a.returned || !a.finished) return;
    const id = a.id;
    if (this.get(id) !== a) return;
    if (id < DENSE_IDS) this.dense![id] = undefined;
    else this.sparse.delete(id);
    this.count--;
    const o = a.outcome;
    if (o !== null) releaseOutcome(o);
  }

  handleBootstrap(qid: number): void {
    const a = this.newAnswer(qid);
    if (this.core.traceOn) this.core.trace(`<- bootstrap q${a.id}`);
    if (this.refused(a)) return;
    const h = this.bootstrapHook;
    if (h === null) {
      a.complete(errOutcome(new RpcError("failed", "This vat does not expose any public/bootstrap interfaces.")));
      return;
    }
    const m = newReturnMessage(null, 32).msg; // room for the one-entry cap table
    const caps: (Hook | null)[] = [h.addRef()];
    m._capnp.capTable = caps as never;
    const content = new capnp.Pointer(m._capnp.segments[0]!, RET.contentPtr);
    setInterfacePointer(0, content);
    // Its cap table is written here, so its Return takes a path of its own (sendPreparedReturn),
    // not the calls' (see sendReturnUnguarded).
    a.resultExports = this.core.exports.writeCapTable(new rpc.Payload(m._capnp.segments[0]!, RET.resultsPtr), caps);
    a.complete({ err: null, msg: m, content, caps, ret: true });
  }

  /** The peer's Call: a new answer, the call delivered to its target (which owns it from then on). */
  handleCall(env: Envelope, m: capnp.Message): void {
    const core = this.core;
    const a = this.newAnswer(env.id);
    const interfaceId = env.interfaceId;
    const methodId = env.methodId;
    const content = env.content!;
    const hasCapTable = env.hasCapTable;
    const importedCap = env.targetWhich === rpc.MessageTarget.IMPORTED_CAP ? env.importedCap : -1;
    // Everything is read from `env` before anything else runs (the connection reuses it).
    const capTableAt = env.capTableAt;
    const call = importedCap < 0 || (hasCapTable && capTableAt < 0) ? env.root().getCall() : null;
    if (core.traceOn) {
      a.traceKey = { interfaceId, methodId };
      core.trace(`<- call q${a.id}${core.callText(a.traceKey, false, content)}`);
    }
    const srt = env.sendResultsTo;
    if (srt === rpc.Call_SendResultsTo.YOURSELF) a.yourself = true;
    else if (srt !== rpc.Call_SendResultsTo.CALLER) {
      // Import and release its caps (the peer's Release), as for any call we refuse.
      if (hasCapTable) for (const h of this.readCaps(env, call, capTableAt)) h?.release();
      a.complete(errOutcome(new RpcError("unimplemented", "sendResultsTo.thirdParty is not supported (Level 3)")));
      return;
    }
    const caps = hasCapTable ? this.readCaps(env, call, capTableAt) : [];
    if (this.refused(a)) {
      for (const h of caps) h?.release();
      return;
    }
    m._capnp.capTable = caps as never;
    let target: Hook;
    try {
      target = importedCap >= 0 ? core.exports.target(importedCap) : this.resolveTarget(call!.getTarget());
    } catch (e) {
      for (const h of caps) h?.release();
      throw e;
    }
    const d = new CallData(interfaceId, methodId, m, false, content, caps, a);
    target.call(d);
    target.release();
  }

  /** New references for the caps of a Call's cap table: read in place when it can (capTableAt). */
  private readCaps(env: Envelope, call: rpc.Call | null, capTableAt: number): (Hook | null)[] {
    if (capTableAt >= 0) {
      const caps = capTableIn(this.core, env.content!.segment, capTableAt);
      if (caps !== null) return caps;
    }
    return this.core.imports.readCapTable((call ?? env.root().getCall()).getParams());
  }

  /** A new reference to the target a MessageTarget names (an export, or a pipelined answer). */
  resolveTarget(t: rpc.MessageTarget): Hook {
    switch (t.which()) {
      case rpc.MessageTarget.IMPORTED_CAP:
        return this.core.exports.target(t.getImportedCap());
      case rpc.MessageTarget.PROMISED_ANSWER:
        return this.pipeline(t.getPromisedAnswer());
      default:
        throw new ProtocolError(`unknown MessageTarget kind ${t.which()}`);
    }
  }

  /** A new reference to the cap a promisedAnswer names in one of our answers (pipelining). */
  pipeline(pa: rpc.PromisedAnswer): Hook {
    const qid = pa.getQuestionId();
    const a = this.get(qid);
    if (a === undefined) {
      // A call pipelined on an answer that returned with noFinishNeeded (results without
      // capabilities), sent before the caller saw the Return: it fails, as a call on any part of
      // such results would (upstream rpc.c++ does the same).
      if (this.droppedEarly(qid)) return new BrokenHook(new RpcError("failed", "Pipeline call on a request that returned no capabilities or was already closed."));
      throw new ProtocolError(`promisedAnswer names unknown question ID ${qid}`);
    }
    const path: number[] = [];
    if (pa.hasTransform()) {
      const ops = pa.getTransform();
      const n = ops.getLength();
      for (let i = 0; i < n; i++) {
        const op = ops.get(i);
        const w = op.which();
        if (w === rpc.PromisedAnswer_Op.GET_POINTER_FIELD) path.push(op.getGetPointerField());
        else if (w !== rpc.PromisedAnswer_Op.NOOP) throw new ProtocolError(`unknown PromisedAnswer.Op ${w}`);
      }
    }
    if (a.returned && a.outcome === null && a.tailQuestion === null && !a.yourself) {
      throw new ProtocolError(`promisedAnswer on question ${qid} whose results are gone`);
    }
    return a.pipelineHook(path);
  }

  /** The peer's Finish: release result caps, end a tail question, cancel a running call. */
  handleFinish(id: number, releaseResultCaps: boolean): void {
    const core = this.core;
    const a = this.get(id);
    if (a === undefined && this.droppedEarly(id)) {
      // Our Return said noFinishNeeded; a caller may still send Finish (rpc.capnp): ignored.
      if (core.traceOn) core.trace(`<- finish q${id} (answer already dropped)`);
      this.dense![id] = undefined;
      return;
    }
    if (a === undefined || a.finished) throw new ProtocolError(`Finish for unknown question ID ${id}`);
    if (core.traceOn) core.trace(`<- finish q${id}`);
    a.finished = true;
    if (releaseResultCaps && a.resultExports !== null) {
      const re = a.resultExports;
      a.resultExports = null;
      for (const e of re) core.exports.release(e, 1);
    }
    const tq = a.tailQuestion;
    if (tq !== null) {
      a.tailQuestion = null;
      tq.holdFinish = false;
      if (tq.returned) core.questions.sendFinish(tq, false);
      else core.questions.cancel(tq);
    }
    if (!a.returned) {
      // Cancel the running call: its signal aborts; the Return says canceled at once.
      a.cancel();
      a.returned = true;
      const rs = a.redirects;
      a.redirects = null;
      if (rs !== null) for (const s of rs) s.complete(errOutcome(new CanceledError()));
      const m = newMessage(128);
      const ret = m.initRoot(rpc.Message).initReturn();
      ret.setAnswerId(id);
      ret.setReleaseParamCaps(false);
      ret.setCanceled();
      core.send(m);
    }
    if (a.hasPipes()) a.dropPipes(new RpcError("failed", "pipelined on a finished question"));
    this.removeIfDone(a);
  }

  /** Answers complete here (Answer.onComplete): send the Return (or keep results for `yourself`). */
  sendReturn(a: Answer, o: Outcome): void {
    try {
      this.sendReturnUnguarded(a, o);
    } catch (e) {
      // Should not happen (our own messages); never let it escape into a server's microtask.
      const core = this.core;
      core.log?.("error", `${core.name}: failed to send Return a${a.id}: ${String(e)}`);
      releaseOutcome(o);
      if (!a.returned && !core.ended) {
        a.returned = true;
        const m = newMessage(256);
        const ret = m.initRoot(rpc.Message).initReturn();
        ret.setAnswerId(a.id);
        ret.setReleaseParamCaps(false);
        writeException(ret.initException(), new RpcError("failed", `could not send results: ${String(e)}`));
        core.send(m);
        this.removeIfDone(a);
      }
    }
  }

  private sendReturnUnguarded(a: Answer, o: Outcome): void {
    const core = this.core;
    if (a.returned || core.ended) {
      // Canceled earlier (we already sent Return.canceled) or the connection ended.
      releaseOutcome(o);
      a.outcome = null;
      this.removeIfDone(a);
      return;
    }
    a.returned = true;
    // Which Return is a constant chosen from fields every path reads, called from one call site:
    // a warm server's calls all take returnOwn, a new connection's Bootstrap (its cap table
    // already written) returnPrepared, and a branch of its own would have no type feedback in a
    // warm process (dispatch.ts `hotMessage`).
    const plain = !a.yourself && o.err === null;
    const msg = o.msg;
    const content = o.content;
    const own = o.ret;
    const prepared = a.resultExports !== null;
    const send = !plain ? returnCopied : msg === null || content === null ? returnEmpty : !own ? returnCopied : prepared ? returnPrepared : msg === flatReturnMessage() ? returnFlat : returnOwn;
    send(this, a, o);
    this.removeIfDone(a);
  }

  /** @internal Our own results message (fast-path layout): sendable as is, or copied when it holds caps. */
  sendOwnReturn(a: Answer, o: Outcome): void {
    const core = this.core;
    const m = o.msg!;
    const keep = o.caps.length > 0;
    const early = !keep && this.mayDropEarly(a);
    setReturnHeader(m, a.id, false, early);
    if (keep) a.resultExports = core.exports.writeCapTable(new rpc.Payload(m._capnp.segments[0]!, RET.resultsPtr), o.caps);
    if (core.traceOn) core.trace(`-> return a${a.id}${a.traceKey === null ? " results" : core.callText(a.traceKey, true, o.content)}`);
    if (keep) core.transport.send(segmentCopiesOf(m));
    else {
      o.content = null; // handed to the transport (and its buffer maybe recycled)
      core.sendOwn(m);
    }
    if (early) this.dropEarly(a);
  }

  /** @internal Results in the thread's flat Return (flat-return.ts: no caps); the caller releases it. */
  sendFlatReturnOf(a: Answer, o: Outcome): void {
    const core = this.core;
    const early = this.mayDropEarly(a);
    if (core.traceOn) core.trace(`-> return a${a.id}${a.traceKey === null ? " results" : core.callText(a.traceKey, true, o.content)}`);
    o.content = null; // the buffer is the next call's once the transport has copied it
    sendFlatReturn(a.id, early, core.transport);
    if (early) this.dropEarly(a);
  }

  /** @internal Our own results message whose cap table is written (the Bootstrap's): sent as a copy. */
  sendPreparedReturn(a: Answer, o: Outcome): void {
    const core = this.core;
    const m = o.msg!;
    setReturnHeader(m, a.id, false, false);
    if (core.traceOn) core.trace(`-> return a${a.id}${a.traceKey === null ? " results" : core.callText(a.traceKey, true, o.content)}`);
    core.transport.send(segmentCopiesOf(m));
  }

  /** @internal Empty results (no message or no content). */
  sendEmptyReturn(a: Answer, o: Outcome): void {
    const core = this.core;
    const m = newReturnMessage(null, 0).msg;
    const early = o.caps.length === 0 && this.mayDropEarly(a);
    setReturnHeader(m, a.id, false, early);
    if (core.traceOn) core.trace(`-> return a${a.id}${a.traceKey === null ? " results" : core.callText(a.traceKey, true, null)}`);
    core.sendOwn(m);
    if (early) this.dropEarly(a);
  }

  /** @internal Anything else: an exception, `yourself`, results to copy (the Bootstrap's). */
  sendCopiedReturn(a: Answer, o: Outcome): void {
    this.core.send(this.slowReturn(a, o));
  }

  /**
   * Whether the Return of `a` (results without capabilities, sent to the caller) may say
   * `noFinishNeeded` and `a` be dropped at once, as upstream's rpc.c++ does for such results:
   * nothing is left for a Finish to release or cancel, and a call pipelined on them fails either
   * way. Only for dense IDs (their slot remembers the drop, see {@link droppedEarly}), and not
   * for an answer still referenced as a tail call's or with pipelined promises.
   */
  private mayDropEarly(a: Answer): boolean {
    return a.id < DENSE_IDS && !a.finished && a.tailQuestion === null && a.redirects === null && !a.hasPipes() && this.dense![a.id] === a;
  }

  /** `a` returned with noFinishNeeded: drop it now, as its Finish would (the slot remembers it). */
  private dropEarly(a: Answer): void {
    a.finished = true;
    this.dense![a.id] = null;
    this.count--;
    const o = a.outcome;
    if (o !== null) releaseOutcome(o);
  }

  /** The Return for anything but our own results message: exception, yourself, copied results. */
  private slowReturn(a: Answer, o: Outcome): capnp.Message {
    let m = newMessage(256);
    let ret: rpc.Return;
    if (a.yourself) {
      ret = m.initRoot(rpc.Message).initReturn();
      ret.setResultsSentElsewhere();
      const rs = a.redirects;
      a.redirects = null;
      if (rs !== null) for (const s of rs) s.complete(cloneOutcome(o));
    } else if (o.err !== null) {
      ret = m.initRoot(rpc.Message).initReturn();
      writeException(ret.initException(), o.err, this.core.errorStacks);
    } else if (o.msg === null || o.content === null) {
      ret = m.initRoot(rpc.Message).initReturn();
      ret.initResults();
    } else {
      m = cloneMessage(o.msg);
      ret = new rpc.Message(m.getSegment(0), 0).getReturn();
      a.resultExports = this.core.exports.writeCapTable(ret.getResults(), o.caps);
    }
    ret.setAnswerId(a.id);
    ret.setReleaseParamCaps(false);
    // A copied Return (results another connection returned to us) keeps its flags: this answer
    // is still in the table and waits for its Finish.
    ret.setNoFinishNeeded(false);
    const core = this.core;
    if (core.traceOn) {
      const key = a.traceKey;
      const which = ret.which();
      if (which === rpc.Return.RESULTS && key !== null) {
        core.trace(`-> return a${a.id}${core.callText(key, true, ret.getResults().getContent())}`);
      } else {
        const ex = which === rpc.Return.EXCEPTION ? `: ${ret.getException().getReason()}` : "";
        core.trace(`-> return a${a.id}${key === null ? "" : core.callText(key, true, null)} ${RETURN_WHICH[which] ?? "?"}${ex}`);
      }
    }
    return m;
  }

  /** TailCallHandler: send `d` with sendResultsTo.yourself if `answerSink` is ours and target is on us. */
  tryTailCall(answerSink: Sink, target: Hook, d: CallData): boolean {
    const core = this.core;
    if (!(answerSink instanceof Answer) || answerSink.table !== this || core.ended) return false;
    const a = answerSink;
    if (a.returned || a.yourself || a.canceled) return false;
    const r = target.resolved();
    const questions = core.questions;
    let q: Question | null = null;
    if (r instanceof ImportHook && r.core === core) {
      q = questions.send(d, r.id, -1, null, true);
    } else if (r instanceof PromiseHook && r.route !== null && r.route.conn === questions) {
      const route = r.route;
      q = route.importHook !== null
        ? questions.send(d, route.importId, -1, null, true)
        : questions.send(d, -1, route.qid, route.path, true);
    } else return false;
    if (q === null) {
      // Could not send it: the tail call's error is this call's result.
      const err = d.sink.outcome?.err ?? new RpcError("failed", "tail call could not be sent");
      a.complete(errOutcome(err));
      return true;
    }
    a.tailQuestion = q;
    a.returned = true;
    a.setRoute(questions, q.id);
    a.cancelHandler = null;
    const m = newMessage(128);
    const ret = m.initRoot(rpc.Message).initReturn();
    ret.setAnswerId(a.id);
    ret.setReleaseParamCaps(false);
    ret.setTakeFromOtherQuestion(q.id);
    if (core.traceOn) core.trace(`-> return a${a.id} takeFromOtherQuestion q${q.id}`);
    core.send(m);
    this.removeIfDone(a);
    return true;
  }

  /** Connection end: running calls see their signal abort; kept results are released. */
  shutdown(dErr: RpcError): void {
    const as = [...this.sparse.values()];
    if (this.sparse !== EMPTY) this.sparse.clear();
    for (const a of this.dense ?? []) if (a !== undefined && a !== null) as.push(a);
    this.dense = null;
    this.count = 0;
    for (const a of as) {
      a.finished = true;
      if (!a.returned) {
        a.cancel();
        a.returned = true;
      }
      const rs = a.redirects;
      a.redirects = null;
      if (rs !== null) for (const s of rs) s.complete(errOutcome(dErr));
      a.dropPipes(dErr);
      const o = a.outcome;
      if (o !== null) releaseOutcome(o);
    }
  }

  releaseBootstrap(): void {
    const bh = this.bootstrapHook;
    this.bootstrapHook = null;
    if (bh !== null) this.core.releaseRef(bh);
  }
}

/**
 * The cap table of a Call read straight from the segment (the list pointer at byte `q`): new
 * references, as ImportTable.readCapTable gives, for descriptors that name an id (none,
 * senderHosted, senderPromise, receiverHosted: every cap table this runtime sends). Null for
 * anything else (a receiverAnswer or thirdPartyHosted descriptor, an unusual layout): the caller
 * reads it through capnp-ts, which also reports what is wrong.
 */
function capTableIn(core: ConnCore, seg: capnp.Pointer["segment"], q: number): (Hook | null)[] | null {
  const dv = dataViewOf(seg);
  const len = seg.byteLength;
  if (q + 8 > len) return null;
  const lo = dv.getUint32(q, true);
  const hi = dv.getUint32(q + 4, true);
  if ((lo & 3) !== 1 || (hi & 7) !== 7) return null; // a list of structs (inline composite)
  const t = q + 8 + ((lo | 0) >> 2) * 8;
  if (t < seg.byteOffset || t + 8 > len) return null;
  const tlo = dv.getUint32(t, true);
  const thi = dv.getUint32(t + 4, true);
  const n = tlo >>> 2;
  const dw = thi & 0xffff;
  const stride = (dw + (thi >>> 16)) * 8;
  if ((tlo & 3) !== 0 || dw < 1 || n * stride > (hi >>> 3) * 8 || t + 8 + n * stride > len) return null;
  for (let i = 0, e = t + 8; i < n; i++, e += stride) if (dv.getUint16(e, true) > rpc.CapDescriptor.RECEIVER_HOSTED) return null;
  const caps: (Hook | null)[] = new Array(n);
  let i = 0;
  try {
    for (let e = t + 8; i < n; i++, e += stride) {
      const w = dv.getUint16(e, true);
      const id = dv.getUint32(e + 4, true);
      caps[i] = w === rpc.CapDescriptor.NONE
        ? null
        : w === rpc.CapDescriptor.RECEIVER_HOSTED
          ? core.exports.receiverHosted(id)
          : core.imports.importCap(id, w === rpc.CapDescriptor.SENDER_PROMISE);
    }
  } catch (err) {
    for (let j = 0; j < i; j++) caps[j]?.release();
    throw err;
  }
  return caps;
}

/** The Returns of {@link AnswerTable.sendReturn} (see sendReturnUnguarded). */
const putAnswer = (t: AnswerTable, a: Answer): void => t.addWithin(a);
const growAnswers = (t: AnswerTable, a: Answer): void => t.addGrowing(a);
const returnOwn = (t: AnswerTable, a: Answer, o: Outcome): void => t.sendOwnReturn(a, o);
const returnFlat = (t: AnswerTable, a: Answer, o: Outcome): void => t.sendFlatReturnOf(a, o);
const returnEmpty = (t: AnswerTable, a: Answer, o: Outcome): void => t.sendEmptyReturn(a, o);
const returnPrepared = (t: AnswerTable, a: Answer, o: Outcome): void => t.sendPreparedReturn(a, o);
const returnCopied = (t: AnswerTable, a: Answer, o: Outcome): void => t.sendCopiedReturn(a, o);
