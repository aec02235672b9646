/**
 * Leak checks between iterations. A snapshot is a flat map of counters: open Node handles and
 * requests by type (`process.getActiveResourcesInfo()`), plus whatever the {@link LeakProbe}s
 * report (RPC tables of live connections, loop references, live workers...). After an iteration
 * every counter must come back to at most its value before the iteration.
 *
 * Threading: runs on the mptest process's main thread (or a `--jobs` shard child's main thread).
 * Snapshots count the handles of the thread that takes them.
 */

import { setTimeout as sleep } from "node:timers/promises";

/** A source of leak counters and of state to print when an iteration hangs. */
export interface LeakProbe {
  readonly name: string;
  /** Counters that must return to their baseline, e.g. `{ "rpc.questions": 0, "setups": 0 }`. */
  snapshot(): Record<string, number>;
  /** Human-readable state (pending questions, answers, threads...) for a hang report. */
  dump?(): string;
  /**
   * The same, for state another thread holds (the lifetime thread's): asked at a hang, awaited
   * at most {@link DUMP_WAIT_MS}.
   */
  dumpAsync?(): Promise<string>;
}

/** How long a hang report waits for a probe's {@link LeakProbe.dumpAsync} (a thread that does not answer is named). */
export const DUMP_WAIT_MS = 2_000;

export type Snapshot = Record<string, number>;

/** Counts `process.getActiveResourcesInfo()` by type, as `handle.<Type>`. */
export function resourceSnapshot(ignore: ReadonlySet<string> = new Set()): Snapshot {
  const out: Snapshot = {};
  for (const r of process.getActiveResourcesInfo()) {
    if (ignore.has(r)) continue;
    const k = `handle.${r}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

export function takeSnapshot(probes: readonly LeakProbe[], ignore?: ReadonlySet<string>): Snapshot {
  const out = resourceSnapshot(ignore);
  for (const p of probes) {
    for (const [k, v] of Object.entries(p.snapshot())) out[`${p.name}.${k}`] = v;
  }
  return out;
}

/** Counters above their baseline, as "name: baseline -> now". */
export function diffSnapshots(before: Snapshot, after: Snapshot): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(after)) {
    const b = before[k] ?? 0;
    if (v > b) out.push(`${k}: ${b} -> ${v}`);
  }
  return out.sort();
}

/**
 * Waits up to `settleMs` for every counter to be back at its baseline (closing sockets and exiting
 * workers take a few turns of the event loop to drop their handles). Returns what is still above.
 * This polls a condition with a deadline; it does not order events.
 */
export async function settle(
  before: Snapshot,
  probes: readonly LeakProbe[],
  settleMs: number,
  ignore?: ReadonlySet<string>,
): Promise<string[]> {
  const deadline = Date.now() + settleMs;
  let pollMs = 1;
  for (;;) {
    const diff = diffSnapshots(before, takeSnapshot(probes, ignore));
    if (diff.length === 0 || Date.now() >= deadline) return diff;
    await sleep(pollMs);
    pollMs = Math.min(pollMs * 2, 50);
  }
}

/**
 * {@link dumpProbes} plus the probes' `dumpAsync` state, each awaited at most `waitMs` (the
 * runner's hang report: taken before the iteration is aborted).
 */
export async function dumpProbesAsync(probes: readonly LeakProbe[], waitMs = DUMP_WAIT_MS): Promise<string> {
  const asked = probes.filter((p) => p.dumpAsync !== undefined);
  const parts = await Promise.all(
    asked.map(async (p) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`no answer within ${waitMs} ms (is its event loop blocked?)`), waitMs);
      });
      try {
        return `[${p.name}]\n${await Promise.race([p.dumpAsync!(), late])}`;
      } catch (e) {
        return `[${p.name}] dump failed: ${String(e)}`;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return [dumpProbes(probes), ...parts].join("\n");
}

export function dumpProbes(probes: readonly LeakProbe[]): string {
  const parts: string[] = [];
  for (const p of probes) {
    try {
      const d = p.dump?.();
      if (d) parts.push(`[${p.name}]\n${d}`);
    } catch (e) {
      parts.push(`[${p.name}] dump failed: ${String(e)}`);
    }
  }
  parts.push(`[handles] ${process.getActiveResourcesInfo().join(", ") || "(none)"}`);
  return parts.join("\n");
}
