// The bench's own pieces (built dist/, so `pnpm build` first): aggregation of rounds (median,
// range, ratio and target judged on the medians), and the peer rows' servers and clients (birpc
// over JSON lines, capnweb over its string transport on lines) on a real Unix socket, with calls
// in flight together and a 1 MiB byte payload (a line that spans many socket chunks).
import { mkdtemp, rm } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { assertNoHandleLeaks, handleBaseline } from "@multiprocess-ts/testing";
import { aggregate, Figures } from "../dist/figures.js";
import { connectPeer, startPeerServer } from "../dist/peers.js";

describe("bench figures", () => {
  it("aggregates rounds into the median with the range of ours, and judges the target on the medians", async () => {
    const baseline = handleBaseline();
    const rounds = [[10, 100], [30, 50], [20, 80]].map(([ours, floor]) => {
      const f = new Figures();
      f.add("P1 add sequential p50", "µs", ours!, floor!, { dir: "le", x: 0.3 });
      f.cpu("P1", { client: ours! * 2, server: ours! * 3 }, { client: 1, server: 1 });
      return f.rows;
    });
    const rows = aggregate(rounds);
    expect(rows.map((r) => r.name)).toEqual(["P1 add sequential p50", "P1 CPU per call, client", "P1 CPU per call, server"]);
    const p1 = rows[0]!;
    expect([p1.ours, p1.floor, p1.range, p1.rounds]).toEqual([20, 80, [10, 30], 3]);
    expect(p1.ratio).toBe(0.25);
    expect([p1.target, p1.met]).toEqual(["≤ 0.3× floor", true]);
    expect(rows[1]!.informational).toBe(true);
    expect([rows[2]!.ours, rows[2]!.met]).toEqual([60, null]);
    await assertNoHandleLeaks(baseline);
  });
});

describe("bench peers", () => {
  for (const kind of ["birpc", "capnweb"] as const) {
    it(`${kind}: add and a 1 MiB passData echo over a Unix socket`, async () => {
      const baseline = handleBaseline();
      const dir = await mkdtemp(join(tmpdir(), "mpts-bench-test-"));
      const conns: Socket[] = [];
      const server = await startPeerServer(kind, join(dir, "peer.sock"), (s) => conns.push(s));
      const peer = await connectPeer(kind, join(dir, "peer.sock"));
      try {
        expect(await peer.add(2, 3)).toBe(5);
        expect(await Promise.all([peer.add(1, 1), peer.add(-7, 0.5), peer.add(1e9, 1e9)])).toEqual([2, -6.5, 2e9]);
        const data = new Uint8Array(1 << 20);
        for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >>> 9)) & 0xff;
        const back = await peer.passData(data);
        expect(back).toBeInstanceOf(Uint8Array);
        expect(Buffer.compare(Buffer.from(back), Buffer.from(data))).toBe(0);
        expect(conns.length).toBe(1);
      } finally {
        peer.close();
        for (const c of conns) c.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await rm(dir, { recursive: true, force: true });
      }
      await assertNoHandleLeaks(baseline);
    });
  }
});
