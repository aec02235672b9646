// Randomised mixes of calls, pipelining, promise resolution (including back into the caller's
// vat, i.e. embargoes), cancellation, callbacks and releases. Each seed must finish with every
// server released exactly once and all tables empty on both sides.
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import { localCapability, readCap, writeCap } from "@multiprocess-ts/capnp";
import type { Capability, PendingCall } from "@multiprocess-ts/capnp";
import { Box, CallbackServer, CounterServer, COUNTER, M, call, drain, makePair } from "./rpc-helpers.js";

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

async function scenario(seed: number, breakAtEnd = false): Promise<void> {
  const rand = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  await using p = makePair();
  const caps: Capability[] = [];
  const pendings: PendingCall[] = [];
  const settled: Promise<unknown>[] = [];
  const localCounters: CounterServer[] = [];
  const callbacks: CallbackServer[] = [];
  const track = (pc: PendingCall): void => {
    pendings.push(pc);
    settled.push(Promise.resolve(pc).then((r) => r.close(), () => undefined));
  };
  let resolvedLater = true;
  const usedLater = new Set<unknown>();

  for (let step = 0; step < 120; step++) {
    const op = Math.floor(rand() * 11);
    switch (op) {
      case 0:
        track(call(p.boot, M.add, (b) => { b.a = step; b.b = 1; }));
        break;
      case 1: {
        const pc = call(p.boot, M.makeCounter, (b) => { b.a = step; });
        caps.push(pc.pipeline(0));
        track(pc);
        break;
      }
      case 2:
        if (caps.length > 0) track(call(pick(caps), 0, (b) => { b.b = step; }, COUNTER));
        break;
      case 3:
        if (caps.length > 0) caps.splice(Math.floor(rand() * caps.length), 1)[0]!.close();
        break;
      case 4: {
        const cbs = new CallbackServer();
        callbacks.push(cbs);
        const cb = localCapability(cbs);
        track(call(p.boot, M.register, (b) => writeCap(b, 0, cb)));
        cb.close();
        break;
      }
      case 5:
        if (p.calc.kept !== null) track(call(p.boot, M.fire, (b) => { b.a = step; }));
        break;
      case 6:
        if (resolvedLater) {
          const pc = call(p.boot, M.makeLater);
          caps.push(pc.pipeline(0));
          track(pc);
          resolvedLater = false;
        }
        break;
      case 7:
        if (!resolvedLater && p.calc.later !== null && !usedLater.has(p.calc.later)) {
          resolvedLater = true;
          usedLater.add(p.calc.later);
          if (rand() < 0.5 && p.calc.kept !== null) p.calc.later.resolve(p.calc.kept.dup());
          else {
            const c = new CounterServer();
            localCounters.push(c);
            p.calc.later.resolve(localCapability(c));
          }
        }
        break;
      case 8: {
        const pc = call(p.boot, M.add);
        track(pc);
        if (rand() < 0.5) pc.cancel();
        break;
      }
      case 9: {
        const cbs = new CallbackServer();
        callbacks.push(cbs);
        const cb = localCapability(cbs);
        const pc = call(p.boot, M.identity, (b) => writeCap(b, 0, cb));
        cb.close();
        const back = pc.pipeline(0);
        track(call(back, 0, (b) => { b.a = step; }, 0x77n));
        caps.push(back);
        track(pc);
        break;
      }
      default:
        await drain();
        break;
    }
  }
  if (!resolvedLater) {
    // The last makeLater may not have run yet on the server.
    while (p.calc.later === null || usedLater.has(p.calc.later)) await drain();
    const c = new CounterServer();
    localCounters.push(c);
    p.calc.later.resolve(localCapability(c));
  }
  if (breakAtEnd) {
    // The link fails with calls in flight: everything settles, everything is released.
    p.clientTransport.break(new Error("link lost"));
    await Promise.all(settled);
    for (const c of caps) c.close();
    p.boot.close();
    await p.client.closed;
    await p.server.closed;
    await drain();
    const zero = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };
    expect(p.client.stats()).toEqual(zero);
    expect(p.server.stats()).toEqual(zero);
    p.calc.kept?.close(); // the server object itself is still ours to drop
    p.calc.kept = null;
  } else {
    await Promise.all(settled);
    for (const c of caps) c.close();
    const r = await call(p.boot, M.register); // drop the server's kept callback
    r.close();
    await p.dispose();
  }
  for (const c of p.calc.counters) expect(c.released).toBe(1);
  for (const c of localCounters) expect(c.released).toBe(1);
  for (const c of callbacks) expect(c.released).toBe(1);
  // Counters never got a call out of order: each one's tags are increasing.
  for (const c of [...p.calc.counters, ...localCounters]) {
    const seen = c.seen.filter((t) => t !== 0);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  }
  void readCap;
  void Box;
}

describe("rpc stress", () => {
  for (let seed = 1; seed <= 25; seed++) {
    it(`seed ${seed}`, async () => {
      await scenario(seed);
    });
  }
  for (let seed = 101; seed <= 115; seed++) {
    it(`seed ${seed}, link breaks with calls in flight`, async () => {
      await scenario(seed, true);
    });
  }
});
