/**
 * The lifecycle every {@link Transport} shares: one state machine (a {@link LinkState} with
 * explicit transitions and a guard at each entry point), the queue of messages that arrive
 * before `start()`, and reporting the end to the sink exactly once, always asynchronously.
 * The four transports (memory, stream, MessagePort, WebSocket) keep only what their carrier
 * needs (framing, writing, the carrier's events) and ask this object what they may do.
 * Upstream keeps the same split: capnp-c++ `AsyncIoMessageStream` / `TwoPartyVatNetwork` own
 * the byte stream, `RpcConnectionState` only sees messages and one disconnect.
 *
 * States and transitions (every other move is refused by the guard of the entry point):
 *
 *     Open ──failRead(err)──▶ ReadFailed        reading stopped, `closed(err)` reported now,
 *       │                        │              writes still go out (the engine's Abort)
 *       ├──beginClose()──────────┴──▶ Closing   sends drop, queued writes flush, reads go on
 *       │                                 │     until the end is reported
 *       └──────────── end(err) ───────────┴──▶ Ended   nothing more is read or written
 *
 * `failRead` in Closing reports at once but stays in Closing. `end` from any state but Ended
 * reports the reason unless a report was already made (the first reason noted wins). Reports wait
 * for `start()`; messages delivered before it are queued and handed over by `start()`, before
 * the end is reported if the link ended meanwhile (they arrived before the end).
 *
 * The same queue holds messages while reading is paused by flow control (`hold()` / `unhold()`):
 * the rest of a chunk already read when the pause came waits instead of causing more replies.
 *
 * Threading: owned by its transport, on the thread that created it (the transport's thread).
 */

import type { TransportSink } from "./transport.js";

/** Where a transport's link is; see the file header for the transitions. */
export enum LinkState {
  /** Reading and writing. */
  Open = 0,
  /** The peer's bytes were bad: reading stopped and the error is reported; writes still go out. */
  ReadFailed = 1,
  /** `close()` called: sends are dropped, queued writes are flushing, then the link ends. */
  Closing = 2,
  /** Over: nothing more is read or written; the end is reported (or will be, once started). */
  Ended = 3,
}

/** What a {@link TransportLifecycle} needs from its transport. */
export interface LifecycleHost {
  /** Name used in misuse errors ("StreamTransport.start called twice"). */
  readonly name: string;
  /** The sink threw while handed a message (an engine bug): fail the link with it. */
  sinkThrew(err: Error): void;
}

/** One transport's state, its early-message queue and its once-only end report. */
export class TransportLifecycle {
  private linkState = LinkState.Open;
  private sink: TransportSink | undefined;
  /** Messages delivered before start() or while held; allocated on first use. */
  private early: Uint8Array[][] | null = null;
  private holding = false;
  private reason: Error | undefined;
  private reported = false;

  constructor(private readonly host: LifecycleHost) {}

  get state(): LinkState {
    return this.linkState;
  }

  get started(): boolean {
    return this.sink !== undefined;
  }

  /** Guard of `send`: Open or ReadFailed. */
  get canSend(): boolean {
    return this.linkState <= LinkState.ReadFailed;
  }

  /** Guard of incoming messages: not Ended, and no end reported yet. */
  get canDeliver(): boolean {
    return this.linkState !== LinkState.Ended && !this.reported;
  }

  get isEnded(): boolean {
    return this.linkState === LinkState.Ended;
  }

  /** The reason the link ended (or failed reading), once known. */
  get error(): Error | undefined {
    return this.reason;
  }

  /** Record `err` as the reason unless one is already recorded (the first one wins). */
  noteError(err: Error | undefined): void {
    this.reason ??= err;
  }

  /** Entry point of `Transport.start`: hands over early messages, then a pending end report. */
  start(sink: TransportSink): void {
    if (this.sink !== undefined) throw new Error(`${this.host.name}.start called twice`);
    this.sink = sink;
    const early = this.early;
    this.early = null;
    // They arrived before any end: handed over even if the link has ended since.
    if (early !== null) for (const m of early) if (!this.handOver(sink, m)) break;
    if (this.linkState === LinkState.Ended || this.linkState === LinkState.ReadFailed) this.report();
  }

  /**
   * One incoming message: to the sink, or queued until start(). Dropped (false) once the link
   * ended or its end was reported. A throwing sink fails the link through the host.
   */
  deliver(segments: Uint8Array[]): boolean {
    if (!this.canDeliver) return false;
    const sink = this.sink;
    if (sink === undefined || this.holding || this.early !== null) {
      (this.early ??= []).push(segments);
      return true;
    }
    return this.handOver(sink, segments);
  }

  /** Flow control paused reading: later messages wait in the queue until {@link unhold}. */
  hold(): void {
    this.holding = true;
  }

  /** Hand held messages over in order, until done or held again (a reply paused us anew). */
  unhold(): void {
    this.holding = false;
    const q = this.early;
    const sink = this.sink;
    if (q === null || sink === undefined) return;
    while (q.length > 0 && !this.holding && this.canDeliver) {
      if (!this.handOver(sink, q.shift()!)) break;
    }
    if (q.length === 0 && this.early === q) this.early = null;
  }

  /** Whether messages are held (reading is paused by flow control). */
  get held(): boolean {
    return this.holding;
  }

  private handOver(sink: TransportSink, segments: Uint8Array[]): boolean {
    try {
      sink.message(segments);
    } catch (e) {
      this.host.sinkThrew(e instanceof Error ? e : new Error(String(e)));
      return false;
    }
    return true;
  }

  /** Open → ReadFailed (Closing stays Closing): report `err` now. False if reading already ended. */
  failRead(err: Error): boolean {
    if (!this.canDeliver) return false;
    this.reason = err;
    if (this.linkState === LinkState.Open) this.linkState = LinkState.ReadFailed;
    this.report();
    return true;
  }

  /** Open/ReadFailed → Closing. False (nothing to do) when already Closing or Ended. */
  beginClose(): boolean {
    if (!this.canSend) return false;
    this.linkState = LinkState.Closing;
    return true;
  }

  /**
   * Any state → Ended with `err` (or the reason noted before); reports it unless an end was
   * already reported. False when already Ended.
   */
  end(err?: Error): boolean {
    if (this.linkState === LinkState.Ended) return false;
    this.linkState = LinkState.Ended;
    this.reason ??= err;
    this.holding = false;
    if (this.sink !== undefined) this.early = null; // held messages of a link that is over
    this.report();
    return true;
  }

  /** Report the reason once, asynchronously (the engine may call back into the transport). */
  private report(): void {
    const sink = this.sink;
    if (sink === undefined || this.reported) return;
    this.reported = true;
    const err = this.reason;
    queueMicrotask(() => sink.closed(err));
  }
}
