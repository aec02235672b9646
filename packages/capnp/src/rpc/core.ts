/**
 * ConnCore: what every table of one connection shares — the transport (the way out), the
 * connection's log, whether and why it ended, and the references to its four tables
 * (questions.ts, answers.ts, exports.ts, imports.ts; wired once by connection.ts). It also runs
 * the connection's end: every table drops its entries in a fixed order (questions, answers,
 * embargoes and imports, exports, then the bootstrap capability).
 *
 * Plus the small wire helpers the tables share (PromisedAnswer; Exception <-> RpcError is
 * exception.ts, re-exported here).
 *
 * Threading: the connection's loop thread (the thread that created the RpcConnection).
 */

import type * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { DisconnectedError, deferred } from "../errors.js";
import { writeException } from "./exception.js";
import type { Transport } from "../transport.js";
import type { ReaderLimits } from "../limits.js";
import { newMessage, readStruct, segmentsOf } from "./message.js";
import { recycleMessage } from "../buffers.js";
import type { Struct, StructCtor } from "./types.js";
import { LocalHook } from "./local.js";
import type { ReleaseErrorReporter } from "./local.js";
import type { Hook } from "./hook.js";
import type { QuestionTable } from "./questions.js";
import type { AnswerTable } from "./answers.js";
import type { ExportTable } from "./exports.js";
import type { ImportTable } from "./imports.js";

export type LogFn = (level: "trace" | "debug" | "info" | "warning" | "error", msg: string) => void;

/**
 * Names calls and prints their params / results in trace lines (RpcConnectionOptions.describe;
 * the runtime's comes from the generated method tables). Only called while tracing.
 */
export interface MessageDescriber {
  /** `Interface.method`, or undefined when unknown (the line then shows `interfaceId/methodId`). */
  method(interfaceId: bigint, methodId: number): string | undefined;
  /**
   * The params (`results` false) or results in capnp text form, or undefined; `read` gives the
   * struct as the given generated class.
   */
  text(interfaceId: bigint, methodId: number, results: boolean, read: <T extends Struct>(ctor: StructCtor<T>) => T): string | undefined;
}

/** What a traced question / answer remembers to name its Return (made only while tracing). */
export interface TraceKey {
  readonly interfaceId: bigint;
  readonly methodId: number;
}

const NOOP = (): void => {};

/** The empty table every table starts with (a Map of its own comes with the first entry); never written. */
class EmptyMap extends Map<never, never> {
  override set(): this {
    throw new Error("internal error: write to the shared empty table");
  }
}
export const EMPTY: ReadonlyMap<unknown, unknown> = new EmptyMap();

/** The one-segment array {@link ConnCore.sendOwn} last handed to a copying transport (per thread). */
const NO_SEGS: Uint8Array[] = [new Uint8Array(0)];
let ownSegs: Uint8Array[] = NO_SEGS;

export class ConnCore implements ReleaseErrorReporter {
  ended = false;
  /** Whether exceptions we send carry the stack (RpcConnectionOptions.errorStacks). */
  errorStacks = false;
  endError: Error | undefined = undefined;
  /** Names methods in Call / Return trace lines (RpcConnectionOptions.describe). */
  describer: MessageDescriber | undefined = undefined;
  // The tables (wired by RpcConnection's constructor, never changed afterwards).
  questions!: QuestionTable;
  answers!: AnswerTable;
  exports!: ExportTable;
  imports!: ImportTable;
  private readonly closedD = deferred<Error | undefined>();
  private closeCbs: ((err: Error | undefined) => void)[] = [];

  constructor(
    readonly transport: Transport,
    readonly limits: ReaderLimits,
    readonly log: LogFn | undefined,
    readonly name: string,
  ) {}

  /** Settles once the connection has ended; never rejects. */
  get closed(): Promise<Error | undefined> {
    return this.closedD.promise;
  }

  send(m: capnp.Message): void {
    if (this.ended) return;
    this.transport.send(segmentsOf(m));
  }

  /**
   * Send our own Call or Return built by fastpath.ts, which nobody reads after this: if the
   * transport copies it (Transport.sendCopy), its buffer goes back to the pool (buffers.ts).
   */
  sendOwn(m: capnp.Message): void {
    if (this.ended) return;
    const t = this.transport;
    if (t.sendCopy === undefined) t.send(segmentsOf(m));
    else {
      const segs = m._capnp.segments;
      if (segs.length !== 1 || segs[0]!.byteOffset !== 0) {
        if (t.sendCopy(segmentsOf(m))) recycleMessage(m);
        return;
      }
      // One segment from offset 0 (a pooled buffer, buffers.ts): the view handed to the
      // transport is kept while the next message lies in the same buffer with the same length
      // (a call loop's Returns or Calls: the pool hands the buffer back), no array + view per send.
      const seg = segs[0]!;
      let own = ownSegs;
      const v = own[0]!;
      if (v.buffer !== seg.buffer || v.byteLength !== seg.byteLength) ownSegs = own = [new Uint8Array(seg.buffer, 0, seg.byteLength)];
      if (t.sendCopy(own)) recycleMessage(m);
      else ownSegs = NO_SEGS; // the transport keeps this view: not ours to hand out again
    }
  }

  /** Send a one-segment message already encoded (Finish, Release). */
  sendBytes(b: Uint8Array): void {
    if (!this.ended) this.transport.send([b]);
  }

  /**
   * Whether per-message trace lines are built and sent to `log` (RpcConnectionOptions.trace;
   * callers check it before formatting a line, so a log that drops them costs nothing per message).
   */
  traceOn = false;

  /** {@link sendBytes} for a message that may wait for the next one (Transport.sendLazy). */
  sendBytesLazy(b: Uint8Array): void {
    if (this.ended) return;
    const t = this.transport;
    if (t.sendLazy !== undefined) t.sendLazy([b]);
    else t.send([b]);
  }

  trace(msg: string): void {
    this.log?.("trace", `${this.name}: ${msg}`);
  }

  /**
   * ` Interface.method (params or results text)` for a trace line: the describer's names, else
   * ` interfaceId/methodId`. `content` null: no text (exceptions, empty results).
   */
  callText(key: TraceKey, results: boolean, content: capnp.Pointer | null): string {
    const d = this.describer;
    const { interfaceId, methodId } = key;
    const name = d?.method(interfaceId, methodId) ?? `${interfaceId.toString(16)}/${methodId}`;
    if (content === null || d === undefined) return ` ${name}`;
    let text: string | undefined;
    try {
      text = d.text(interfaceId, methodId, results, (ctor) => readStruct(content, ctor));
    } catch (e) {
      text = `<unreadable: ${e instanceof Error ? e.message : String(e)}>`;
    }
    return text === undefined ? ` ${name}` : ` ${name} ${text}`;
  }

  disconnectedError(): DisconnectedError {
    const e = this.endError;
    if (e instanceof DisconnectedError) return e;
    return new DisconnectedError(e === undefined ? "connection closed" : `connection closed: ${e.message}`, {
      cause: e,
    });
  }

  /** ReleaseErrorReporter: a Server we exported threw from onRelease. */
  onReleaseError(e: unknown): void {
    const log = this.log;
    if (log !== undefined) log("error", `${this.name}: Server.onRelease threw: ${String(e)}`);
    else console.error(`multiprocess-ts ${this.name}: Server.onRelease threw:`, e);
  }

  /**
   * Drop one of the connection's own references (an export, the bootstrap capability). If that
   * ends a local server, an error its onRelease throws goes to this connection's log.
   */
  releaseRef(h: Hook): void {
    if (!(h instanceof LocalHook) || h.reporter !== null) {
      h.release();
      return;
    }
    h.reporter = this;
    h.release();
    h.reporter = null;
  }

  sendAbort(reason: Error): void {
    if (this.ended) return;
    const m = newMessage(128);
    writeException(m.initRoot(rpc.Message).initAbort(), reason);
    this.send(m);
  }

  sendUnimplemented(root: rpc.Message): void {
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

  /** Send Abort with `reason` (if the transport still writes), end, close the transport. */
  abort(reason: Error): void {
    if (this.ended) return;
    this.sendAbort(reason);
    this.end(reason);
  }

  /** End (if not yet) and close the transport. */
  end(err: Error | undefined): void {
    this.shutdown(err);
    this.transport.close().then(NOOP, NOOP);
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

  /** The connection ends: every table lets go of its entries; close callbacks run in a microtask. */
  shutdown(err: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.endError = err;
    const dErr = this.disconnectedError();
    this.questions.shutdown(dErr);
    this.answers.shutdown(dErr);
    this.imports.shutdown(dErr);
    this.exports.shutdown();
    this.answers.releaseBootstrap();
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

export { errorFromException, writeException } from "./exception.js";

export function writePromisedAnswer(pa: rpc.PromisedAnswer, qid: number, path: readonly number[]): void {
  pa.setQuestionId(qid);
  if (path.length > 0) {
    const ops = pa.initTransform(path.length);
    for (let i = 0; i < path.length; i++) ops.get(i).setGetPointerField(path[i]!);
  }
}

/** Return.which names, for traces. */
export const RETURN_WHICH: readonly string[] = ["results", "exception", "canceled", "resultsSentElsewhere", "takeFromOtherQuestion", "acceptFromThirdParty"];
