/**
 * Figures of `pnpm bench`: one round's rows (collected by run.ts in the round's child process),
 * their aggregation over rounds (median and range, in main.ts) and the printed table. Runs on the
 * main thread of the bench processes. Paired rows (`--peers`, paired.ts) carry each round's ratio
 * ours / peer from the same round's alternating blocks; over rounds their ratio is the median of
 * the per-round ratios (with its range), not the ratio of the medians.
 */
import { summarize } from "./paired.js";

export type Dir = "le" | "ge";
export interface TargetSpec { dir: Dir; x: number; abs?: boolean }

export interface Figure {
  name: string;
  unit: string;
  ours: number | null;
  floor: number | null;
  ratio: number | null;
  target: string | null;
  met: boolean | null;
  spec?: TargetSpec;
  /** A supporting row (indented in the table): no target of its own. */
  informational?: boolean;
  /** C++ reference (libcapnp-rpc C++ ↔ C++ on the same schema), when measured. */
  cpp?: number | null;
  note?: string;
  /** Aggregated over rounds: [min, max] of `ours`. */
  range?: [number, number];
  rounds?: number;
  /**
   * A paired row: `floor` is the peer's figure from the same round's alternating blocks and
   * `ratio` that round's ours / peer; aggregated, `ratio` is the median of the per-round ratios.
   */
  paired?: true;
  /** Aggregated paired rows: each round's ratio, in round order, and their [min, max]. */
  ratios?: number[];
  ratioRange?: [number, number];
}

function judge(f: Figure): void {
  if (f.paired !== true) f.ratio = f.ours !== null && f.floor !== null && f.floor > 0 ? f.ours / f.floor : null;
  const s = f.spec;
  if (s === undefined) { f.target = null; f.met = null; return; }
  const sym = s.dir === "le" ? "≤" : "≥";
  f.target = s.abs === true ? `${sym} ${s.x} ${f.unit}` : `${sym} ${s.x}× ${f.note?.startsWith("vs ") === true ? f.note.slice(3) : "floor"}`;
  const v = s.abs === true ? f.ours : f.ratio;
  f.met = v === null ? null : s.dir === "le" ? v <= s.x : v >= s.x;
}

/** The rows of one round. */
export class Figures {
  readonly rows: Figure[] = [];
  add(name: string, unit: string, ours: number | null, floor: number | null, spec?: TargetSpec,
    extra: { cpp?: number | null; note?: string; pairedRatio?: number } = {}): void {
    const f: Figure = { name: name.trim(), unit, ours, floor, ratio: null, target: null, met: null };
    if (spec !== undefined) f.spec = spec;
    if (name.startsWith(" ")) f.informational = true;
    if (extra.cpp !== undefined) f.cpp = extra.cpp;
    if (extra.note !== undefined) f.note = extra.note;
    if (extra.pairedRatio !== undefined) {
      f.paired = true;
      f.ratio = Number.isFinite(extra.pairedRatio) ? extra.pairedRatio : null;
    }
    judge(f);
    this.rows.push(f);
  }
  /** Two informational rows: CPU µs per call of each side, next to the floor's. */
  cpu(label: string, ours: { client: number; server: number }, floor: { client: number; server: number } | null): void {
    this.add(`  ${label} CPU per call, client`, "µs", ours.client, floor?.client ?? null);
    this.add(`  ${label} CPU per call, server`, "µs", ours.server, floor?.server ?? null);
  }
  /**
   * Informational rows: read and write syscalls per call of each side (how the calls batch: one
   * read and one write per call and side when each call travels alone), when counted.
   */
  io(label: string, cpu: { io?: { clientReads: number; clientWrites: number; serverReads: number; serverWrites: number } }): void {
    const io = cpu.io;
    if (io === undefined) return;
    this.add(`  ${label} write syscalls per call, client`, "/call", io.clientWrites, null);
    this.add(`  ${label} write syscalls per call, server`, "/call", io.serverWrites, null);
    this.add(`  ${label} read syscalls per call, client`, "/call", io.clientReads, null);
    this.add(`  ${label} read syscalls per call, server`, "/call", io.serverReads, null);
  }
  set(prefix: string, field: "cpp", v: number): void {
    for (const f of this.rows) if (f.name.startsWith(prefix)) f[field] = v;
  }
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const med = (v: (number | null | undefined)[]): number | null => {
  const n = v.filter((x): x is number => typeof x === "number" && Number.isFinite(x));
  return n.length === 0 ? null : median(n);
};

/** Median (and range of ours) per row name over rounds; order of the first round that has it. */
export function aggregate(rounds: Figure[][]): Figure[] {
  const names: string[] = [];
  const by = new Map<string, Figure[]>();
  for (const r of rounds) {
    for (const f of r) {
      let l = by.get(f.name);
      if (l === undefined) { l = []; by.set(f.name, l); names.push(f.name); }
      l.push(f);
    }
  }
  return names.map((name) => {
    const l = by.get(name)!;
    const f: Figure = { ...l[0]!, ours: med(l.map((x) => x.ours)), floor: med(l.map((x) => x.floor)), rounds: l.length };
    const cpp = med(l.map((x) => x.cpp));
    if (cpp !== null) f.cpp = cpp;
    const ours = l.map((x) => x.ours).filter((x): x is number => x !== null);
    if (ours.length > 0) f.range = [Math.min(...ours), Math.max(...ours)];
    if (f.paired === true) {
      f.ratios = l.map((x) => x.ratio).filter((x): x is number => x !== null);
      const s = summarize(f.ratios);
      f.ratio = s?.median ?? null;
      if (s !== null) f.ratioRange = [s.min, s.max];
    }
    judge(f);
    return f;
  });
}

export function fmt(v: number | null | undefined, unit?: string): string {
  if (v === null || v === undefined) return "-";
  if (unit === "calls/s" || unit === "calls" || Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(unit === "/call" ? 3 : 1);
}

function ratioCell(f: Figure): string {
  if (f.ratio === null) return "-";
  const r = f.ratioRange;
  return r === undefined || (f.ratios?.length ?? 1) < 2 ? `${f.ratio.toFixed(2)}×` : `${f.ratio.toFixed(2)}× (${r[0].toFixed(2)}–${r[1].toFixed(2)})`;
}

/**
 * Under the table: each paired row's ratio ours / peer in every round, their median and range,
 * and the verdict of its target (judged on that median).
 */
export function pairedLines(rows: Figure[]): string[] {
  const paired = rows.filter((f) => f.paired === true);
  if (paired.length === 0) return [];
  const out = ["", "paired against the peer (same round, alternating blocks, both servers alive): ratio ours / peer per round → median (range)"];
  const w = Math.max(...paired.map((f) => f.name.length));
  for (const f of paired) {
    const per = (f.ratios ?? []).map((x) => `${x.toFixed(2)}×`).join(" ");
    const med = ratioCell(f);
    const verdict = f.met === null ? "" : `  ${f.target}: ${f.met ? "met" : "NOT MET"}`;
    out.push(`  ${f.name.padEnd(w)}  ${per}  → ${med}${verdict}`);
  }
  return out;
}

/** The table of one mode (rows already aggregated). */
export function tableLines(rows: Figure[]): string[] {
  const cells = rows.map((f) => [(f.informational === true ? "  " : "") + f.name, f.unit, fmt(f.ours, f.unit),
    f.range === undefined || (f.rounds ?? 1) < 2 ? "" : `${fmt(f.range[0], f.unit)}–${fmt(f.range[1], f.unit)}`,
    fmt(f.floor, f.unit), ratioCell(f),
    f.target ?? "", f.met === null ? "" : f.met ? "met" : "NOT MET", fmt(f.cpp, f.unit)]);
  const head = ["figure", "unit", "ours", "range", "floor", "ratio", "target", "", "C++ ref"];
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const left = new Set([0, 1, 6, 7]);
  const line = (r: string[]): string => r.map((c, i) => (left.has(i) ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ").trimEnd();
  const out = [line(head), line(w.map((n) => "-".repeat(n)))];
  for (const r of cells) out.push(line(r));
  const scored = rows.filter((f) => f.met !== null);
  out.push("", `targets met: ${scored.filter((f) => f.met).length}/${scored.length}` +
    (scored.some((f) => f.met === false) ? ` (not met: ${scored.filter((f) => f.met === false).map((f) => f.name).join("; ")})` : ""));
  return out;
}
