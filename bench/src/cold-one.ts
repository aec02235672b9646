/**
 * Bench diagnostic (not part of `pnpm bench`): the first calls of a FRESH process with both ends
 * in it, over a memory transport (no socket, no kernel, no second process), each call timed alone
 * (wall µs = this thread's CPU: nothing else runs in between). What our own JavaScript costs call
 * by call while V8 has not yet given the functions feedback vectors (calls 2-~10: every property
 * access is a full lookup), without the noise of two processes on shared cores. Runs `--runs R`
 * fresh child processes of each build given (`--root DIR`, default this checkout; several
 * `--root`s alternate run by run) and prints, per build, the median over runs of call 1, each of
 * calls 2-`--show`, the sum of calls 2-10 and of 11-100.
 *
 *   node bench/dist/cold-one.js [--runs 10] [--calls 100] [--show 12] [--root ../base --root .] [-- NODE_FLAGS...]
 *
 * Node flags after `--` go to the children (diagnosis only: e.g. `--no-lazy-feedback-allocation`,
 * `--cpu-prof`). Child mode: `cold-one.js --child ROOT CALLS`, prints the µs as JSON; with
 * MP_COLD_ONE_MARKS=1 it writes `#call I` (synchronously) before each call, so V8's trace lines
 * (e.g. `stdbuf -oL node --trace-baseline-batch-compilation cold-one.js --child . 12`) fall
 * between them.
 * Threading: the main (loop) thread of each process.
 */
import { execFileSync } from "node:child_process";
import { writeSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const argv = process.argv.slice(2);
const dashdash = argv.indexOf("--");
const own = dashdash < 0 ? argv : argv.slice(0, dashdash);
const nodeFlags = dashdash < 0 ? [] : argv.slice(dashdash + 1);
const num = (name: string, dflt: number): number => {
  const i = own.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(own[i + 1]);
};

async function child(root: string, calls: number): Promise<void> {
  const url = (p: string): string => pathToFileURL(resolve(root, p)).href;
  const cp = (await import(url("packages/capnp/dist/index.js"))) as typeof import("@multiprocess-ts/capnp");
  const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
  const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  const impl = (await import(url("bench/dist/foo-impl.js"))) as typeof import("./foo-impl.js");
  const loop = new rt.EventLoop("cold-one", { log: { level: "warning" } });
  const [ct, st] = cp.memoryTransportPair();
  const server = rt.serveTransport(loop, st, new impl.BenchFoo(), foo.FooInterfaceServer);
  const client = await rt.connectTransport(loop, ct, foo.FooInterfaceClient);
  const us: number[] = [];
  const starts: bigint[] = [];
  const marks = process.env.MP_COLD_ONE_MARKS === "1";
  for (let i = 0; i < calls; i++) {
    if (marks) writeSync(1, `#call ${i + 1}\n`);
    const t0 = process.hrtime.bigint();
    starts.push(t0);
    if ((await client.add(i, 1)) !== i + 1) throw new Error("cold-one: wrong sum");
    us.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  await client.close();
  await server.close();
  // For profile-summary.js --from/--to: calls 2-10 in monotonic µs (on stderr, per process).
  if (calls > 10) process.stderr.write(`cold-one ${process.pid}: calls 2-10: --from ${starts[1]! / 1000n} --to ${starts[10]! / 1000n}\n`);
  process.stdout.write(JSON.stringify(us) + "\n");
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function parent(): void {
  const runs = num("runs", 10);
  const calls = Math.max(100, num("calls", 100));
  const show = num("show", 12);
  const roots: string[] = [];
  for (let i = 0; i < own.length; i++) if (own[i] === "--root") roots.push(resolve(own[i + 1]!));
  if (roots.length === 0) roots.push(resolve(fileURLToPath(new URL("../..", import.meta.url))));
  const self = fileURLToPath(import.meta.url);
  const per = roots.map(() => [] as number[][]);
  for (let r = 0; r < runs; r++) {
    for (let b = 0; b < roots.length; b++) {
      const k = (r % 2 === 0 ? b : roots.length - 1 - b); // alternate the order run by run
      const out = execFileSync(process.execPath, [...nodeFlags, self, "--child", roots[k]!, String(calls)], { encoding: "utf8" });
      per[k]!.push(JSON.parse(out.trim().split("\n").pop()!) as number[]);
    }
  }
  const f = (x: number): string => x.toFixed(0);
  for (let b = 0; b < roots.length; b++) {
    const rs = per[b]!;
    const at = (i: number): number => median(rs.map((u) => u[i]!));
    const sum = (a: number, z: number): number[] => rs.map((u) => u.slice(a - 1, z).reduce((x, y) => x + y, 0));
    const s210 = sum(2, 10);
    const s11 = sum(11, 100);
    process.stdout.write(`${roots[b]} (${runs} fresh processes${nodeFlags.length > 0 ? `, ${nodeFlags.join(" ")}` : ""}): median µs\n`
      + `  call 1 ${f(at(0))}; calls 2-${show}: ${Array.from({ length: show - 1 }, (_, i) => f(at(i + 1))).join(" ")}\n`
      + `  sum of calls 2-10 ${f(median(s210))} (range ${f(Math.min(...s210))}-${f(Math.max(...s210))}); sum of 11-100 ${f(median(s11))} (range ${f(Math.min(...s11))}-${f(Math.max(...s11))})\n`);
  }
}

if (own[0] === "--child") {
  child(own[1]!, Number(own[2])).catch((e: unknown) => {
    process.stderr.write(`cold-one: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
} else {
  parent();
}
