// RPC engine, advanced: promises, Resolve and embargoes; tail calls; release counts; connection
// end; protocol errors and Unimplemented. Over createRpcPair (rpc-helpers.ts makePair).
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import {
  DisconnectedError,
  ProtocolError,
  RpcConnection,
  RpcError,
  deferred,
  localCapability,
  memoryTransportPair,
  promiseCapability,
  readCap,
  writeCap,
} from "@multiprocess-ts/capnp";
import type { Capability, MemoryTransport } from "@multiprocess-ts/capnp";
import { capture, Box, CalcServer, CallbackServer, CounterServer, CALC, COUNTER, M, call, callA, drain, makePair, wire } from "./rpc-helpers.js";

const ZERO = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

function inc(cap: Capability, tag: number): Promise<number> {
  return callA(cap, 0, (b) => { b.b = tag; }, COUNTER);
}

describe("promises, Resolve and embargoes", () => {
  it("a promise capability result: calls pipelined before and after the Resolve", async () => {
    await using p = makePair();
    const pc = call(p.boot, M.makeLater);
    const later = pc.pipeline(0);
    const c1 = inc(later, 1); // promisedAnswer, queued at the server's promise
    const resp = await pc;
    resp.close();
    const c2 = inc(later, 2); // importedCap (senderPromise import)
    await drain();
    expect(p.client.stats().imports).toBe(2); // bootstrap + promise
    const counter = new CounterServer(10);
    p.calc.later!.resolve(localCapability(counter));
    expect(await c1).toBe(11);
    expect(await c2).toBe(12);
    expect(wire(p.serverTransport)).toContain("resolve");
    expect(await inc(later, 3)).toBe(13);
    expect(counter.seen).toEqual([1, 2, 3]);
    await later.whenResolved();
    later.close();
    await drain();
    expect(counter.released).toBe(1);
  });

  it("a promise that rejects: queued and later calls fail with its error", async () => {
    await using p = makePair();
    const pc = call(p.boot, M.makeLater);
    const later = pc.pipeline(0);
    const c1 = inc(later, 1);
    (await pc).close();
    await drain();
    p.calc.later!.reject(new RpcError("overloaded", "no counter today"));
    const e1 = (await c1.then(() => null, (e: unknown) => e)) as RpcError;
    expect(e1.kind).toBe("overloaded");
    expect(e1.message).toBe("no counter today");
    const e2 = (await inc(later, 2).then(() => null, (e: unknown) => e)) as RpcError;
    expect(e2.kind).toBe("overloaded");
    await expect(later.whenResolved()).rejects.toBeInstanceOf(RpcError);
    later.close();
  });

  it("embargo: a promise resolving back into our vat keeps E-order", async () => {
    await using p = makePair();
    const counter = new CounterServer(0);
    const x = localCapability(counter);
    await callA(p.boot, M.register, (b) => writeCap(b, 0, x));
    x.close();
    const pc = call(p.boot, M.makeLater);
    const later = pc.pipeline(0);
    const c1 = inc(later, 1);
    (await pc).close();
    const c2 = inc(later, 2);
    await drain(); // c1, c2 wait in the server's promise
    // The server resolves its promise to our own X (an import on its side).
    p.calc.later!.resolve(p.calc.kept!.dup());
    const c3 = inc(later, 3); // still sent to the server, which forwards it back to us
    p.clientTransport.fence(); // hold our Disembargo (and anything after it)
    await drain();
    expect(p.client.stats().embargoes).toBe(1);
    expect(counter.seen).toEqual([1, 2, 3]);
    const c4 = inc(later, 4);
    const c5 = inc(later, 5);
    await drain();
    expect(counter.seen).toEqual([1, 2, 3]); // embargoed until the loopback returns
    p.clientTransport.release();
    expect(await Promise.all([c1, c2, c3, c4, c5])).toEqual([1, 2, 3, 4, 5]);
    expect(counter.seen).toEqual([1, 2, 3, 4, 5]);
    expect(wire(p.clientTransport)).toContain("disembargo");
    expect(wire(p.serverTransport)).toContain("disembargo");
    expect(later.localServer()).toBe(counter);
    later.close();
    await callA(p.boot, M.register);
    await drain();
    expect(counter.released).toBe(1);
  });

  it("a pipelined call reflected by the peer (identity(cb).cb.notify()) is forwarded back, then embargoed", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    p.serverTransport.fence(); // hold the identity Return so the pipelined call goes to the server first
    const pc = call(p.boot, M.identity, (b) => writeCap(b, 0, cb));
    const back = pc.pipeline(0);
    const r1 = callA(back, 0, (b) => { b.a = 5; }, 0x5n);
    await drain();
    p.serverTransport.release();
    expect(await r1).toBe(10);
    (await pc).close();
    expect(await callA(back, 0, (b) => { b.a = 6; }, 0x5n)).toBe(12);
    expect(cbs.values).toEqual([5, 6]);
    expect(back.localServer()).toBe(cbs);
    back.close();
    cb.close();
    await drain();
    expect(cbs.released).toBe(1);
  });

  it("a local promiseCapability exported to the peer is sent as senderPromise and resolved", async () => {
    const d = deferred<Capability>();
    const cbs = new CallbackServer();
    const prom = promiseCapability(d.promise);
    await using p = makePair();
    const r1 = callA(p.boot, M.callback, (b) => { writeCap(b, 0, prom); b.a = 4; });
    await drain();
    d.resolve(localCapability(cbs));
    expect(await r1).toBe(8);
    expect(wire(p.clientTransport)).toContain("resolve");
    prom.close();
    await drain();
    expect(cbs.released).toBe(1);
  });
});

describe("tail calls", () => {
  it("server tailCall to an import of the same peer: sendResultsTo.yourself + takeFromOtherQuestion", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    await callA(p.boot, M.register, (b) => writeCap(b, 0, cb));
    cb.close();
    expect(await callA(p.boot, M.tail, (b) => { b.a = 21; })).toBe(42);
    expect(wire(p.serverTransport)).toContain("return:takeFromOtherQuestion");
    expect(wire(p.clientTransport)).toContain("return:resultsSentElsewhere");
    expect(cbs.values).toEqual([21]);
    await callA(p.boot, M.register);
    await drain();
    expect(cbs.released).toBe(1);
  });

  it("tailCall to a local capability forwards the results", async () => {
    const calc = new CalcServer();
    const cbs = new CallbackServer();
    const cap = localCapability(calc);
    const cb = localCapability(cbs);
    await callA(cap, M.register, (b) => writeCap(b, 0, cb));
    cb.close();
    expect(await callA(cap, M.tail, (b) => { b.a = 3; })).toBe(6);
    cap.close();
    expect(cbs.released).toBe(1);
  });
});

describe("release counts", () => {
  it("a cap received many times is released once with the accumulated count", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    // Send the same cap 3 times to the server in one call and twice more; it sends it back each time.
    const got: Capability[] = [];
    for (let i = 0; i < 3; i++) {
      const resp = await call(p.boot, M.identity, (b) => writeCap(b, 0, cb));
      got.push(readCap(resp.results(Box), 0)!);
      resp.close();
    }
    for (const g of got) expect(g.localServer()).toBe(cbs);
    for (const g of got) g.close();
    cb.close();
    await drain();
    // The server imported cb 3 times (one export, refcount 3) and released it with one Release x3.
    expect(wire(p.serverTransport).filter((w) => w === "release").length).toBeGreaterThanOrEqual(1);
    expect(cbs.released).toBe(1);
  });

  it("a pipelined capability passed as a call argument goes as receiverAnswer", async () => {
    await using p = makePair();
    const sent = capture(p.clientTransport);
    p.serverTransport.fence(); // no Returns yet: the counter exists only as a promised answer
    const pc = call(p.boot, M.makeCounter, (b) => { b.a = 5; });
    const counter = pc.pipeline(0);
    const r = callA(p.boot, M.callback, (b) => { writeCap(b, 0, counter); b.a = 1; });
    await drain();
    p.serverTransport.release();
    expect(await r).toBe(6); // the server called inc() on its own counter
    const calls = sent.filter((m) => m.which() === rpc.Message.CALL);
    const desc = calls[1]!.getCall().getParams().getCapTable().get(0);
    expect(desc.which()).toBe(rpc.CapDescriptor.RECEIVER_ANSWER);
    expect(desc.getReceiverAnswer().getTransform().get(0).getGetPointerField()).toBe(0);
    counter.close();
    (await pc).close();
  });

  it("the server's counter imported twice releases with referenceCount 2", async () => {
    const [ta, tb] = memoryTransportPair();
    const counter = new CounterServer();
    const cc = localCapability(counter);
    // A bootstrap that returns the same counter from every call.
    const boot = localCapability({
      dispatch(c) {
        writeCap(c.results(Box), 0, cc);
      },
    });
    const server = new RpcConnection(tb, { bootstrap: boot });
    boot.close();
    const client = new RpcConnection(ta);
    const sent = capture(ta);
    const b = client.bootstrap();
    const r1 = await call(b, 0);
    const r2 = await call(b, 0);
    const c1 = readCap(r1.results(Box), 0)!;
    const c2 = readCap(r2.results(Box), 0)!;
    r1.close();
    r2.close();
    expect(client.stats().imports).toBe(2);
    c1.close();
    await drain();
    expect(ta.wireLog.filter((e) => e.which === "release")).toHaveLength(0);
    c2.close();
    b.close();
    await drain();
    const rels = sent.filter((m) => m.which() === rpc.Message.RELEASE).map((m) => m.getRelease().getReferenceCount());
    expect(rels.sort()).toEqual([1, 2]); // bootstrap x1, counter x2: exactly one Release each
    expect(server.stats()).toEqual({ ...ZERO, exports: 0 });
    cc.close();
    expect(counter.released).toBe(1);
    await client.close();
    await server.close();
    expect(client.stats()).toEqual(ZERO);
  });
});

describe("connection end", () => {
  it("close(): pending and later calls reject with DisconnectedError; signals abort; servers released", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    await callA(p.boot, M.register, (b) => writeCap(b, 0, cb));
    cb.close();
    const pending = call(p.boot, M.sleep);
    await p.calc.sleepStarted.promise;
    const closing = p.client.close();
    await expect(Promise.resolve(pending)).rejects.toBeInstanceOf(DisconnectedError);
    await expect(callA(p.boot, M.add)).rejects.toBeInstanceOf(DisconnectedError);
    await closing;
    expect(await p.client.closed).toBeUndefined();
    expect(p.client.isClosed).toBe(true);
    await p.server.closed;
    await p.calc.sleepAborted.promise;
    expect(cbs.released).toBe(1); // our export went with the connection
    expect(p.calc.released).toBe(1);
    p.boot.close();
    expect(p.client.stats()).toEqual(ZERO);
    expect(p.server.stats()).toEqual(ZERO);
    expect(p.client.bootstrap().isNull).toBe(false);
  });

  it("abort(): the peer sees the reason as a remote error", async () => {
    await using p = makePair();
    await callA(p.boot, M.add);
    const seen = deferred<Error | undefined>();
    p.server.onClose((e) => seen.resolve(e));
    p.client.abort(new RpcError("overloaded", "go away"));
    const err = (await p.server.closed) as RpcError;
    expect(err).toBeInstanceOf(RpcError);
    expect(err.kind).toBe("overloaded");
    expect(err.remote).toBe(true);
    expect(err.message).toBe("go away");
    expect(await seen.promise).toBe(err);
    expect(wire(p.clientTransport)).toContain("abort");
    p.boot.close();
    expect(p.client.stats()).toEqual(ZERO);
    expect(p.server.stats()).toEqual(ZERO);
  });

  it("a transport failure ends both sides; calls reject", async () => {
    await using p = makePair();
    const pending = call(p.boot, M.sleep);
    await p.calc.sleepStarted.promise;
    p.clientTransport.break(new Error("cable cut"));
    await expect(Promise.resolve(pending)).rejects.toBeInstanceOf(DisconnectedError);
    expect((await p.client.closed)?.message).toBe("cable cut");
    await p.server.closed;
    await p.calc.sleepAborted.promise;
    p.boot.close();
    expect(p.client.stats()).toEqual(ZERO);
    expect(p.server.stats()).toEqual(ZERO);
  });
});

/** A raw peer: we drive the other end of the transport by hand. */
function rawPeer(t: MemoryTransport): { got: rpc.Message[]; closed: Promise<Error | undefined>; send(m: capnp.Message): void } {
  const got: rpc.Message[] = [];
  const closed = deferred<Error | undefined>();
  t.start({
    message(segs) {
      const bufs = segs.map((s) => s.slice().buffer);
      const m = new capnp.Message(bufs.length === 1 ? bufs[0]! : concatFrame(segs), false, bufs.length === 1);
      got.push(m.getRoot(rpc.Message));
    },
    closed(e) {
      closed.resolve(e);
    },
  });
  return {
    got,
    closed: closed.promise,
    send(m) {
      t.send(m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength)));
    },
  };
}

function concatFrame(segs: Uint8Array[]): ArrayBuffer {
  const m = new capnp.Message();
  void m;
  const hdr = new Uint32Array(((segs.length + 2) >> 1) * 2);
  hdr[0] = segs.length - 1;
  segs.forEach((s, i) => (hdr[i + 1] = s.byteLength / 8));
  const total = hdr.byteLength + segs.reduce((n, s) => n + s.byteLength, 0);
  const out = new Uint8Array(total);
  out.set(new Uint8Array(hdr.buffer), 0);
  let o = hdr.byteLength;
  for (const s of segs) {
    out.set(s, o);
    o += s.byteLength;
  }
  return out.buffer;
}

describe("protocol errors and Unimplemented", () => {
  it("garbage from the peer: ProtocolError, Abort sent, connection closed", async () => {
    const [ta, tb] = memoryTransportPair();
    const conn = new RpcConnection(ta);
    const peer = rawPeer(tb);
    const boot = conn.bootstrap();
    const pending = call(boot, M.add);
    tb.send([new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9])]);
    const err = await conn.closed;
    expect(err).toBeInstanceOf(ProtocolError);
    await expect(Promise.resolve(pending)).rejects.toBeInstanceOf(DisconnectedError);
    await drain();
    expect(peer.got.map((m) => m.which())).toContain(rpc.Message.ABORT);
    boot.close();
    expect(conn.stats()).toEqual(ZERO);
  });

  it("a Return for an unknown question is a protocol error", async () => {
    const [ta, tb] = memoryTransportPair();
    const conn = new RpcConnection(ta);
    const peer = rawPeer(tb);
    const m = new capnp.Message();
    const ret = m.initRoot(rpc.Message).initReturn();
    ret.setAnswerId(77);
    ret.initResults();
    peer.send(m);
    const err = await conn.closed;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err!.message).toMatch(/unknown question/);
    await drain();
    const abort = peer.got.find((x) => x.which() === rpc.Message.ABORT)!;
    expect(abort.getAbort().getReason()).toMatch(/unknown question/);
    expect(conn.stats()).toEqual(ZERO);
  });

  it("a call to an unknown export is a protocol error", async () => {
    const [ta, tb] = memoryTransportPair();
    const conn = new RpcConnection(ta);
    const peer = rawPeer(tb);
    const m = new capnp.Message();
    const c = m.initRoot(rpc.Message).initCall();
    c.setQuestionId(0);
    c.initTarget().setImportedCap(5);
    c.setInterfaceId(CALC);
    c.initParams();
    peer.send(m);
    expect(await conn.closed).toBeInstanceOf(ProtocolError);
    expect(conn.stats()).toEqual(ZERO);
  });

  it("messages we do not implement (provide/accept/join) are echoed as Unimplemented", async () => {
    const [ta, tb] = memoryTransportPair();
    const conn = new RpcConnection(ta);
    const peer = rawPeer(tb);
    const m = new capnp.Message();
    const j = m.initRoot(rpc.Message).initJoin();
    j.setQuestionId(3);
    j.initTarget().setImportedCap(0);
    peer.send(m);
    await drain();
    const u = peer.got.find((x) => x.which() === rpc.Message.UNIMPLEMENTED)!;
    expect(u).toBeDefined();
    expect(u.getUnimplemented().which()).toBe(rpc.Message.JOIN);
    expect(u.getUnimplemented().getJoin().getQuestionId()).toBe(3);
    expect(conn.isClosed).toBe(false);
    await conn.close();
    expect(conn.stats()).toEqual(ZERO);
  });

  it("an Unimplemented echo of our Call fails that call with kind unimplemented", async () => {
    const [ta, tb] = memoryTransportPair();
    const conn = new RpcConnection(ta);
    const peer = rawPeer(tb);
    const boot = conn.bootstrap();
    const pending = call(boot, M.add, (b) => { b.a = 1; });
    await drain();
    const callMsg = peer.got.find((x) => x.which() === rpc.Message.CALL)!;
    const m = new capnp.Message();
    m.initRoot(rpc.Message).setUnimplemented(callMsg);
    peer.send(m);
    const err = (await Promise.resolve(pending).then(() => null, (e: unknown) => e)) as RpcError;
    expect(err.kind).toBe("unimplemented");
    expect(conn.stats().questions).toBe(1); // only the bootstrap
    boot.close();
    await conn.close();
    expect(conn.stats()).toEqual(ZERO);
  });

  it("no bootstrap configured: the peer's bootstrap calls fail, the connection stays up", async () => {
    const [ta, tb] = memoryTransportPair();
    const a = new RpcConnection(ta);
    const b = new RpcConnection(tb);
    const boot = a.bootstrap();
    const err = (await callA(boot, 0).then(() => null, (e: unknown) => e)) as RpcError;
    expect(err).toBeInstanceOf(RpcError);
    expect(err.remote).toBe(true);
    boot.close();
    await drain();
    expect(a.stats()).toEqual(ZERO);
    expect(b.stats()).toEqual(ZERO);
    await a.close();
    await b.close();
  });
});
