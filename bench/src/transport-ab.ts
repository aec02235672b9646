/**
 * `node bench/dist/transport-ab.js [--pin] [--n N] [--blocks B] [--modes transport,raw] [--base DIR] [--cpu-prof DIR]`: our
 * stream transport (framing, batch flush, decoder; no RPC engine) against the raw floor, or
 * (`--modes reader,bare,bare-micro`) our transport read through `onread` as P1's ends are against
 * the bare `onread` + handle-write ping-pong, or (`--base /path/to/checkout --modes
 * base-reader,reader`) another build's transport against this one (transport-ab-peer.ts lists
 * the modes), A/B in the SAME two processes under the same load: one Unix socketpair per mode
 * (transport-ab-peer.ts), blocks of N sequential round trips (160 B request,
 * 80 B reply, as P1's add, with no RPC engine) alternating between the modes; prints per mode
 * the median over the blocks of each side's CPU per round trip, the p50 latency, and the
 * per-block paired difference against the first mode. Wall-clock A/B runs of the whole bench
 * on a shared machine drift by more than the effect; paired blocks do not. Main thread of the
 * diagnostic process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { Socket } from "node:net";
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : def;
};
const PIN = args.includes("--pin");
/** `--base DIR`: another checkout (built); modes "base-transport" / "base-reader" use its capnp. */
const BASE = opt("--base", "");
/** `--cpu-prof DIR`: both peers write V8 CPU profiles there (profile-summary.js reads them). */
const PROF = opt("--cpu-prof", "");
const N = opt("--n", "2000"), BLOCKS = opt("--blocks", "15"), MODES = opt("--modes", "transport,raw");
const PEER = fileURLToPath(new URL("./transport-ab-peer.js", import.meta.url));
const k = MODES.split(",").length;

function start(argv: string[], extra: ("pipe" | Socket)[]): ChildProcess {
  const cmd = PIN ? "taskset" : process.execPath;
  const prof = PROF === "" ? [] : ["--cpu-prof", "--cpu-prof-dir", PROF, "--cpu-prof-interval", "50"];
  const a = PIN ? ["-c", "0", process.execPath, ...prof, PEER, ...argv] : [...prof, PEER, ...argv];
  const env = BASE === "" ? process.env : { ...process.env, TRANSPORT_AB_BASE: resolve(BASE) };
  return spawn(cmd, a, { stdio: ["ignore", "pipe", "inherit", ...extra], env });
}

function output(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (c: Buffer) => { out += c.toString(); });
    child.once("error", reject);
    child.once("exit", (code) => { if (code === 0) resolve(out); else reject(new Error(`transport-ab-peer exited with ${code}`)); });
  });
}

interface Res { mode: string; p50_us: number; cpu_client_us: number; cpu_server_us: number; client_blocks: number[]; server_blocks: number[] }

const load0 = loadavg();
const common = [MODES, N, BLOCKS, String(Math.max(200, Number(N)))];
const server = start(["server", ...common], Array.from({ length: k }, () => "pipe" as const));
const ends = Array.from({ length: k }, (_, i) => server.stdio[3 + i] as Socket);
const client = start(["client", ...common], ends);
for (const e of ends) e.destroy();
const [, out] = await Promise.all([output(server), output(client)]);
const rows = out.trim().split("\n").map((l) => JSON.parse(l) as Res);
const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = rows[0]!;
console.log(`transport A/B — ${new Date().toISOString()} — node ${process.version}, ${PIN ? "pinned (taskset -c 0)" : "unpinned"}, load ${load0.map((x) => x.toFixed(2)).join(" ")}`);
console.log(`Unix socketpairs, 2 processes, 160 B / 80 B; ${BLOCKS} blocks × ${N} round trips per mode, alternating; medians over blocks; Δ = median of per-block differences against "${base.mode}"`);
console.log("mode            p50 µs  CPU cli  CPU srv   Δ cli   Δ srv  lower cli / srv");
for (const r of rows) {
  const dcs = r.client_blocks.map((x, i) => x - base.client_blocks[i]!);
  const dss = r.server_blocks.map((x, i) => x - base.server_blocks[i]!);
  const lower = (d: number[]): string => `${d.filter((x) => x < 0).length}/${d.length}`;
  const f = (x: number, w = 8): string => x.toFixed(2).padStart(w);
  console.log(`${r.mode.padEnd(14)} ${f(r.p50_us)} ${f(r.cpu_client_us)} ${f(r.cpu_server_us)} ${f(med(dcs))} ${f(med(dss))}  ${lower(dcs)} / ${lower(dss)}`);
}
