// Hostile peers against the WebSocket listener (listenWebSocketConnections on 127.0.0.1, real
// `ws` connections; issue 11): trickling or idle peers cannot hold `maxConnections` slots
// (frameTimeoutMs / firstMessageTimeoutMs), a slow HTTP upgrade is closed (upgradeTimeoutMs),
// stalled partial messages of all connections share one FrameBudget. Bounds are asserted through
// the listener's counters (limit events and reasons, parked/pending counts, budget used/peak/
// refused); a well-behaved client is answered throughout. Loop thread.
import { afterEach, describe, expect, it } from "vitest";
import { FrameBudget, LimitError } from "@multiprocess-ts/capnp";
import { assertRpcIdle } from "@multiprocess-ts/testing";
import { connectGoodWs, HostileWsServer, RawWsPeer, wsFrameHeader, type WsServerOptions } from "../dist/index.js";

const servers: HostileWsServer[] = [];
const peers: RawWsPeer[] = [];
const goods: Awaited<ReturnType<typeof connectGoodWs>>[] = [];

async function start(opts: WsServerOptions): Promise<HostileWsServer> {
  const s = await HostileWsServer.start(opts);
  servers.push(s);
  return s;
}
async function peer(s: HostileWsServer): Promise<RawWsPeer> {
  const p = await RawWsPeer.connect(s.listener.port);
  peers.push(p);
  return p;
}
async function good(s: HostileWsServer): Promise<Awaited<ReturnType<typeof connectGoodWs>>> {
  const g = await connectGoodWs(s.listener.url);
  goods.push(g);
  return g;
}

afterEach(async () => {
  for (const p of peers.splice(0)) {
    p.destroy();
    await p.closed;
  }
  for (const g of goods.splice(0)) {
    await g.client.close();
    await g.client.$connection.disconnected;
    await g.loop.done;
    expect(g.loop.numRefs).toBe(0);
    assertRpcIdle(g.client.$connection, "good ws client");
  }
  for (const s of servers.splice(0)) {
    await s.close();
    expect(s.loop.numRefs).toBe(0);
    expect(s.listener.frameBudget.used).toBe(0);
    expect(s.listener.connections).toBe(0);
    expect(s.listener.pending).toBe(0);
  }
});

describe("hostile peers over WebSocket", () => {
  it("trickling clients cannot hold the slots of maxConnections: 2 (frameTimeoutMs); the parked good client is served", async () => {
    const s = await start({ maxConnections: 2, frameTimeoutMs: 300, firstMessageTimeoutMs: 0 });
    const tricklers = [await peer(s), await peer(s)];
    for (const t of tricklers) await t.upgrade();
    // Each starts a 1000-byte binary message, then sends one byte every 50 ms: never complete.
    const timers = tricklers.map((t) => {
      void t.write(wsFrameHeader(2, true, 1000));
      return setInterval(() => {
        if (!t.socket.destroyed) t.socket.write(new Uint8Array(1));
      }, 50);
    });
    try {
      const g = await good(s); // parked behind the two until they are cut
      expect(await g.client.add(20, 22)).toBe(42);
      await Promise.all(tricklers.map((t) => t.closed));
      expect(s.parks).toBeGreaterThanOrEqual(1);
      expect(s.limits).toHaveLength(2);
      for (const r of s.limits) expect(r).toMatch(/frameTimeoutMs = 300/);
      for (const t of tricklers) expect(t.closeCode()).toBe(1008);
    } finally {
      for (const t of timers) clearInterval(t);
    }
  });

  it("an upgraded connection that completes no message is closed after firstMessageTimeoutMs; one that does is kept", async () => {
    const s = await start({ firstMessageTimeoutMs: 200, frameTimeoutMs: 0 });
    const g = await good(s);
    const idle = await peer(s);
    await idle.upgrade();
    await idle.closed;
    expect(s.limits).toEqual([expect.stringMatching(/firstMessageTimeoutMs = 200/)]);
    expect(idle.closeCode()).toBe(1008);
    expect(await g.client.add(1, 2)).toBe(3);
    expect(s.listener.connections).toBe(1);
  });

  it("a slow HTTP upgrade is closed after upgradeTimeoutMs and frees its slot", async () => {
    const s = await start({ maxConnections: 1, upgradeTimeoutMs: 200 });
    const slow = await peer(s);
    await slow.write(RawWsPeer.request(10)); // headers never finish
    const silent = await peer(s); // sends nothing at all
    await Promise.all([slow.closed, silent.closed]);
    expect(s.limits).toHaveLength(2);
    for (const r of s.limits) expect(r).toMatch(/upgradeTimeoutMs = 200/);
    const g = await good(s);
    expect(await g.client.add(2, 2)).toBe(4);
  });

  it("parked upgrades beyond maxPending are closed; the parked ones are served in turn", async () => {
    const s = await start({ maxConnections: 1, maxPending: 1, frameTimeoutMs: 0, firstMessageTimeoutMs: 0 });
    const first = await peer(s);
    await first.upgrade();
    const parked = await peer(s);
    const upgraded = parked.upgrade();
    const dropped = await peer(s);
    const droppedUpgrade = dropped.upgrade().then(() => "upgraded", () => "refused");
    await dropped.closed;
    expect(await droppedUpgrade).toBe("refused");
    expect(s.parks).toBe(1);
    expect(s.drops).toBe(1);
    expect(s.listener.pending).toBe(1);
    first.destroy();
    await upgraded; // its slot went to the parked one
    expect(s.listener.pending).toBe(0);
  });

  it("an upgrade parked longer than parkTimeoutMs is closed with a LimitError (limit, drop); the served one is kept", async () => {
    const s = await start({ maxConnections: 1, parkTimeoutMs: 200, frameTimeoutMs: 0, firstMessageTimeoutMs: 0 });
    const first = await peer(s);
    await first.upgrade();
    const parked = await peer(s);
    const parkedUpgrade = parked.upgrade().then(() => "upgraded", () => "refused");
    await parked.closed; // destroyed by the listener once parked for 200 ms
    expect(await parkedUpgrade).toBe("refused");
    expect(s.parks).toBe(1);
    expect(s.drops).toBe(1);
    expect(s.listener.pending).toBe(0);
    expect(s.limits).toEqual([expect.stringMatching(/parked at maxConnections = 1 for more than parkTimeoutMs = 200/)]);
    expect(s.limitErrors).toHaveLength(1);
    expect(s.limitErrors[0]).toBeInstanceOf(LimitError);
    expect(s.limitErrors[0]).toMatchObject({ code: "MP_ERR_LIMIT", message: `WebSocket connection closed: ${s.limits[0]}` });
    // The served connection was not touched; its slot goes to the next client once it leaves.
    expect(first.socket.destroyed).toBe(false);
    expect(s.listener.connections).toBe(1);
    first.destroy();
    await first.closed;
    const g = await good(s);
    expect(await g.client.add(5, 6)).toBe(11);
  });

  it("parkTimeoutMs must be a non-negative number (RangeError before listening)", async () => {
    await expect(start({ parkTimeoutMs: -1 })).rejects.toThrow(new RangeError("listenWebSocket: parkTimeoutMs must be a non-negative number of milliseconds"));
  });

  it("stalled partial messages of all connections share one FrameBudget; the overflowing ones are closed", async () => {
    const budget = new FrameBudget(4 * 1024 * 1024);
    const s = await start({ frameBudget: budget, frameTimeoutMs: 0, firstMessageTimeoutMs: 0 });
    const g = await good(s);
    const n = 12;
    const chunk = 512 * 1024;
    const stalled = await Promise.all(Array.from({ length: n }, () => peer(s)));
    for (const p of stalled) await p.upgrade();
    // Each claims a 60 MiB message, sends 512 KiB of it, and stalls.
    await Promise.all(stalled.map((p) => p.write(Buffer.concat([wsFrameHeader(2, true, 60 * 1024 * 1024), Buffer.alloc(chunk)]))));
    const fits = Math.floor(budget.limit / (chunk + 14));
    await s.limitsReached(n - fits);
    expect(budget.peak).toBeLessThanOrEqual(budget.limit);
    expect(budget.refused).toBeGreaterThanOrEqual(n - fits);
    for (const r of s.limits) expect(r).toMatch(/frame budget of 4194304 bytes/);
    expect(await g.client.add(3, 4)).toBe(7);
    expect(s.impl.attackCalls).toBe(0);
  });

  it("a peer that pings without reading is paused by flow control (pongs count) and cut after pausedTimeoutMs", async () => {
    const s = await start({ flow: { pauseReadingAt: 64 * 1024, resumeReadingAt: 16 * 1024, pausedTimeoutMs: 300 }, frameTimeoutMs: 0, firstMessageTimeoutMs: 0 });
    const g = await good(s);
    const p = await peer(s);
    await p.upgrade();
    p.socket.pause(); // never reads the pongs
    const ping = Buffer.concat([wsFrameHeader(9, true, 125), Buffer.alloc(125)]);
    const pings = 100_000; // 12.5 MiB of pongs: past the socket buffers and the pause mark
    for (let i = 0; i < pings; i += 1000) p.socket.write(Buffer.concat(Array.from({ length: 1000 }, () => ping)));
    await p.closed;
    const conn = s.connections[1]!; // [0] is the good client's
    await conn.disconnected;
    expect(conn.error).toBeInstanceOf(LimitError);
    expect(conn.error!.message).toMatch(/pausedTimeoutMs = 300/);
    expect(await g.client.add(5, 6)).toBe(11);
  });
});
