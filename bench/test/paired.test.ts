// The paired comparison of `pnpm bench --peers` (built dist/, so `pnpm build` first): the block
// plan, pooling one side's blocks, the per-round ratios ours / peer, their median and range over
// rounds, the targets scored on that median (not on the ratio of the medians), and one tiny
// paired phase end to end (our server and birpc's, one client process each). Figures are checked
// for shape and sign only: speed is printed by the bench, never asserted.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { assertNoHandleLeaks, handleBaseline } from "@multiprocess-ts/testing";
import { aggregate, Figures, pairedLines } from "../dist/figures.js";
import { addPairedRows, blockSizes, meets, pairOrder, pairPipe, pairSeq, poolSeq, summarize, type PairedRound, type SeqBlock } from "../dist/paired.js";
import { runPaired, windowCount } from "../dist/run-paired.js";

const block = (us: number[], clientCpuUs: number, serverCpuUs: number): SeqBlock => ({ us, clientCpuUs, serverCpuUs });

/** A round whose paired P1 has these ours / peer figures (one block per side). */
function round(p50: [number, number], client: [number, number], server: [number, number]): PairedRound {
  return { peer: "birpc", p1: pairSeq([block([p50[0]], client[0], server[0])], [block([p50[1]], client[1], server[1])]) };
}

describe("bench paired statistics", () => {
  it("plans blocks of at most B calls, and alternates which side goes first (A B B A ...)", async () => {
    const baseline = handleBaseline();
    expect(blockSizes(10_000, 2000)).toEqual([2000, 2000, 2000, 2000, 2000]);
    expect(blockSizes(2100, 1000)).toEqual([1000, 1000, 100]);
    expect(blockSizes(5, 2000)).toEqual([5]);
    for (const [n, b] of [[0, 10], [10, 0], [1.5, 1], [10, Number.NaN]]) expect(() => blockSizes(n!, b!)).toThrow(RangeError);
    expect([0, 1, 2, 3].flatMap((k) => pairOrder(k))).toEqual(["ours", "peer", "peer", "ours", "ours", "peer", "peer", "ours"]);
    expect([windowCount(3, 0.5), windowCount(1, 0.5), windowCount(0.1, 0.5)]).toEqual([6, 2, 2]);
    await assertNoHandleLeaks(baseline);
  });

  it("pools one side's blocks: p50 over every sample, CPU per call = summed CPU / calls", async () => {
    const baseline = handleBaseline();
    const side = poolSeq([block([10, 30, 20], 300, 600), block([40, 50], 200, 400)]);
    expect(side).toEqual({ calls: 5, p50: 30, p99: 50, cpuClient: 100, cpuServer: 200 });
    expect(() => poolSeq([])).toThrow();
    const p = pairSeq([block([10, 20], 100, 60)], [block([20, 40], 200, 40)]);
    expect(p.blocks).toBe(1);
    expect(p.ratio).toEqual({ p50: 0.5, p99: 0.5, cpuClient: 0.5, cpuServer: 1.5 });
    expect(p.perBlock.ours).toEqual([{ p50: 20, cpuClient: 50, cpuServer: 30 }]);
    expect(() => pairSeq([block([1], 1, 1)], [])).toThrow(RangeError);
    const w = pairPipe([{ calls: 300, seconds: 0.5, clientCpuUs: 600, serverCpuUs: 300 }, { calls: 100, seconds: 0.5, clientCpuUs: 200, serverCpuUs: 100 }],
      [{ calls: 50, seconds: 0.5, clientCpuUs: 500, serverCpuUs: 250 }, { calls: 50, seconds: 0.5, clientCpuUs: 500, serverCpuUs: 250 }]);
    expect([w.ours.rate, w.peer.rate, w.ratio.rate, w.ratio.cpuClient, w.ratio.cpuServer]).toEqual([400, 100, 4, 0.2, 0.2]);
    expect(w.perWindow).toEqual({ ours: [600, 200], peer: [100, 100] });
    expect(() => pairPipe([{ calls: 0, seconds: 0.5, clientCpuUs: 0, serverCpuUs: 0 }], [{ calls: 1, seconds: 0.5, clientCpuUs: 0, serverCpuUs: 0 }])).toThrow(RangeError);
    await assertNoHandleLeaks(baseline);
  });

  it("summarizes ratios over rounds: median and range, non-finite values left out", async () => {
    const baseline = handleBaseline();
    expect(summarize([0.9, 0.7, 0.8])).toEqual({ median: 0.8, min: 0.7, max: 0.9, rounds: 3 });
    expect(summarize([1, 2, 4, 3])).toEqual({ median: 2.5, min: 1, max: 4, rounds: 4 });
    expect(summarize([Number.NaN, null, undefined, 2])).toEqual({ median: 2, min: 2, max: 2, rounds: 1 });
    expect(summarize([])).toBeNull();
    expect([meets(0.8, { dir: "le", x: 0.8 }), meets(0.81, { dir: "le", x: 0.8 }), meets(1.5, { dir: "ge", x: 1.5 }), meets(1.4, { dir: "ge", x: 1.5 })]).toEqual([true, false, true, false]);
    await assertNoHandleLeaks(baseline);
  });

  it("scores the targets against birpc on the median of the per-round ratios, not on the ratio of the medians", async () => {
    const baseline = handleBaseline();
    // Per-round p50 ratios 0.75, 0.75, 1.25 (median 0.75: met), while the medians of ours (36)
    // and of birpc's (40) give 0.9 (not met): the load moved both sides between rounds, and the
    // pairing keeps each round's ours next to that round's birpc.
    const rounds = [round([30, 40], [15, 20], [9, 10]), round([36, 48], [16, 20], [7, 10]), round([45, 36], [14, 20], [8, 10])].map((r) => {
      const f = new Figures();
      f.add("P1 add sequential p50", "µs", 30, 20);
      addPairedRows(f, r);
      return f.rows;
    });
    const rows = aggregate(rounds);
    const p50 = rows.find((f) => f.name === "P1 p50 against birpc (paired)")!;
    expect([p50.ours, p50.floor, p50.paired]).toEqual([36, 40, true]);
    expect(p50.ratios).toEqual([0.75, 0.75, 1.25]);
    expect([p50.ratio, p50.ratioRange]).toEqual([0.75, [0.75, 1.25]]);
    expect([p50.target, p50.met]).toEqual(["≤ 0.8× birpc, paired", true]);
    const client = rows.find((f) => f.name === "P1 CPU per call client against birpc (paired)")!;
    expect([client.ratio, client.met]).toEqual([0.75, true]);
    const server = rows.find((f) => f.name === "P1 CPU per call server against birpc (paired)")!;
    expect([server.ratio, server.ratioRange, server.met]).toEqual([0.8, [0.7, 0.9], true]);
    const p99 = rows.find((f) => f.name === "P1 p99 against birpc (paired)")!;
    expect([p99.informational, p99.met]).toEqual([true, null]);
    const plain = rows.find((f) => f.name === "P1 add sequential p50")!;
    expect([plain.paired, plain.ratio, plain.ratios]).toEqual([undefined, 1.5, undefined]);
    const lines = pairedLines(rows);
    expect(lines.find((l) => l.includes("P1 p50 against birpc"))).toMatch(/0\.75× 0\.75× 1\.25×\s+→ 0\.75× \(0\.75–1\.25\)\s+≤ 0\.8× birpc, paired: met/);
    expect(pairedLines(aggregate([rounds[0]!.filter((f) => f.paired !== true)]))).toEqual([]);
    // P2: ≥ 1.5× birpc's rate.
    const f2 = new Figures();
    addPairedRows(f2, { peer: "birpc", p2: pairPipe([{ calls: 140, seconds: 1, clientCpuUs: 1, serverCpuUs: 1 }], [{ calls: 100, seconds: 1, clientCpuUs: 1, serverCpuUs: 1 }]) });
    const p2 = aggregate([f2.rows]).find((f) => f.name === "P2 rate against birpc (paired)")!;
    expect([p2.ratio, p2.target, p2.met]).toEqual([1.4, "≥ 1.5× birpc, paired", false]);
    await assertNoHandleLeaks(baseline);
  });
});

describe("bench paired phase", () => {
  it("runs ours and birpc in alternating blocks and windows, each client in its own process, and yields positive figures", async () => {
    const baseline = handleBaseline();
    const dir = await mkdtemp(join(tmpdir(), "mpts-bench-paired-"));
    try {
      const r = await runPaired({ dir, tag: "test", peer: "birpc", p1: true, n: 60, warmup: 20, block: 25, p2: true, seconds: 0.2, window: 0.1, inflight: 8, pipeWarmup: 0.1 });
      expect(r.peer).toBe("birpc");
      const p1 = r.p1!;
      expect(p1.blocks).toBe(3);
      expect(p1.perBlock.ours.length).toBe(3);
      expect(p1.perBlock.peer.length).toBe(3);
      for (const side of [p1.ours, p1.peer]) {
        expect(side.calls).toBe(60);
        for (const v of [side.p50, side.p99, side.cpuClient, side.cpuServer]) expect(Number.isFinite(v) && v > 0).toBe(true);
      }
      for (const v of Object.values(p1.ratio)) expect(Number.isFinite(v) && v > 0).toBe(true);
      const p2 = r.p2!;
      expect(p2.windows).toBe(2);
      for (const side of [p2.ours, p2.peer]) {
        for (const v of [side.calls, side.seconds, side.rate, side.cpuClient, side.cpuServer]) expect(Number.isFinite(v) && v > 0).toBe(true);
      }
      const f = new Figures();
      addPairedRows(f, r);
      const scored = f.rows.filter((x) => x.met !== null).map((x) => x.name);
      expect(scored).toEqual(["P1 p50 against birpc (paired)", "P1 CPU per call client against birpc (paired)",
        "P1 CPU per call server against birpc (paired)", "P2 rate against birpc (paired)"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await assertNoHandleLeaks(baseline);
  });
});
