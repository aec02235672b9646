/**
 * The cold-start target's noise floor (informational rows beside the cold-start rows; run.ts,
 * main thread of the round process). The target counts the calls of a window that take over 3×
 * the steady P1 p50 (10 of 1,000 allowed); these rows show how many such calls there are where
 * nothing is cold:
 *
 * - **steady state**: the same count over the sequential runs the round already makes (our P1,
 *   the raw floor's ping-pong and, with `--peers`, birpc's sequential add), per 1,000 calls, over
 *   3× our steady P1 p50 and over 3× the kind's own steady p50. No extra calls: the samples are
 *   those of the P1 / floor / birpc rows.
 * - **a new connection between two warm processes with no RPC**: the round's raw client process
 *   and raw server child, both warm from the floor's run, open a brand-new socket and time its
 *   first calls, as our "new connection of a warm client to a warm server" row does: what Node
 *   itself pays on a new connection (its socket objects, the first use of their paths and
 *   closures), apart from any RPC.
 */
import { log, withCpu, type Cpu, type ServerChild } from "./children.js";
import { over } from "./fresh-window.js";
import { Figures, type Figure } from "./figures.js";
import { RawClient } from "./raw.js";
import { latency, timeSequential } from "./stats.js";

export type SteadyKind = "ours" | "raw" | "birpc";

const LABELS: Record<SteadyKind, string> = { ours: "ours (P1)", raw: "raw floor (no RPC)", birpc: "birpc" };

/** Calls of `us` over `threshold` µs, per 1,000 calls. */
export function overPer1000(us: Float64Array, threshold: number): number {
  return us.length === 0 ? 0 : (over(us, threshold) * 1000) / us.length;
}

/**
 * The steady-state rows of one sequential run (`us`: its timed calls): calls over 3× OUR steady
 * P1 p50 per 1,000 and, for another kind, over 3× its own steady p50 (`ownSteady`: that run's
 * p50; for ours the two thresholds are the same, so one row).
 */
export function steadyOverRows(kind: SteadyKind, us: Float64Array, ourSteady: number, ownSteady: number): Figure[] {
  const figs = new Figures();
  const label = `steady state, ${LABELS[kind]}`;
  const note = { note: `informational; of ${us.length} timed sequential calls` };
  figs.add(`  ${label}: calls over 3× our steady P1 p50, per 1,000`, "calls", overPer1000(us, 3 * ourSteady), null, undefined, note);
  if (kind !== "ours") figs.add(`  ${label}: calls over 3× its own steady p50, per 1,000`, "calls", overPer1000(us, 3 * ownSteady), null);
  return figs.rows;
}

export interface RawNewConnection { us: Float64Array; cpu: Cpu }

/**
 * The first `calls` sequential round trips of a brand-new raw connection from this (warm)
 * process to the (warm) raw server at `path`, `request` a raw floor request (raw.ts). CPU per
 * call per side over the timed calls (`server`: the raw server child; null when it runs in this
 * process). The connection is closed afterwards.
 */
export async function rawNewConnection(path: string, server: ServerChild | null, calls: number, request: Buffer): Promise<RawNewConnection> {
  log(`new connection between the warm client and the warm raw server (no RPC): first ${calls} calls`);
  const raw = await RawClient.connect(path);
  try {
    let us: Float64Array = new Float64Array(0);
    const cpu = await withCpu(server, async () => {
      us = await timeSequential(calls, 0, () => raw.call(request));
      return calls;
    });
    return { us, cpu };
  } finally {
    raw.close();
  }
}

/**
 * The rows of {@link rawNewConnection}'s window: p99 and p50 (floor: the raw floor's steady p50),
 * the calls over 3× our steady P1 p50 (the cold-start target's threshold) and over 3× the raw
 * floor's own steady p50, and CPU per call per side (floor: the raw floor's steady CPU).
 */
export function rawNewConnectionRows(r: RawNewConnection, ourSteady: number, rawSteady: number, rawCpu: Cpu | null): Figure[] {
  const figs = new Figures();
  const label = "new connection between warm processes, raw floor (no RPC)";
  const n = r.us.length;
  const l = latency(r.us);
  figs.add(`  ${label}: p99 of first ${n} calls`, "µs", l.p99, rawSteady, undefined, { note: "informational; floor = raw steady p50" });
  figs.add(`  ${label}: p50`, "µs", l.p50, rawSteady);
  figs.add(`  ${label}: calls over 3× our steady P1 p50 (of ${n})`, "calls", over(r.us, 3 * ourSteady), null);
  figs.add(`  ${label}: calls over 3× its own steady p50 (of ${n})`, "calls", over(r.us, 3 * rawSteady), null);
  figs.cpu(label, r.cpu, rawCpu);
  return figs.rows;
}
