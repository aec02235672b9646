// A call whose params its server reads flat (rpc/flat-params.ts, Server.flatParams) is queued on
// the server as its IncomingCall, with no CallData or cap table, and a flat Return's outcome is one
// object per thread while no pipelined call waits on it (local.ts FLAT_RESULTS). The same calls to
// a server that reads flat and to one that does not (no `flatParams`) must give the same results,
// the same Return bytes and empty tables; calls keep their arrival order across the flat and the
// general path; Finish before the Return cancels a flat-read call; a pipelined call on a flat
// call's answer fails as on the general path; a tail call from a flat-read call forwards its
// results; an answer that waits for its Finish keeps a flat Return's outcome until then. Every test
// ends with the leak check (`await using` a pair: stats idle; rawServed: answers, exports 0).
// Threading: loop thread (the test's thread).
import * as capnp from "capnp-ts";
import * as rpcSchema from "capnp-ts/src/std/rpc.capnp.js";
import { describe, expect, it } from "vitest";
import { RpcConnection, RpcError, deferred, localCapability, memoryTransportPair, type Capability, type IncomingCall, type MemoryTransport, type Server } from "@multiprocess-ts/capnp";
import { Box, CallbackServer, drain, makePair, rawPeer, type Pair } from "./rpc-helpers.js";

/** Params and results of the methods below: two Int32s, no pointer section (the hot shape). */
class AB extends capnp.Struct {
  static readonly _capnp = { displayName: "AB", id: "f0000000000000a1", size: new capnp.ObjectSize(8, 0) };
  get a(): number {
    return capnp.Struct.getInt32(0, this);
  }
  set a(v: number) {
    capnp.Struct.setInt32(0, v, this);
  }
  get b(): number {
    return capnp.Struct.getInt32(4, this);
  }
  set b(v: number) {
    capnp.Struct.setInt32(4, v, this);
  }
}

const IFACE = 0xd4d4d4d4d4d4d4d4n;
/** add(a, b) -> a + b; park(a): waits for `release` or the call's cancel; tail(a): tail call to `kept`; boxed(Box.a): the general path (params with pointers). */
const ADD = 0;
const PARK = 1;
const TAIL = 2;
const BOXED = 3;

type Flat = { a: number; b: number };
const READ = (dv: DataView, at: number, words: number): Flat => ({
  a: words > 0 ? dv.getInt32(at, true) : 0,
  b: words > 0 ? dv.getInt32(at + 4, true) : 0,
});

/** Serves the methods above; records each call's `a` in arrival order and whether it was read flat. */
class Adder implements Server {
  readonly order: number[] = [];
  flatCalls = 0;
  canceledFns = 0;
  gate = deferred<void>();
  parked = deferred<IncomingCall>();
  kept: Capability | null = null;
  released = 0;
  constructor(readonly flat: boolean) {}
  flatParams(interfaceId: bigint, methodId: number): typeof READ | undefined {
    return this.flat && interfaceId === IFACE && methodId !== BOXED ? READ : undefined;
  }
  dispatch(call: IncomingCall): void | Promise<void> {
    if (call.methodId === BOXED) {
      this.order.push(call.params(Box).a);
      call.results(AB).a = -1;
      return;
    }
    const f = call.flatParams as Flat | undefined;
    if (f !== undefined) {
      this.flatCalls++;
      expect(() => call.params(AB)).toThrow(RpcError);
    }
    const p = f ?? call.params(AB);
    this.order.push(p.a);
    if (call.methodId === TAIL) {
      const req = this.kept!.newCall(IFACE, 0, Box);
      req.params.a = p.a;
      call.tailCall(req);
      return;
    }
    if (call.methodId === PARK) return this.park(call, p.a);
    call.results(AB).a = p.a + p.b;
  }
  private async park(call: IncomingCall, a: number): Promise<void> {
    call.whenCanceled!(() => this.canceledFns++);
    this.parked.resolve(call);
    const signal = call.signal;
    await Promise.race([this.gate.promise, new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()))]);
    call.results(AB).a = a * 10;
  }
  onRelease(): void {
    this.released++;
    this.kept?.close();
    this.kept = null;
  }
}

/** The server's messages as bytes, from now on, through a copying `sendCopy` (a flat Return needs one). */
function copying(t: MemoryTransport): Uint8Array[] {
  const out: Uint8Array[] = [];
  const send = t.send.bind(t);
  t.send = (segs) => {
    out.push(segs[0]!.slice());
    send(segs);
  };
  (t as MemoryTransport & { sendCopy?: (segs: Uint8Array[]) => boolean }).sendCopy = (segs) => {
    out.push(segs[0]!.slice());
    send(segs.map((s) => s.slice()));
    return true;
  };
  return out;
}

async function addCall(cap: Capability, methodId: number, a: number, b = 0): Promise<number> {
  const req = cap.newCall(IFACE, methodId, AB);
  req.params.a = a;
  req.params.b = b;
  const resp = await req.send();
  try {
    return resp.results(AB).a;
  } finally {
    resp.close();
  }
}

/** A pair serving an Adder; its bootstrap resolved first, so calls target the import (the flat path's target). */
async function pairOf(flat: boolean): Promise<{ p: Pair; server: Adder; sent: Uint8Array[] }> {
  const server = new Adder(flat);
  const p = makePair(server);
  const sent = copying(p.serverTransport);
  await p.boot.whenResolved();
  return { p, server, sent };
}

describe("flat-read calls queued as their IncomingCall", () => {
  it("give the general path's results, Return bytes and empty tables", async () => {
    const f = await pairOf(true);
    const g = await pairOf(false);
    await using _f = f.p;
    await using _g = g.p;
    const values = [[0, 0], [1, 2], [-7, 3], [2 ** 31 - 1, 0], [-(2 ** 31), -1], [123456, -654321]] as const;
    for (const [a, b] of values) {
      const got = await Promise.all([addCall(f.p.boot, ADD, a, b), addCall(g.p.boot, ADD, a, b)]);
      expect(got).toEqual([(a + b) | 0, (a + b) | 0]);
      expect(f.p.server.stats().answers).toBe(0); // the bootstrap's was finished once it resolved
      expect(g.p.server.stats().answers).toBe(0);
    }
    expect(f.server.flatCalls).toBe(values.length);
    expect(g.server.flatCalls).toBe(0);
    expect(f.sent).toEqual(g.sent);
  });

  it("keep their arrival order with general-path calls to the same server", async () => {
    const { p, server } = await pairOf(true);
    await using _p = p;
    const calls: PromiseLike<number>[] = [];
    for (let i = 1; i <= 6; i++) {
      if (i % 3 === 0) {
        const req = p.boot.newCall(IFACE, BOXED, Box);
        req.params.a = i;
        req.params.setText(0, "general");
        calls.push(req.send().then((r) => (r.close(), i)));
      } else calls.push(addCall(p.boot, ADD, i));
    }
    await Promise.all(calls);
    expect(server.order).toEqual([1, 2, 3, 4, 5, 6]);
    expect(server.flatCalls).toBe(4);
  });

  it("Finish before the Return cancels a flat-read call: whenCanceled and the signal fire, the caller sees canceled", async () => {
    const { p, server } = await pairOf(true);
    await using _p = p;
    const req = p.boot.newCall(IFACE, PARK, AB);
    req.params.a = 4;
    const pc = req.send();
    await server.parked.promise;
    pc.cancel();
    await expect(Promise.resolve(pc)).rejects.toThrow();
    await drain();
    expect(server.canceledFns).toBe(1);
    expect(server.flatCalls).toBe(1);
    expect(p.server.stats().answers).toBe(0);
    server.gate.resolve();
    expect(await addCall(p.boot, ADD, 2, 3)).toBe(5);
  });

  it("a call pipelined on a flat call's answer fails as on the general path; later flat Returns are unaffected", async () => {
    const errors: string[] = [];
    for (const flat of [true, false]) {
      const { p, server } = await pairOf(flat);
      await using _p = p;
      const req = p.boot.newCall(IFACE, PARK, AB);
      req.params.a = 5;
      const pc = req.send();
      await server.parked.promise;
      const piped = pc.pipeline(0);
      const pr = piped.newCall(IFACE, ADD, AB).send();
      await drain();
      server.gate.resolve();
      const resp = await pc;
      expect(resp.results(AB).a).toBe(50);
      resp.close();
      errors.push(await Promise.resolve(pr).then(() => "resolved", (e: unknown) => String(e)));
      piped.close();
      expect(await addCall(p.boot, ADD, 6, 1)).toBe(7);
      expect(server.flatCalls).toBe(flat ? 2 : 0);
    }
    expect(errors[0]).not.toBe("resolved");
    expect(errors[0]).toBe(errors[1]);
  });

  it("a tail call from a flat-read call forwards its results", async () => {
    const { p, server } = await pairOf(true);
    await using _p = p;
    const cbs = new CallbackServer();
    server.kept = localCapability(cbs);
    expect(await addCall(p.boot, TAIL, 21)).toBe(42);
    expect(cbs.values).toEqual([21]);
    expect(server.flatCalls).toBe(1);
    expect(p.server.stats().answers).toBe(0);
  });
});

describe("a flat Return's shared outcome", () => {
  it("is kept by answers that wait for their Finish, which then leave no answer; a call pipelined after the Return fails", async () => {
    const server = new Adder(true);
    const [ta, tb] = memoryTransportPair();
    copying(ta);
    const bootCap = localCapability(server);
    const conn = new RpcConnection(ta, { bootstrap: bootCap, name: "server" });
    bootCap.close();
    const peer = rawPeer(tb);
    peer.send((r) => r.initBootstrap().setQuestionId(0));
    await drain();
    const boot = peer.got.find((m) => m.which() === rpcSchema.Message.RETURN)!.getReturn();
    const cap = boot.getResults().getCapTable().get(0).getSenderHosted();
    const call = (qid: number, a: number, b: number, target?: number) => (r: rpcSchema.Message): void => {
      const c = r.initCall();
      c.setQuestionId(qid);
      if (target === undefined) c.initTarget().setImportedCap(cap);
      else c.initTarget().initPromisedAnswer().setQuestionId(target);
      c.setInterfaceId(IFACE);
      c.setMethodId(ADD);
      const content = c.initParams().getContent();
      const s = new capnp.Struct(content.segment, content.byteOffset, content._capnp.depthLimit);
      capnp.Struct.initStruct(AB._capnp.size, s);
      const dv = new DataView(content.segment.buffer);
      const at = content.byteOffset + 8 + (dv.getInt32(content.byteOffset, true) >> 2) * 8;
      dv.setInt32(at, a, true);
      dv.setInt32(at + 4, b, true);
    };
    const ret = (qid: number): rpcSchema.Return | undefined =>
      peer.got.filter((m) => m.which() === rpcSchema.Message.RETURN && m.getReturn().getAnswerId() === qid).pop()?.getReturn();
    peer.send(call(2000, 1, 2));
    peer.send(call(2001, 3, 4));
    await drain();
    for (const [qid, v] of [[2000, 3], [2001, 7]] as const) {
      const r = ret(qid)!;
      expect(r.which()).toBe(rpcSchema.Return.RESULTS);
      expect(r.getNoFinishNeeded()).toBe(false);
      expect(capnp.Struct.getStruct(0, AB, r.getResults()).a).toBe(v);
    }
    expect(server.flatCalls).toBe(2);
    expect(conn.stats().answers).toBe(3);
    // Pipelined on a returned flat answer: no capability there (the Return's results had none).
    peer.send(call(2002, 0, 0, 2000));
    await drain();
    expect(ret(2002)!.which()).toBe(rpcSchema.Return.EXCEPTION);
    expect(ret(2002)!.getException().getReason()).toContain("null capability");
    for (const qid of [2000, 2001, 2002]) {
      peer.send((r) => {
        const f = r.initFinish();
        f.setQuestionId(qid);
        f.setReleaseResultCaps(true);
      });
    }
    await drain();
    expect(conn.stats().answers).toBe(1); // the bootstrap's
    peer.send((r) => {
      const f = r.initFinish();
      f.setQuestionId(0);
      f.setReleaseResultCaps(true);
    });
    await drain();
    await conn.close();
    expect(conn.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
    expect(server.released).toBe(1);
  });
});
