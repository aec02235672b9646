/**
 * Bench diagnostic (not part of `pnpm bench`): the CLIENT half of a P1 call of two builds of this
 * repository, A/B in the SAME process under the same load (issue 13, ninth session). The client
 * mirror of diag-server-ab.ts, with client-only.ts's echo peer (echo-peer.ts) in place of a server.
 *
 *   node --expose-gc --max-semi-space-size=64 bench/dist/diag-client-echo-ab.js --a DIR --b DIR
 *        [--n 5000] [--blocks 30] [--pipe 0] [--poly] [--print]
 *
 * DIR is a built checkout (e.g. `../base`, a built checkout of main, and `.`). The process loads each build's runtime
 * and generated FooInterface (two module graphs side by side, each with its own capnp-ts), gives
 * each an EventLoop and a FooInterfaceClient over its own echo peer, and runs blocks of `n`
 * sequential `add(i, 1)` calls (or `--pipe K`: K in flight), alternating between the builds (the
 * order flips every block). Per build: the median CPU per call over the blocks and the median of
 * the per-block paired difference B − A; with `--expose-gc`, also the bytes allocated per call
 * (new-space growth over 2,000 calls after a `gc()`, a window with no scavenge: run with
 * `--max-semi-space-size=64`; the median of 5 windows per build, alternating). Sequential blocks
 * also give each call's wall-clock time: a block's 25th percentile leaves out the calls the shared
 * machine preempted, so its paired difference resolves changes the CPU figures' noise hides.
 * Nothing is asserted.
 *
 * `--poly`: the calls cycle through add, addOut and addInOut (same shapes, the echo peer answers
 * each with the sum), so the runtime's call sites see several generated methods, as in an
 * application. Neither DIR should be this checkout: a build whose modules the harness itself
 * imports runs faster in this process (measured 0.3 µs per call, A against an identical copy);
 * compare two copies, in both orders.
 *
 * Threading: the main (loop) thread.
 */
import { getHeapSpaceStatistics } from "node:v8";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { cpuNow } from "./diag-loops.js";
import { EchoPeer } from "./echo-peer.js";

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

type Add = (a: number, b: number) => Promise<number>;
const POLY = process.argv.includes("--poly");

async function loadClient(dir: string): Promise<{ add: Add; close(): Promise<void> }> {
  const url = (p: string): string => pathToFileURL(join(resolve(dir), p)).href;
  const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
  const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  const loop = new rt.EventLoop(`diag-client-echo-ab ${dir}`, { log: { level: "warning" } });
  const client = await rt.connectTransport(loop, new EchoPeer(), foo.FooInterfaceClient);
  // --poly: three methods of the same shape in turn (add, addOut, addInOut), as an application
  // calling several methods would; the echo peer answers each with the sum.
  const poly = [(a: number, b: number) => client.add(a, b), (a: number, b: number) => client.addOut(a, b), (a: number, b: number) => client.addInOut(a, b)];
  let k = 0;
  const add: Add = POLY ? (a, b) => poly[k++ % 3]!(a, b) : (a, b) => client.add(a, b);
  return { add, close: () => client.close() };
}

/** The last sequential block's per-call wall-clock µs, sorted. */
let lastUs = new Float64Array(0);

async function block(add: Add, n: number, pipe: number): Promise<number> {
  const c0 = cpuNow();
  if (pipe <= 1) {
    const us = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      if ((await add(i, 1)) !== i + 1) throw new Error("diag-client-echo-ab: wrong sum");
      us[i] = (performance.now() - t0) * 1000;
    }
    lastUs = us.sort();
  } else {
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < n) {
        const i = next++;
        if ((await add(i, 1)) !== i + 1) throw new Error("diag-client-echo-ab: wrong sum");
      }
    };
    await Promise.all(Array.from({ length: pipe }, lane));
  }
  return (cpuNow() - c0) / n;
}

async function bytesPerCall(add: Add, n: number): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const young = (): number => getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!.space_used_size;
  gc();
  const y0 = young();
  for (let i = 0; i < n; i++) await add(i, 1);
  const y1 = young();
  return y1 > y0 ? (y1 - y0) / n : NaN; // a scavenge ran: no figure
}

const dirs = [opt("a", "."), opt("b", ".")];
const n = Number(opt("n", "5000"));
const blocks = Number(opt("blocks", "30"));
const pipe = Number(opt("pipe", "0"));
// A build whose modules this harness imports itself runs faster here than an identical copy
// (ninth session: 0.3-0.65 µs per call in favour of that side, in 20 of 20 blocks): say so.
const HARNESS_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
for (const d of dirs) {
  if (resolve(d) === HARNESS_ROOT) process.stderr.write(`note: ${d} is this harness's own checkout, which the A/B favours; compare two other copies, in both orders\n`);
}
const clients = [];
for (const d of dirs) clients.push(await loadClient(d));
for (let w = 0; w < 3; w++) for (const c of clients) await block(c.add, Math.max(n, 5000), pipe); // warm-up
const got: number[][] = [[], []];
const p25: number[][] = [[], []];
for (let b = 0; b < blocks; b++) {
  for (const k of b % 2 === 0 ? [0, 1] : [1, 0]) {
    got[k]!.push(await block(clients[k]!.add, n, pipe));
    if (pipe <= 1) p25[k]!.push(lastUs[lastUs.length >> 2]!);
  }
}
const bytes: number[][] = [[], []];
if ((globalThis as { gc?: unknown }).gc !== undefined) {
  for (let w = 0; w < 5; w++) for (const k of w % 2 === 0 ? [0, 1] : [1, 0]) bytes[k]!.push(await bytesPerCall(clients[k]!.add, 2000));
}
for (const c of clients) await c.close();

const med = (xs: number[]): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((x, y) => x - y);
  return s.length === 0 ? NaN : s[s.length >> 1]!;
};
const what = pipe > 1 ? `add, ${pipe} in flight` : "sequential add";
const out = [`client CPU per call, µs (echo peer; ${blocks} blocks of ${n} ${what}, alternating)`];
if (process.argv.includes("--print")) {
  for (let b = 0; b < blocks; b++) out.push(`block ${b}: A ${got[0]![b]!.toFixed(2)}  B ${got[1]![b]!.toFixed(2)}`);
}
dirs.forEach((d, k) => {
  const xs = got[k]!;
  const by = bytes[k]!.length > 0 ? `  bytes per call ${med(bytes[k]!).toFixed(0)} (${bytes[k]!.map((x) => x.toFixed(0)).join(", ")})` : "";
  out.push(`${"AB"[k]} ${d.padEnd(24)} median ${med(xs).toFixed(2).padStart(6)}  range ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}${by}`);
});
const paired = (what: string, xs: number[][]): void => {
  const diff = xs[1]!.map((x, i) => x - xs[0]![i]!);
  out.push(`${what} B − A per block: median ${med(diff).toFixed(2)} µs, range ${Math.min(...diff).toFixed(2)}–${Math.max(...diff).toFixed(2)}; B lower in ${diff.filter((d) => d < 0).length} of ${diff.length} blocks`);
};
paired("CPU per call:", got);
if (pipe <= 1) {
  // A call's wall time with nothing else running is its CPU: the 25th percentile of a block's
  // calls leaves out the calls this shared machine preempted, which move the CPU figures most.
  dirs.forEach((_d, k) => out.push(`${"AB"[k]} per-call wall µs, p25 of a block: median ${med(p25[k]!).toFixed(3)}`));
  paired("p25 wall:", p25);
}
process.stdout.write(out.join("\n") + "\n");
process.exit(0);
