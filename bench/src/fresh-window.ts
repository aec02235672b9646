/**
 * The fresh-process windows of the raw floor and of birpc (informational rows beside the
 * cold-start row; run.ts, main thread of the round process): a fresh server child and a fresh
 * client child (`fresh.js`, which loads neither our library nor anything the kind does not need)
 * make their first COLD_CALLS sequential calls over a new Unix socket, timed in the client child
 * as the cold-start row times ours. So one run shows what a fresh Node process pays with no RPC
 * (raw) and with a JSON RPC (birpc), in the same round and mode (children inherit `taskset`).
 * The round process only starts the children and reads the server's CPU before and after.
 */
import { fork, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { here, log, type Cpu } from "./children.js";
import { Figures, type Figure } from "./figures.js";
import { latency, type Latency } from "./stats.js";

export type FreshKind = "raw" | "birpc";

export interface FreshWindow { kind: FreshKind; us: Float64Array; l: Latency; cpu: Cpu }

/** A forked `fresh.js` child and its IPC messages, taken one at a time. */
function freshChild(args: string[], tag: string, profileDir?: string): { proc: ChildProcess; next<T>(): Promise<T>; exited: Promise<void> } {
  const execArgv = profileDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", profileDir, "--cpu-prof-name", `fresh-${tag}.cpuprofile`];
  const proc = fork(here("./fresh.js"), args, { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const queue: unknown[] = [];
  const waiting: { resolve(m: unknown): void; reject(e: Error): void }[] = [];
  let failed: Error | undefined;
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const fail = (e: Error): void => {
    failed ??= e;
    for (const w of waiting.splice(0)) w.reject(e);
  };
  proc.on("message", (m: { error?: string }) => {
    if (typeof m === "object" && m !== null && m.error !== undefined) fail(new Error(`bench fresh ${args[0]} ${args[1]}: ${m.error}`));
    else if (waiting.length > 0) waiting.shift()!.resolve(m);
    else queue.push(m);
  });
  proc.once("error", fail);
  void exited.then(() => fail(new Error(`bench fresh ${args[0]} ${args[1]} exited (${proc.exitCode ?? proc.signalCode})`)));
  const next = <T>(): Promise<T> => new Promise<T>((resolve, reject) => {
    if (queue.length > 0) resolve(queue.shift() as T);
    else if (failed !== undefined) reject(failed);
    else waiting.push({ resolve: resolve as (m: unknown) => void, reject });
  });
  return { proc, next, exited };
}

/**
 * The first `calls` sequential calls of a fresh client process of `kind` on its first connection
 * to a fresh server process. `req` / `reply`: the raw request's and reply's payload bytes (an
 * `add`'s frames less their 4-byte length prefix).
 */
export async function freshWindow(kind: FreshKind, dir: string, tag: string, calls: number, req: number, reply: number, profileDir?: string): Promise<FreshWindow> {
  log(`fresh processes, ${kind}: first ${calls} calls of a fresh client to a fresh server`);
  const path = join(dir, `fresh-${kind}.sock`);
  const server = freshChild(["serve", kind, path], `server-${kind}-${tag}`, profileDir);
  let client: ReturnType<typeof freshChild> | undefined;
  try {
    await server.next<{ ready: true }>();
    client = freshChild(["call", kind, path, String(calls), String(req), String(reply)], `client-${kind}-${tag}`, profileDir);
    await client.next<{ ready: true }>();
    const serverCpu = async (): Promise<number> => {
      server.proc.send({ op: "cpu" });
      const r = await server.next<{ cpu: { user: number; system: number } }>();
      return r.cpu.user + r.cpu.system;
    };
    const s0 = await serverCpu();
    client.proc.send("go");
    const r = await client.next<{ us: number[]; cpu: number }>();
    const s1 = await serverCpu();
    const us = Float64Array.from(r.us);
    const cpu: Cpu = { client: r.cpu / calls, server: (s1 - s0) / calls, total: (r.cpu + s1 - s0) / calls };
    return { kind, us, l: latency(us), cpu };
  } finally {
    for (const c of [client, server]) {
      if (c === undefined) continue;
      if (c.proc.exitCode === null && c.proc.signalCode === null && c.proc.connected) c.proc.send({ op: "exit" });
      await c.exited;
    }
  }
}

/** How many of `us` took over `threshold` µs. */
export function over(us: Float64Array, threshold: number): number {
  let n = 0;
  for (const v of us) if (v > threshold) n++;
  return n;
}

/**
 * The informational rows of one fresh window: p99 and p50 of the window, first call and calls
 * 2-10 (floor: the kind's own steady p50 in this round), the calls over 3× OUR steady P1 p50 (the
 * cold-start target's threshold) and over 3× ITS OWN steady p50, and CPU per call per side. Made
 * in a Figures of their own, so run.ts can put them beside the cold-start rows.
 */
export function freshRows(w: FreshWindow, ourSteady: number | null, ownSteady: number | null): Figure[] {
  const figs = new Figures();
  const label = `fresh processes, ${w.kind === "raw" ? "raw floor (no RPC)" : "birpc"}`;
  const n = w.us.length;
  const note = { note: `informational; floor = ${w.kind === "raw" ? "raw" : "birpc"} steady p50` };
  figs.add(`  ${label}: p99 of first ${n} calls`, "µs", w.l.p99, ownSteady, undefined, note);
  figs.add(`  ${label}: p50 of first ${n} calls`, "µs", w.l.p50, ownSteady);
  figs.add(`  ${label}: first call`, "µs", w.us[0] ?? null, ownSteady);
  figs.add(`  ${label}: p50 of calls 2-10`, "µs", latency(w.us.subarray(1, 10)).p50, ownSteady);
  if (ourSteady !== null) figs.add(`  ${label}: calls over 3× our steady P1 p50 (of ${n})`, "calls", over(w.us, 3 * ourSteady), null);
  if (ownSteady !== null) figs.add(`  ${label}: calls over 3× its own steady p50 (of ${n})`, "calls", over(w.us, 3 * ownSteady), null);
  figs.cpu(label, w.cpu, null);
  return figs.rows;
}
