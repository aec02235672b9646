/**
 * Seeded delivery jitter for the memory transport pair: both ends are fenced, and a pump releases
 * what they hold in small random batches on later event-loop turns. Message order per direction is
 * kept (the fence is FIFO); what changes is how the two directions and the loops' own work
 * interleave, so repeated runs with different seeds explore different schedules. Each seed gives
 * the same batch sizes (timers play no part).
 *
 * Threading: the thread that owns the transports.
 */

import type { MemoryTransport, Transport, TransportSink } from "@multiprocess-ts/capnp";

export interface Jitter {
  /** The transport to hand to the Connection in place of `inner` (sends kick the pump). */
  wrap(inner: MemoryTransport): Transport;
  /** Lifts the fences, delivers everything held and stops the pump. Idempotent. */
  stop(): void;
}

/** `random()` returns a float in [0, 1) (e.g. the scenario's rng). */
export function createJitter(random: () => number, ends: readonly MemoryTransport[]): Jitter {
  let stopped = false;
  let scheduled: NodeJS.Immediate | undefined;
  for (const t of ends) t.fence();
  const pump = (): void => {
    scheduled = undefined;
    if (stopped) return;
    let left = 0;
    for (const t of ends) {
      // Sometimes hold this end for another turn; otherwise let 1-3 messages through.
      if (t.held > 0 && random() >= 0.3) t.release(1 + Math.floor(random() * 3));
      // `held` counts messages only: a close (EOF) waiting behind them is released by release(0)
      // once no message is left in front of it (otherwise close() would never finish).
      if (t.held === 0) t.release(0);
      left += t.held;
    }
    if (left > 0) schedule();
  };
  const schedule = (): void => {
    if (scheduled === undefined && !stopped) scheduled = setImmediate(pump);
  };
  return {
    wrap(inner) {
      return {
        start: (sink: TransportSink) => inner.start(sink),
        send: (segments: Uint8Array[]) => {
          inner.send(segments);
          schedule();
        },
        close: () => {
          const p = inner.close();
          schedule(); // the EOF waits behind held messages
          return p;
        },
        destroy: (err?: Error) => inner.destroy(err),
      };
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (scheduled !== undefined) clearImmediate(scheduled);
      scheduled = undefined;
      for (const t of ends) t.release();
    },
  };
}
