/**
 * {@link Sink}: receives the outcome of one call, exactly once, and serves the pipelined caps
 * on that (future) outcome. Sinks are a local `PendingCallImpl` (client.ts), a connection's
 * `Answer` (answers.ts, the call came from the peer), a bootstrap or tail-call sink.
 *
 * Threading: belongs to the thread (event loop) that created it.
 */

import * as capnp from "capnp-ts";
import { getTargetPointerType, getCapabilityId } from "capnp-ts/src/serialization/pointers/pointer.js";
import { PointerType } from "capnp-ts/src/serialization/pointers/pointer-type.js";
import { getSize as getStructSize } from "capnp-ts/src/serialization/pointers/struct.js";
import { ProtocolError, RpcError } from "../errors.js";
import { BrokenHook, FLAT_OUTCOME, NullHook, releaseOutcome } from "./hook.js";
import type { FlatRead, Hook, Outcome, RouteConn, TailCallHandler } from "./hook.js";
import { PromiseHook } from "./promise.js";

/** Receives the outcome of one call, exactly once. Also serves pipelined caps on that outcome. */
export abstract class Sink {
  outcome: Outcome | null = null;
  canceled = false;
  /** Set by whoever executes the call; run once on cancel. */
  cancelHandler: { onCancel(): void } | null = null;
  /** The question this call runs as (set by {@link setRoute}; two fields, no object per call). */
  private routeConn: RouteConn | null = null;
  private routeQid = 0;
  private pipes: Map<string, PromiseHook> | null = null;
  /**
   * The reader of this call's results when they are flat (hook.ts FlatRead; client.ts
   * DirectCall.readFlat): a connection's Return of such results then completes the sink with
   * {@link completeFlat}, no message. Null: results always come as an {@link Outcome}.
   */
  flatRead: FlatRead | null = null;

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

  /**
   * Deliver flat results: the value {@link flatRead} (set) reads from the results' data section
   * (see hook.ts FlatRead), handed to {@link onCompleteFlat}; the sink's outcome is then
   * FLAT_OUTCOME (no message, no caps). The caller checked that the sink has no outcome and no
   * pipelined caps (questions.ts flatQuestion).
   */
  completeFlat(dv: DataView, at: number, words: number): void {
    const v = this.flatRead!(dv, at, words);
    this.outcome = FLAT_OUTCOME;
    this.cancelHandler = null;
    this.onCompleteFlat(v);
  }

  /** Flat results read by {@link completeFlat}: only a sink that sets {@link flatRead} gets them. */
  protected onCompleteFlat(_value: unknown): void {
    throw new ProtocolError("flat results for a sink without a flat reader");
  }

  /** Whether data-only results may be written in the thread's flat Return (flat-return.ts): an Answer's, rpc/answers.ts. */
  flatResults(): boolean {
    return false;
  }

  /** Who can run a tail call on behalf of this sink's call (a connection's answers), if anyone. */
  tailHandler(): TailCallHandler | null {
    return null;
  }

  /** A new reference to the cap at `path` in the (future) results. */
  pipelineHook(path: readonly number[]): Hook {
    if (this.outcome !== null) return capAt(this.outcome, path);
    const key = path.join(",");
    let p = (this.pipes ??= new Map()).get(key);
    if (p === undefined) {
      p = new PromiseHook();
      if (this.routeConn !== null) p.setRoute({ conn: this.routeConn, importHook: null, importId: 0, qid: this.routeQid, path: path.slice() });
      this.pipes.set(key, p);
    }
    return p.addRef();
  }

  /** The call now runs as question `qid` on `conn`: pipelined calls go there as promisedAnswer. */
  setRoute(conn: RouteConn, qid: number): void {
    this.routeConn = conn;
    this.routeQid = qid;
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

/** The cap at `path` inside an outcome (new reference; null cap / broken as appropriate). */
function capAt(o: Outcome, path: readonly number[]): Hook {
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
