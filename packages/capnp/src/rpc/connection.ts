/**
 * RpcConnection: the Cap'n Proto RPC Level 1 two-party protocol over one {@link Transport}.
 * A thin facade: it wires one connection's parts together and keeps the public API.
 *
 * The parts, each owning one table of rpc.capnp and its rules (see docs/design.md, "One call,
 * file by file"):
 *  - questions.ts: calls we made (by our QuestionId), pipelining on them, Finish;
 *  - answers.ts: calls the peer made (by its QuestionId), Return, Finish, tail calls;
 *  - exports.ts: our caps the peer holds (by our ExportId, with refcounts), Release, Resolve;
 *  - imports.ts: the peer's caps we hold (by its ExportId), promise imports, embargoes;
 *  - dispatch.ts: the transport's sink: decode each message and route it to its table;
 *  - core.ts: the shared state (transport, log, ended) and the connection's end.
 *
 * Threading: one connection belongs to the thread that created it (its loop thread); all
 * methods run there. After the connection ends (close, abort, Abort received, protocol error,
 * transport end) every pending and later call rejects with DisconnectedError, answers' signals
 * abort, exports are released (servers get onRelease), imports are dropped from the table
 * (their handles stay valid objects whose calls fail).
 */

import type { Transport } from "../transport.js";
import { resolveLimits, type ReaderLimits } from "../limits.js";
import { BrokenHook } from "./hook.js";
import { CapHandle, hookOf } from "./client.js";
import type { Capability } from "./types.js";
import { ConnCore } from "./core.js";
import type { LogFn, MessageDescriber } from "./core.js";
import { QuestionTable } from "./questions.js";
import { AnswerTable } from "./answers.js";
import { ExportTable } from "./exports.js";
import { ImportTable } from "./imports.js";
import { Dispatcher } from "./dispatch.js";

export interface RpcConnectionOptions {
  /** What we serve on Bootstrap (we keep our own reference until the connection ends). */
  bootstrap?: Capability;
  limits?: Partial<ReaderLimits>;
  name?: string;
  /** The connection's log; also receives errors thrown by `onRelease` of servers it exported. */
  log?: LogFn;
  /**
   * Send a "trace" line per message to `log` (default: true when `log` is given). False keeps the
   * log for errors and warnings without formatting a line per message. Call and Return lines name
   * the method and print params / results through `describe` when given.
   */
  trace?: boolean;
  describe?: MessageDescriber;
  /**
   * Most calls (and Bootstraps) from the peer outstanding at once: from their arrival until the
   * peer's Finish. Over it a new call is answered at once with an `overloaded` exception (the
   * caller sees RpcError kind "overloaded", code MP_ERR_OVERLOADED); a peer that lets twice as many
   * stay unfinished is aborted with a LimitError. A positive integer or Infinity; default
   * {@link DEFAULT_MAX_INCOMING_CALLS}.
   */
  maxIncomingCalls?: number;
  /**
   * Send the stack of a server's error with the exception (in rpc.capnp `Exception.trace`, where
   * the peer's `RemoteError.remoteStack` finds it). Off by default: a stack reveals file paths.
   */
  errorStacks?: boolean;
}

/** Default of {@link RpcConnectionOptions.maxIncomingCalls}: 16,384 outstanding calls per connection. */
export const DEFAULT_MAX_INCOMING_CALLS = 16384;

export interface RpcStats {
  questions: number;
  answers: number;
  imports: number;
  exports: number;
  embargoes: number;
}

const NOOP = (): void => {};

export class RpcConnection {
  private readonly core: ConnCore;
  readonly name: string;
  /** Settles once the connection has ended; never rejects. */
  readonly closed: Promise<Error | undefined>;

  constructor(transport: Transport, opts: RpcConnectionOptions = {}) {
    const core = new ConnCore(transport, resolveLimits(opts.limits), opts.log, opts.name ?? "rpc");
    core.errorStacks = opts.errorStacks === true;
    core.traceOn = opts.log !== undefined && opts.trace !== false;
    if (opts.describe !== undefined) core.describer = opts.describe;
    core.questions = new QuestionTable(core);
    const maxCalls = opts.maxIncomingCalls ?? DEFAULT_MAX_INCOMING_CALLS;
    if (typeof maxCalls !== "number" || !(maxCalls === Infinity || (Number.isInteger(maxCalls) && maxCalls > 0))) {
      throw new RangeError(`RpcConnectionOptions.maxIncomingCalls must be a positive integer, got ${String(maxCalls)}`);
    }
    core.answers = new AnswerTable(core, opts.bootstrap === undefined ? null : hookOf(opts.bootstrap).addRef(), maxCalls);
    core.exports = new ExportTable(core);
    core.imports = new ImportTable(core);
    this.core = core;
    this.name = core.name;
    this.closed = core.closed;
    transport.start(new Dispatcher(core));
  }

  get isClosed(): boolean {
    return this.core.ended;
  }

  stats(): RpcStats {
    const core = this.core;
    return {
      questions: core.questions.size,
      answers: core.answers.size,
      imports: core.imports.size,
      exports: core.exports.size,
      embargoes: core.imports.embargoCount,
    };
  }

  onClose(cb: (err: Error | undefined) => void): () => void {
    return this.core.onClose(cb);
  }

  /** The peer's bootstrap capability (pipelinable: calls go out before the Return). */
  bootstrap(): Capability {
    const core = this.core;
    if (core.ended) return new CapHandle(new BrokenHook(core.disconnectedError()));
    return new CapHandle(core.questions.bootstrap());
  }

  /** Flush, end; pending and later calls reject with DisconnectedError. */
  close(reason?: Error): Promise<void> {
    const core = this.core;
    if (!core.ended) core.shutdown(reason);
    return core.transport.close().then(NOOP, NOOP);
  }

  /** Send Abort with `reason`, then end. */
  abort(reason: Error): void {
    this.core.abort(reason);
  }
}
