/**
 * Write-side flow control shared by the byte-carrying transports (the stream transport here,
 * the WebSocket transport in `@multiprocess-ts/node`): a per-connection cap on queued outgoing
 * bytes. When a peer stops reading, our replies pile up; past `pauseReadingAt` the transport
 * stops reading that peer (backpressure: no more requests from it, so no more replies to queue)
 * until the queue drains to `resumeReadingAt`; past `maxQueuedBytes`, or when reading stays
 * paused for `pausedTimeoutMs` while the peer takes nothing of its queue, the connection is ended
 * with a {@link LimitError} (the process and other connections carry on). See docs/rpc.md
 * ("Flow control"). capnp-c++ applies the same remedy to a related quantity: past its flow
 * limit (`RpcSystem::setFlowLimit`, bytes of incoming calls in flight) it stops reading the
 * connection until calls complete.
 *
 * Threading: owned by one transport, on that transport's thread.
 */

import { LimitError } from "./errors.js";
import type { Transport } from "./transport.js";

/** Caps on one connection's queued outgoing bytes (written but not yet taken by the OS). */
export interface WriteFlowLimits {
  /** Stop reading from the peer once this many bytes are queued (default 1 MiB). */
  pauseReadingAt: number;
  /** Read again once the queue is down to this many bytes (default 256 KiB). */
  resumeReadingAt: number;
  /** End the connection with a `LimitError` past this many queued bytes (default 128 MiB). */
  maxQueuedBytes: number;
  /**
   * End the connection with a `LimitError` when reading has been paused this long while the
   * peer took none of its queue (default 60 s; `Infinity` = never). A peer that reads, however
   * slowly, restarts the clock with every write the OS takes.
   */
  pausedTimeoutMs: number;
}

/**
 * Defaults: pausing early costs a well-behaved peer nothing (reading resumes as soon as it
 * catches up); the hard cap leaves room for two messages of the default `maxMessageBytes`
 * (64 MiB), so one large legitimate reply to a slow reader never ends its connection.
 */
export const DEFAULT_WRITE_FLOW: Readonly<WriteFlowLimits> = Object.freeze({
  pauseReadingAt: 1024 * 1024,
  resumeReadingAt: 256 * 1024,
  maxQueuedBytes: 128 * 1024 * 1024,
  pausedTimeoutMs: 60_000,
});

/** Counters of one connection's write-side flow control. */
export interface WriteFlowStats {
  /** Bytes queued for the peer at the last check. */
  queuedBytes: number;
  /** The most bytes ever seen queued. */
  peakQueuedBytes: number;
  /** Whether reading from the peer is paused right now. */
  readPaused: boolean;
  /** How many times reading was paused. */
  pauses: number;
}

/** A transport with write-side flow control (stream, WebSocket): its counters, for monitoring. */
export interface FlowControlledTransport extends Transport {
  flowStats(): WriteFlowStats;
  /**
   * Call `cb` each time reading is paused or resumed (e.g. to log a stalled peer, or in tests).
   * One watcher at a time; returns a function that removes it.
   */
  watchFlow(cb: (stats: WriteFlowStats) => void): () => void;
}

/** Fill in and check `limits`: integers > 0 (Infinity allowed), resume ≤ pause ≤ max. */
export function resolveWriteFlow(limits?: Partial<WriteFlowLimits>): WriteFlowLimits {
  const out = { ...DEFAULT_WRITE_FLOW, ...stripUndefined(limits) };
  for (const k of ["pauseReadingAt", "resumeReadingAt", "maxQueuedBytes", "pausedTimeoutMs"] as const) {
    const v = out[k];
    if (typeof v !== "number" || !(v === Infinity || (Number.isInteger(v) && v > 0))) {
      throw new RangeError(`WriteFlowLimits.${k} must be a positive integer, got ${String(v)}`);
    }
  }
  if (out.resumeReadingAt > out.pauseReadingAt || out.pauseReadingAt > out.maxQueuedBytes) {
    throw new RangeError("WriteFlowLimits: need resumeReadingAt <= pauseReadingAt <= maxQueuedBytes");
  }
  return out;
}

function stripUndefined(o: Partial<WriteFlowLimits> | undefined): Partial<WriteFlowLimits> {
  const r: Partial<WriteFlowLimits> = {};
  if (o === undefined) return r;
  for (const [k, v] of Object.entries(o)) if (v !== undefined) r[k as keyof WriteFlowLimits] = v;
  return r;
}

/** What a {@link WriteFlow} does to its transport's reading, and what it asks of it. */
export interface FlowHost {
  pauseReading(): void;
  resumeReading(): void;
  /** Bytes queued for the peer right now (polled while paused, to see whether the peer reads). */
  queuedBytesNow(): number;
  /** Reading stayed paused past `pausedTimeoutMs` with no progress: end the connection with `err`. */
  flowStalled(err: LimitError): void;
}

/** Holds a transport's {@link FlowControlledTransport.watchFlow} callback. */
export class FlowWatch {
  private cb: ((stats: WriteFlowStats) => void) | null = null;

  set(cb: (stats: WriteFlowStats) => void): () => void {
    this.cb = cb;
    return () => {
      if (this.cb === cb) this.cb = null;
    };
  }

  notify(stats: WriteFlowStats): void {
    this.cb?.(stats);
  }
}

/** The decisions of write-side flow control for one connection; the transport measures. */
export class WriteFlow implements WriteFlowStats {
  queuedBytes = 0;
  peakQueuedBytes = 0;
  readPaused = false;
  pauses = 0;
  /** Checks the paused peer's progress every `pausedTimeoutMs` while reading is paused. */
  private stallTimer: ReturnType<typeof setTimeout> | null = null;
  private stallCheck: ReturnType<typeof setImmediate> | null = null;
  /** Queued bytes at the last progress check. */
  private stallMark = 0;

  constructor(
    readonly limits: WriteFlowLimits,
    private readonly host: FlowHost,
    private readonly watch: FlowWatch | null = null,
  ) {}

  /**
   * The queue grew to `queued` bytes: pause reading past the high-water mark. Returns the
   * LimitError to end the connection with when past the hard cap (the caller ends it).
   */
  grew(queued: number): LimitError | undefined {
    this.note(queued);
    if (queued > this.limits.maxQueuedBytes) {
      return new LimitError(
        `peer is not reading: ${queued} bytes queued for it, more than the limit maxQueuedBytes = ${this.limits.maxQueuedBytes}`,
      );
    }
    if (!this.readPaused && queued >= this.limits.pauseReadingAt) {
      this.readPaused = true;
      this.pauses++;
      this.host.pauseReading();
      this.armStall(queued);
      this.watch?.notify(this.stats());
    }
    return undefined;
  }

  /** The queue shrank to `queued` bytes: read again once at or below the low-water mark. */
  shrank(queued: number): void {
    this.note(queued);
    if (this.readPaused && queued <= this.limits.resumeReadingAt) {
      this.readPaused = false;
      this.disarmStall();
      this.watch?.notify(this.stats()); // before resuming: held messages may pause us again
      this.host.resumeReading();
    }
  }

  /** Reading is over for another reason (read failure, end): forget the pause. */
  release(): void {
    this.readPaused = false;
    this.disarmStall();
  }

  /** A snapshot of the counters. */
  stats(): WriteFlowStats {
    const { queuedBytes, peakQueuedBytes, readPaused, pauses } = this;
    return { queuedBytes, peakQueuedBytes, readPaused, pauses };
  }

  /** Reading was paused with `queued` bytes queued: check for progress every `pausedTimeoutMs`. */
  private armStall(queued: number): void {
    const ms = this.limits.pausedTimeoutMs;
    if (ms === Infinity) return;
    this.stallMark = queued;
    this.stallTimer = setTimeout(this.deferCheck, ms);
    // The connection's socket keeps the process alive, not this check.
    (this.stallTimer as { unref?: () => void }).unref?.();
  }

  private disarmStall(): void {
    if (this.stallTimer !== null) clearTimeout(this.stallTimer);
    if (this.stallCheck !== null) clearImmediate(this.stallCheck);
    this.stallTimer = null;
    this.stallCheck = null;
  }

  /**
   * The timer fired: check after this loop turn's I/O (setImmediate runs after the poll phase),
   * so write completions that piled up while our own loop was busy count as the progress they are.
   */
  private readonly deferCheck = (): void => {
    this.stallTimer = null;
    if (this.readPaused) this.stallCheck = setImmediate(this.checkStall);
  };

  /** Still paused after `pausedTimeoutMs`: go on if the peer took bytes since the last check, else end. */
  private readonly checkStall = (): void => {
    this.stallCheck = null;
    if (!this.readPaused) return;
    const now = this.host.queuedBytesNow();
    this.note(now);
    if (now < this.stallMark) {
      this.armStall(now);
      return;
    }
    const ms = this.limits.pausedTimeoutMs;
    this.readPaused = false;
    this.host.flowStalled(
      new LimitError(
        `peer is not reading: reading from it was paused for ${ms} ms and it the ${now} bytes queued for it did not go down (pausedTimeoutMs = ${ms})`,
      ),
    );
  };

  private note(queued: number): void {
    this.queuedBytes = queued;
    if (queued > this.peakQueuedBytes) this.peakQueuedBytes = queued;
  }
}
