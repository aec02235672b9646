/**
 * `node bench/dist/profile-summary.js FILE.cpuprofile... [--top 15] [--skip MS]`
 *
 * Reads V8 CPU profiles (from `node --cpu-prof`) and prints, per file, the functions with the most
 * self time, plus self time grouped by package, excluding (idle). `--skip MS` ignores the first MS
 * milliseconds of each profile (process start-up, module loading); `--from US --to US` keeps only
 * the samples between two monotonic-clock instants (µs, as `process.hrtime.bigint() / 1000n`:
 * cold.ts prints its window's), on every process's profile alike.
 */
import { readFile } from "node:fs/promises";
import { relative } from "node:path";

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; hitCount?: number; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

function where(url: string): string {
  if (url === "") return "";
  let p = url.startsWith("file://") ? url.slice("file://".length) : url;
  p = relative(process.cwd(), p);
  return p.replace(/^.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, "");
}

function group(url: string): string {
  const p = where(url);
  if (p === "") return "(native/VM)";
  if (p.startsWith("node:")) return "node internals";
  const m = /^(packages\/[^/]+|proto|bench|test\/[^/]+)\//.exec(p);
  if (m) return m[1]!;
  const nm = /^((?:@[^/]+\/)?[^/]+)\//.exec(p);
  return nm ? nm[1]! : p;
}

async function summarize(file: string, top: number, skipMs: number, from: number, to: number): Promise<void> {
  const prof = JSON.parse(await readFile(file, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const n of prof.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  let t = 0;
  let at = prof.startTime;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i] ?? 0;
    at += prof.timeDeltas[i] ?? 0;
    if (t < skipMs * 1000 || at < from || at > to) continue;
    const id = prof.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  const fns = new Map<string, { name: string; loc: string; us: number }>();
  const groups = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === "(idle)") { idle += us; continue; }
    total += us;
    const loc = cf.url === "" ? "" : `${where(cf.url)}:${cf.lineNumber + 1}`;
    const key = `${cf.functionName}\0${loc}`;
    const e = fns.get(key) ?? { name: cf.functionName || "(anonymous)", loc, us: 0 };
    e.us += us;
    fns.set(key, e);
    const g = group(cf.url);
    groups.set(g, (groups.get(g) ?? 0) + us);
  }
  const wall = (Math.min(prof.endTime, to) - Math.max(prof.startTime, from)) / 1000 - skipMs;
  process.stdout.write(`\n${file}\n  wall ${wall.toFixed(0)} ms, busy ${(total / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms\n`);
  process.stdout.write(`  top ${top} by self time (share of busy time):\n`);
  const sorted = [...fns.values()].sort((a, b) => b.us - a.us).slice(0, top);
  for (const f of sorted) {
    process.stdout.write(`  ${(f.us / 1000).toFixed(1).padStart(8)} ms ${((100 * f.us) / total).toFixed(1).padStart(5)}%  ${f.name}  ${f.loc}\n`);
  }
  process.stdout.write("  by package:\n");
  for (const [g, us] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 10)) {
    process.stdout.write(`  ${(us / 1000).toFixed(1).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${g}\n`);
  }
}

const args = process.argv.slice(2);
const ti = args.indexOf("--top");
const top = ti >= 0 ? Number(args.splice(ti, 2)[1]) : 15;
const si = args.indexOf("--skip");
const skipMs = si >= 0 ? Number(args.splice(si, 2)[1]) : 0;
const fi = args.indexOf("--from");
const from = fi >= 0 ? Number(args.splice(fi, 2)[1]) : 0;
const toi = args.indexOf("--to");
const to = toi >= 0 ? Number(args.splice(toi, 2)[1]) : Infinity;
if (args.length === 0) {
  process.stderr.write("usage: profile-summary FILE.cpuprofile... [--top N]\n");
  process.exit(2);
}
for (const f of args) await summarize(f, top, skipMs, from, to);
