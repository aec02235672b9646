/**
 * Bench diagnostic (not part of `pnpm bench`): both ends of P1's `add` (and P2's, `--pipe 64`) in
 * ONE process over an in-memory transport pair, for TWO builds of this repository side by side,
 * in alternating blocks (issue 13, ninth session). What a block costs is our own code on both
 * sides (generated client and server, runtime, engine, the memory transport), without sockets,
 * Node streams, the kernel or cross-process wake-ups; the two builds run in the same process
 * under the same load, so a paired difference per block resolves changes that the one-process
 * figures of single runs (`one-process.js`, whose rounds move by 30 % at load 3) do not.
 *
 *   node bench/dist/diag-engine-ab.js --a DIR --b DIR [--n 5000] [--blocks 30] [--pipe 0] [--warm 4]
 *
 * DIR is a built checkout (e.g. the baseline worktree and this one). Each build's runtime,
 * generated FooInterface and bench impl are loaded by absolute path (two module graphs, each with
 * its own capnp-ts). Blocks alternate A B B A ...; each block's `process.cpuUsage()` over its `n`
 * calls is one sample. Prints each build's median and range and the median of the per-block
 * paired difference B − A, with how many blocks B was lower in. Nothing is asserted.
 *
 * Threading: the main (loop) thread.
 */

import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { cpuNow } from "./diag-loops.js";

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

interface Foo {
  add(a: number, b: number): Promise<number>;
}

/** One build's client, connected over its own memory transport pair to its own server. */
async function loadBuild(dir: string): Promise<Foo> {
  const url = (p: string): string => pathToFileURL(join(resolve(dir), p)).href;
  const cp = (await import(url("packages/capnp/dist/index.js"))) as typeof import("@multiprocess-ts/capnp");
  const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
  const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  const impl = (await import(url("bench/dist/foo-impl.js"))) as typeof import("./foo-impl.js");
  const loop = new rt.EventLoop(`diag-engine-ab ${dir}`, { log: { level: "warning" } });
  const [ct, st] = cp.memoryTransportPair();
  rt.serveTransport(loop, st, new impl.BenchFoo(), foo.FooInterfaceServer);
  return rt.connectTransport(loop, ct, foo.FooInterfaceClient);
}

async function block(foo: Foo, n: number, pipe: number): Promise<number> {
  const c0 = cpuNow();
  if (pipe <= 1) {
    for (let i = 0; i < n; i++) if ((await foo.add(i, 1)) !== i + 1) throw new Error("diag-engine-ab: wrong sum");
  } else {
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < n) {
        const i = next++;
        if ((await foo.add(i, 1)) !== i + 1) throw new Error("diag-engine-ab: wrong sum");
      }
    };
    await Promise.all(Array.from({ length: pipe }, lane));
  }
  return (cpuNow() - c0) / n;
}

const dirs = [opt("a", "."), opt("b", ".")];
const n = Number(opt("n", "5000"));
const blocks = Number(opt("blocks", "30"));
const pipe = Number(opt("pipe", "0"));
const warm = Number(opt("warm", "4"));
const foos: Foo[] = [];
for (const d of dirs) foos.push(await loadBuild(d));
for (let w = 0; w < warm; w++) for (const f of foos) await block(f, Math.max(n, 5000), pipe);
const got: number[][] = [[], []];
for (let b = 0; b < blocks; b++) {
  const order = b % 2 === 0 ? [0, 1] : [1, 0];
  for (const i of order) got[i]!.push(await block(foos[i]!, n, pipe));
}
const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
const what = pipe > 1 ? `add, ${pipe} in flight` : "sequential add";
const out = [`both sides in one process, CPU µs per call (${blocks} blocks of ${n} ${what}, alternating)`];
[0, 1].forEach((i) => {
  const xs = got[i]!;
  out.push(`${"AB"[i]} ${dirs[i]!.padEnd(24)} median ${med(xs).toFixed(2).padStart(7)}  range ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`);
});
const diff = got[1]!.map((x, i) => x - got[0]![i]!);
const below = diff.filter((d) => d < 0).length;
out.push(`B − A per block: median ${med(diff).toFixed(2)} µs, range ${Math.min(...diff).toFixed(2)}–${Math.max(...diff).toFixed(2)}; B lower in ${below} of ${diff.length} blocks`);
process.stdout.write(out.join("\n") + "\n");
process.exit(0);
