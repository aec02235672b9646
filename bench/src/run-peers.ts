/**
 * The peer rows of one bench round (`--peers`; main thread of the round's client): birpc and
 * capnweb serving add/passData from a server child, timed with the same loops as P1, P2 and P5,
 * with CPU per call per side, and (informational) our P1/P2 against birpc's from these separate
 * runs; the targets against birpc are scored on the paired rows (run-paired.ts).
 */
import { join } from "node:path";
import { log, sequentialWithCpu, startServer, withCpu } from "./children.js";
import { connectPeer, type PeerKind } from "./peers.js";
import type { Ctx } from "./run.js";
import { DATA_BYTES, echoRate, INFLIGHT, latency, pipelinedRate, type Latency } from "./stats.js";

export async function runPeer(c: Ctx, kind: PeerKind): Promise<void> {
  const { o, figs } = c;
  const path = join(c.dir, `${kind}.sock`);
  const server = await startServer(kind, path, `${kind}-${o.tag}`, o.profileDir);
  const peer = await connectPeer(kind, path);
  try {
    log(`${kind}: sequential add (${o.n} + ${o.warmup} warm-up)`);
    const run1 = await sequentialWithCpu(server, o.n, o.warmup, async (i) => { if ((await peer.add(i, 1)) !== i + 1) throw new Error(`${kind}: wrong sum`); });
    const seq = latency(run1.us);
    if (kind === "birpc") c.birpcSeqUs = run1.us;
    const cpu1 = run1.cpu;
    figs.add(`${kind} add sequential p50`, "µs", seq.p50, c.rawSeq?.p50 ?? null);
    figs.add(`${kind} add sequential p99`, "µs", seq.p99, c.rawSeq?.p99 ?? null);
    figs.cpu(`${kind} add`, cpu1, c.cpuRawSeq ?? null);
    log(`${kind}: add, ${INFLIGHT} in flight for ${o.seconds} s`);
    const add = (): Promise<unknown> => peer.add(1, 2);
    await pipelinedRate(INFLIGHT, 0.5, add, 0);
    let rate = 0;
    const cpu2 = await withCpu(server, async () => {
      const r = await pipelinedRate(INFLIGHT, o.seconds, add, 0);
      rate = r.rate;
      return r.calls;
    });
    figs.add(`${kind} add pipelined (${INFLIGHT} in flight)`, "calls/s", rate, c.rawRate ?? null);
    figs.cpu(`${kind} pipelined`, cpu2, c.cpuRawPipe ?? null);
    const data = new Uint8Array(DATA_BYTES);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    log(`${kind}: 1 MiB echo for ${c.dataSeconds} s`);
    let mbps = 0;
    const cpu5 = await withCpu(server, async () => {
      const r = await echoRate(c.dataSeconds, async () => {
        const back = await peer.passData(data);
        if (back.length !== DATA_BYTES || back[DATA_BYTES - 1] !== data[DATA_BYTES - 1]) throw new Error(`${kind}: wrong echo`);
      });
      mbps = r.mbps;
      return r.calls + 5;
    });
    figs.add(`${kind} 1 MiB echo`, "MB/s", mbps, c.rawEcho ?? null);
    figs.cpu(`${kind} echo`, cpu5, c.cpuRawEcho ?? null);
    if (kind === "birpc") compareWithBirpc(c, seq!, cpu1, rate);
  } finally {
    peer.close();
    await server.stop();
  }
}

/**
 * Our P1/P2 against birpc's from this round's separate, consecutive runs (unpaired: minutes
 * apart, so the machine's load moves them). Informational: the targets against birpc are
 * scored on the paired rows (run-paired.ts, paired.ts), measured in alternating blocks.
 */
function compareWithBirpc(c: Ctx, seq: Latency, cpu: { client: number; server: number }, rate: number): void {
  const p1 = c.info["cpu_us_per_call_P1"] as { client: number; server: number } | undefined;
  const note = { note: "vs birpc, unpaired" };
  if (c.p1 !== undefined) c.figs.add("  P1 p50 against birpc (unpaired)", "µs", c.p1.p50, seq.p50, undefined, note);
  if (p1 !== undefined) {
    c.figs.add("  P1 CPU per call client against birpc (unpaired)", "µs", p1.client, cpu.client, undefined, note);
    c.figs.add("  P1 CPU per call server against birpc (unpaired)", "µs", p1.server, cpu.server, undefined, note);
  }
  if (c.p2 !== undefined) c.figs.add("  P2 rate against birpc (unpaired)", "calls/s", c.p2, rate, undefined, note);
}
