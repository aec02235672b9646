/**
 * `node bench/dist/diag-p3.js [--n 20000] [--warmup 3000] [--blocks 3]` (diagnosis only, not part
 * of `pnpm bench`; see bench/README.md "P3 (eighth session)").
 *
 * P3 alone, as run.ts runs it, without the floors and the other figures around it, so a profiler
 * (`perf record`, `--cpu-prof`) sees only the relayed calls: one bench server child, this process's
 * loop connected to it, and per block a fresh bench worker (worker.js, mode "p3") making `n`
 * sequential callIntFnAsync calls through the loop after `warmup` untimed ones. Prints per block the
 * p50, the CPU per call of the worker thread, the loop thread, the other threads and the server,
 * switch-ins per call per thread and write syscalls per call of this process. Run it under
 * `taskset -c 0` for the pinned mode (the server child inherits the affinity). `--server-prof DIR`
 * runs the server child under `--cpu-prof` (`DIR/server-diag-p3.cpuprofile`).
 *
 * Threading: the main thread is the loop thread; the calls run on the bench worker thread.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectTransport, EventLoop } from "@multiprocess-ts/runtime";
import { SocketReader, streamTransport } from "@multiprocess-ts/capnp";
import { attachWorkers, loopHandleTransferList } from "@multiprocess-ts/node";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectUnix, startServer, stepWorker, withCpu } from "./children.js";
import { latency, threadStats, writeSyscalls } from "./stats.js";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
}

const n = arg("n", 20000);
const warmup = arg("warmup", 3000);
const blocks = arg("blocks", 3);
const pi = process.argv.indexOf("--server-prof");
/** `--server-prof DIR`: the server child runs under `--cpu-prof` into DIR. */
const serverProf = pi < 0 ? undefined : process.argv[pi + 1];

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mpts-diag-p3-"));
  const loop = new EventLoop("diag-p3", { log: { level: "warning", logFn: (l, m) => process.stderr.write(`[${l}] ${m}\n`) } });
  const path = join(dir, "rpc.sock");
  const server = await startServer("rpc", path, "diag-p3", serverProf);
  try {
    const reader = new SocketReader();
    const socket = await connectUnix(path, reader);
    const foo = await connectTransport(loop, streamTransport(socket, undefined, undefined, reader), FooInterfaceClient);
    await foo.initThreadMap();
    const workers = attachWorkers(loop);
    const unshare = workers.share("foo", foo);
    console.log("block  p50µs  worker  loop  other  server  (CPU µs per call)  sw-in worker/loop  writes/call");
    for (let b = 0; b < blocks; b++) {
      const handle = workers.handle({ name: `diag-p3-${b}` });
      const { worker, next } = stepWorker({ mode: "p3", handle, n, warmup }, loopHandleTransferList(handle));
      const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
      const { tid } = await next<{ ready: true; tid: string | null }>();
      let r: { us: Float64Array; workerCpuUs: number | null; workerSlices: number | null } | undefined;
      let loopCpu = 0;
      let loopSlices = 0;
      let otherCpu = 0;
      let writes = 0;
      const cpu = await withCpu(server, async () => {
        const t0 = threadStats();
        const w0 = writeSyscalls() ?? 0;
        worker.postMessage("go");
        r = await next();
        const t1 = threadStats();
        writes = (writeSyscalls() ?? 0) - w0;
        for (const [t, s1] of t1) {
          const s0 = t0.get(t);
          if (s0 === undefined || t === tid) continue;
          if (t === String(process.pid)) {
            loopCpu = (s1.cpuNs - s0.cpuNs) / 1000;
            loopSlices = s1.slices - s0.slices;
          } else otherCpu += (s1.cpuNs - s0.cpuNs) / 1000;
        }
        return n;
      });
      await exited;
      const l = latency(r!.us);
      const w = (r!.workerCpuUs ?? NaN) / n;
      const f = (x: number): string => x.toFixed(1).padStart(6);
      console.log(`${String(b).padStart(5)} ${f(l.p50)} ${f(w)} ${f(loopCpu / n)} ${f(otherCpu / n)} ${f(cpu.server)}  ${" ".repeat(18)} ${((r!.workerSlices ?? NaN) / n).toFixed(2)}/${(loopSlices / n).toFixed(2)}  ${(writes / n).toFixed(2)}`);
    }
    unshare();
    await foo.close();
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`diag-p3: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
