// The timed scheduler (FairShare) with made-up iteration times, the spare-resource helper (Spare)
// with fake resources, and the shared GC (SharedGc) with a fake gc: no clocks, no real threads,
// processes or collections.
import { describe, expect, it } from "vitest";
import { CHARGE_CAP_MS, FairShare, SharedGc, Spare, type SpareHooks } from "@multiprocess-ts/mptest";

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

function fakeSpare(size?: number): { spare: Spare<Fake>; made: Fake[] } {
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
  return { spare: new Spare(hooks, size), made };
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

  it("with size 2, two takers in a row each get a spare started a round earlier", () => {
    const { spare, made } = fakeSpare(2);
    const first = [spare.take(), spare.take()]; // first round: made[0] cold, then made[1] warm
    expect(first.map((f) => f.id)).toEqual([0, 1]);
    expect(spare.parked).toBe(2);
    const second = [spare.take(), spare.take()];
    // Parked before this round began: the oldest first, and neither handed out before.
    expect(second.map((f) => f.id)).toEqual([2, 3]);
    expect(second.every((f) => f.refs)).toBe(true);
    expect(made.filter((f) => !f.refs).map((f) => f.id)).toEqual([4, 5]);
    expect(() => new Spare({} as SpareHooks<Fake>, 0)).toThrow(RangeError);
  });

  it("close() discards the parked spare", async () => {
    const { spare, made } = fakeSpare();
    spare.take();
    expect(spare.parked).toBe(1);
    await spare.close();
    expect(spare.parked).toBe(0);
    expect(made[1]!.discarded).toBe(true);
    expect(made[0]!.discarded).toBe(false); // the one in use is its taker's
  });
});

describe("SharedGc", () => {
  it("runs one GC once every remaining party waits, and resumes them all right after it", async () => {
    const events: string[] = [];
    let thirdGone = false;
    const gcs = new SharedGc(3, () => events.push(`gc (third party gone: ${thirdGone})`));
    const a = gcs.collect().then(() => events.push("a"));
    const b = gcs.collect().then(() => events.push("b"));
    thirdGone = true;
    gcs.leave(); // the third party needs no GC: the two waiting are all that remain
    await Promise.all([a, b]);
    expect(events).toEqual(["gc (third party gone: true)", "a", "b"]);
    expect(gcs.runs).toBe(1);
  });

  it("serves a later GC to the parties left, and refuses one when nobody is left", async () => {
    let n = 0;
    const gcs = new SharedGc(3, () => void n++);
    await Promise.all([gcs.collect(), gcs.collect(), gcs.collect()]);
    expect(n).toBe(1);
    gcs.leave();
    gcs.leave();
    await gcs.collect(); // the last party alone
    expect(n).toBe(2);
    gcs.leave();
    await expect(gcs.collect()).rejects.toThrow(/every party left/);
    expect(gcs.runs).toBe(2);
  });
});
