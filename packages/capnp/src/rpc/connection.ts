/**
 * RpcConnection: the Cap'n Proto RPC Level 1 two-party protocol over one {@link Transport}.
 *
 * Four tables, as in rpc.capnp: questions (calls we made, by our QuestionId), answers (calls the
 * peer made, by its QuestionId), exports (our caps the peer holds, by our ExportId, with the
 * number of times we sent each) and imports (the peer's caps we hold, by its ExportId, with the
 * number of times we received each). Plus embargoes we started.
 *
 * Threading: one connection belongs to the thread that created it; all methods run there.
 * After the connection ends (close, abort, Abort received, protocol error, transport end) every
 * pending and later call rejects with DisconnectedError, answers' signals abort, exports are
 * released (servers get onRelease), imports are dropped from the table (their handles stay
 * valid objects whose calls fail).
 */

import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { setInterfacePointer } from "capnp-ts/src/serialization/pointers/pointer.js";
import { DisconnectedError, ProtocolError, RpcError, CanceledError, deferred, toRpcError } from "../errors.js";
import type { ErrorKind } from "../errors.js";
import type { Transport } from "../transport.js";
import { resolveLimits, type ReaderLimits } from "../limits.js";
import { validateRpcMessage } from "../validate.js";
import {
  CALL,
  Envelope,
  MSG_CALL,
  MSG_FINISH,
  MSG_RELEASE,
  MSG_RETURN,
  RET,
  dataViewOf,
  decodeControl,
  decodeEnvelope,
  decodeEnvelopeSlow,
  encodeFinish,
  encodeRelease,
  newReturnMessage,
  setReturnHeader,
} from "../fastpath.js";
import {
  BrokenHook,
  CallData,
  CapHandle,
  Hook,
  PromiseHook,
  Sink,
  NullHook,
  cloneMessage,
  cloneOutcome,
  errOutcome,
  hookOf,
  messageFromBuffers,
  newMessage,
  releaseOutcome,
  segmentCopiesOf,
  segmentsOf,
  setTailHandlerLookup,
} from "./capability.js";
import type { Capability, Outcome, Route, RouteConn, TailCallHandler } from "./capability.js";

export interface RpcConnectionOptions {
  /** What we serve on Bootstrap (we keep our own reference until the connection ends). */
  bootstrap?: Capability;
  limits?: Partial<ReaderLimits>;
  name?: string;
  log?: (level: "trace" | "debug" | "info" | "warning" | "error", msg: string) => void;
}

export interface RpcStats {
  questions: number;
  answers: number;
  imports: number;
  exports: number;
  embargoes: number;
}

const KINDS: readonly ErrorKind[] = ["failed", "overloaded", "disconnected", "unimplemented"];

function errorFromException(e: rpc.Exception): RpcError {
  const kind = KINDS[e.getType()] ?? "failed";
  const reason = e.getReason();
  if (kind === "disconnected") return new DisconnectedError(reason, { remote: true });
  return new RpcError(kind, reason, { remote: true });
}

function writeException(ex: rpc.Exception, err: Error): void {
  const e = toRpcError(err);
  ex.setReason(e.message);
  ex.setType(KINDS.indexOf(e.kind) as rpc.Exception_Type);
}

/** A capability hosted by the peer. Refs = local holders; `remoteRefs` = times the peer sent it. */
class ImportHook extends Hook {
  remoteRefs = 1;
  /** The promise wrapper when the peer sent it as senderPromise (weak: no reference). */
  promise: PromiseHook | null = null;
  constructor(
    readonly conn: RpcConnection,
    readonly id: number,
  ) {
    super();
  }
  protected destroy(): void {
    this.conn._releaseImport(this);
  }
  call(d: CallData): void {
    this.conn._sendCallToImport(d, this);
  }
  override remoteConn(): RouteConn {
    return this.conn;
  }
}

/** A call we made. It is also its sink's cancel handler (no per-call closure). */
class Question {
  returned = false;
  finishSent = false;
  /** We sent Finish before Return with releaseResultCaps: ignore the results' caps. */
  discardResults = false;
  constructor(
    readonly conn: RpcConnection,
    readonly id: number,
    readonly sink: Sink,
    /** Finish is held back until released (tail-call questions, held by their answer). */
    public holdFinish: boolean,
    /** We sent `sendResultsTo.yourself`. */
    readonly tail: boolean,
    /** Exports we added for the params' cap table (released if Return.releaseParamCaps). */
    public paramExports: number[] | null,
    readonly isBootstrap: boolean,
  ) {}
  onCancel(): void {
    this.conn._cancelQuestion(this);
  }
}

interface ExportEntry {
  id: number;
  hook: Hook;
  refcount: number;
  /** The key in exportByHook. */
  key: Hook;
}

interface Embargo {
  id: number;
  hook: PromiseHook;
  target: Hook;
}

/** A call the peer made (or its bootstrap request). */
class Answer extends Sink {
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
  constructor(
    readonly conn: RpcConnection,
    readonly id: number,
  ) {
    super();
  }
  protected onComplete(o: Outcome): void {
    this.conn._sendReturn(this, o);
  }
}

const NOOP = (): void => {};

/**
 * The decoded envelope of the message being handled, shared by all connections of this thread:
 * transports never deliver a message from inside another message's handling, so only one is
 * in use at a time (handlers read what they need before anything can run user code).
 */
const ENV = new Envelope();

/** The empty table every connection starts with (see RpcConnection.questions); never written. */
class EmptyMap extends Map<never, never> {
  override set(): this {
    throw new Error("internal error: write to the shared empty table");
  }
}
const EMPTY: ReadonlyMap<unknown, unknown> = new EmptyMap();

/** What a connection gives its transport: one small object instead of two closures. */
class ConnSink {
  constructor(private readonly conn: RpcConnection) {}
  message(segments: Uint8Array[]): void {
    this.conn["onMessage"](segments);
  }
  closed(err: Error | undefined): void {
    this.conn["onTransportClosed"](err);
  }
}

export class RpcConnection implements RouteConn, TailCallHandler {
  private readonly transport: Transport;
  private readonly limits: ReaderLimits;
  private readonly log: RpcConnectionOptions["log"];
  readonly name: string;
  private bootstrapHook: Hook | null;

  // The tables start as the shared EMPTY map (read-only) and get a Map of their own on their
  // first entry: an idle connection keeps only the ones it used (an empty Map is ~200 bytes).
  private questions = EMPTY as Map<number, Question>;
  private readonly freeQuestionIds: number[] = [];
  private nextQuestionId = 0;
  private answers = EMPTY as Map<number, Answer>;
  private exports = EMPTY as Map<number, ExportEntry>;
  private exportByHook = EMPTY as Map<Hook, ExportEntry>;
  private readonly freeExportIds: number[] = [];
  private nextExportId = 0;
  private imports = EMPTY as Map<number, ImportHook>;
  private embargoes = EMPTY as Map<number, Embargo>;
  private nextEmbargoId = 0;

  private ended = false;
  private endError: Error | undefined;
  private readonly closedD = deferred<Error | undefined>();
  private closeCbs: ((err: Error | undefined) => void)[] = [];
  /** Settles once the connection has ended; never rejects. */
  readonly closed: Promise<Error | undefined>;

  constructor(transport: Transport, opts: RpcConnectionOptions = {}) {
    this.transport = transport;
    this.limits = resolveLimits(opts.limits);
    this.log = opts.log;
    this.name = opts.name ?? "rpc";
    this.bootstrapHook = opts.bootstrap === undefined ? null : hookOf(opts.bootstrap).addRef();
    this.closed = this.closedD.promise;
    transport.start(new ConnSink(this));
  }

  get isClosed(): boolean {
    return this.ended;
  }

  stats(): RpcStats {
    return {
      questions: this.questions.size,
      answers: this.answers.size,
      imports: this.imports.size,
      exports: this.exports.size,
      embargoes: this.embargoes.size,
    };
  }

  onClose(cb: (err: Error | undefined) => void): () => void {
    if (this.ended) {
      let live = true;
      const err = this.endError;
      queueMicrotask(() => {
        if (live) cb(err);
      });
      return () => {
        live = false;
      };
    }
    this.closeCbs.push(cb);
    return () => {
      const i = this.closeCbs.indexOf(cb);
      if (i >= 0) this.closeCbs.splice(i, 1);
    };
  }

  private onTransportClosed(err: Error | undefined): void {
    if (this.ended) return;
    if (err instanceof ProtocolError) {
      // The transport refused the peer's bytes (framing, limits). If its write side still
      // works, tell the peer why, as C++ does; otherwise this send is dropped.
      this.log?.("error", `${this.name}: transport protocol error: ${err.message}`);
      this.sendAbort(err);
      this.shutdown(err, false);
      this.transport.close().then(NOOP, NOOP);
      return;
    }
    this.shutdown(err, false);
  }

  /** The peer's bootstrap capability (pipelinable: calls go out before the Return). */
  bootstrap(): Capability {
    if (this.ended) return new CapHandle(new BrokenHook(this.disconnectedError()));
    const id = this.allocQuestion();
    const sink = new BootstrapSink();
    const q = new Question(this, id, sink, false, false, null, true);
    (this.questions === EMPTY ? (this.questions = new Map()) : this.questions).set(id, q);
    sink.setRoute(this, id);
    const hook = sink.pipelineHook([]);
    sink.cancelHandler = null;
    const m = newMessage(128);
    m.initRoot(rpc.Message).initBootstrap().setQuestionId(id);
    this.send(m);
    return new CapHandle(hook);
  }

  /** Flush, end; pending and later calls reject with DisconnectedError. */
  close(reason?: Error): Promise<void> {
    if (!this.ended) this.shutdown(reason, true);
    return this.transport.close().then(NOOP, NOOP);
  }

  /** Send Abort with `reason`, then end. */
  abort(reason: Error): void {
    if (this.ended) return;
    this.sendAbort(reason);
    this.shutdown(reason, true);
    this.transport.close().then(NOOP, NOOP);
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  private send(m: capnp.Message): void {
    if (this.ended) return;
    this.transport.send(segmentsOf(m));
  }

  private trace(msg: string): void {
    this.log?.("trace", `${this.name}: ${msg}`);
  }

  private disconnectedError(): DisconnectedError {
    const e = this.endError;
    if (e instanceof DisconnectedError) return e;
    return new DisconnectedError(e === undefined ? "connection closed" : `connection closed: ${e.message}`, {
      cause: e,
    });
  }

  private allocQuestion(): number {
    const id = this.freeQuestionIds.pop();
    return id === undefined ? this.nextQuestionId++ : id;
  }

  private removeQuestionIfDone(q: Question): void {
    if (q.returned && q.finishSent && this.questions.get(q.id) === q) {
      this.questions.delete(q.id);
      this.freeQuestionIds.push(q.id);
    }
  }

  private sendFinish(q: Question, releaseResultCaps: boolean): void {
    if (q.finishSent) return;
    q.finishSent = true;
    if (!this.ended) this.transport.send([encodeFinish(q.id, releaseResultCaps)]);
    this.removeQuestionIfDone(q);
  }

  /** RouteConn: send a call to a promise's route (import promise or promised answer). */
  sendCall(d: CallData, route: Route): void {
    if (route.importHook !== null) this.sendCallTo(d, route.importId, -1, null, false);
    else this.sendCallTo(d, -1, route.qid, route.path, false);
  }

  /** @internal */
  _sendCallToImport(d: CallData, imp: ImportHook): void {
    this.sendCallTo(d, imp.id, -1, null, false);
  }

  /** Send `d` as a Call to importedCap `importId` (>= 0) or promisedAnswer(qid, path). Owns `d`. */
  private sendCallTo(d: CallData, importId: number, qid: number, path: readonly number[] | null, yourself: boolean): Question | null {
    try {
      return this.sendCallToUnguarded(d, importId, qid, path, yourself);
    } catch (e) {
      this.log?.("error", `${this.name}: failed to send a Call: ${String(e)}`);
      d.releaseCaps();
      d.sink.complete(errOutcome(toRpcError(e)));
      return null;
    }
  }

  private sendCallToUnguarded(d: CallData, importId: number, qid: number, path: readonly number[] | null, yourself: boolean): Question | null {
    if (this.ended) {
      d.releaseCaps();
      d.sink.complete(errOutcome(this.disconnectedError()));
      return null;
    }
    if (d.sink.canceled) {
      d.releaseCaps();
      d.sink.complete(errOutcome(new CanceledError()));
      return null;
    }
    let m: capnp.Message;
    let paramExports: number[] | null = null;
    const id = this.allocQuestion();
    if (d.own && !d.sent) {
      // Our own Call (fast-path layout): the target struct is already there.
      m = d.msg;
      const seg = m._capnp.segments[0]!;
      const dv = dataViewOf(seg);
      d.sent = true;
      if (importId >= 0) {
        dv.setUint32(CALL.importedCap, importId, true);
      } else {
        writePromisedAnswer(new rpc.MessageTarget(seg, CALL.targetPtr).initPromisedAnswer(), qid, path!);
      }
      if (yourself) dv.setUint16(CALL.sendResultsTo, rpc.Call_SendResultsTo.YOURSELF, true);
      dv.setUint32(CALL.qid, id, true);
      if (d.caps.length > 0) {
        try {
          paramExports = this.writeCapTable(new rpc.Payload(seg, CALL.paramsPtr), d.caps);
        } catch (e) {
          this.freeQuestionIds.push(id);
          throw e;
        } finally {
          d.releaseCaps();
        }
      }
    } else {
      m = cloneMessage(d.msg);
      const call = new rpc.Message(m.getSegment(0), 0).getCall();
      if (!d.own) {
        // An incoming Call: reset what we must not forward.
        call.getSendResultsTo().setCaller();
      }
      d.sent = true;
      const t = call.initTarget();
      if (importId >= 0) t.setImportedCap(importId);
      else writePromisedAnswer(t.initPromisedAnswer(), qid, path!);
      if (yourself) call.getSendResultsTo().setYourself();
      try {
        paramExports = this.writeCapTable(call.getParams(), d.caps);
      } catch (e) {
        this.freeQuestionIds.push(id);
        throw e;
      } finally {
        d.releaseCaps();
      }
      call.setQuestionId(id);
    }
    const q = new Question(this, id, d.sink, yourself, yourself, paramExports, false);
    (this.questions === EMPTY ? (this.questions = new Map()) : this.questions).set(id, q);
    if (!yourself) {
      d.sink.setRoute(this, id);
      d.sink.cancelHandler = q;
    }
    if (this.log !== undefined) this.trace(`-> call q${id} ${d.interfaceId.toString(16)}/${d.methodId}`);
    this.send(m);
    return q;
  }

  /** @internal */
  _cancelQuestion(q: Question): void {
    if (q.returned || q.finishSent) return;
    q.discardResults = true;
    this.sendFinish(q, true);
  }

  /** Write CapDescriptors for `caps` into `payload`; returns the export ids added (or null). */
  private writeCapTable(payload: rpc.Payload, caps: readonly (Hook | null)[]): number[] | null {
    const n = caps.length;
    if (n === 0) return null;
    const list = payload.initCapTable(n);
    let exp: number[] | null = null;
    for (let i = 0; i < n; i++) {
      const id = this.writeDescriptor(list.get(i), caps[i] ?? null);
      if (id >= 0) (exp ??= []).push(id);
    }
    return exp;
  }

  /** Describe `hook` for the peer. Returns the export id if an export reference was added, else -1. */
  private writeDescriptor(desc: rpc.CapDescriptor, hook: Hook | null): number {
    if (hook === null) {
      desc.setNone();
      return -1;
    }
    const r = hook.resolved();
    if (r instanceof ImportHook && r.conn === this) {
      desc.setReceiverHosted(r.id);
      return -1;
    }
    if (r instanceof PromiseHook && r.route !== null && r.route.conn === this) {
      const route = r.route;
      if (route.importHook !== null) desc.setReceiverHosted(route.importId);
      else writePromisedAnswer(desc.initReceiverAnswer(), route.qid, route.path);
      return -1;
    }
    if (r.isNullCap()) {
      desc.setNone();
      return -1;
    }
    const e = this.exportHook(r);
    if (r instanceof PromiseHook) desc.setSenderPromise(e.id);
    else desc.setSenderHosted(e.id);
    return e.id;
  }

  private exportHook(h: Hook): ExportEntry {
    let e = this.exportByHook.get(h);
    if (e !== undefined) {
      e.refcount++;
      return e;
    }
    const free = this.freeExportIds.pop();
    const id = free === undefined ? this.nextExportId++ : free;
    e = { id, hook: h.addRef(), refcount: 1, key: h };
    (this.exports === EMPTY ? (this.exports = new Map()) : this.exports).set(id, e);
    (this.exportByHook === EMPTY ? (this.exportByHook = new Map()) : this.exportByHook).set(h, e);
    if (h instanceof PromiseHook) {
      const entry = e;
      h.onResolved((res) => this.exportResolved(entry, res));
    }
    return e;
  }

  /** One of our promise exports resolved: send Resolve, and point the export at the resolution. */
  private exportResolved(e: ExportEntry, res: Hook): void {
    if (this.ended || this.exports.get(e.id) !== e) return;
    const m = newMessage(128);
    m._capnp.capTable = [];
    const r = m.initRoot(rpc.Message).initResolve();
    r.setPromiseId(e.id);
    const err = res.resolved().brokenError();
    if (err !== null) writeException(r.initException(), err);
    else this.writeDescriptor(r.initCap(), res);
    // Later calls and Disembargoes aimed at this export go straight to the resolution.
    const old = e.hook;
    e.hook = res.addRef();
    old.release();
    this.send(m);
  }

  private releaseExport(id: number, count: number): void {
    const e = this.exports.get(id);
    if (e === undefined) throw new ProtocolError(`Release of unknown export ID ${id}`);
    if (count > e.refcount) throw new ProtocolError(`Release of export ${id} by ${count}, more than its ${e.refcount} references`);
    e.refcount -= count;
    if (e.refcount === 0) {
      this.exports.delete(id);
      if (this.exportByHook.get(e.key) === e) this.exportByHook.delete(e.key);
      this.freeExportIds.push(id);
      e.hook.release();
    }
  }

  /** @internal ImportHook refs reached zero: send one Release with the accumulated count. */
  _releaseImport(imp: ImportHook): void {
    if (this.imports.get(imp.id) !== imp) return; // connection ended or replaced
    this.imports.delete(imp.id);
    if (this.ended) return;
    if (this.log !== undefined) this.trace(`-> release ${imp.id} x${imp.remoteRefs}`);
    this.transport.send([encodeRelease(imp.id, imp.remoteRefs)]);
  }

  /** @internal Answers complete here: send the Return (or keep results for `yourself`). */
  _sendReturn(a: Answer, o: Outcome): void {
    try {
      this.sendReturnUnguarded(a, o);
    } catch (e) {
      // Should not happen (our own messages); never let it escape into a server's microtask.
      this.log?.("error", `${this.name}: failed to send Return a${a.id}: ${String(e)}`);
      releaseOutcome(o);
      if (!a.returned && !this.ended) {
        a.returned = true;
        const m = newMessage(256);
        const ret = m.initRoot(rpc.Message).initReturn();
        ret.setAnswerId(a.id);
        ret.setReleaseParamCaps(false);
        writeException(ret.initException(), new RpcError("failed", `could not send results: ${String(e)}`));
        this.send(m);
        this.maybeRemoveAnswer(a);
      }
    }
  }

  private sendReturnUnguarded(a: Answer, o: Outcome): void {
    if (a.returned || this.ended) {
      // Canceled earlier (we already sent Return.canceled) or the connection ended.
      releaseOutcome(o);
      a.outcome = null;
      this.maybeRemoveAnswer(a);
      return;
    }
    a.returned = true;
    if (!a.yourself && o.err === null && o.msg !== null && o.content !== null && o.ret) {
      // Our own results message (fast-path layout): sendable as is, or copied when it holds caps.
      const m = o.msg;
      setReturnHeader(m, a.id, false);
      const keep = o.caps.length > 0;
      if (keep) a.resultExports = this.writeCapTable(new rpc.Payload(m._capnp.segments[0]!, RET.resultsPtr), o.caps);
      if (this.log !== undefined) this.trace(`-> return a${a.id} results`);
      if (keep) this.transport.send(segmentCopiesOf(m));
      else {
        o.content = null; // handed to the transport
        this.send(m);
      }
      this.maybeRemoveAnswer(a);
      return;
    }
    if (!a.yourself && o.err === null && (o.msg === null || o.content === null)) {
      const m = newReturnMessage(null, 0).msg;
      setReturnHeader(m, a.id, false);
      if (this.log !== undefined) this.trace(`-> return a${a.id} results`);
      this.send(m);
      this.maybeRemoveAnswer(a);
      return;
    }
    const m0 = newMessage(256);
    let m = m0;
    let ret: rpc.Return;
    if (a.yourself) {
      ret = m.initRoot(rpc.Message).initReturn();
      ret.setResultsSentElsewhere();
      const rs = a.redirects;
      a.redirects = null;
      if (rs !== null) for (const s of rs) s.complete(cloneOutcome(o));
    } else if (o.err !== null) {
      ret = m.initRoot(rpc.Message).initReturn();
      writeException(ret.initException(), o.err);
    } else if (o.msg === null || o.content === null) {
      ret = m.initRoot(rpc.Message).initReturn();
      ret.initResults();
    } else {
      m = cloneMessage(o.msg);
      ret = new rpc.Message(m.getSegment(0), 0).getReturn();
      a.resultExports = this.writeCapTable(ret.getResults(), o.caps);
    }
    ret.setAnswerId(a.id);
    ret.setReleaseParamCaps(false);
    if (this.log !== undefined) this.trace(`-> return a${a.id} ${Return_WHICH[ret.which()] ?? "?"}`);
    this.send(m);
    this.maybeRemoveAnswer(a);
  }

  private maybeRemoveAnswer(a: Answer): void {
    if (a.returned && a.finished && this.answers.get(a.id) === a) {
      this.answers.delete(a.id);
      const o = a.outcome;
      if (o !== null) releaseOutcome(o);
    }
  }

  /** RouteConn: a promise that sent calls over us resolved to `target` elsewhere. */
  startEmbargo(route: Route, target: Hook): Hook {
    if (this.ended) return target;
    const id = this.nextEmbargoId++;
    const hook = new PromiseHook();
    (this.embargoes === EMPTY ? (this.embargoes = new Map()) : this.embargoes).set(id, { id, hook, target });
    const m = newMessage(128);
    const d = m.initRoot(rpc.Message).initDisembargo();
    const t = d.initTarget();
    if (route.importHook !== null) t.setImportedCap(route.importId);
    else writePromisedAnswer(t.initPromisedAnswer(), route.qid, route.path);
    d.getContext().setSenderLoopback(id);
    if (this.log !== undefined) this.trace(`-> disembargo senderLoopback ${id}`);
    this.send(m);
    return hook.addRef();
  }

  /** TailCallHandler: send `d` with sendResultsTo.yourself if `answerSink` is ours and target is on us. */
  tryTailCall(answerSink: Sink, target: Hook, d: CallData): boolean {
    if (!(answerSink instanceof Answer) || answerSink.conn !== this || this.ended) return false;
    const a = answerSink;
    if (a.returned || a.yourself || a.canceled) return false;
    const r = target.resolved();
    let q: Question | null = null;
    if (r instanceof ImportHook && r.conn === this) {
      q = this.sendCallTo(d, r.id, -1, null, true);
    } else if (r instanceof PromiseHook && r.route !== null && r.route.conn === this) {
      const route = r.route;
      q = route.importHook !== null
        ? this.sendCallTo(d, route.importId, -1, null, true)
        : this.sendCallTo(d, -1, route.qid, route.path, true);
    } else return false;
    if (q === null) {
      // Could not send it: the tail call's error is this call's result.
      const err = d.sink.outcome?.err ?? new RpcError("failed", "tail call could not be sent");
      a.complete(errOutcome(err));
      return true;
    }
    a.tailQuestion = q;
    a.returned = true;
    a.setRoute(this, q.id);
    a.cancelHandler = null;
    const m = newMessage(128);
    const ret = m.initRoot(rpc.Message).initReturn();
    ret.setAnswerId(a.id);
    ret.setReleaseParamCaps(false);
    ret.setTakeFromOtherQuestion(q.id);
    if (this.log !== undefined) this.trace(`-> return a${a.id} takeFromOtherQuestion q${q.id}`);
    this.send(m);
    this.maybeRemoveAnswer(a);
    return true;
  }

  private sendAbort(reason: Error): void {
    if (this.ended) return;
    const m = newMessage(128);
    writeException(m.initRoot(rpc.Message).initAbort(), reason);
    this.send(m);
  }

  // -------------------------------------------------------------------------------------------
  // Receiving

  private onMessage(segments: Uint8Array[]): void {
    if (this.ended) return;
    try {
      validateRpcMessage(segments, this.limits);
      const env = ENV;
      if (decodeControl(segments[0]!, env)) {
        // Finish/Release: read from the view as is (no copy, no capnp-ts message).
        this.handle(env, null);
        return;
      }
      const bufs: ArrayBuffer[] = new Array(segments.length);
      for (let i = 0; i < segments.length; i++) {
        const s = segments[i]!;
        // capnp-ts segments must be a whole ArrayBuffer. A segment that is one (the stream
        // decoder's own buffer for a message that spanned chunks, a memory transport's sent
        // segment) is ours by the Transport contract and is used as is: nobody writes into it
        // again. A view into a larger buffer (a chunk holding several messages, a pooled Node
        // Buffer) is copied: the rest of that buffer is not ours.
        const b = s.buffer;
        if (b instanceof ArrayBuffer) {
          bufs[i] = s.byteOffset === 0 && s.byteLength === b.byteLength ? b : b.slice(s.byteOffset, s.byteOffset + s.byteLength);
        } else bufs[i] = new Uint8Array(s).buffer as ArrayBuffer; // a SharedArrayBuffer view: copy
      }
      const m = messageFromBuffers(bufs);
      m._capnp.traversalLimit = Infinity; // validateMessage enforced ours
      const seg = m._capnp.segments[0]!;
      env.reset(seg, this.limits.nestingLimit);
      if (!decodeEnvelope(seg, this.limits.nestingLimit, env)) {
        const root = new rpc.Message(seg, 0, this.limits.nestingLimit);
        env.reset(seg, this.limits.nestingLimit, root);
        decodeEnvelopeSlow(root, env);
      }
      this.handle(env, m);
    } catch (e) {
      const err = e instanceof ProtocolError
        ? e
        : new ProtocolError(`malformed or invalid message: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      this.log?.("error", `${this.name}: protocol error: ${err.message}`);
      this.protocolFail(err);
    }
  }

  private protocolFail(err: ProtocolError): void {
    if (this.ended) return;
    this.sendAbort(err);
    this.shutdown(err, true);
    this.transport.close().then(NOOP, NOOP);
  }

  /** `m` is null only for Finish/Release decoded by decodeControl. */
  private handle(env: Envelope, m: capnp.Message | null): void {
    const which = env.which;
    switch (which) {
      case MSG_CALL:
        this.handleCall(env, m!);
        return;
      case MSG_RETURN:
        this.handleReturn(env, m!);
        return;
      case MSG_FINISH:
        this.handleFinish(env.id, env.releaseResultCaps);
        return;
      case MSG_RELEASE: {
        if (this.log !== undefined) this.trace(`<- release ${env.id} x${env.referenceCount}`);
        this.releaseExport(env.id, env.referenceCount);
        return;
      }
    }
    const root = env.root();
    switch (which) {
      case rpc.Message.RESOLVE:
        this.handleResolve(root.getResolve(), m!);
        return;
      case rpc.Message.BOOTSTRAP:
        this.handleBootstrap(root.getBootstrap());
        return;
      case rpc.Message.DISEMBARGO:
        this.handleDisembargo(root.getDisembargo(), root);
        return;
      case rpc.Message.ABORT: {
        const err = errorFromException(root.getAbort());
        this.log?.("warning", `${this.name}: peer aborted: ${err.message}`);
        this.shutdown(err, true);
        this.transport.close().then(NOOP, NOOP);
        return;
      }
      case rpc.Message.UNIMPLEMENTED:
        this.handleUnimplemented(root.getUnimplemented());
        return;
      default:
        this.sendUnimplemented(root);
        return;
    }
  }

  private sendUnimplemented(root: rpc.Message): void {
    this.log?.("warning", `${this.name}: unimplemented message ${root.which()}`);
    const m = newMessage(128);
    const out = m.initRoot(rpc.Message);
    try {
      out.setUnimplemented(root);
    } catch {
      out.initUnimplemented();
    }
    this.send(m);
  }

  private readCapTable(payload: rpc.Payload): (Hook | null)[] {
    if (!payload.hasCapTable()) return [];
    const list = payload.getCapTable();
    const n = list.getLength();
    const caps: (Hook | null)[] = new Array(n);
    let i = 0;
    try {
      for (; i < n; i++) caps[i] = this.readDescriptor(list.get(i));
    } catch (e) {
      for (let j = 0; j < i; j++) caps[j]?.release();
      throw e;
    }
    return caps;
  }

  /** A new reference for the cap a CapDescriptor names. */
  private readDescriptor(desc: rpc.CapDescriptor): Hook | null {
    switch (desc.which()) {
      case rpc.CapDescriptor.NONE:
        return null;
      case rpc.CapDescriptor.SENDER_HOSTED:
        return this.importCap(desc.getSenderHosted(), false);
      case rpc.CapDescriptor.SENDER_PROMISE:
        return this.importCap(desc.getSenderPromise(), true);
      case rpc.CapDescriptor.RECEIVER_HOSTED: {
        const id = desc.getReceiverHosted();
        const e = this.exports.get(id);
        if (e === undefined) throw new ProtocolError(`CapDescriptor.receiverHosted names unknown export ID ${id}`);
        return e.hook.addRef();
      }
      case rpc.CapDescriptor.RECEIVER_ANSWER: {
        const pa = desc.getReceiverAnswer();
        return this.answerPipeline(pa);
      }
      case rpc.CapDescriptor.THIRD_PARTY_HOSTED:
        // Level 3 handoff is not supported: use the vine, which the sender hosts.
        return this.importCap(desc.getThirdPartyHosted().getVineId(), false);
      default:
        throw new ProtocolError(`unknown CapDescriptor kind ${desc.which()}`);
    }
  }

  private importCap(id: number, isPromise: boolean): Hook {
    const imp = this.imports.get(id);
    if (imp !== undefined) {
      imp.remoteRefs++;
      if (imp.promise !== null) return imp.promise.addRef();
      return imp.addRef();
    }
    const h = new ImportHook(this, id);
    (this.imports === EMPTY ? (this.imports = new Map()) : this.imports).set(id, h);
    if (!isPromise) return h;
    const p = new PromiseHook();
    h.promise = p;
    p.setRoute({ conn: this, importHook: h, importId: id, qid: -1, path: [] });
    return p;
  }

  private answerPipeline(pa: rpc.PromisedAnswer): Hook {
    const qid = pa.getQuestionId();
    const a = this.answers.get(qid);
    if (a === undefined) throw new ProtocolError(`promisedAnswer names unknown question ID ${qid}`);
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

  private resolveTarget(t: rpc.MessageTarget): Hook {
    switch (t.which()) {
      case rpc.MessageTarget.IMPORTED_CAP: {
        const id = t.getImportedCap();
        const e = this.exports.get(id);
        if (e === undefined) throw new ProtocolError(`Message target is not a current export ID (${id})`);
        return e.hook.addRef();
      }
      case rpc.MessageTarget.PROMISED_ANSWER:
        return this.answerPipeline(t.getPromisedAnswer());
      default:
        throw new ProtocolError(`unknown MessageTarget kind ${t.which()}`);
    }
  }

  private newAnswer(id: number): Answer {
    if (this.answers.has(id)) throw new ProtocolError(`question ID ${id} is already in use`);
    const a = new Answer(this, id);
    (this.answers === EMPTY ? (this.answers = new Map()) : this.answers).set(id, a);
    return a;
  }

  private handleBootstrap(b: rpc.Bootstrap): void {
    const a = this.newAnswer(b.getQuestionId());
    if (this.log !== undefined) this.trace(`<- bootstrap q${a.id}`);
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
    a.complete({ err: null, msg: m, content, caps, ret: true });
  }

  private handleCall(env: Envelope, m: capnp.Message): void {
    const a = this.newAnswer(env.id);
    const interfaceId = env.interfaceId;
    const methodId = env.methodId;
    const content = env.content!;
    const hasCapTable = env.hasCapTable;
    const importedCap = env.targetWhich === rpc.MessageTarget.IMPORTED_CAP ? env.importedCap : -1;
    // Everything is read from `env` before anything else runs (it is shared).
    const call = hasCapTable || importedCap < 0 ? env.root().getCall() : null;
    if (this.log !== undefined) this.trace(`<- call q${a.id} ${interfaceId.toString(16)}/${methodId}`);
    const srt = env.sendResultsTo;
    if (srt === rpc.Call_SendResultsTo.YOURSELF) a.yourself = true;
    else if (srt !== rpc.Call_SendResultsTo.CALLER) {
      a.complete(errOutcome(new RpcError("unimplemented", "sendResultsTo.thirdParty is not supported (Level 3)")));
      return;
    }
    const caps = hasCapTable ? this.readCapTable(call!.getParams()) : [];
    m._capnp.capTable = caps as never;
    let target: Hook;
    try {
      if (importedCap >= 0) {
        const e = this.exports.get(importedCap);
        if (e === undefined) throw new ProtocolError(`Message target is not a current export ID (${importedCap})`);
        target = e.hook.addRef();
      } else target = this.resolveTarget(call!.getTarget());
    } catch (e) {
      for (const h of caps) h?.release();
      throw e;
    }
    const d = new CallData(interfaceId, methodId, m, false, content, caps, a);
    target.call(d);
    target.release();
  }

  private handleReturn(env: Envelope, m: capnp.Message): void {
    const id = env.id;
    const q = this.questions.get(id);
    if (q === undefined || q.returned) throw new ProtocolError(`Return for unknown question ID ${id}`);
    const which = env.retWhich;
    const noFinishNeeded = env.noFinishNeeded;
    const content = env.content;
    const hasCapTable = env.hasCapTable;
    const takeFrom = env.takeFromOtherQuestion;
    // Everything is read from `env` before anything else runs (it is shared).
    const ret = which !== rpc.Return.RESULTS || hasCapTable ? env.root().getReturn() : null;
    if (this.log !== undefined) this.trace(`<- return q${id} ${Return_WHICH[which] ?? "?"}`);
    q.returned = true;
    if (env.releaseParamCaps && q.paramExports !== null) {
      const pe = q.paramExports;
      q.paramExports = null;
      for (const e of pe) this.releaseExport(e, 1);
    }
    let outcome: Outcome;
    switch (which) {
      case rpc.Return.RESULTS: {
        if (q.tail) throw new ProtocolError("Tail call `Return` must set `resultsSentElsewhere`, not `results`.");
        if (q.discardResults) {
          outcome = errOutcome(new CanceledError());
          break;
        }
        const caps = hasCapTable ? this.readCapTable(ret!.getResults()) : [];
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
        const other = takeFrom;
        const a = this.answers.get(other);
        if (a === undefined || !a.yourself) {
          throw new ProtocolError(`Return.takeFromOtherQuestion names question ${other}, which is not a sendResultsTo.yourself call`);
        }
        if (a.outcome !== null) outcome = cloneOutcome(a.outcome);
        else if (a.returned || a.finished) outcome = errOutcome(new CanceledError("the other question was canceled"));
        else {
          (a.redirects ??= []).push(q.sink);
          this.finishAfterReturn(q, noFinishNeeded);
          return;
        }
        break;
      }
      default:
        this.sendUnimplemented(new rpc.Message(m.getSegment(0), 0));
        outcome = errOutcome(new RpcError("unimplemented", `Return kind ${which} is not supported`));
        break;
    }
    q.sink.complete(outcome);
    this.finishAfterReturn(q, noFinishNeeded);
  }

  private finishAfterReturn(q: Question, noFinishNeeded: boolean): void {
    if (q.finishSent) this.removeQuestionIfDone(q);
    else if (noFinishNeeded) {
      q.finishSent = true;
      this.removeQuestionIfDone(q);
    } else if (!q.holdFinish) this.sendFinish(q, false);
  }

  private handleFinish(id: number, releaseResultCaps: boolean): void {
    const a = this.answers.get(id);
    if (a === undefined || a.finished) throw new ProtocolError(`Finish for unknown question ID ${id}`);
    if (this.log !== undefined) this.trace(`<- finish q${id}`);
    a.finished = true;
    if (releaseResultCaps && a.resultExports !== null) {
      const re = a.resultExports;
      a.resultExports = null;
      for (const e of re) this.releaseExport(e, 1);
    }
    const tq = a.tailQuestion;
    if (tq !== null) {
      a.tailQuestion = null;
      tq.holdFinish = false;
      if (tq.returned) this.sendFinish(tq, false);
      else this._cancelQuestion(tq);
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
      this.send(m);
    }
    if (a.hasPipes()) a.dropPipes(new RpcError("failed", "pipelined on a finished question"));
    this.maybeRemoveAnswer(a);
  }

  private handleResolve(r: rpc.Resolve, _m: capnp.Message): void {
    const id = r.getPromiseId();
    let h: Hook;
    if (r.which() === rpc.Resolve.CAP) h = this.readDescriptor(r.getCap()) ?? nullHook();
    else if (r.which() === rpc.Resolve.EXCEPTION) h = new BrokenHook(errorFromException(r.getException()));
    else throw new ProtocolError(`unknown Resolve kind ${r.which()}`);
    if (this.log !== undefined) this.trace(`<- resolve ${id}`);
    const imp = this.imports.get(id);
    const p = imp?.promise ?? null;
    if (imp === undefined || p === null) {
      // We already released that promise (Release and Resolve crossed): drop the resolution.
      h.release();
      return;
    }
    imp.promise = null;
    p.resolve(h);
    h.release();
  }

  private handleDisembargo(d: rpc.Disembargo, root: rpc.Message): void {
    const ctx = d.getContext();
    switch (ctx.which()) {
      case rpc.Disembargo_Context.SENDER_LOOPBACK: {
        const eid = ctx.getSenderLoopback();
        if (this.log !== undefined) this.trace(`<- disembargo senderLoopback ${eid}`);
        const target = this.resolveTarget(d.getTarget());
        const r = target.resolved();
        target.release();
        if (!(r instanceof ImportHook) || r.conn !== this) {
          throw new ProtocolError("'Disembargo' of type 'senderLoopback' sent to an object that does not point back to the sender.");
        }
        const m = newMessage(128);
        const out = m.initRoot(rpc.Message).initDisembargo();
        out.initTarget().setImportedCap(r.id);
        out.getContext().setReceiverLoopback(eid);
        this.send(m);
        return;
      }
      case rpc.Disembargo_Context.RECEIVER_LOOPBACK: {
        const eid = ctx.getReceiverLoopback();
        if (this.log !== undefined) this.trace(`<- disembargo receiverLoopback ${eid}`);
        const e = this.embargoes.get(eid);
        if (e === undefined) throw new ProtocolError(`Disembargo receiverLoopback for unknown embargo ID ${eid}`);
        this.embargoes.delete(eid);
        e.hook.resolve(e.target);
        e.target.release();
        e.hook.release();
        return;
      }
      default:
        this.sendUnimplemented(root);
        return;
    }
  }

  private handleUnimplemented(inner: rpc.Message): void {
    const w = inner.which();
    this.log?.("warning", `${this.name}: peer did not implement message ${w}`);
    if (w === rpc.Message.CALL || w === rpc.Message.BOOTSTRAP) {
      const id = w === rpc.Message.CALL ? inner.getCall().getQuestionId() : inner.getBootstrap().getQuestionId();
      const q = this.questions.get(id);
      if (q === undefined || q.returned) return;
      q.returned = true;
      q.finishSent = true; // the peer never created the answer
      const pe = q.paramExports;
      q.paramExports = null;
      if (pe !== null) for (const e of pe) if (this.exports.has(e)) this.releaseExport(e, 1);
      q.sink.complete(errOutcome(new RpcError("unimplemented", `peer does not implement ${w === rpc.Message.CALL ? "Call" : "Bootstrap"}`, { remote: true })));
      this.removeQuestionIfDone(q);
      return;
    }
    if (w === rpc.Message.RESOLVE) {
      const r = inner.getResolve();
      if (r.which() === rpc.Resolve.CAP) {
        const c = r.getCap();
        const cw = c.which();
        if (cw === rpc.CapDescriptor.SENDER_HOSTED) this.releaseExportIfPresent(c.getSenderHosted());
        else if (cw === rpc.CapDescriptor.SENDER_PROMISE) this.releaseExportIfPresent(c.getSenderPromise());
      }
    }
    // Anything else we sent is optional; nothing to undo.
  }

  private releaseExportIfPresent(id: number): void {
    if (this.exports.has(id)) this.releaseExport(id, 1);
  }

  // -------------------------------------------------------------------------------------------
  // Ending

  private shutdown(err: Error | undefined, _local: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.endError = err;
    const dErr = this.disconnectedError();
    // Questions: every pending call rejects.
    const qs = [...this.questions.values()];
    this.questions.clear();
    for (const q of qs) {
      if (!q.returned) {
        q.returned = true;
        q.sink.complete(errOutcome(dErr));
      }
    }
    // Answers: running calls see their signal abort.
    const as = [...this.answers.values()];
    this.answers.clear();
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
    // Embargoes: nothing will come back; the queued calls go to the (local) target.
    const es = [...this.embargoes.values()];
    this.embargoes.clear();
    for (const e of es) {
      e.hook.resolve(e.target);
      e.target.release();
      e.hook.release();
    }
    // Imports: promise imports fail; import handles stay, their calls fail.
    const is = [...this.imports.values()];
    this.imports.clear();
    for (const imp of is) {
      const p = imp.promise;
      imp.promise = null;
      if (p !== null) {
        const b = new BrokenHook(dErr);
        p.resolve(b);
        b.release();
      }
    }
    // Exports: the peer's references are gone.
    const xs = [...this.exports.values()];
    this.exports.clear();
    this.exportByHook.clear();
    for (const x of xs) x.hook.release();
    const bh = this.bootstrapHook;
    this.bootstrapHook = null;
    bh?.release();
    this.closedD.resolve(err);
    const cbs = this.closeCbs;
    this.closeCbs = [];
    if (cbs.length > 0) {
      queueMicrotask(() => {
        for (const cb of cbs) {
          try {
            cb(err);
          } catch (e) {
            this.log?.("error", `${this.name}: onClose callback threw: ${String(e)}`);
          }
        }
      });
    }
  }
}

const Return_WHICH = ["results", "exception", "canceled", "resultsSentElsewhere", "takeFromOtherQuestion", "acceptFromThirdParty"];

function nullHook(): Hook {
  return new NullHook();
}

function writePromisedAnswer(pa: rpc.PromisedAnswer, qid: number, path: readonly number[]): void {
  pa.setQuestionId(qid);
  if (path.length > 0) {
    const ops = pa.initTransform(path.length);
    for (let i = 0; i < path.length; i++) ops.get(i).setGetPointerField(path[i]!);
  }
}

/** Sink of our Bootstrap question: resolves the bootstrap promise cap, then drops the results. */
class BootstrapSink extends Sink {
  protected onComplete(o: Outcome): void {
    releaseOutcome(o);
  }
}

setTailHandlerLookup((sink) => (sink instanceof Answer ? sink.conn : null));
