/**
 * `node bench/dist/floor.js [--pin] [--n N] [--rounds R] [--req B] [--reply B] [--no-bench] [--writes a,b]`: what the raw
 * floor of P1 is made of (bench/README.md "What the floor is made of"). Prints, for the same frame
 * sizes as P1's add (160 B out, 80 B in by default), the p50 and CPU per round trip per side of:
 * a C ping-pong (bench/c/pingpong.c: blocking, then epoll as libuv does) = the kernel and scheduler
 * share; Node variants over the same kind of socket (a Unix socketpair, two processes; floor-peer.ts)
 * = what a Node process adds per read and per write; the bench's own raw floor, birpc and P1 in
 * the same run (floor-bench-rows.ts; `--no-bench` leaves them out; `--writes` keeps only the onread
 * variants with those write modes); and in-process costs of the
 * loop's scheduling primitives. Medians of R rounds. Under `--pin` the C and Node variants run
 * under `taskset -c 0`; for the bench rows, run the whole diagnostic under `taskset -c 0`. Main thread of the diagnostic process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { benchRows, type BenchRow } from "./floor-bench-rows.js";
import { runPingPong } from "./floor-c.js";

const args = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const PIN = args.includes("--pin");
const NO_BENCH = args.includes("--no-bench");
/** `--writes a,b`: only the onread Node variants with these write modes (floor-peer.ts). */
const WRITES = args.includes("--writes") ? args[args.indexOf("--writes") + 1]!.split(",") : null;
const N = opt("--n", 20_000), WARM = Math.floor(N / 10), ROUNDS = opt("--rounds", 3);
const REQ = opt("--req", 160), REP = opt("--reply", 80);
const PEER = fileURLToPath(new URL("./floor-peer.js", import.meta.url));

interface Row { p50: number; p99: number; client: number; server: number }

function collect(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (c: Buffer) => { out += c.toString(); });
    child.once("error", reject);
    child.once("exit", (code) => { if (code === 0) resolve(out); else reject(new Error(`floor-peer exited with ${code}`)); });
  });
}

function node(argv: string[], fd3: "pipe" | Socket): ChildProcess {
  const cmd = PIN ? "taskset" : process.execPath;
  const a = PIN ? ["-c", "0", process.execPath, PEER, ...argv] : [PEER, ...argv];
  return spawn(cmd, a, { stdio: ["ignore", "pipe", "inherit", fd3] });
}

/** One Node variant: server and client processes on the two ends of one socketpair. */
async function nodeVariant(read: string, write: string): Promise<Row> {
  const sizes = [String(REQ), String(REP), String(N), String(WARM)];
  const server = node(["server", read, write, ...sizes], "pipe");
  const end = server.stdio[3] as Socket;
  const client = node(["client", read, write, ...sizes], end);
  end.destroy(); // both children hold their end now
  const [s, c] = await Promise.all([collect(server), collect(client)]);
  const sj = JSON.parse(s) as { cpu_us: number };
  const cj = JSON.parse(c) as { p50_us: number; p99_us: number; cpu_us: number };
  return { p50: cj.p50_us, p99: cj.p99_us, client: cj.cpu_us, server: sj.cpu_us };
}

/** CPU per operation of a chain of `ops` self-rescheduling steps (in this process). */
function chain(ops: number, step: (next: () => void) => void): Promise<number> {
  return new Promise((resolve) => {
    let left = ops;
    const c0 = process.cpuUsage();
    const next = (): void => {
      if (--left === 0) {
        const c = process.cpuUsage(c0);
        resolve((c.user + c.system) / ops);
        return;
      }
      step(next);
    };
    step(next);
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const medRow = (rs: Row[]): Row => ({ p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)),
  client: median(rs.map((r) => r.client)), server: median(rs.map((r) => r.server)) });

const VARIANTS: [string, string, string][] = [
  ["data", "write", "Node 'data' + socket.write (the bench's raw floor)"],
  ["onread", "write", "Node onread + socket.write"],
  ["onread", "tick", "Node onread + socket.write on nextTick (our flush)"],
  ["onread", "cork", "Node onread + cork/2×write/uncork (writev)"],
  ["onread", "sync", "Node onread + fs.writeSync(fd)"],
  ["onread", "tick-sync", "Node onread + fs.writeSync(fd) on nextTick"],
  ["onread", "micro-sync", "Node onread + fs.writeSync(fd) in a microtask"],
  ["data", "sync", "Node 'data' + fs.writeSync(fd)"],
  ["onread", "handle", "Node onread + socket._write (handle write)"],
  ["onread", "tick-handle", "Node onread + socket._write on nextTick"],
  ["onread", "micro-handle", "Node onread + socket._write in a promise reaction"],
];

const keep = (i: number): boolean => WRITES === null || (VARIANTS[i]![0] === "onread" && WRITES.includes(VARIANTS[i]![1]));

async function main(): Promise<void> {
  const rows: [string, Row][] = [];
  const cRows: Record<string, Row[]> = { block: [], epoll: [] };
  const nRows: Row[][] = VARIANTS.map(() => []);
  const bRows: BenchRow[][] = [];
  for (let r = 0; r < ROUNDS; r++) {
    if (!NO_BENCH) bRows.push(await benchRows(N, WARM, REQ, REP));
    for (const mode of ["block", "epoll"] as const) {
      const x = await runPingPong(mode, REQ, REP, N, WARM, PIN);
      cRows[mode]!.push({ p50: x.p50_us, p99: x.p99_us, client: x.cpu_client_us, server: x.cpu_server_us });
    }
    for (let i = 0; i < VARIANTS.length; i++) if (keep(i)) nRows[i]!.push(await nodeVariant(VARIANTS[i]![0], VARIANTS[i]![1]));
  }
  rows.push(["C blocking read/write", medRow(cRows["block"]!)]);
  rows.push(["C epoll_wait + read/write (libuv's pattern)", medRow(cRows["epoll"]!)]);
  VARIANTS.forEach(([, , label], i) => { if (keep(i)) rows.push([label, medRow(nRows[i]!)]); });
  bRows[0]?.forEach((b, i) => rows.push([b.label, medRow(bRows.map((round) => {
    const x = round[i]!;
    return { p50: x.p50, p99: x.p99, client: x.client, server: x.server };
  }))]));
  const load = (await import("node:os")).loadavg().map((x) => x.toFixed(2)).join(" ");
  console.log(`floor breakdown — ${new Date().toISOString()} — node ${process.version}, ${PIN ? "pinned (taskset -c 0)" : "unpinned"}, load ${load}`);
  console.log(`Unix socketpair, 2 processes, ${REQ} B request / ${REP} B reply frames, n=${N} (+${WARM} warm-up), median of ${ROUNDS} round(s); CPU = user+system per round trip`);
  const pad = (s: string, w: number): string => s.padEnd(w);
  const num = (x: number): string => x.toFixed(1).padStart(8);
  console.log(`${pad("variant", 54)}   p50 µs   p99 µs  CPU cli  CPU srv`);
  for (const [label, r] of rows) console.log(`${pad(label, 54)} ${num(r.p50)} ${num(r.p99)} ${num(r.client)} ${num(r.server)}`);
  console.log("\nloop primitives in this process, CPU per operation (µs):");
  const ops = 200_000;
  const prims: [string, (next: () => void) => void][] = [
    ["process.nextTick", (next) => process.nextTick(next)],
    ["queueMicrotask", (next) => queueMicrotask(next)],
    ["promise resolve + then", (next) => { void Promise.resolve().then(next); }],
    ["setImmediate (one loop iteration each)", (next) => setImmediate(next)],
  ];
  for (const [label, step] of prims) {
    console.log(`${pad(label, 54)} ${(await chain(ops, step)).toFixed(3).padStart(8)}`);
  }
}

await main();
process.exit(0); // the bench rows' EventLoop keeps no work, but its handles need not be waited for
