/**
 * Bench diagnostic (not part of `pnpm bench`), V8 alone, none of our code: what a Map costs that
 * gains and loses an entry per operation with 64 entries live (the answer table of a server with
 * 64 calls in flight, as it was before rpc/answers.ts kept low question IDs in an array), when the
 * Map's hash table is young and when it has been promoted to the old generation first (idle
 * through two GCs, as the server's Map was through P1); `array` = the same churn in an array
 * indexed by key, promoted first (what answers.ts does now). Keys cycle through 0..127 as reused
 * question IDs do. Prints CPU ms and the GCs (run with `--trace-gc` to see their pauses); see
 * bench/README "P2 depends on what ran before it".
 *
 *   node --expose-gc bench/dist/diag-map-churn.js [young|old|array] [--ops 5000000]
 *
 * Threading: the main thread.
 */
import { PerformanceObserver, constants } from "node:perf_hooks";

const args = process.argv.slice(2);
const mode = args.find((a) => a === "young" || a === "old" || a === "array") ?? "young";
const old = mode !== "young";
const i = args.indexOf("--ops");
const OPS = i >= 0 ? Number(args[i + 1]) : 5_000_000;
const gc = (globalThis as { gc?: () => void }).gc;
if (old && gc === undefined) throw new Error("diag-map-churn old: run node with --expose-gc");

let minor = 0;
let major = 0;
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
    if (kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
    else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++;
  }
});

type Entry = { a: number[] };
const map = new Map<number, Entry>();
const arr: (Entry | undefined)[] = new Array<Entry | undefined>(128).fill(undefined);
const m = mode === "array"
  ? { set: (k: number, v: Entry): void => { arr[k] = v; }, delete: (k: number): void => { arr[k] = undefined; } }
  : map;
m.set(-1, { a: [] }); // the Map's first table (emptied again below)
m.delete(-1);
if (old) {
  gc!();
  gc!(); // the table has survived two collections: it is in the old generation
}
obs.observe({ entryTypes: ["gc"] });
const c0 = process.cpuUsage();
let id = 0;
for (let k = 0; k < 64; k++) m.set(id++ & 127, { a: new Array<number>(20).fill(k) });
for (let k = 0; k < OPS; k++) {
  m.delete((id - 64) & 127);
  m.set(id++ & 127, { a: new Array<number>(20).fill(k) });
}
const c = process.cpuUsage(c0);
await new Promise((r) => setTimeout(r, 100)); // the observer's entries are delivered later
obs.disconnect();
process.stdout.write(`${{ young: "Map, young table", old: "Map, old table  ", array: "array, old      " }[mode]}  ${OPS} delete+set: CPU ${((c.user + c.system) / 1000).toFixed(0)} ms, scavenges ${minor}, mark-compacts ${major}\n`);
