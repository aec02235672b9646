// The cold-start target's noise-floor rows (noise-floor.ts; built dist/, so `pnpm build` first):
// the steady runs' calls over both thresholds per 1,000, and a new raw connection between two warm
// ends timed call by call. Figures are printed by the bench, never asserted: only their shape is.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import type { Socket } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { assertNoHandleLeaks, handleBaseline } from "@multiprocess-ts/testing";
import { overPer1000, rawNewConnection, rawNewConnectionRows, steadyOverRows } from "../dist/noise-floor.js";
import { RawClient, startRawServer } from "../dist/raw.js";
import { latency } from "../dist/stats.js";

describe("bench cold-start noise-floor rows", () => {
  it("steady rows: calls over 3× our steady p50 and over 3× its own, per 1,000", async () => {
    const baseline = handleBaseline();
    // 20 calls: over 90 µs (3× ours = 30): 5000 400 300 200 100 95 (6 → 300 per 1,000);
    // over 60 µs (3× its own = 20): also 90 80 70 65 (10 → 500 per 1,000)
    const us = Float64Array.from([5000, 400, 300, 200, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 35, 45, 95, 65, 25, 15]);
    expect(overPer1000(us, 90)).toBe(300);
    expect(overPer1000(new Float64Array(0), 90)).toBe(0);
    const raw = steadyOverRows("raw", us, 30, 20);
    expect(raw.map((r) => [r.name, r.ours])).toEqual([
      ["steady state, raw floor (no RPC): calls over 3× our steady P1 p50, per 1,000", 300],
      ["steady state, raw floor (no RPC): calls over 3× its own steady p50, per 1,000", 500],
    ]);
    const birpc = steadyOverRows("birpc", us, 30, 20);
    expect(birpc.map((r) => r.name)).toEqual([
      "steady state, birpc: calls over 3× our steady P1 p50, per 1,000",
      "steady state, birpc: calls over 3× its own steady p50, per 1,000",
    ]);
    // Ours: one threshold, one row.
    const ours = steadyOverRows("ours", us, 30, 30);
    expect(ours.map((r) => [r.name, r.ours])).toEqual([["steady state, ours (P1): calls over 3× our steady P1 p50, per 1,000", 300]]);
    expect([...raw, ...birpc, ...ours].every((r) => r.informational === true && r.met === null && r.unit === "calls")).toBe(true);
    await assertNoHandleLeaks(baseline);
  });

  it("new raw connection rows: p99 / p50 against the raw steady p50, calls over both thresholds, CPU per side", async () => {
    const baseline = handleBaseline();
    const us = Float64Array.from([5000, 400, 300, 200, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 35, 45, 95, 65, 25, 15]);
    const rows = rawNewConnectionRows({ us, cpu: { client: 7, server: 9, total: 16 } }, 30, 20, { client: 5, server: 6, total: 11 });
    const by = new Map(rows.map((r) => [r.name, r]));
    const label = "new connection between warm processes, raw floor (no RPC)";
    expect(by.get(`${label}: p99 of first 20 calls`)?.ours).toBe(latency(us).p99);
    expect(by.get(`${label}: p99 of first 20 calls`)?.floor).toBe(20);
    expect(by.get(`${label}: p50`)?.ours).toBe(latency(us).p50);
    expect(by.get(`${label}: calls over 3× our steady P1 p50 (of 20)`)?.ours).toBe(6);
    expect(by.get(`${label}: calls over 3× its own steady p50 (of 20)`)?.ours).toBe(10);
    expect([by.get(`${label} CPU per call, client`)?.ours, by.get(`${label} CPU per call, server`)?.ours]).toEqual([7, 9]);
    expect([by.get(`${label} CPU per call, client`)?.floor, by.get(`${label} CPU per call, server`)?.floor]).toEqual([5, 6]);
    expect(rows.every((r) => r.informational === true && r.met === null)).toBe(true);
    await assertNoHandleLeaks(baseline);
  });

  it("a new raw connection to a raw server times each of its first calls and is closed", async () => {
    const baseline = handleBaseline();
    const dir = await mkdtemp(join(tmpdir(), "mpts-bench-noise-"));
    const server = await startRawServer(join(dir, "raw.sock"));
    let accepted = 0;
    let closed!: Promise<void>;
    server.on("connection", (s: Socket) => { accepted++; closed = new Promise((resolve) => s.once("close", () => resolve())); });
    try {
      const r = await rawNewConnection(join(dir, "raw.sock"), null, 40, RawClient.request(156, 76));
      expect(r.us.length).toBe(40);
      expect(r.us.every((v) => Number.isFinite(v) && v > 0)).toBe(true);
      expect(accepted).toBe(1);
      expect(Number.isFinite(r.cpu.client) && r.cpu.client > 0).toBe(true);
      expect(r.cpu.server).toBe(0); // no server child: both ends in this process
      // The client closed its end: the server's socket closes (the raw server ends on the client's end).
      await closed;
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    }
    await assertNoHandleLeaks(baseline);
  });
});
