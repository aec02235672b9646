/**
 * Bench diagnostic (not part of `pnpm bench`): P3 (a worker's `callIntFnAsync` relayed through
 * the loop thread) of two builds of this repository, A/B in the SAME processes under the same load
 * (issue 13, ninth session; bench/README.md "P3 and P4 (ninth session)").
 *
 *   node bench/dist/diag-p3-ab.js --a DIR --b DIR [--n 5000] [--warmup 2000] [--blocks 10] [--print]
 *   taskset -c 0 node bench/dist/diag-p3-ab.js ...      # pinned: every thread on one CPU
 *
 * DIR is a built checkout. Both processes load each build (two module graphs side by side, see
 * ab-builds.ts): the server child serves each build's BenchFoo on its own socket, and this
 * process (the loop thread) connects one client per build, shares it with workers through that
 * build's `attachWorkers`, and per block starts a fresh worker from that build's
 * bench/dist/worker.js (mode "p3": `warmup` untimed calls, then `n` timed ones), alternating the
 * builds (the order flips every block). Per block: the p50, the CPU per call of the worker thread,
 * the loop thread and the server, and write syscalls per call of this process. Prints each
 * build's medians and the median per-block difference B − A, as diag-p4-ab.js. Nothing is
 * asserted.
 *
 * Threading: the main thread is the loop thread of both builds; the calls run on worker threads.
 */
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { loadBuild, printAb, type BuildMods, serveBuilds, serverCpu, writeCount } from "./ab-builds.js";
import { latency, threadStats } from "./stats.js";

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

interface P3Result { us: Float64Array; workerCpuUs: number | null; workerSlices: number | null }

/** Messages from a bench worker, one at a time. */
function inbox(w: Worker): () => Promise<unknown> {
  const queue: unknown[] = [];
  const waiting: ((m: unknown) => void)[] = [];
  w.on("message", (m: unknown) => {
    const e = (m as { error?: string } | null)?.error;
    if (e !== undefined) throw new Error(`bench worker: ${e}`);
    if (waiting.length > 0) waiting.shift()!(m);
    else queue.push(m);
  });
  return () => new Promise((ok) => (queue.length > 0 ? ok(queue.shift()) : waiting.push(ok)));
}

async function main(): Promise<void> {
  if (process.argv[2] === "server") {
    await serveBuilds(process.argv.slice(3, 5), process.argv.slice(5, 7));
    return;
  }
  const dirs = [opt("a", "."), opt("b", ".")];
  const n = Number(opt("n", "5000"));
  const warmup = Number(opt("warmup", "2000"));
  const blocks = Number(opt("blocks", "10"));
  const tmp = mkdtempSync(join(tmpdir(), "mpts-p3-ab-"));
  const paths = dirs.map((_, i) => join(tmp, `s${i}.sock`));
  const child = fork(fileURLToPath(import.meta.url), ["server", ...dirs, ...paths], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  await new Promise((ok) => child.once("message", ok));
  type Build = { m: BuildMods; foo: { initThreadMap(): Promise<void>; close(): Promise<void> }; workers: ReturnType<BuildMods["nd"]["attachWorkers"]>; unshare: () => void };
  const builds: Build[] = [];
  for (let i = 0; i < dirs.length; i++) {
    const m = await loadBuild(dirs[i]!);
    const loop = new m.rt.EventLoop(`diag-p3-ab ${i}`, { log: { level: "warning" } });
    const foo = await m.nd.connectSocket(loop, paths[i]!, m.foo.FooInterfaceClient);
    await foo.initThreadMap();
    const workers = m.nd.attachWorkers(loop);
    const unshare = workers.share("foo", foo);
    builds.push({ m, foo, workers, unshare });
  }
  const loopTid = String(process.pid);
  type Row = { p50: number; worker: number; loop: number; server: number; writes: number };
  const block = async (k: number, b: number): Promise<Row> => {
    const { m, workers } = builds[k]!;
    const handle = workers.handle({ name: `p3-ab-${k}-${b}` });
    const w = new Worker(m.workerJs, { workerData: { mode: "p3", handle, n, warmup }, transferList: m.nd.loopHandleTransferList(handle) as never });
    const exited = new Promise<void>((ok) => w.once("exit", () => ok()));
    const next = inbox(w);
    await next(); // ready, after the warm-up calls
    const s0 = await serverCpu(child);
    const t0 = threadStats().get(loopTid);
    const w0 = writeCount("self");
    w.postMessage("go");
    const r = (await next()) as P3Result;
    const w1 = writeCount("self");
    const t1 = threadStats().get(loopTid);
    const s1 = await serverCpu(child);
    await exited;
    return {
      p50: latency(r.us)!.p50,
      worker: (r.workerCpuUs ?? NaN) / n,
      loop: t0 === undefined || t1 === undefined ? NaN : (t1.cpuNs - t0.cpuNs) / 1000 / n,
      server: (s1 - s0) / n,
      writes: (w1 - w0) / n,
    };
  };
  await block(0, -1);
  await block(1, -1);
  const got: Row[][] = [[], []];
  for (let b = 0; b < blocks; b++) {
    for (const k of b % 2 === 0 ? [0, 1] : [1, 0]) got[k]!.push(await block(k, b));
  }
  for (const { foo, unshare } of builds) {
    unshare();
    await foo.close();
  }
  child.send("exit");
  await new Promise((ok) => child.once("exit", ok));
  rmSync(tmp, { recursive: true, force: true });
  process.stdout.write(`P3 callIntFnAsync from a worker, ${blocks} blocks of ${n} calls (+${warmup} warm-up, fresh worker) per build, alternating; µs; writes per call of this process\n`);
  printAb(dirs, got, ["p50", "worker", "loop", "server", "writes"], process.argv.includes("--print"));
}

// The server child stays up (serveBuilds answers until "exit"); the loop process exits when done.
main().then(() => process.argv[2] === "server" || process.exit(0), (e: unknown) => {
  process.stderr.write(`diag-p3-ab: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
