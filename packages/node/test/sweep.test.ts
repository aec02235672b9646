// The listeners' sweeper period (sweep.ts): a quarter of the shortest enabled timeout, within
// [5 ms, the longest delay Node's timers accept]. Runs on the test's thread; no handles.
import { describe, it, expect } from "vitest";
import { MAX_TIMER_MS, sweepPeriodMs } from "../dist/sweep.js";

describe("sweepPeriodMs", () => {
  it("is a quarter of the shortest enabled timeout", () => {
    expect(sweepPeriodMs([30_000, 0, 8_000])).toBe(2_000);
    expect(sweepPeriodMs([1_001])).toBe(250);
  });

  it("is undefined when every timeout is disabled", () => {
    expect(sweepPeriodMs([0, 0])).toBeUndefined();
    expect(sweepPeriodMs([])).toBeUndefined();
  });

  it("is at least 5 ms", () => {
    expect(sweepPeriodMs([1])).toBe(5);
  });

  it("never exceeds what setInterval accepts (a larger delay would fire every 1 ms)", () => {
    expect(MAX_TIMER_MS).toBe(2 ** 31 - 1);
    expect(sweepPeriodMs([1e13])).toBe(MAX_TIMER_MS);
    expect(sweepPeriodMs([1e13, 4 * MAX_TIMER_MS + 100])).toBe(MAX_TIMER_MS);
  });
});
