/**
 * Bench diagnostic (not part of `pnpm bench`): repeats a paired A/B tool (diag-server-ab.js or
 * diag-client-echo-ab.js) over several processes, in both orders, and aggregates (issue 13, ninth
 * session).
 *
 *   node bench/dist/diag-ab-runs.js --tool server|client --a DIR --b DIR [--runs 3] [--control DIR2]
 *        [-- ARGS for the tool, e.g. --n 2000 --blocks 20 --clients]
 *   taskset -c 1 node bench/dist/diag-ab-runs.js ...      # pinned: every child inherits the CPU
 *
 * Why: each of those tools loads both builds into one process, and within one process one module
 * graph can run faster than the other for reasons that are not its code (two identical copies,
 * A against A: 0.3-0.5 µs per call in favour of one side, in 16-20 of 20 blocks, and the other
 * side in the next process). Paired blocks remove the load's drift, not that. So: per process,
 * the tool's median of per-block differences B − A; `runs` processes A→B and `runs` B→A,
 * alternating; the effect of B over A is (mean(d A→B) − mean(d B→A)) / 2, and what the two orders
 * share, (mean(d A→B) + mean(d B→A)) / 2, is the side the process favoured. `--control DIR2` (an
 * identical copy of B) adds `runs` A/A processes B→DIR2: their spread is the noise floor of one
 * process's figure. Pass DIRs other than this checkout (the harness's own modules favour it).
 * Nothing is asserted.
 *
 * Threading: the main thread (it only spawns the tool and reads its output).
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const argv = process.argv.slice(2);
const dash = argv.indexOf("--");
const own = dash < 0 ? argv : argv.slice(0, dash);
const extra = dash < 0 ? [] : argv.slice(dash + 1);
const opt = (name: string, dflt: string | undefined): string | undefined => {
  const i = own.indexOf(`--${name}`);
  return i < 0 ? dflt : own[i + 1];
};
const tool = opt("tool", "server");
if (tool !== "server" && tool !== "client") throw new Error("diag-ab-runs: --tool server|client");
const a = opt("a", undefined);
const b = opt("b", undefined);
if (a === undefined || b === undefined) throw new Error("diag-ab-runs: --a DIR and --b DIR are required");
const runs = Number(opt("runs", "3"));
const control = opt("control", undefined);
const script = fileURLToPath(new URL(tool === "server" ? "./diag-server-ab.js" : "./diag-client-echo-ab.js", import.meta.url));

/** One process of the tool: the median of per-block B − A of each figure it prints, by label. */
function once(first: string, second: string): Map<string, number> {
  const r = spawnSync(process.execPath, [...process.execArgv, script, "--a", first, "--b", second, ...extra], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`diag-ab-runs: ${script} exited with ${r.status}: ${r.stderr}`);
  const got = new Map<string, number>();
  for (const line of r.stdout.split("\n")) {
    const m = /^(.*?):?\s*B − A per block: median (-?[0-9.]+) µs/.exec(line);
    if (m !== null) got.set(m[1]!.trim() || "figure", Number(m[2]));
  }
  return got;
}

const ab: Map<string, number>[] = [];
const ba: Map<string, number>[] = [];
const aa: Map<string, number>[] = [];
for (let i = 0; i < runs; i++) {
  ab.push(once(a, b));
  ba.push(once(b, a));
  if (control !== undefined) aa.push(once(b, control));
  process.stderr.write(`diag-ab-runs: ${i + 1} of ${runs}\n`);
}
const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
const list = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(", ");
const out = [`${tool} A/B over ${runs} processes per order (µs per call; per process: the median of per-block B − A)`, `  A = ${a}`, `  B = ${b}`];
for (const label of ab[0]!.keys()) {
  const d1 = ab.map((m) => m.get(label)!);
  const d2 = ba.map((m) => m.get(label)!);
  out.push(`${label}:`);
  out.push(`  A→B: ${list(d1)}   B→A: ${list(d2)}`);
  out.push(`  effect of B over A ${((mean(d1) - mean(d2)) / 2).toFixed(2)} µs; the side each process favoured ${((mean(d1) + mean(d2)) / 2).toFixed(2)}`);
  if (aa.length > 0) out.push(`  A/A control (B→copy): ${list(aa.map((m) => m.get(label)!))}`);
}
process.stdout.write(out.join("\n") + "\n");
