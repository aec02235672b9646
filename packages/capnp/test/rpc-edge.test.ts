// RPC engine edge cases: protocol errors from a raw peer, incoming segment buffers, big payloads
// not copied, schema evolution, lifetimes and connection end. Over createRpcPair (rpc-helpers.ts
// makePair) and hand-built connections.
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import { Duplex } from "node:stream";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import {
  DisconnectedError,
  ProtocolError,
  RpcConnection,
  RpcError,
  brokenCapability,
  deferred,
  localCapability,
  memoryTransportPair,
  nullCapability,
  promiseCapability,
  readCap,
  streamTransport,
  writeCap,
} from "@multiprocess-ts/capnp";
import type { Capability, IncomingCall, MemoryTransport, Server, Transport } from "@multiprocess-ts/capnp";
import { Box, CalcServer, CallbackServer, CounterServer, CALC, COUNTER, M, call, callA, capture, drain, makePair, rawPeer, wire } from "./rpc-helpers.js";

const ZERO = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

describe("protocol errors from a raw peer", () => {
  const cases: [string, (r: rpc.Message) => void, RegExp][] = [
    ["Release of an unknown export", (r) => { const x = r.initRelease(); x.setId(9); x.setReferenceCount(1); }, /unknown export/],
    ["Finish of an unknown question", (r) => r.initFinish().setQuestionId(4), /Finish for unknown question/],
    ["Disembargo receiverLoopback of an unknown embargo", (r) => {
      const d = r.initDisembargo();
      d.initTarget().setImportedCap(0);
      d.getContext().setReceiverLoopback(3);
    }, /unknown embargo/],
    ["Call to a promisedAnswer of an unknown question", (r) => {
      const c = r.initCall();
      c.setQuestionId(1);
      c.initTarget().initPromisedAnswer().setQuestionId(42);
      c.initParams();
    }, /unknown question/],
    ["Call with a receiverHosted cap we never exported", (r) => {
      const c = r.initCall();
      c.setQuestionId(1);
      c.initTarget().initPromisedAnswer().setQuestionId(42);
      c.initParams().initCapTable(1).get(0).setReceiverHosted(17);
    }, /unknown export/],
  ];
  for (const [name, build, re] of cases) {
    it(`${name}: ProtocolError, Abort with the reason, connection closed`, async () => {
      const [ta, tb] = memoryTransportPair();
      const bootCap = localCapability(new CalcServer());
      const conn = new RpcConnection(ta, { bootstrap: bootCap });
      bootCap.close();
      const peer = rawPeer(tb);
      peer.send(build);
      const err = await conn.closed;
      expect(err).toBeInstanceOf(ProtocolError);
      expect(err!.message).toMatch(re);
      await drain();
      const abort = peer.got.find((m) => m.which() === rpc.Message.ABORT);
      expect(abort?.getAbort().getReason()).toMatch(re);
      expect(conn.stats()).toEqual(ZERO);
    });
  }

  it("a duplicate question id is a protocol error", async () => {
    const [ta, tb] = memoryTransportPair();
    const calc = new CalcServer();
    const bootCap = localCapability(calc);
    const conn = new RpcConnection(ta, { bootstrap: bootCap });
    bootCap.close();
    const peer = rawPeer(tb);
    peer.send((r) => r.initBootstrap().setQuestionId(0));
    peer.send((r) => r.initBootstrap().setQuestionId(0));
    expect(await conn.closed).toBeInstanceOf(ProtocolError);
    expect(conn.stats()).toEqual(ZERO);
    expect(calc.released).toBe(1);
  });

  it("a thirdPartyHosted cap is used through its vine (as senderHosted)", async () => {
    const [ta, tb] = memoryTransportPair();
    const calc = new CalcServer();
    const bootCap = localCapability(calc);
    const conn = new RpcConnection(ta, { bootstrap: bootCap });
    bootCap.close();
    const peer = rawPeer(tb);
    peer.send((r) => r.initBootstrap().setQuestionId(0));
    // register(cb) where cb is thirdPartyHosted with vine 7
    peer.send((r) => {
      const c = r.initCall();
      c.setQuestionId(1);
      c.initTarget().initPromisedAnswer().setQuestionId(0);
      c.setInterfaceId(CALC);
      c.setMethodId(M.register);
      const payload = c.initParams();
      const box = capnp.Struct.initStructAt(0, Box, payload);
      capnp.Struct.getPointer(0, box).segment.setUint32(capnp.Struct.getPointer(0, box).byteOffset, 3); // cap #0
      payload.initCapTable(1).get(0).initThirdPartyHosted().setVineId(7);
    });
    await drain();
    expect(conn.stats().imports).toBe(1);
    expect(calc.kept).not.toBeNull();
    // fire(): the engine calls our vine import 7
    peer.send((r) => {
      const c = r.initCall();
      c.setQuestionId(2);
      c.initTarget().initPromisedAnswer().setQuestionId(0);
      c.setInterfaceId(CALC);
      c.setMethodId(M.fire);
      capnp.Struct.initStructAt(0, Box, c.initParams()).a = 1;
    });
    await drain();
    const fwd = peer.got.filter((m) => m.which() === rpc.Message.CALL).map((m) => m.getCall());
    expect(fwd).toHaveLength(1);
    expect(fwd[0]!.getTarget().getImportedCap()).toBe(7);
    await conn.close();
    expect(conn.stats()).toEqual(ZERO);
    expect(calc.released).toBe(1);
  });
});

describe("incoming segment buffers", () => {
  it("segments delivered as Node Buffer views into a larger buffer are copied, not misread", async () => {
    // Regression: Buffer#slice does not copy, so `seg.slice().buffer` was the whole pooled
    // buffer (frame header included) and every message was misread as malformed.
    const [ta, tb] = memoryTransportPair();
    const wrap = (t: MemoryTransport): MemoryTransport => {
      const start = t.start.bind(t);
      t.start = (sink) =>
        start({
          message: (segs) =>
            sink.message(segs.map((s) => Buffer.concat([Buffer.alloc(8, 0x55), Buffer.from(s), Buffer.alloc(8, 0x55)]).subarray(8, 8 + s.byteLength))),
          closed: (e) => sink.closed(e),
        });
      return t;
    };
    const calc = new CalcServer();
    const bootCap = localCapability(calc);
    const server = new RpcConnection(wrap(tb), { bootstrap: bootCap });
    bootCap.close();
    const client = new RpcConnection(wrap(ta));
    const boot = client.bootstrap();
    expect(await callA(boot, M.add, (b) => { b.a = 20; b.b = 22; })).toBe(42);
    boot.close();
    await drain();
    expect(client.stats()).toEqual(ZERO);
    expect(server.stats()).toEqual(ZERO);
    await client.close();
    await server.close();
    expect(calc.released).toBe(1);
  });
});

describe("big payloads are not copied", () => {
  const BIG = 1 << 20;
  const big = new Uint8Array(BIG);
  for (let i = 0; i < BIG; i++) big[i] = (i * 13) & 0xff;

  /** Records the Data view the server reads (valid after the call, as docs/rpc.md says). */
  class DataServer implements Server {
    seen: Uint8Array | null = null;
    dispatch(call: IncomingCall): void {
      this.seen = call.params(Box).data(1);
      call.results(Box).a = this.seen.byteLength;
    }
  }

  /** Segments the transport hands to its sink (the engine), in order. */
  function tapIncoming(t: Transport): Uint8Array[][] {
    const got: Uint8Array[][] = [];
    const start = t.start.bind(t);
    t.start = (sink) =>
      start({
        message: (segs) => {
          got.push(segs);
          sink.message(segs);
        },
        closed: (e) => sink.closed(e),
      });
    return got;
  }

  async function roundTrip(ta: Transport, tb: Transport): Promise<DataServer> {
    const impl = new DataServer();
    const bootCap = localCapability(impl);
    const server = new RpcConnection(tb, { bootstrap: bootCap });
    bootCap.close();
    const client = new RpcConnection(ta);
    const boot = client.bootstrap();
    expect(await callA(boot, M.echo, (b) => b.setData(1, big))).toBe(BIG);
    boot.close();
    await drain();
    expect(client.stats()).toEqual(ZERO);
    expect(server.stats()).toEqual(ZERO);
    await client.close();
    await server.close();
    expect(Buffer.from(impl.seen!).equals(Buffer.from(big))).toBe(true);
    return impl;
  }

  it("memory transport: the server reads the client's own outgoing segment (no copy on send or receipt)", async () => {
    const [ta, tb] = memoryTransportPair();
    const sent: Uint8Array[][] = [];
    const send = ta.send.bind(ta);
    ta.send = (segs) => {
      sent.push(segs);
      send(segs);
    };
    const { seen } = await roundTrip(ta, tb);
    expect(sent.some((m) => m.some((s) => s.buffer === seen!.buffer))).toBe(true);
  });

  it("stream transport, message spanning chunks: the server reads the decoder's segment buffer as is", async () => {
    // Like a socket: what is written arrives in chunks of at most 64 KiB.
    const ends: Duplex[] = [];
    const end = (peer: number): Duplex =>
      new Duplex({
        read() {},
        write(chunk: Buffer, _enc, cb) {
          for (let o = 0; o < chunk.byteLength; o += 65_536) ends[peer]!.push(chunk.subarray(o, o + 65_536));
          cb();
        },
        final(cb) {
          ends[peer]!.push(null);
          cb();
        },
      });
    ends.push(end(1), end(0));
    const ta = streamTransport(ends[0]!);
    const tb = streamTransport(ends[1]!);
    const incoming = tapIncoming(tb);
    const { seen } = await roundTrip(ta, tb);
    const call = incoming.find((m) => m.some((s) => s.byteLength === BIG))!;
    for (const s of call) expect([s.byteOffset, s.buffer.byteLength]).toEqual([0, s.byteLength]);
    expect(seen!.buffer.byteLength).toBe(BIG);
    expect(incoming.some((m) => m.some((s) => s.buffer === seen!.buffer))).toBe(true);
  });
});

/** A newer schema of Box: one more data word and one more pointer. */
class BigBox extends capnp.Struct {
  static readonly _capnp = { displayName: "BigBox", id: "f0000000000000b2", size: new capnp.ObjectSize(24, 5) };
}

describe("schema evolution", () => {
  it("a smaller struct from an older peer reads missing fields as defaults (params and results)", async () => {
    const seen: { a: number; extra: number; text: string; cbValue: number }[] = [];
    const cbs = new CallbackServer();
    const server: Server = {
      async dispatch(c) {
        const p = c.params(BigBox);
        const cb = readCap(p, 1)!;
        const req = cb.newCall(0n, 0, Box);
        req.params.a = 5;
        const r = await req.send();
        seen.push({
          a: capnp.Struct.getInt32(0, p),
          extra: capnp.Struct.getInt32(16, p), // beyond the 16 data bytes we were sent
          text: capnp.Struct.getText(0, p),
          cbValue: r.results(Box).a,
        });
        r.close();
        cb.close();
        expect(capnp.Struct.getText(4, p)).toBe(""); // pointer beyond what we were sent
        c.results(Box).a = 7;
      },
    };
    await using p = makePair(server);
    const cb = localCapability(cbs);
    const resp = await call(p.boot, 0, (b) => {
      b.a = 3;
      b.setText(0, "old");
      writeCap(b, 1, cb);
    });
    cb.close();
    const big = resp.results(BigBox);
    expect(capnp.Struct.getInt32(0, big)).toBe(7);
    expect(capnp.Struct.getInt32(20, big)).toBe(0);
    resp.close();
    expect(seen).toEqual([{ a: 3, extra: 0, text: "old", cbValue: 10 }]);
    await p.dispose();
    expect(cbs.released).toBe(1);
  });

  it("reading with a struct type that is larger in one section and smaller in the other keeps both (no overflow)", async () => {
    // Data only (no pointers), read as pointers only (like the worker bridge's Holder).
    class DataOnly extends capnp.Struct {
      static readonly _capnp = { displayName: "DataOnly", id: "f0000000000000d1", size: new capnp.ObjectSize(8, 0) };
    }
    class PtrOnly extends capnp.Struct {
      static readonly _capnp = { displayName: "PtrOnly", id: "f0000000000000d2", size: new capnp.ObjectSize(0, 1) };
    }
    const server: Server = {
      dispatch(c) {
        const p = c.params(PtrOnly);
        expect(capnp.Pointer.isNull(capnp.Struct.getPointer(0, p))).toBe(true);
        capnp.Struct.setInt32(0, capnp.Struct.getInt32(0, c.params(DataOnly)) + 1, c.results(DataOnly));
      },
    };
    await using p = makePair(server);
    const req = p.boot.newCall(CALC, 0, DataOnly);
    capnp.Struct.setInt32(0, 9, req.params);
    const resp = await req.send();
    const r = resp.results(PtrOnly);
    expect(capnp.Pointer.isNull(capnp.Struct.getPointer(0, r))).toBe(true);
    expect(readCap(r, 0)).toBe(null);
    expect(capnp.Struct.getInt32(0, resp.results(DataOnly))).toBe(10);
    expect(capnp.Struct.getInt32(0, r)).toBe(10); // the copy kept the data section
    resp.close();
  });
});

describe("lifetimes and connection end", () => {
  it("a pipelined-only call that fails at disconnect causes no unhandled rejection", async () => {
    await using p = makePair();
    const pc = call(p.boot, M.makeCounter);
    const c = pc.pipeline(0);
    const r = call(c, 0, undefined, COUNTER); // never awaited before the break
    p.clientTransport.break(new Error("gone"));
    await p.client.closed;
    await expect(Promise.resolve(r)).rejects.toBeInstanceOf(DisconnectedError);
    await expect(callA(c, 0, undefined, COUNTER)).rejects.toBeInstanceOf(DisconnectedError);
    c.close();
    p.boot.close();
    await p.server.closed;
    expect(p.client.stats()).toEqual(ZERO);
    expect(p.server.stats()).toEqual(ZERO);
  });

  it("import handles outlive the connection: calls fail with DisconnectedError, close() sends nothing", async () => {
    await using p = makePair();
    const resp = await call(p.boot, M.makeCounter);
    const counter = readCap(resp.results(Box), 0)!;
    resp.close();
    await p.client.close();
    const before = p.clientTransport.wireLog.length;
    await expect(callA(counter, 0, undefined, COUNTER)).rejects.toBeInstanceOf(DisconnectedError);
    counter.close();
    p.boot.close();
    expect(p.clientTransport.wireLog.length).toBe(before);
    await p.server.closed;
    expect(p.calc.counters[0]!.released).toBe(1);
    expect(p.client.stats()).toEqual(ZERO);
    expect(p.server.stats()).toEqual(ZERO);
  });

  it("Server.onRelease runs exactly once when a cap is exported several times and dropped", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    for (let i = 0; i < 3; i++) await callA(p.boot, M.callback, (b) => { writeCap(b, 0, cb); b.a = i; });
    expect(p.client.stats().exports).toBe(0); // the server released each param cap after its call
    cb.close();
    expect(cbs.released).toBe(1);
    await p.dispose();
    expect(cbs.released).toBe(1);
  });

  it("onClose callbacks run once, later; unregister works", async () => {
    await using p = makePair();
    const seen: (Error | undefined)[] = [];
    p.client.onClose((e) => seen.push(e));
    const off = p.client.onClose(() => seen.push(new Error("should not run")));
    off();
    await p.dispose();
    await drain();
    expect(seen).toEqual([undefined]);
    const late = deferred<Error | undefined>();
    p.client.onClose((e) => late.resolve(e));
    expect(await late.promise).toBeUndefined();
  });

  it("localCapability twice for one Server shares one lifetime: one export, one onRelease", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const c1 = localCapability(cbs);
    const c2 = localCapability(cbs);
    await callA(p.boot, M.register, (b) => writeCap(b, 0, c1));
    expect(p.client.stats().exports).toBe(1);
    const resp = await call(p.boot, M.identity, (b) => writeCap(b, 0, c2));
    const back = readCap(resp.results(Box), 0)!;
    resp.close();
    expect(back.localServer()).toBe(cbs);
    expect(p.client.stats().exports).toBe(1); // same export id both times
    c1.close();
    back.close();
    await callA(p.boot, M.register);
    await drain();
    expect(cbs.released).toBe(0); // c2 still open
    c2.close();
    expect(cbs.released).toBe(1);
  });

  it("null and broken capabilities", async () => {
    const n = nullCapability();
    expect(n.isNull).toBe(true);
    await expect(callA(n, 0)).rejects.toBeInstanceOf(RpcError);
    const b = brokenCapability(new RpcError("overloaded", "busy"));
    const e = (await callA(b, 0).then(() => null, (x: unknown) => x)) as RpcError;
    expect(e.kind).toBe("overloaded");
    await expect(b.whenResolved()).rejects.toBeInstanceOf(RpcError);
    n.close();
    b.close();
    expect(n.closed).toBe(true);
    expect(() => n.dup()).toThrow(RpcError);
  });

  it("a null capability sent over the wire arrives as null (CapDescriptor none / null pointer)", async () => {
    await using p = makePair();
    const resp = await call(p.boot, M.identity, (b) => writeCap(b, 0, null));
    expect(readCap(resp.results(Box), 0)).toBeNull();
    resp.close();
  });

  it("a promise import released before its Resolve: the late Resolve's cap is released", async () => {
    await using p = makePair();
    const resp = await call(p.boot, M.makeLater);
    const later = readCap(resp.results(Box), 0)!;
    resp.close();
    later.close();
    await drain();
    expect(p.client.stats().imports).toBe(1); // the bootstrap only
    const counter = new CounterServer();
    p.calc.later!.resolve(localCapability(counter));
    await drain();
    expect(counter.released).toBe(1);
  });

  it("promiseCapability resolving to another promise, then a server", async () => {
    const d1 = deferred<Capability>();
    const d2 = deferred<Capability>();
    const outer = promiseCapability(d1.promise);
    const r1 = callA(outer, 0, (b) => { b.b = 1; }, COUNTER);
    d1.resolve(promiseCapability(d2.promise));
    const r2 = callA(outer, 0, (b) => { b.b = 2; }, COUNTER);
    const counter = new CounterServer();
    d2.resolve(localCapability(counter));
    expect(await Promise.all([r1, r2])).toEqual([1, 2]);
    expect(counter.seen).toEqual([1, 2]);
    await outer.whenResolved();
    expect(outer.localServer()).toBe(counter);
    outer.close();
    expect(counter.released).toBe(1);
  });

  it("the bootstrap cap can be called after close() of a pipelined question's response", async () => {
    await using p = makePair();
    const sent = capture(p.clientTransport);
    expect(await callA(p.boot, M.add, (b) => { b.a = 1; b.b = 1; })).toBe(2);
    expect(await callA(p.boot, M.add, (b) => { b.a = 2; b.b = 2; })).toBe(4);
    // Both calls went to the bootstrap import directly once it resolved.
    const calls = sent.filter((m) => m.which() === rpc.Message.CALL).map((m) => m.getCall().getTarget().which());
    expect(calls).toContain(rpc.MessageTarget.IMPORTED_CAP);
    await p.dispose();
    expect(wire(p.clientTransport).filter((w) => w === "release")).toHaveLength(1);
  });
});
