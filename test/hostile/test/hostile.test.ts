// Hostile peers against listenConnections on real sockets (Unix and TCP 127.0.0.1), issue 11:
// every attack is bounded (asserted through counters: decode units charged vs the budget,
// elements that reached the implementation, bytes of partial frames held, connection state)
// while a well-behaved client is answered throughout. Loop thread.
import { afterEach, describe, expect, it } from "vitest";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import {
  decodeBudget,
  decodeCost,
  FrameBudget,
  LimitError,
  messageFromSegments,
  partialFrameHold,
  readMessage,
  validateRpcMessage,
} from "@multiprocess-ts/capnp";
import {
  addCall,
  bootstrapMessage,
  finishMessage,
  frameBytes,
  GoodClient,
  HostileServer,
  MESSAGE_ATTACKS,
  RawPeer,
  Words,
  type Transport,
} from "../dist/index.js";
import { assertRpcIdle } from "@multiprocess-ts/testing";

const open: { close(): Promise<void> }[] = [];
function track<T extends { close(): Promise<void> }>(x: T): T {
  open.push(x);
  return x;
}
const peers: RawPeer[] = [];
async function peer(server: HostileServer, bootstrap = true): Promise<RawPeer> {
  const p = await RawPeer.connect(server.target, bootstrap);
  peers.push(p);
  return p;
}

afterEach(async () => {
  for (const p of peers.splice(0)) {
    p.destroy();
    await p.closed;
  }
  // Clients first, then servers (leak checks in closeServer).
  for (const x of open.splice(0).reverse()) await x.close();
});

/** Close the server and check it leaked nothing: every served connection released, loop idle. */
async function closeServer(s: HostileServer): Promise<void> {
  open.splice(open.indexOf(s), 1);
  await s.close();
  expect(s.released).toBe(s.served);
  expect(s.loop.numRefs).toBe(0);
  expect(s.listener.frameBudget.used).toBe(0);
}

/** Close the good client and check it leaked nothing. */
async function closeGood(g: GoodClient): Promise<void> {
  open.splice(open.indexOf(g), 1);
  await g.close();
  expect(g.loop.numRefs).toBe(0);
  assertRpcIdle(g.client.$connection, "good client");
}

/** Resolves once the listener has closed at least `n` sockets for a limit. */
function limitsReached(s: HostileServer, n: number): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (s.limits.length >= n) resolve();
      else s.listener.once("limit", () => queueMicrotask(check));
    };
    check();
  });
}

/** A frame table claiming one segment of `words` words. */
function frameHeader(words: number): Uint8Array {
  const h = new Uint8Array(8);
  new DataView(h.buffer).setUint32(4, words, true);
  return h;
}

describe.each<Transport>(["unix", "tcp"])("hostile peers over %s", (transport) => {
  it("message attacks: over budget fails that call alone (LimitError), in budget is served, the good client is answered throughout", async () => {
    const server = track(await HostileServer.start(transport));
    const good = track(await GoodClient.connect(server.target));
    good.startLoop();
    const p = await peer(server);
    let served = 0;
    let servedElements = 0;
    for (const a of MESSAGE_ATTACKS) {
      const segs = a.build(1, 0, a.ciScale);
      const budget = decodeBudget(frameBytes(segs));
      let cost: number | LimitError;
      try {
        cost = decodeCost(segs);
      } catch (e) {
        cost = e as LimitError;
      }
      const answer = await p.call((q) => a.build(q, 0, a.ciScale));
      if (a.served(a.ciScale)) {
        expect(cost, a.name).toBeTypeOf("number");
        expect(cost as number, a.name).toBeLessThanOrEqual(budget);
        expect(answer.kind, a.name).toBe("results");
        served++;
        servedElements += a.ciScale;
      } else {
        expect(cost, a.name).toBeInstanceOf(LimitError);
        expect(answer.kind, a.name).toBe("exception");
        expect(answer.reason, a.name).toMatch(/^call params: .*(decode budget|traversalLimitWords)/);
      }
      // The attacker's connection carries on: an honest call on it is answered.
      expect((await p.call((q) => addCall(q, 0, 2, 3))).int0).toBe(5);
      expect(p.abortReason).toBeUndefined();
    }
    // Only the calls within budget reached the implementation, with at most what they carried.
    expect(server.impl.attackCalls).toBe(served);
    expect(server.impl.elements).toBeLessThanOrEqual(servedElements);
    expect(server.warnings.filter((w) => /refused/.test(w))).toHaveLength(MESSAGE_ATTACKS.length - served);
    await good.once();
    await good.stopLoop();
    expect(good.failures).toBe(0);
    expect(good.latencies.length).toBeGreaterThan(MESSAGE_ATTACKS.length);
    expect(server.errors).toEqual([]);
    await closeGood(good);
    await closeServer(server);
  });

  it("an over-budget message that is not a Call aborts that connection only, with the reason", async () => {
    const server = track(await HostileServer.start(transport));
    const good = track(await GoodClient.connect(server.target));
    const p = await peer(server, false);
    // Bootstrap whose struct has an extra pointer to a List(Void) of 8 M elements (0 bytes).
    const w = new Words();
    w.alloc(1);
    const m = w.alloc(2);
    w.structPtr(0, m, 1, 1);
    w.u16(m, 0, 8);
    const b = w.alloc(3);
    w.structPtr(m + 1, b, 1, 2);
    w.listPtr(b + 2, b + 3, 0, 8_000_000);
    expect(() => validateRpcMessage([w.segment()])).toThrow(/decode budget/);
    p.send([w.segment()]);
    await p.closed;
    expect(p.abortReason).toMatch(/decode budget/);
    expect(await good.once()).toBeGreaterThan(0);
    expect(server.errors.every((e) => /decode budget/.test(e))).toBe(true);
    await closeGood(good);
    await closeServer(server);
  });

  it("trickling clients cannot hold the slots of maxConnections: 4 (frameTimeoutMs)", async () => {
    const server = track(await HostileServer.start(transport, { maxConnections: 4, frameTimeoutMs: 300, firstMessageTimeoutMs: 0 }));
    const tricklers = await Promise.all([0, 1, 2, 3].map(() => peer(server, false)));
    // Each sends a frame header, then one byte every 50 ms: never a whole message.
    const timers = tricklers.map((t) => {
      void t.write(frameHeader(1000));
      return setInterval(() => {
        if (!t.socket.destroyed) t.socket.write(new Uint8Array(1));
      }, 50);
    });
    try {
      // Parked behind the four until the server cuts them; then served.
      const good = track(await GoodClient.connect(server.target));
      expect(await good.once()).toBeGreaterThan(0);
      await Promise.all(tricklers.map((t) => t.closed));
      expect(server.limits).toHaveLength(4);
      for (const l of server.limits) expect(l.reason).toMatch(/frameTimeoutMs = 300/);
      await closeGood(good);
    } finally {
      for (const t of timers) clearInterval(t);
    }
    await closeServer(server);
  });

  it("peers filling the parking lot (maxPending) are closed after parkTimeoutMs; the next client is parked and served", async () => {
    const server = track(await HostileServer.start(transport, { maxConnections: 1, maxPending: 2, parkTimeoutMs: 500, frameTimeoutMs: 0, firstMessageTimeoutMs: 0 }));
    const good = track(await GoodClient.connect(server.target));
    expect(await good.once()).toBeGreaterThan(0);
    // Two peers connect and wait: the lot is full, so a third is closed at once.
    const waiting = [await peer(server, false), await peer(server, false)];
    const over = await peer(server, false);
    await over.closed;
    // After parkTimeoutMs the waiting peers are closed too (limit, then drop).
    await Promise.all(waiting.map((p) => p.closed));
    expect(server.limits.map((l) => l.reason)).toEqual([
      expect.stringMatching(/parked at maxConnections = 1 for parkTimeoutMs = 500/),
      expect.stringMatching(/parked at maxConnections = 1 for parkTimeoutMs = 500/),
    ]);
    expect(server.parked).toBe(2); // the third was not parked: dropped at once
    expect(server.dropped).toBe(3);
    expect(server.listener.pending).toBe(0);
    // The served client was kept; a new one waits in the emptied lot and is served when it frees.
    expect(await good.once()).toBeGreaterThan(0);
    const next = new Promise<void>((resolve) => server.listener.once("park", () => resolve()));
    const late = GoodClient.connect(server.target);
    await next;
    await closeGood(good);
    const g2 = track(await late);
    expect(await g2.once()).toBeGreaterThan(0);
    expect(server.limits).toHaveLength(2);
    await closeGood(g2);
    await closeServer(server);
  });

  it("a connection that completes no message is closed after firstMessageTimeoutMs; one that does is kept", async () => {
    const server = track(await HostileServer.start(transport, { firstMessageTimeoutMs: 200, frameTimeoutMs: 0 }));
    const good = track(await GoodClient.connect(server.target));
    const idle = await peer(server, false);
    await idle.closed;
    expect(server.limits.map((l) => l.reason)).toEqual([expect.stringMatching(/firstMessageTimeoutMs = 200/)]);
    expect(await good.once()).toBeGreaterThan(0);
    await closeGood(good);
    await closeServer(server);
  });

  it("stalled partial frames of all connections share one FrameBudget; the overflowing ones are closed", async () => {
    const budget = new FrameBudget(32 * 1024 * 1024);
    const server = track(await HostileServer.start(transport, { frameBudget: budget, frameTimeoutMs: 0, firstMessageTimeoutMs: 0 }));
    const good = track(await GoodClient.connect(server.target));
    const body = 64 * 1024;
    const each = partialFrameHold(8 + 60 * 1024 * 1024, 8 + body);
    const n = 24;
    const stalled = await Promise.all(Array.from({ length: n }, () => peer(server, false)));
    // Each claims a 60 MiB frame, sends 64 KiB of it, and stalls.
    await Promise.all(stalled.map((s) => s.write(new Uint8Array([...frameHeader(60 * 1024 * 128), ...new Uint8Array(body)]))));
    const cut = Math.ceil(n - budget.limit / each);
    await limitsReached(server, cut);
    expect(budget.peak).toBeLessThanOrEqual(budget.limit);
    expect(budget.used).toBeLessThanOrEqual(budget.limit);
    expect(budget.refused).toBeGreaterThanOrEqual(cut);
    for (const l of server.limits) expect(l.reason).toMatch(/frame budget of 33554432 bytes/);
    expect(await good.once()).toBeGreaterThan(0);
    for (const s of stalled) s.destroy();
    await Promise.all(stalled.map((s) => s.closed));
    await closeGood(good);
    await closeServer(server);
    expect(budget.used).toBe(0);
  });
});

describe("pooled Buffer views (issue 11 item 6)", () => {
  it("readMessage / messageFromSegments read a Buffer view into a larger pool at its own offset", () => {
    const msg = finishMessage(4242)[0]!;
    const pool = Buffer.alloc(4096, 0xff); // garbage around the message, like a socket chunk pool
    const at = 1024;
    pool.set(msg, at);
    const view = pool.subarray(at, at + msg.byteLength);
    expect(view.byteOffset).toBe(at);
    expect(view.buffer.byteLength).toBeGreaterThan(view.byteLength);
    expect(readMessage([view]).getRoot(rpc.Message).getFinish().getQuestionId()).toBe(4242);
    expect(messageFromSegments([view]).getRoot(rpc.Message).getFinish().getQuestionId()).toBe(4242);
    // And a real pooled allocation (Buffer.allocUnsafe shares Node's pool for small sizes).
    const pooled = Buffer.allocUnsafe(msg.byteLength);
    pooled.set(msg);
    expect(messageFromSegments([pooled]).getRoot(rpc.Message).getFinish().getQuestionId()).toBe(4242);
  });

  it("the bootstrap message of the suite is valid (sanity of the hand-built envelopes)", () => {
    expect(() => validateRpcMessage(bootstrapMessage(0))).not.toThrow();
    expect(() => validateRpcMessage(addCall(1, 0, 2, 3))).not.toThrow();
  });
});
