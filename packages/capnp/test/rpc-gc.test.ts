// The FinalizationRegistry safety net: a leaked handle is released once by GC, and never again
// by a later close or by connection teardown.
// Threading: loop thread (the test's thread).
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { localCapability, readCap, writeCap } from "@multiprocess-ts/capnp";
import { Box, CallbackServer, M, call, callA, drain, makePair, wire } from "./rpc-helpers.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Collect garbage until `done()` holds (finalizers run in later tasks); bounded. */
async function collectUntil(done: () => boolean): Promise<boolean> {
  for (let i = 0; i < 100 && !done(); i++) {
    gc();
    await drain();
  }
  return done();
}

describe("GC safety net", () => {
  it("a leaked import handle is released once (one Release), and the server gets onRelease once", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    await (async () => {
      const resp = await call(p.boot, M.identity, (b) => writeCap(b, 0, cb));
      // Leak: read the cap and drop the handle without close().
      readCap(resp.results(Box), 0);
      resp.close();
    })();
    cb.close();
    expect(await collectUntil(() => cbs.released === 1)).toBe(true);
    await p.dispose();
    expect(cbs.released).toBe(1);
  });

  it("a leaked import from the peer sends exactly one Release", async () => {
    await using p = makePair();
    await (async () => {
      const resp = await call(p.boot, M.makeCounter);
      readCap(resp.results(Box), 0); // leaked
      resp.close();
    })();
    expect(p.client.stats().imports).toBe(2);
    expect(await collectUntil(() => p.client.stats().imports === 1)).toBe(true);
    await drain();
    expect(wire(p.clientTransport).filter((w) => w === "release")).toHaveLength(1);
    expect(p.calc.counters[0]!.released).toBe(1);
    expect(await callA(p.boot, M.add, (b) => { b.a = 1; })).toBe(1);
  });

  it("a request left unsent past its turn is released by GC (its target ref and its written caps); a sent one is not touched", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    const counter = await call(p.boot, M.makeCounter);
    const cap = readCap(counter.results(Box), 0)!;
    counter.close();
    expect(p.client.stats().imports).toBe(2);
    (() => {
      // Built, given a capability, never sent: only the GC can release what it holds.
      const req = cap.newCall(0xc3c3c3c3c3c3c3c3n, 0, Box);
      writeCap(req.params, 0, cb);
    })();
    // A request sent in the same turn it was made: never registered, and released by its call.
    const sent = cap.newCall(0xc3c3c3c3c3c3c3c3n, 0, Box);
    sent.params.a = 5;
    expect((await sent.send()).results(Box).a).toBe(5);
    cap.close(); // the unsent request still holds the import
    cb.close(); // the unsent request's cap table still holds the callback
    await drain();
    expect(p.client.stats().imports).toBe(2);
    expect(cbs.released).toBe(0);
    expect(await collectUntil(() => p.client.stats().imports === 1 && cbs.released === 1)).toBe(true);
  });
});

