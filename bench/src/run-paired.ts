/**
 * The paired phase of one bench round (`--peers`; main thread of the round's process, which only
 * orchestrates here): our server and birpc's (forked server.js children) and one client process
 * per library (pair-client.js) are all started first and stay alive for the whole phase. Both
 * clients warm up, then take turns: P1 in blocks of sequential calls, P2 in short windows of
 * calls in flight, in the order A B B A A B ... (paired.ts pairOrder). Each block's latencies and
 * client CPU come from the client process, its server CPU from the server child's
 * process.cpuUsage() read just before and after the block. paired.ts pools the blocks and takes
 * the round's ratios ours / birpc. See bench/README.md "The figures".
 */
import { fork, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { here, log, startServer, type ServerChild } from "./children.js";
import type { PairClientKind, PairReply, PairRequest } from "./pair-client.js";
import { blockSizes, pairOrder, pairPipe, pairSeq, type PairedRound, type PairSide, type PipeWindow, type SeqBlock } from "./paired.js";
import type { PeerKind } from "./peers.js";

export interface PairedOptions {
  /** Directory for the sockets. */
  dir: string;
  tag: string;
  peer: PeerKind;
  /** P1: `n` timed sequential calls per side, in blocks of `block`, after `warmup` calls. */
  p1: boolean;
  n: number;
  warmup: number;
  block: number;
  /** P2: `seconds` per side with `inflight` calls outstanding, in windows of `window` seconds. */
  p2: boolean;
  seconds: number;
  window: number;
  inflight: number;
  /** Seconds of the untimed P2 warm-up per side (0.5 s, as P2's own warm-up). */
  pipeWarmup?: number;
  profileDir?: string;
  streamReads?: boolean;
}

interface PairChild { proc: ChildProcess; request(m: PairRequest): Promise<PairReply>; stop(): Promise<void> }

async function startPairClient(kind: PairClientKind, path: string, o: PairedOptions): Promise<PairChild> {
  const execArgv: string[] = [];
  if (o.profileDir !== undefined) execArgv.push("--cpu-prof", "--cpu-prof-dir", o.profileDir, "--cpu-prof-name", `pair-${kind}-${o.tag}.cpuprofile`);
  const args = o.streamReads === true && kind === "ours" ? [kind, path, "stream-reads"] : [kind, path];
  const proc = fork(here("./pair-client.js"), args, { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const request = (m: PairRequest | null): Promise<PairReply> => new Promise((resolve, reject) => {
    const onExit = (): void => reject(new Error(`bench pair client (${kind}) exited`));
    proc.once("exit", onExit);
    proc.once("message", (r: PairReply) => {
      proc.off("exit", onExit);
      if ("error" in r) reject(new Error(`bench pair client (${kind}): ${r.error}`)); else resolve(r);
    });
    if (m !== null) proc.send(m, (e) => { if (e) reject(e); });
  });
  await request(null); // {ready}
  return {
    proc, request,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.send({ op: "exit" } satisfies PairRequest);
      await exited;
    },
  };
}

async function serverCpuUs(server: ServerChild): Promise<number> {
  const r = await server.request({ op: "cpu" });
  if (!("cpu" in r)) throw new Error("bench: bad cpu reply");
  return r.cpu.user + r.cpu.system;
}

interface Side { client: PairChild; server: ServerChild }

async function seqBlock(s: Side, n: number, from: number): Promise<SeqBlock> {
  const s0 = await serverCpuUs(s.server);
  const r = await s.client.request({ op: "seq", n, from });
  const s1 = await serverCpuUs(s.server);
  if (!("us" in r)) throw new Error("bench: bad seq reply");
  return { us: r.us, clientCpuUs: r.cpuUs, serverCpuUs: s1 - s0 };
}

async function pipeWindow(s: Side, seconds: number, inflight: number): Promise<PipeWindow> {
  const s0 = await serverCpuUs(s.server);
  const r = await s.client.request({ op: "pipe", seconds, inflight });
  const s1 = await serverCpuUs(s.server);
  if (!("calls" in r)) throw new Error("bench: bad pipe reply");
  return { calls: r.calls, seconds: r.seconds, clientCpuUs: r.cpuUs, serverCpuUs: s1 - s0 };
}

/** How many windows of `window` seconds make `seconds` (at least 2, so each side goes first once). */
export function windowCount(seconds: number, window: number): number {
  return Math.max(2, Math.round(seconds / window));
}

/** Runs the paired phase of one round and returns what it measured (paired.ts pools it). */
export async function runPaired(o: PairedOptions): Promise<PairedRound> {
  const started: { servers: ServerChild[]; clients: PairChild[] } = { servers: [], clients: [] };
  try {
    const sides = {} as Record<PairSide, Side>;
    for (const [side, kind] of [["ours", "rpc"], ["peer", o.peer]] as const) {
      const path = join(o.dir, `pair-${kind}.sock`);
      const server = await startServer(kind, path, `pair-${kind}-${o.tag}`, o.profileDir);
      started.servers.push(server);
      const client = await startPairClient(side === "ours" ? "ours" : o.peer, path, o);
      started.clients.push(client);
      sides[side] = { client, server };
    }
    const pipeWarmup = o.p2 ? o.pipeWarmup ?? 0.5 : 0;
    log(`paired against ${o.peer}: warm-up (${o.warmup} calls${pipeWarmup > 0 ? `, ${pipeWarmup} s in flight` : ""} each)`);
    for (const side of ["ours", "peer"] as const) {
      await sides[side].client.request({ op: "warm", n: o.warmup, seconds: pipeWarmup, inflight: o.inflight });
    }
    const round: PairedRound = { peer: o.peer };
    if (o.p1) {
      const sizes = blockSizes(o.n, o.block);
      log(`paired P1: ${sizes.length} blocks of ≤ ${o.block} sequential adds per side, alternating`);
      const blocks: Record<PairSide, SeqBlock[]> = { ours: [], peer: [] };
      let from = o.warmup;
      for (const [k, size] of sizes.entries()) {
        for (const side of pairOrder(k)) blocks[side].push(await seqBlock(sides[side], size, from));
        from += size;
      }
      round.p1 = pairSeq(blocks.ours, blocks.peer);
    }
    if (o.p2) {
      const count = windowCount(o.seconds, o.window);
      log(`paired P2: ${count} windows of ${o.window} s with ${o.inflight} in flight per side, alternating`);
      const windows: Record<PairSide, PipeWindow[]> = { ours: [], peer: [] };
      for (let k = 0; k < count; k++) {
        for (const side of pairOrder(k)) windows[side].push(await pipeWindow(sides[side], o.window, o.inflight));
      }
      round.p2 = pairPipe(windows.ours, windows.peer);
    }
    return round;
  } finally {
    for (const c of started.clients) await c.stop();
    for (const s of started.servers) await s.stop();
  }
}
