/**
 * Paired statistics of `pnpm bench --peers` (pure functions; main thread of the bench round and
 * of the orchestrator). Within one round our client and birpc's run in alternating blocks
 * (sequential P1 calls) or windows (P2, calls in flight), A B B A A B ..., against two servers
 * alive for the whole window, so both libraries see the same load. This module plans the blocks,
 * pools each side's blocks into one figure per round (p50 over all its samples, CPU per call =
 * CPU summed over its blocks / its calls), takes the round's ratios ours / birpc, summarises
 * the ratios of several rounds (median and range) and adds the paired rows to a round's
 * {@link Figures}, where the P1 and P2 targets against birpc are scored on the paired ratio.
 * See bench/README.md "The figures".
 */
import type { Figures, TargetSpec } from "./figures.js";
import { latency } from "./stats.js";

/** The two sides of a pair. */
export type PairSide = "ours" | "peer";

/** Sizes of the blocks that split `n` calls into blocks of at most `block` (the last may be shorter). */
export function blockSizes(n: number, block: number): number[] {
  if (!(Number.isInteger(n) && n > 0 && Number.isInteger(block) && block > 0)) {
    throw new RangeError(`paired blocks: n (${n}) and block (${block}) must be positive integers`);
  }
  const out: number[] = [];
  for (let left = n; left > 0; left -= block) out.push(Math.min(block, left));
  return out;
}

/**
 * Which side runs first in pair `k` (0-based): A B, B A, A B, ... (A B B A A B ...), so a load
 * that drifts steadily during the round is charged to both sides alike.
 */
export function pairOrder(k: number): [PairSide, PairSide] {
  return k % 2 === 0 ? ["ours", "peer"] : ["peer", "ours"];
}

/** One block of sequential calls: each call's µs, and each process's CPU µs over the block. */
export interface SeqBlock { us: readonly number[]; clientCpuUs: number; serverCpuUs: number }
/** One window of calls in flight: completed calls, seconds, and each process's CPU µs. */
export interface PipeWindow { calls: number; seconds: number; clientCpuUs: number; serverCpuUs: number }

/** One side's sequential blocks pooled: p50/p99 over every sample; CPU per call per side. */
export interface SeqSide { calls: number; p50: number; p99: number; cpuClient: number; cpuServer: number }
/** One side's windows pooled: calls/s over the summed seconds; CPU per call per side. */
export interface PipeSide { calls: number; seconds: number; rate: number; cpuClient: number; cpuServer: number }

export function poolSeq(blocks: readonly SeqBlock[]): SeqSide {
  const all: number[] = [];
  let client = 0;
  let server = 0;
  for (const b of blocks) {
    for (const v of b.us) all.push(v);
    client += b.clientCpuUs;
    server += b.serverCpuUs;
  }
  const l = latency(all); // throws on no samples
  return { calls: all.length, p50: l.p50, p99: l.p99, cpuClient: client / all.length, cpuServer: server / all.length };
}

export function poolPipe(windows: readonly PipeWindow[]): PipeSide {
  let calls = 0;
  let seconds = 0;
  let client = 0;
  let server = 0;
  for (const w of windows) {
    calls += w.calls;
    seconds += w.seconds;
    client += w.clientCpuUs;
    server += w.serverCpuUs;
  }
  if (calls === 0 || seconds <= 0) throw new RangeError("paired windows: no calls completed");
  return { calls, seconds, rate: calls / seconds, cpuClient: client / calls, cpuServer: server / calls };
}

/** One block alone (in the JSON, to see the spread within a round). */
export interface BlockFigures { p50: number; cpuClient: number; cpuServer: number }
/**
 * The paired P1 of one round: each side pooled, the ratios ours / birpc, and each block's own
 * figures in the order run.
 */
export interface PairedSeq {
  blocks: number; ours: SeqSide; peer: SeqSide; ratio: { p50: number; p99: number; cpuClient: number; cpuServer: number };
  perBlock: { ours: BlockFigures[]; peer: BlockFigures[] };
}
/** The paired P2 of one round, with each window's rate. */
export interface PairedPipe {
  windows: number; ours: PipeSide; peer: PipeSide; ratio: { rate: number; cpuClient: number; cpuServer: number };
  perWindow: { ours: number[]; peer: number[] };
}
/** What one round's paired phase measured (`info.paired` of the round's JSON). */
export interface PairedRound { peer: string; p1?: PairedSeq; p2?: PairedPipe }

const div = (a: number, b: number): number => (b > 0 ? a / b : Number.NaN);
function blockFigures(b: SeqBlock): BlockFigures {
  const n = b.us.length;
  return { p50: latency(b.us).p50, cpuClient: b.clientCpuUs / n, cpuServer: b.serverCpuUs / n };
}

export function pairSeq(ours: readonly SeqBlock[], peer: readonly SeqBlock[]): PairedSeq {
  if (ours.length !== peer.length) throw new RangeError(`paired blocks: ${ours.length} of ours against ${peer.length} of the peer's`);
  const a = poolSeq(ours);
  const b = poolSeq(peer);
  return {
    blocks: ours.length, ours: a, peer: b,
    ratio: { p50: div(a.p50, b.p50), p99: div(a.p99, b.p99), cpuClient: div(a.cpuClient, b.cpuClient), cpuServer: div(a.cpuServer, b.cpuServer) },
    perBlock: { ours: ours.map(blockFigures), peer: peer.map(blockFigures) },
  };
}

export function pairPipe(ours: readonly PipeWindow[], peer: readonly PipeWindow[]): PairedPipe {
  if (ours.length !== peer.length) throw new RangeError(`paired windows: ${ours.length} of ours against ${peer.length} of the peer's`);
  const a = poolPipe(ours);
  const b = poolPipe(peer);
  const rates = (ws: readonly PipeWindow[]): number[] => ws.map((w) => div(w.calls, w.seconds));
  return {
    windows: ours.length, ours: a, peer: b, ratio: { rate: div(a.rate, b.rate), cpuClient: div(a.cpuClient, b.cpuClient), cpuServer: div(a.cpuServer, b.cpuServer) },
    perWindow: { ours: rates(ours), peer: rates(peer) },
  };
}

/** Median and range of a figure over rounds (non-finite values left out); null when none is left. */
export interface Summary { median: number; min: number; max: number; rounds: number }
export function summarize(values: readonly (number | null | undefined)[]): Summary | null {
  const v = values.filter((x): x is number => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  const median = v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, rounds: v.length };
}

/** Whether `ratio` meets `spec` (a relative target: ≤ or ≥ x times the peer's). */
export function meets(ratio: number, spec: TargetSpec): boolean {
  return spec.dir === "le" ? ratio <= spec.x : ratio >= spec.x;
}

/** The issue-13 targets against birpc, scored on the paired ratios. */
export const P1_VS_BIRPC: TargetSpec = { dir: "le", x: 0.8 };
export const P2_VS_BIRPC: TargetSpec = { dir: "ge", x: 1.5 };

/**
 * The paired rows of one round: ours and the peer's figure from the same blocks, the round's
 * ratio, and the target (P1 p50 and CPU per call per side ≤ 0.8× birpc; P2 rate ≥ 1.5× birpc).
 * {@link aggregate} (figures.ts) takes the median and range of the per-round ratios.
 */
export function addPairedRows(figs: Figures, r: PairedRound): void {
  const note = `vs ${r.peer}, paired`;
  const row = (name: string, unit: string, ours: number, peer: number, ratio: number, spec?: TargetSpec): void => {
    figs.add(name, unit, ours, peer, spec, { note, pairedRatio: ratio });
  };
  if (r.p1 !== undefined) {
    const { ours: a, peer: b, ratio } = r.p1;
    row(`P1 p50 against ${r.peer} (paired)`, "µs", a.p50, b.p50, ratio.p50, P1_VS_BIRPC);
    row(`P1 CPU per call client against ${r.peer} (paired)`, "µs", a.cpuClient, b.cpuClient, ratio.cpuClient, P1_VS_BIRPC);
    row(`P1 CPU per call server against ${r.peer} (paired)`, "µs", a.cpuServer, b.cpuServer, ratio.cpuServer, P1_VS_BIRPC);
    row(`  P1 p99 against ${r.peer} (paired)`, "µs", a.p99, b.p99, ratio.p99);
  }
  if (r.p2 !== undefined) {
    const { ours: a, peer: b, ratio } = r.p2;
    row(`P2 rate against ${r.peer} (paired)`, "calls/s", a.rate, b.rate, ratio.rate, P2_VS_BIRPC);
    row(`  P2 CPU per call client against ${r.peer} (paired)`, "µs", a.cpuClient, b.cpuClient, ratio.cpuClient);
    row(`  P2 CPU per call server against ${r.peer} (paired)`, "µs", a.cpuServer, b.cpuServer, ratio.cpuServer);
  }
}
