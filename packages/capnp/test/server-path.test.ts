// The engine's in-place paths on the server side of a call (issue 13): cap tables written without
// capnp-ts list objects (laid out byte for byte as capnp-ts's initCapTable), Call cap tables read
// in place (with the capnp-ts path for receiverAnswer descriptors), capabilities looked at without
// a handle (cap-peek.ts), a sequential caller's answers kept outside the answer Map, pointerAt's
// shared `_capnp` records, and the IncomingCall object a call from a connection is served as.
// Threading: loop thread (the test's thread).
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { describe, expect, it } from "vitest";
import {
  deferred,
  fastpath,
  localCapability,
  peekLocalServer,
  peekSameCap,
  promiseCapability,
  readCap,
  writeCap,
  type Capability,
  type IncomingCall,
  type Server,
} from "@multiprocess-ts/capnp";
import { capListIn } from "../dist/rpc/exports.js";
import { Box, CounterServer, M, call, callA, capture, drain, makePair } from "./rpc-helpers.js";

const { RET, newReturnMessage } = fastpath;

/** Results of a given size (data bytes, pointers). */
function results(dataBytes: number, ptrs: number): capnp.StructCtor<capnp.Struct> {
  return class extends capnp.Struct {
    static readonly _capnp = { displayName: "R", id: "f00000000000000e", size: new capnp.ObjectSize(dataBytes, ptrs) };
  };
}

const segBytes = (m: capnp.Message): Uint8Array => {
  const s = m._capnp.segments[0]!;
  return new Uint8Array(s.buffer, 0, s.byteLength).slice();
};

describe("cap tables written in place", () => {
  it("capListIn lays the list out exactly as capnp-ts's initCapTable does", () => {
    for (const [dataBytes, ptrs] of [[0, 0], [8, 1], [16, 3]] as const) {
      for (const n of [1, 2, 5]) {
        const R = results(dataBytes, ptrs);
        const a = newReturnMessage(R, 256).msg;
        const b = newReturnMessage(R, 256).msg;
        const at = capListIn(new rpc.Payload(a._capnp.segments[0]!, RET.resultsPtr), n);
        expect(at).toBeGreaterThan(0);
        const list = new rpc.Payload(b._capnp.segments[0]!, RET.resultsPtr).initCapTable(n);
        const dv = new DataView(a._capnp.segments[0]!.buffer);
        for (let i = 0; i < n; i++) {
          // The same descriptors through capnp-ts's setters and as ExportTable writes them.
          const d = list.get(i);
          if (i % 3 === 0) d.setSenderHosted(i + 10);
          else if (i % 3 === 1) d.setReceiverHosted(i + 20);
          else d.setNone();
          const which = i % 3 === 0 ? 1 : i % 3 === 1 ? 3 : 0;
          dv.setUint16(at + i * 16, which, true);
          dv.setUint32(at + i * 16 + 4, which === 0 ? 0 : i + (which === 1 ? 10 : 20), true);
        }
        expect(segBytes(a)).toEqual(segBytes(b));
      }
    }
  });

  it("declines (capnp-ts then allocates) when the list does not fit, or the table is already set", () => {
    const m = newReturnMessage(results(8, 0), 0).msg;
    expect(capListIn(new rpc.Payload(m._capnp.segments[0]!, RET.resultsPtr), 8)).toBe(-1);
    const m2 = newReturnMessage(results(8, 0), 256).msg;
    const payload = new rpc.Payload(m2._capnp.segments[0]!, RET.resultsPtr);
    expect(capListIn(payload, 1)).toBeGreaterThan(0);
    expect(capListIn(payload, 1)).toBe(-1);
  });
});

describe("cap tables on the wire", () => {
  it("params and results carry senderHosted, receiverHosted and none; the peer reads each back", async () => {
    await using p = makePair();
    const sent = capture(p.clientTransport);
    const returned = capture(p.serverTransport);
    // senderHosted: a client-hosted server comes back to the client as itself.
    const mine = new CounterServer(5);
    const cap = localCapability(mine);
    const resp = await call(p.boot, M.identity, (b) => writeCap(b, 0, cap));
    const back = readCap(resp.results(Box), 0)!;
    expect(back.localServer()).toBe(mine);
    back.close();
    resp.close();
    cap.close();
    const callMsg = sent.find((m) => m.which() === rpc.Message.CALL)!;
    expect(callMsg.getCall().getParams().getCapTable().get(0).which()).toBe(rpc.CapDescriptor.SENDER_HOSTED);
    const retMsg = returned.filter((m) => m.which() === rpc.Message.RETURN && m.getReturn().getResults().hasCapTable()).at(-1)!;
    expect(retMsg.getReturn().getResults().getCapTable().get(0).which()).toBe(rpc.CapDescriptor.RECEIVER_HOSTED);
    // receiverHosted: a server-hosted counter passed back to the server is its own export again.
    const made = await call(p.boot, M.makeCounter, (b) => (b.a = 40));
    const counter = readCap(made.results(Box), 0)!;
    made.close();
    const again = await call(p.boot, M.identity, (b) => writeCap(b, 0, counter));
    const counter2 = readCap(again.results(Box), 0)!;
    again.close();
    expect(await callA(counter2, 0, undefined, 0xc3c3c3c3c3c3c3c3n)).toBe(41);
    counter.close();
    counter2.close();
    // none: a null capability.
    const none = await call(p.boot, M.identity, (b) => writeCap(b, 0, null));
    expect(readCap(none.results(Box), 0)).toBeNull();
    none.close();
  });

  it("a receiverAnswer descriptor (a pipelined cap in params) takes the capnp-ts path on both sides", async () => {
    await using p = makePair();
    const sent = capture(p.clientTransport);
    const pending = call(p.boot, M.makeCounter, (b) => (b.a = 7));
    const pipelined = pending.pipeline(0);
    const viaIdentity = await call(p.boot, M.identity, (b) => writeCap(b, 0, pipelined));
    const c = readCap(viaIdentity.results(Box), 0)!;
    viaIdentity.close();
    const descs = sent
      .filter((m) => m.which() === rpc.Message.CALL && m.getCall().getParams().hasCapTable())
      .map((m) => m.getCall().getParams().getCapTable().get(0).which());
    expect(descs).toContain(rpc.CapDescriptor.RECEIVER_ANSWER);
    expect(await callA(c, 0, undefined, 0xc3c3c3c3c3c3c3c3n)).toBe(8);
    c.close();
    pipelined.close();
    (await pending).close();
  });
});

describe("fastpath.pointerAt", () => {
  it("makes the object capnp-ts's constructor makes (fields, class, reads), and its errors", () => {
    const m = new capnp.Message();
    const box = m.initRoot(Box);
    box.a = 5;
    box.setText(0, "hi");
    const seg = box.segment;
    const viaCtor = new Box(seg, box.byteOffset, 9);
    const fast = fastpath.pointerAt(Box, seg, box.byteOffset, 9);
    expect(fast).toBeInstanceOf(Box);
    expect(fast.segment).toBe(viaCtor.segment);
    expect(fast.byteOffset).toBe(viaCtor.byteOffset);
    expect({ ...fast._capnp }).toEqual({ ...viaCtor._capnp });
    expect([fast.a, fast.text(0)]).toEqual([5, "hi"]);
    const ptr = fastpath.pointerAt(capnp.Pointer, seg, box.byteOffset, 3);
    expect(ptr._capnp.depthLimit).toBe(3);
    expect(() => fastpath.pointerAt(Box, seg, box.byteOffset, 0)).toThrow();
    expect(() => fastpath.pointerAt(Box, seg, seg.byteLength + 8, 9)).toThrow();
  });

  it("objects of one depth limit share their _capnp record, which reading through them never writes", () => {
    const m = new capnp.Message();
    const pl = m.initRoot(rpc.Payload);
    const list = pl.initCapTable(3);
    list.get(1).setSenderHosted(7);
    list.get(2).setReceiverHosted(9);
    const seg = pl.segment;
    const a = fastpath.pointerAt(rpc.Payload, seg, pl.byteOffset, 9);
    const b = fastpath.pointerAt(capnp.Pointer, seg, pl.byteOffset, 9);
    expect(a._capnp).toBe(b._capnp);
    expect(fastpath.pointerAt(Box, seg, pl.byteOffset, 8)._capnp).not.toBe(a._capnp);
    const shared = { ...a._capnp };
    // A list element is a Struct capnp-ts makes with its own record (compositeIndex set there).
    const els = a.getCapTable();
    expect([els.get(1).getSenderHosted(), els.get(2).getReceiverHosted()]).toEqual([7, 9]);
    expect(els.get(2)._capnp.compositeIndex).toBe(2);
    expect({ ...a._capnp }).toEqual(shared);
    expect(shared).toEqual({ compositeList: false, depthLimit: 9, compositeIndex: undefined });
    // Depth limits outside the table (our own messages' MAX_DEPTH, odd ones) get a correct record too.
    expect(fastpath.pointerAt(Box, seg, pl.byteOffset, 0x7fffffff)._capnp.depthLimit).toBe(0x7fffffff);
    expect(fastpath.pointerAt(Box, seg, pl.byteOffset, 1000)._capnp.depthLimit).toBe(1000);
  });
});

describe("the IncomingCall a server gets", () => {
  it("is a new object per call, from a connection, from this vat, or queued on a promise; each runs once, in E-order", async () => {
    const seen: { call: IncomingCall; a: number }[] = [];
    const server: Server = {
      dispatch(c: IncomingCall): void {
        const a = c.params(Box).a;
        seen.push({ call: c, a });
        expect([c.interfaceId, c.methodId]).toEqual([0x1234n, 3]);
        c.results(Box).a = a * 10;
      },
    };
    const add = (cap: Capability, a: number): Promise<number> => callA(cap, 3, (b) => (b.a = a), 0x1234n);
    const local = localCapability(server);
    // Calls on a promise queue in its hook; resolved to a local server, they run as that server's calls.
    const later = deferred<Capability>();
    const viaPromise = promiseCapability(later.promise);
    await using p = makePair(server);
    const results = [add(p.boot, 1), add(p.boot, 2), add(local, 3), add(viaPromise, 4), add(viaPromise, 5)];
    later.resolve(local.dup());
    expect(await Promise.all(results)).toEqual([10, 20, 30, 40, 50]);
    const order = seen.map((x) => x.a);
    expect([...order].sort()).toEqual([1, 2, 3, 4, 5]);
    // E-order per capability (the paths interleave as their deliveries do).
    expect(order.indexOf(1)).toBeLessThan(order.indexOf(2));
    expect(order.indexOf(4)).toBeLessThan(order.indexOf(5));
    expect(new Set(seen.map((x) => x.call)).size).toBe(5);
    // A call object kept past its call: done, a later call gets another one.
    expect(await add(p.boot, 6)).toBe(60);
    expect(seen[5]!.call).not.toBe(seen[0]!.call);
    viaPromise.close();
    local.close();
  });
});

describe("writeCap in place", () => {
  it("writes the pointer capnp-ts's setInterfacePointer writes; a set pointer or a list element takes capnp-ts's path", () => {
    const m = new capnp.Message();
    const box = m.initRoot(Box);
    const c1 = localCapability({ dispatch: () => {} });
    const c2 = localCapability({ dispatch: () => {} });
    writeCap(box, 0, c1);
    writeCap(box, 3, c2);
    const p0 = capnp.Struct.getPointer(0, box);
    const dv = new DataView(p0.segment.buffer);
    expect([dv.getUint32(p0.byteOffset, true), dv.getUint32(p0.byteOffset + 4, true)]).toEqual([3, 0]);
    const p3 = capnp.Struct.getPointer(3, box);
    expect([dv.getUint32(p3.byteOffset, true), dv.getUint32(p3.byteOffset + 4, true)]).toEqual([3, 1]);
    expect(peekSameCap(box, 0, -1, c1) && peekSameCap(box, 3, -1, c2)).toBe(true);
    writeCap(box, 0, c2); // over a set pointer: capnp-ts's path, same result
    expect(peekSameCap(box, 0, -1, c2)).toBe(true);
    expect(() => writeCap(box, 9, c1)).toThrow(); // no such pointer: capnp-ts's error
    for (const h of (m._capnp.capTable ?? []) as unknown as { release(): void }[]) h.release();
    c1.close();
    c2.close();
  });
});

describe("cap-peek", () => {
  it("peekLocalServer and peekSameCap read a cap pointer (or one in a nested struct) without a handle", () => {
    const m = new capnp.Message();
    const box = m.initRoot(Box);
    const s1: Server = { dispatch: () => {} };
    const s2: Server = { dispatch: () => {} };
    const c1 = localCapability(s1);
    const c2 = localCapability(s2);
    const later = deferred<Capability>();
    const promised = promiseCapability(later.promise);
    writeCap(box, 0, c1);
    box.setText(1, "not a cap");
    writeCap(box.initInner(2), 0, c2);
    writeCap(box, 3, promised);
    expect(peekLocalServer(box, 0, -1)).toBe(s1);
    expect(peekLocalServer(box, 2, 0)).toBe(s2);
    expect(peekLocalServer(box, 2, 1)).toBeNull(); // a null pointer in the nested struct
    expect(peekLocalServer(box, 1, -1)).toBeUndefined(); // text: readCap says what is wrong
    expect(peekLocalServer(box, 3, -1)).toBeUndefined(); // a promise not resolved yet
    expect(peekLocalServer(box, 7, -1)).toBeNull(); // beyond the struct: reads as null
    expect(peekSameCap(box, 0, -1, c1)).toBe(true);
    expect(peekSameCap(box, 0, -1, c2)).toBe(false);
    expect(peekSameCap(box, 2, 0, c2)).toBe(true);
    const dup = c1.dup();
    expect(peekSameCap(box, 0, -1, dup)).toBe(true); // same capability, another handle
    dup.close();
    expect(peekSameCap(box, 0, -1, dup)).toBe(false); // a closed handle
    later.resolve(c1.dup());
    for (const h of (m._capnp.capTable ?? []) as unknown as { release(): void }[]) h.release();
    for (const c of [c1, c2, promised]) c.close();
  });
});

describe("answers of a sequential caller", () => {
  it("stay outside the answer Map and still count: stats, pipelining on them, Finish, teardown", async () => {
    await using p = makePair();
    for (let i = 0; i < 3; i++) expect(await callA(p.boot, M.add, (b) => ((b.a = i), (b.b = 1)))).toBe(i + 1);
    expect(p.server.stats().answers).toBe(0);
    // Pipelining on the answer in the slot (the only one outstanding).
    const alone = call(p.boot, M.makeCounter, (b) => (b.a = 10));
    const onAlone = alone.pipeline(0);
    expect(await callA(onAlone, 0, undefined, 0xc3c3c3c3c3c3c3c3n)).toBe(11);
    onAlone.close();
    (await alone).close();
    // Two in flight: one in the slot, one in the Map.
    p.calc.sleepStarted = deferred<void>();
    const sleeping = call(p.boot, M.sleep);
    await p.calc.sleepStarted.promise;
    const pending = call(p.boot, M.makeCounter, (b) => (b.a = 1));
    const pipelined = pending.pipeline(0);
    expect(await callA(pipelined, 0, undefined, 0xc3c3c3c3c3c3c3c3n)).toBe(2);
    (await pending).close();
    pipelined.close();
    await drain();
    expect(p.server.stats().answers).toBe(1); // the sleeping call
    sleeping.cancel();
    await expect(sleeping).rejects.toThrow();
    await drain();
    expect(p.server.stats().answers).toBe(0);
  });
});
