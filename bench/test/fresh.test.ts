// The bench's fresh-process windows of the raw floor and birpc (fresh-window.ts, fresh.ts; built
// dist/, so `pnpm build` first): a fresh client child times its first calls to a fresh server
// child and reports every call and both sides' CPU, and the rows count the slow calls against
// both thresholds. Figures are printed by the bench, never asserted: only their shape is.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { assertNoHandleLeaks, handleBaseline } from "@multiprocess-ts/testing";
import { freshRows, freshWindow, over } from "../dist/fresh-window.js";
import { latency } from "../dist/stats.js";

describe("bench fresh-process windows", () => {
  it("rows: p99 / p50 / first / calls 2-10 against the kind's own steady p50, slow calls over 3× ours and 3× its own", async () => {
    const baseline = handleBaseline();
    const us = Float64Array.from([5000, 400, 300, 200, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 35, 45, 95, 65, 25, 15]);
    const rows = freshRows({ kind: "raw", us, l: latency(us), cpu: { client: 7, server: 9, total: 16 } }, 30, 20);
    const by = new Map(rows.map((r) => [r.name, r]));
    const label = "fresh processes, raw floor (no RPC)";
    expect(by.get(`${label}: p99 of first 20 calls`)?.ours).toBe(latency(us).p99);
    expect(by.get(`${label}: p50 of first 20 calls`)?.floor).toBe(20);
    expect(by.get(`${label}: first call`)?.ours).toBe(5000);
    expect(by.get(`${label}: p50 of calls 2-10`)?.ours).toBe(latency(us.subarray(1, 10)).p50);
    // over 90 µs (3× ours = 30): 5000 400 300 200 100 95; over 60 µs (3× its own = 20): also 90 80 70 65
    expect(by.get(`${label}: calls over 3× our steady P1 p50 (of 20)`)?.ours).toBe(6);
    expect(by.get(`${label}: calls over 3× its own steady p50 (of 20)`)?.ours).toBe(10);
    expect(over(us, 60)).toBe(10);
    expect([by.get(`${label} CPU per call, client`)?.ours, by.get(`${label} CPU per call, server`)?.ours]).toEqual([7, 9]);
    expect(rows.every((r) => r.informational === true && r.met === null)).toBe(true);
    await assertNoHandleLeaks(baseline);
  });

  for (const kind of ["raw", "birpc"] as const) {
    it(`${kind}: a fresh client child times its first calls to a fresh server child; both exit`, async () => {
      const baseline = handleBaseline();
      const dir = await mkdtemp(join(tmpdir(), "mpts-bench-fresh-"));
      try {
        const w = await freshWindow(kind, dir, "test", 40, 156, 76);
        expect(w.us.length).toBe(40);
        expect(w.us.every((v) => Number.isFinite(v) && v > 0)).toBe(true);
        expect(w.l.n).toBe(40);
        expect(Number.isFinite(w.cpu.client) && w.cpu.client > 0).toBe(true);
        expect(Number.isFinite(w.cpu.server) && w.cpu.server >= 0).toBe(true);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      await assertNoHandleLeaks(baseline);
    });
  }
});
