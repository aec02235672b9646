/**
 * The period of a listener's timeout sweeper (listen.ts for socket listeners, ws-guard.ts for the
 * WebSocket listener; docs/rpc.md "Listener limits"). Runs on the loop thread, at listen time.
 */

/** Longest delay setTimeout/setInterval accept: Node fires a larger one after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * How often to sweep for expired deadlines, given the listener's timeouts (0 = disabled): a quarter
 * of the shortest enabled one, at least 5 ms, at most {@link MAX_TIMER_MS}. `undefined` when every
 * timeout is disabled (no sweeper).
 */
export function sweepPeriodMs(timeouts: readonly number[]): number | undefined {
  let shortest = Infinity;
  for (const t of timeouts) if (t > 0 && t < shortest) shortest = t;
  if (!Number.isFinite(shortest)) return undefined;
  return Math.min(MAX_TIMER_MS, Math.max(5, Math.floor(shortest / 4)));
}
