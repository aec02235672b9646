/**
 * Bench diagnostic (not part of `pnpm bench`): what one phase of calls leaves behind for the next
 * on the same client and server processes (bench/README "P2 depends on what ran before it"). One
 * client (this process) and one bench server child (server.js rpc) on a Unix socket, as in
 * `pnpm bench`; runs the phases in order on one connection and prints, per phase, CPU µs per call
 * of each side and the server child's read and write syscalls (/proc/PID/io) and context switches
 * (/proc/PID/status) per call.
 *
 *   node bench/dist/diag-phases.js [--phases P1,P2] [--n1 12000] [--n2 200000]
 *        [--server-flags "--trace-gc"] [--stream-reads]
 *
 * Phases: `P1` = n1 sequential `add` (`P1:N`: N of them); `P2` = n2 `add` from 64 lanes (`P2:N`);
 * `P4b` = n1/4 sequential `callback(cb, i)` with a new callback each call (an export and its
 * release per call, as the bench's P4b; `P4b:N`); `CTX` = n1 sequential `callIntFnAsync` (a
 * Proxy.Context: the server's request thread per call, P3's call made on the loop; `CTX:N`);
 * `GC` = the server collects garbage (its `mem` request: gc() three times); `HEAP-START` and
 * `HEAP-STOP:FILE` = the server's sampling heap profiler around the phases between them, keeping
 * what survived scavenges (server.ts), written to FILE (open in DevTools, Memory tab).
 * `--server-flags` are V8 flags for the server child (its stdout is this one's: `--trace-gc`
 * lines land between the phase lines). Threading: the main thread.
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
import type { ServerReply, ServerRequest } from "./server.js";

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

interface HeapNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: HeapNode[] }

/** The heap profile's top allocating stacks (innermost 3 frames) by bytes that survived scavenges. */
function printHeapProfile(file: string): void {
  const head = (JSON.parse(readFileSync(file, "utf8")) as { head: HeapNode }).head;
  const bytes = new Map<string, number>();
  const walk = (n: HeapNode, stack: string[]): void => {
    const f = n.callFrame;
    const st = [...stack, `${f.functionName || "(anonymous)"} ${f.url.split("/").slice(-2).join("/")}:${f.lineNumber + 1}`];
    const key = st.slice(-3).reverse().join(" < ");
    if (n.selfSize > 0) bytes.set(key, (bytes.get(key) ?? 0) + n.selfSize);
    for (const c of n.children) walk(c, st);
  };
  walk(head, []);
  let total = 0;
  for (const v of bytes.values()) total += v;
  process.stdout.write(`heap profile ${file}: ${(total / 1048576).toFixed(1)} MiB sampled that survived scavenges; top stacks:\n`);
  for (const [k, v] of [...bytes].sort((a, b) => b[1] - a[1]).slice(0, 8)) process.stdout.write(`  ${(v / 1048576).toFixed(2).padStart(7)} MiB  ${k}\n`);
}

const loop = new EventLoop("diag-client", { log: { level: "warning" } });
const reader = args.includes("--stream-reads") ? undefined : new SocketReader();
const socket = await connectUnix(path, reader);
const foo = await connectTransport(loop, streamTransport(socket, undefined, undefined, reader), FooInterfaceClient);
await foo.initThreadMap(); // as the bench: ThreadMap exchange (callback needs a thread on each side)
for (let i = 0; i < 100; i++) await foo.add(i, 1);

for (const ph of phases) {
  if (ph === "HEAP-START" || ph.startsWith("HEAP-STOP:")) {
    const m: ServerRequest = ph === "HEAP-START" ? { op: "heap-sample-start" } : { op: "heap-sample-stop", file: ph.slice(10) };
    await new Promise<void>((resolve) => { proc.once("message", () => resolve()); proc.send(m); });
    if (m.op === "heap-sample-stop") printHeapProfile(m.file);
    continue;
  }
  if (ph === "GC") {
    await new Promise<void>((resolve) => { proc.once("message", () => resolve()); proc.send({ op: "mem" }); });
    process.stdout.write("GC  (server: gc() three times)\n");
    continue;
  }
  if (!/^(P1|P2|P4b|CTX)(:\d+)?$/.test(ph)) throw new Error(`diag-phases: unknown phase ${ph}`);
  const s0 = await serverCpu();
  const p0 = proc0();
  const c0 = cpuNow();
  const t0 = performance.now();
  let n: number;
  if (ph.startsWith("CTX")) {
    n = ph.length > 3 ? Number(ph.slice(4)) : N1;
    for (let i = 0; i < n; i++) if ((await foo.callIntFnAsync(i)) !== i + 1) throw new Error("wrong callIntFnAsync result");
  } else if (ph.startsWith("P4b")) {
    n = ph.length > 3 ? Number(ph.slice(4)) : N1 / 4;
    for (let i = 0; i < n; i++) if ((await foo.callback({ call: (a) => a * 2 }, i)) !== i * 2) throw new Error("wrong callback result");
  } else if (ph.startsWith("P1")) {
    n = ph.length > 2 ? Number(ph.slice(3)) : N1;
    for (let i = 0; i < n; i++) if ((await foo.add(i, 1)) !== i + 1) throw new Error("wrong sum");
  } else {
    n = ph.length > 2 ? Number(ph.slice(3)) : N2;
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
