// Flat results (thirteenth session): a DirectCall whose results are data only sets a flat reader
// (Sink.flatRead, hook.ts FlatRead) and takes the value in onCompleteFlat, and the client
// connection reads a hot-shaped Return of its results from the bytes where they lie
// (rpc/dispatch.ts routeReturn, questions.ts flatQuestion / handleFlatResults): no message,
// content pointer or outcome. Checked: the value and the bookkeeping equal the general path's (no
// Finish after a noFinishNeeded Return, the question ID reused at once, the tables empty); and the
// Returns that take the general path with a flat reader set: results with a capability (a cap
// table), an exception, a call canceled before its Return, a call with pipelined calls on its
// results, a traced connection.
// Threading: loop thread (the test's thread).
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { describe, expect, it } from "vitest";
import { CanceledError, DirectCall, RpcConnection, localCapability, memoryTransportPair, type Capability, type RpcError } from "@multiprocess-ts/capnp";
import { Box, CALC, CalcServer, M, capture, drain, makePair } from "./rpc-helpers.js";

/** Records every settle; with `flat`, reads `a` through a flat reader (counted), else from the results struct. */
class Probe extends DirectCall {
  readonly settled: (RpcError | null)[] = [];
  a = -1;
  caps = -1;
  flatReads: number[] = [];
  constructor(flat: boolean) {
    super();
    if (flat) {
      this.flatRead = (dv, at, words) => {
        this.flatReads.push(words);
        return words > 0 ? dv.getInt32(at, true) : 0;
      };
    }
  }

  start(cap: Capability, methodId: number, a: number, b = 1): void {
    const p = this.begin(cap, CALC, methodId, Box);
    p.a = a;
    p.b = b;
    this.sendCall();
  }

  protected settle(err: RpcError | null): void {
    this.settled.push(err);
    if (err === null) {
      this.caps = this.resultCaps();
      this.a = this.results(Box).a;
    }
    this.releaseResults();
  }

  protected override onCompleteFlat(value: unknown): void {
    this.settled.push(null);
    this.caps = 0;
    this.a = value as number;
  }
}

async function add(cap: Capability, a: number, b: number, flat: boolean): Promise<Probe> {
  const c = new Probe(flat);
  c.start(cap, M.add, a, b);
  await drain();
  return c;
}

const ZERO = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

describe("flat results (DirectCall.flatRead)", () => {
  it("are read from the Return's bytes with the general path's value and bookkeeping", async () => {
    await using p = makePair();
    await p.boot.whenResolved();
    const sent = capture(p.clientTransport);
    for (const [a, b] of [[2, 40], [-1, 0x7fffffff], [-0x80000000, 0], [0, 0]] as const) {
      const f = await add(p.boot, a, b, true);
      const g = await add(p.boot, a, b, false);
      expect(f.settled).toEqual([null]);
      expect(g.settled).toEqual([null]);
      expect(f.flatReads).toEqual([2]); // Box: two data words
      expect(f.a).toBe((a + b) | 0);
      expect(g.a).toBe(f.a);
      expect(f.caps).toBe(0);
      expect(p.client.stats().questions).toBe(0);
    }
    await drain();
    // Calls only (noFinishNeeded: no Finish either way), every one on the same question ID.
    expect(sent.map((m) => m.which())).toEqual(Array(8).fill(rpc.Message.CALL));
    expect(new Set(sent.map((m) => m.getCall().getQuestionId())).size).toBe(1);
  });

  it("take the general path for a cap table, an exception, a canceled call and pipelined calls", async () => {
    const calc = new CalcServer();
    await using p = makePair(calc);
    await p.boot.whenResolved();
    // Results with a capability (makeCounter): a cap table, so not a hot shape.
    const withCap = new Probe(true);
    withCap.start(p.boot, M.makeCounter, 0);
    await drain();
    expect(withCap.settled).toEqual([null]);
    expect(withCap.flatReads).toEqual([]);
    expect(withCap.caps).toBe(1);
    // An exception (a method the server does not have).
    const failed = new Probe(true);
    failed.start(p.boot, 99, 0);
    await drain();
    expect(failed.settled.length).toBe(1);
    expect(failed.settled[0]?.kind).toBe("unimplemented");
    expect(failed.flatReads).toEqual([]);
    // Canceled before the Return: the caller's error, the Return (canceled) read the general way.
    const canceled = new Probe(true);
    canceled.start(p.boot, M.sleep, 0);
    await calc.sleepStarted.promise;
    canceled.cancel();
    await calc.sleepAborted.promise;
    await drain();
    expect(canceled.settled.length).toBe(1);
    expect(canceled.settled[0]).toBeInstanceOf(CanceledError);
    expect(canceled.flatReads).toEqual([]);
    // A pipelined call waits on the results: they come as an outcome (whose pointer 0 is null).
    const piped = new Probe(true);
    piped.start(p.boot, M.add, 20, 22);
    const hook = piped.pipelineHook([0]);
    await drain();
    expect(piped.settled).toEqual([null]);
    expect(piped.a).toBe(42);
    expect(piped.flatReads).toEqual([]);
    expect(hook.isNullCap()).toBe(true);
    hook.release();
    // And the next flat call is read flat again.
    const again = await add(p.boot, 1, 2, true);
    expect(again.flatReads).toEqual([2]);
    expect(again.a).toBe(3);
  });

  it("take the general path on a traced connection", async () => {
    const [ct, st] = memoryTransportPair();
    const bootCap = localCapability(new CalcServer());
    const server = new RpcConnection(st, { bootstrap: bootCap, name: "server" });
    bootCap.close();
    const lines: string[] = [];
    const client = new RpcConnection(ct, { name: "client", log: (_level, msg) => lines.push(msg) });
    const boot = client.bootstrap();
    try {
      await boot.whenResolved();
      const f = await add(boot, 5, 6, true);
      expect(f.settled).toEqual([null]);
      expect(f.a).toBe(11);
      expect(f.flatReads).toEqual([]);
      expect(lines.some((l) => l.includes("<- return"))).toBe(true);
    } finally {
      boot.close();
      await drain();
      expect(client.stats()).toEqual(ZERO);
      expect(server.stats()).toEqual(ZERO);
      await client.close();
      await server.close();
    }
  });
});
