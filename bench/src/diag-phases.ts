/**
 * Bench diagnostic (not part of `pnpm bench`): does a phase of sequential calls change what the
 * pipelined phase after it costs (bench/README "P2 depends on what ran before it")? One client
 * (this process) and one bench server child (server.js rpc) on a Unix socket, as `pnpm bench`;
 * runs the phases given, in order, on the same connection and prints per phase the CPU per call
 * of each side and, for the server child, its read and write syscalls per call (/proc/PID/io)
 * and its context switches per call (/proc/PID/status).
 *
 *   node bench/dist/diag-phases.js [--phases P2,P1,P2] [--n2 200000] [--n1 12000] [--server-flags "--trace-gc"]
 *
 * P1 = n1 sequential `add`; P2 = n2 `add` calls from 64 lanes; P2s = as P2 with one untimed
 * sequential call between each of 64 rounds... (kept simple: only P1 and P2). Threading: main thread.
 */
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectTransport, EventLoop } from "@multiprocess-ts/runtime";
import { SocketReader, streamTransport } from "@multiprocess-ts/capnp";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectUnix, here } from "./children.js";
import { cpuNow, pipelinedAdd } from "./diag-loops.js";
import type { ServerReply } from "./server.js";

const args = process.argv.slice(2);
const opt = (name: string, d: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : d;
};
const phases = opt("--phases", "P2,P1,P2").split(",");
const N1 = Number(opt("--n1", "12000"));
const N2 = Number(opt("--n2", "200000"));
const serverFlags = opt("--server-flags", "").split(" ").filter((s) => s !== "");

const dir = await mkdtemp(join(tmpdir(), "mpts-diag-"));
const path = join(dir, "rpc.sock");
const proc = fork(here("./server.js"), ["rpc", path], { execArgv: ["--expose-gc", ...serverFlags], stdio: ["ignore", "inherit", "inherit", "ipc"] });
await new Promise<void>((resolve) => proc.once("message", () => resolve()));
const serverCpu = (): Promise<number> => new Promise((resolve) => {
  proc.once("message", (r: ServerReply) => resolve("cpu" in r ? r.cpu.user + r.cpu.system : NaN));
  proc.send({ op: "cpu" });
});
const proc0 = (): { r: number; w: number; cs: number } => {
  const io = readFileSync(`/proc/${proc.pid}/io`, "utf8");
  const st = readFileSync(`/proc/${proc.pid}/status`, "utf8");
  const num = (s: string, k: string): number => Number(new RegExp(`${k}:\\s*(\\d+)`).exec(s)![1]);
  return { r: num(io, "syscr"), w: num(io, "syscw"), cs: num(st, "voluntary_ctxt_switches") + num(st, "nonvoluntary_ctxt_switches") };
};

const loop = new EventLoop("diag-client", { log: { level: "warning" } });
const reader = args.includes("--stream-reads") ? undefined : new SocketReader();
const socket = await connectUnix(path, reader);
const foo = await connectTransport(loop, streamTransport(socket, undefined, undefined, reader), FooInterfaceClient);
for (let i = 0; i < 100; i++) await foo.add(i, 1);

for (const ph of phases) {
  if (ph === "HPSTART" || ph.startsWith("HPSTOP:")) {
    // Diagnostic ops of a locally patched server.js (sampling heap profiler); not in server.ts.
    const m = ph === "HPSTART" ? { op: "hpstart" } : { op: "hpstop", file: ph.slice(7) };
    await new Promise<void>((resolve) => { proc.once("message", () => resolve()); proc.send(m as never); });
    continue;
  }
  if (ph === "GC") {
    await new Promise<void>((resolve) => { proc.once("message", () => resolve()); proc.send({ op: "mem" }); });
    process.stdout.write("GC  (server: gc() three times)\n");
    continue;
  }
  const s0 = await serverCpu();
  const p0 = proc0();
  const c0 = cpuNow();
  const t0 = performance.now();
  let n: number;
  if (ph.startsWith("P1")) {
    n = ph.length > 2 ? Number(ph.slice(3)) : N1;
    for (let i = 0; i < n; i++) if ((await foo.add(i, 1)) !== i + 1) throw new Error("wrong sum");
  } else {
    n = N2;
    await pipelinedAdd(foo, n, "diag-phases");
  }
  const wall = performance.now() - t0;
  const c = (cpuNow() - c0) / n;
  const p1 = proc0();
  const s = ((await serverCpu()) - s0) / n;
  const f = (x: number): string => x.toFixed(3);
  process.stdout.write(`${ph.padEnd(3)} ${String(n).padStart(7)} calls  ${(n / wall * 1000).toFixed(0).padStart(7)}/s  CPU µs/call client ${c.toFixed(2)} server ${s.toFixed(2)}  server reads/call ${f((p1.r - p0.r) / n)} writes/call ${f((p1.w - p0.w) / n)} ctxsw/call ${f((p1.cs - p0.cs) / n)}\n`);
}
await foo.close();
proc.send({ op: "exit" });
await new Promise<void>((resolve) => proc.once("exit", () => resolve()));
await rm(dir, { recursive: true, force: true });
process.exit(0);
