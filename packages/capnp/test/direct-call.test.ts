// DirectCall (rpc/client.ts): a call built and sent in one go whose outcome goes straight to the
// subclass (the runtime's generated clients). Checked over createRpcPair (rpc-helpers.ts): results
// read in settle, exactly one settle, cancel, drop releasing what the params held, a call that
// cannot be sent settling during sendCall, and results with capabilities.
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import { CanceledError, DirectCall, RpcError, localCapability, readCap, writeCap, type Capability } from "@multiprocess-ts/capnp";
import { Box, CALC, COUNTER, CallbackServer, M, drain, makePair } from "./rpc-helpers.js";

/** Records every settle; reads `a` (and the capability at pointer 0, if any) from the results. */
class Probe extends DirectCall {
  readonly settled: (RpcError | null)[] = [];
  a = -1;
  caps = -1;
  cap: Capability | null = null;
  duringSend = false;
  #sending = false;

  start(cap: Capability, methodId: number, fill?: (b: Box) => void, iface = CALC): Box {
    const params = this.begin(cap, iface, methodId, Box);
    fill?.(params);
    return params;
  }

  send(): void {
    this.#sending = true;
    this.sendCall();
    this.#sending = false;
  }

  protected settle(err: RpcError | null): void {
    this.settled.push(err);
    this.duringSend = this.#sending;
    if (err === null) {
      this.caps = this.resultCaps();
      const r = this.results(Box);
      this.a = r.a;
      if (this.caps > 0) this.cap = readCap(r, 0);
    }
    this.releaseResults();
  }
}

describe("DirectCall", () => {
  it("settles once from the Return's dispatch with results it can read", async () => {
    await using p = makePair();
    const c = new Probe();
    c.start(p.boot, M.add, (b) => {
      b.a = 2;
      b.b = 40;
    });
    c.send();
    expect(c.settled).toEqual([]);
    await drain();
    expect(c.settled).toEqual([null]);
    expect(c.a).toBe(42);
    expect(c.caps).toBe(0);
    expect(c.duringSend).toBe(false);
  });

  it("reads a capability from the results, and the rest of the results go with releaseResults", async () => {
    await using p = makePair();
    const c = new Probe();
    c.start(p.boot, M.makeCounter, (b) => {
      b.a = 10;
    });
    c.send();
    await drain();
    expect(c.settled).toEqual([null]);
    expect(c.caps).toBe(1);
    const counter = c.cap!;
    const inc = new Probe();
    inc.start(counter, 0, (b) => {
      b.a = 5;
    }, COUNTER);
    inc.send();
    await drain();
    expect(inc.settled).toEqual([null]);
    expect(inc.a).toBe(15);
    counter.close();
    await drain();
    expect(p.calc.counters[0]!.released).toBe(1);
  });

  it("cancel before the Return settles at once with CanceledError, and only once", async () => {
    await using p = makePair();
    const c = new Probe();
    c.start(p.boot, M.sleep);
    c.send();
    await p.calc.sleepStarted.promise;
    c.cancel();
    expect(c.settled.length).toBe(1);
    expect(c.settled[0]).toBeInstanceOf(CanceledError);
    await p.calc.sleepAborted.promise;
    await drain();
    expect(c.settled.length).toBe(1);
  });

  it("drop releases the target and the capabilities written into the params, nothing is sent", async () => {
    await using p = makePair();
    const cb = new CallbackServer();
    const cap = localCapability(cb);
    const c = new Probe();
    c.start(p.boot, M.register, (b) => writeCap(b, 0, cap));
    cap.close();
    expect(cb.released).toBe(0);
    c.drop();
    expect(cb.released).toBe(1);
    await drain();
    expect(c.settled).toEqual([]);
    expect(p.client.stats().questions).toBe(0);
  });

  it("a call that cannot be sent settles during sendCall; a closed capability cannot begin", async () => {
    await using p = makePair();
    const dup = p.boot.dup();
    await p.client.close();
    const c = new Probe();
    c.start(dup, M.add);
    c.send();
    expect(c.settled.length).toBe(1);
    expect(c.duringSend).toBe(true);
    expect(c.settled[0]).toBeInstanceOf(RpcError);
    expect(c.settled[0]!.kind).toBe("disconnected");
    dup.close();
    expect(() => new Probe().start(dup, M.add)).toThrow(RpcError);
  });
});
