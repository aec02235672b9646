// The timed scheduler (FairShare) with made-up iteration times, and the spare-resource helper
// (Spare) with fake resources: no clocks, no real threads or processes.
import { describe, expect, it } from "vitest";
import { CHARGE_CAP_MS, FairShare, Spare, type SpareHooks } from "@multiprocess-ts/mptest";

/** Runs FairShare for `budgetMs` of virtual time with fixed per-scenario costs; returns counts. */
function simulate(costs: readonly number[], budgetMs: number, capMs = CHARGE_CAP_MS): number[] {
  const share = new FairShare(costs.length, capMs);
  for (let t = 0; t < budgetMs; ) {
    const i = share.next()!;
    share.record(i, costs[i]!);
    t += costs[i]!;
  }
  return [...share.counts];
}

describe("FairShare", () => {
  it("gives every scenario slower than the cap the same count, whatever its cost", () => {
    const counts = simulate([2, 40, 400, 7], 600_000);
    const min = Math.min(...counts);
    const max = Math.max(...counts);
    expect(max - min).toBeLessThanOrEqual(1);
    // The count is what the budget allows for all of them at once: 600 s / (2+40+400+7) ms each.
    expect(min).toBe(Math.floor(600_000 / 449));
  });

  it("runs faster scenarios more often, never less, and spends at most the cap per round on them", () => {
    const costs = [0.1, 0.25, 0.5, 30, 300];
    const counts = simulate(costs, 300_000);
    const slow = counts[4]!;
    expect(Math.abs(counts[3]! - slow)).toBeLessThanOrEqual(1);
    for (const i of [0, 1, 2]) expect(counts[i]!).toBeGreaterThanOrEqual(slow);
    // Each fast one runs about cap/cost times per round of the slow ones.
    expect(counts[0]! / slow).toBeCloseTo(CHARGE_CAP_MS / 0.1, 0);
    expect(counts[2]! / slow).toBeCloseTo(CHARGE_CAP_MS / 0.5, 0);
    // The fast ones' total time is about cap × their number per round of the slow ones.
    const fastTime = counts[0]! * 0.1 + counts[1]! * 0.25 + counts[2]! * 0.5;
    expect(fastTime / slow).toBeLessThanOrEqual(3 * CHARGE_CAP_MS + 0.01);
  });

  it("goes round-robin in list order on ties, and has nothing to pick with no scenarios", () => {
    const share = new FairShare(3);
    const order: number[] = [];
    for (let k = 0; k < 6; k++) {
      const i = share.next()!;
      order.push(i);
      share.record(i, 50);
    }
    expect(order).toEqual([0, 1, 2, 0, 1, 2]);
    expect(new FairShare(0).next()).toBeUndefined();
  });
});

interface Fake {
  id: number;
  refs: boolean;
  dead: boolean;
  discarded: boolean;
}

function fakeSpare(): { spare: Spare<Fake>; made: Fake[] } {
  const made: Fake[] = [];
  const hooks: SpareHooks<Fake> = {
    start: () => {
      const f = { id: made.length, refs: true, dead: false, discarded: false };
      made.push(f);
      return f;
    },
    park: (f) => void (f.refs = false),
    unpark: (f) => void (f.refs = true),
    alive: (f) => !f.dead,
    discard: async (f) => void (f.discarded = true),
  };
  return { spare: new Spare(hooks), made };
}

describe("Spare", () => {
  it("hands out the resource started at the previous take, each one once, and parks the next", () => {
    const { spare, made } = fakeSpare();
    const a = spare.take(); // nothing ready yet: started on the spot, and a spare started after it
    expect(a.id).toBe(0);
    expect(a.refs).toBe(true);
    expect(made).toHaveLength(2);
    expect(made[1]!.refs).toBe(false); // parked: holds no event-loop reference
    const b = spare.take();
    expect(b).toBe(made[1]); // the spare, taken back into use
    expect(b.refs).toBe(true);
    expect(made[2]!.refs).toBe(false);
    expect(new Set([a, b]).size).toBe(2);
    expect(spare.stats).toEqual({ started: 3, warm: 1, cold: 1, dead: 0 });
  });

  it("discards a spare that died while parked and starts one on the spot instead", () => {
    const { spare, made } = fakeSpare();
    spare.take();
    made[1]!.dead = true;
    const c = spare.take();
    expect(c).toBe(made[2]);
    expect(made[1]!.discarded).toBe(true);
    expect(spare.stats).toEqual({ started: 4, warm: 0, cold: 2, dead: 1 });
  });

  it("close() discards the parked spare", async () => {
    const { spare, made } = fakeSpare();
    spare.take();
    expect(spare.hasSpare).toBe(true);
    await spare.close();
    expect(spare.hasSpare).toBe(false);
    expect(made[1]!.discarded).toBe(true);
    expect(made[0]!.discarded).toBe(false); // the one in use is its taker's
  });
});
