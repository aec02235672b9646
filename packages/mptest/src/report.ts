/**
 * Aggregation of iteration results: the per-scenario summary table and the --json report.
 *
 * Threading: runs on the mptest process's main thread (or a `--jobs` shard child's main thread).
 */

import type { IterationResult } from "./runner.js";

export interface ScenarioSummary {
  name: string;
  runs: number;
  passed: number;
  failures: number;
  leaks: number;
  hangs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Median CPU per iteration (IterationResult.cpuMs; 0 when not measured). */
  p50CpuMs: number;
}

export interface FailureRecord {
  scenario: string;
  iteration: number;
  seed: number;
  status: IterationResult["status"];
  error?: string;
  leaks?: string[];
  dump?: string;
  log?: string[];
  /** Command line that replays this iteration alone. */
  reproduce: string;
}

export interface JsonReport {
  version: 1;
  ok: boolean;
  seed: number;
  argv: string[];
  jobs: number;
  startedAt: string;
  elapsedMs: number;
  stopped: string;
  totals: { runs: number; passed: number; failures: number; leaks: number; hangs: number };
  scenarios: ScenarioSummary[];
  failures: FailureRecord[];
}

/** Nearest-rank percentile of an ascending array (0 for an empty one). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Summaries in the order of `names` (scenarios that never ran show zero runs). */
export function summarize(names: readonly string[], results: readonly IterationResult[]): ScenarioSummary[] {
  const by = new Map<string, IterationResult[]>();
  for (const n of names) by.set(n, []);
  for (const r of results) {
    let list = by.get(r.scenario);
    if (list === undefined) by.set(r.scenario, (list = []));
    list.push(r);
  }
  return [...by].map(([name, rs]) => {
    const d = rs.map((r) => r.durationMs).sort((a, b) => a - b);
    const cpu = rs.map((r) => r.cpuMs ?? 0).sort((a, b) => a - b);
    return {
      name,
      runs: rs.length,
      passed: rs.filter((r) => r.status === "pass").length,
      failures: rs.filter((r) => r.status === "fail").length,
      leaks: rs.filter((r) => r.status === "leak").length,
      hangs: rs.filter((r) => r.status === "hang").length,
      p50Ms: round(percentile(d, 50)),
      p99Ms: round(percentile(d, 99)),
      maxMs: round(d.length === 0 ? 0 : d[d.length - 1]!),
      p50CpuMs: round(percentile(cpu, 50)),
    };
  });
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

export function totals(s: readonly ScenarioSummary[]): JsonReport["totals"] {
  const t = { runs: 0, passed: 0, failures: 0, leaks: 0, hangs: 0 };
  for (const x of s) {
    t.runs += x.runs;
    t.passed += x.passed;
    t.failures += x.failures;
    t.leaks += x.leaks;
    t.hangs += x.hangs;
  }
  return t;
}

/** Plain-text table, one row per scenario plus a total. */
export function formatTable(s: readonly ScenarioSummary[]): string {
  const head = ["scenario", "runs", "fail", "leak", "hang", "p50 ms", "p99 ms", "max ms", "cpu p50"];
  const rows = s.map((x) => [
    x.name,
    String(x.runs),
    String(x.failures),
    String(x.leaks),
    String(x.hangs),
    x.p50Ms.toFixed(1),
    x.p99Ms.toFixed(1),
    x.maxMs.toFixed(1),
    x.p50CpuMs.toFixed(1),
  ]);
  const t = totals(s);
  rows.push(["TOTAL", String(t.runs), String(t.failures), String(t.leaks), String(t.hangs), "", "", "", ""]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join("  ").trimEnd();
  const sep = width.map((w) => "-".repeat(w)).join("  ");
  return [line(head), sep, ...rows.slice(0, -1).map(line), sep, line(rows[rows.length - 1]!)].join("\n");
}

/** Quotes one shell word when needed. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The command line that replays one iteration of one scenario. */
export function reproduceCommand(cli: string, scenario: string, seed: number, extra: readonly string[] = []): string {
  const args = ["node", cli, "--filter", `^${escapeRegExp(scenario)}$`, "--seed", String(seed), "--repeat", "1", ...extra];
  return args.map(shellQuote).join(" ");
}
