// Flat Returns (results of data words only, sent from the thread's one Return buffer:
// flat-return.ts, answers.ts sendFlatReturnOf) against the general builder (fastpath.ts
// newReturnMessage + setReturnHeader), byte for byte: the encoder alone over many sizes and
// values, then on the wire of a connection over every shape a server answers with (data-only,
// empty, void, with pointers, over the flat size, an exception, async results, two calls holding
// results at once, a tail call, a local caller).
// Threading: loop thread (the test's thread).
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { describe, expect, it } from "vitest";
import { RpcError, fastpath, localCapability, type IncomingCall, type MemoryTransport, type Server } from "@multiprocess-ts/capnp";
import { Box, CALC, call, drain, makePair } from "./rpc-helpers.js";
import { rng } from "./seeded-rng.js";

import { FLAT_RETURN_MAX_DATA, isFlatResults, releaseFlatResults, sendFlatReturn, takeFlatResults } from "../dist/flat-return.js";

const { RET, newReturnMessage, setReturnHeader } = fastpath;

/** A results struct of `dataBytes` data bytes and `ptrs` pointers. */
function structOf(dataBytes: number, ptrs = 0): capnp.StructCtor<capnp.Struct> {
  return class extends capnp.Struct {
    static readonly _capnp = { displayName: `S${dataBytes}x${ptrs}`, id: "f0000000000000e1", size: new capnp.ObjectSize(dataBytes, ptrs) };
  } as unknown as capnp.StructCtor<capnp.Struct>;
}

/** The general path's bytes: newReturnMessage, the data through capnp-ts setters, the header. */
function general(ctor: capnp.StructCtor<capnp.Struct>, data: Uint8Array, id: number, early: boolean): Uint8Array {
  const { msg, results } = newReturnMessage(ctor);
  for (let i = 0; i < data.length; i++) capnp.Struct.setUint8(i, data[i]!, results!);
  setReturnHeader(msg, id, false, early);
  const seg = msg._capnp.segments[0]!;
  expect(msg._capnp.segments.length).toBe(1);
  return new Uint8Array(seg.buffer, 0, seg.byteLength).slice();
}

/** The flat path's bytes, as a copying transport gets them. */
function flat(ctor: capnp.StructCtor<capnp.Struct>, data: Uint8Array, id: number, early: boolean): Uint8Array {
  const r = takeFlatResults(ctor);
  expect(r).not.toBeNull();
  for (let i = 0; i < data.length; i++) capnp.Struct.setUint8(i, data[i]!, r!);
  let got: Uint8Array | null = null;
  sendFlatReturn(id, early, {
    sendCopy: (segs) => {
      expect(segs.length).toBe(1);
      got = segs[0]!.slice();
      return true;
    },
  });
  releaseFlatResults(r!);
  return got!;
}

describe("flat Return encoder", () => {
  it("writes the general builder's bytes over sizes and values", () => {
    const r = rng(0x5e12);
    for (let n = 0; n < 400; n++) {
      const words = Math.floor(r() * (FLAT_RETURN_MAX_DATA / 8 + 1));
      const ctor = structOf(words * 8);
      const data = new Uint8Array(words * 8);
      for (let i = 0; i < data.length; i++) data[i] = r() < 0.3 ? 0 : Math.floor(r() * 256);
      const id = r() < 0.3 ? [0, 1, 0xffffffff][n % 3]! : Math.floor(r() * 0x100000000);
      const early = r() < 0.5;
      expect(flat(ctor, data, id, early)).toEqual(general(ctor, data, id, early));
    }
  });

  it("an empty struct, a struct with pointers, one over the flat size", () => {
    const empty = structOf(0);
    expect(flat(empty, new Uint8Array(0), 3, true)).toEqual(general(empty, new Uint8Array(0), 3, true));
    expect(takeFlatResults(structOf(8, 1))).toBeNull();
    expect(takeFlatResults(structOf(FLAT_RETURN_MAX_DATA + 8))).toBeNull();
  });

  it("one holder at a time; a released struct no longer writes into the buffer", () => {
    const ctor = structOf(8);
    const a = takeFlatResults(ctor)!;
    expect(isFlatResults(a)).toBe(true);
    expect(takeFlatResults(ctor)).toBeNull(); // taken
    releaseFlatResults(a);
    expect(isFlatResults(a)).toBe(false);
    expect(() => capnp.Struct.setInt32(0, 5, a)).toThrow(); // its segment has no bytes
    const b = takeFlatResults(ctor)!;
    expect(capnp.Struct.getInt32(0, b)).toBe(0);
    releaseFlatResults(b);
  });

  it("a transport that keeps the view instead of copying it gets the buffer; the next call has a new one", () => {
    const ctor = structOf(8);
    const a = takeFlatResults(ctor)!;
    capnp.Struct.setInt32(0, 77, a);
    let kept: Uint8Array | null = null;
    sendFlatReturn(1, false, { sendCopy: (segs) => ((kept = segs[0]!), false) });
    releaseFlatResults(a);
    const b = takeFlatResults(ctor)!;
    capnp.Struct.setInt32(0, 5, b);
    expect(new DataView(kept!.buffer, kept!.byteOffset).getInt32(RET.envelopeBytes, true)).toBe(77);
    releaseFlatResults(b);
  });
});

/** Results of 8 data bytes (an i32 at 0: `add`'s shape). */
const D8 = structOf(8);
/** Results of 24 data bytes. */
const D24 = structOf(24);
/** A void method's results (no data, no pointers). */
const VOID = structOf(0);
/** Over the flat size. */
const BIG = structOf(FLAT_RETURN_MAX_DATA + 8);

const enum Op { d8, d24, void_, none, box, big, fail, async_, pair, tail }

/** Answers each method with one results shape (see Op); `tail` tail-calls `d8` on itself. */
class Shapes implements Server {
  self: import("@multiprocess-ts/capnp").Capability | null = null;
  waiting: (() => void)[] = [];
  dispatch(c: IncomingCall): void | Promise<void> {
    const a = c.params(Box).a;
    switch (c.methodId as Op) {
      case Op.d8:
        capnp.Struct.setInt32(0, a + 1, c.results(D8));
        return;
      case Op.d24: {
        const r = c.results(D24);
        capnp.Struct.setInt32(0, a, r);
        capnp.Struct.setFloat64(8, a / 3, r);
        capnp.Struct.setUint64(16, 0xfedcba9876543210n, r);
        return;
      }
      case Op.void_:
        c.results(VOID);
        return;
      case Op.none:
        return;
      case Op.box: {
        const r = c.results(Box);
        r.a = a;
        r.setText(0, "with a pointer");
        return;
      }
      case Op.big:
        capnp.Struct.setInt32(FLAT_RETURN_MAX_DATA, a, c.results(BIG));
        return;
      case Op.fail:
        throw new RpcError("failed", `no ${a}`);
      case Op.async_:
      case Op.pair: {
        // Results taken now, written when released: a second such call finds the buffer taken.
        const r = c.results(D8);
        return new Promise<void>((ok) =>
          this.waiting.push(() => {
            capnp.Struct.setInt32(0, a * 2, r);
            ok();
          }),
        );
      }
      case Op.tail: {
        c.results(D8); // taken, then dropped by the tail call
        const req = this.self!.newCall(CALC, Op.d8, Box);
        req.params.a = a;
        c.tailCall(req);
        return;
      }
    }
  }
}

/** The server's Returns (copies) from now on, and the buffer each was sent from; `copying`: with a copying `sendCopy`. */
function recordReturns(t: MemoryTransport, copying: boolean, from: ArrayBufferLike[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  const send = t.send.bind(t);
  const isReturn = (b: Uint8Array): boolean => new DataView(b.buffer, b.byteOffset).getUint16(8, true) === 3;
  const record = (segs: Uint8Array[]): void => {
    if (segs.length === 1 && isReturn(segs[0]!)) {
      out.push(segs[0]!.slice());
      from.push(segs[0]!.buffer);
    }
  };
  t.send = (segs) => {
    record(segs);
    send(segs);
  };
  // A copying transport copies what sendCopy gets (as stream.ts's batch does); else there is none.
  if (copying) {
    (t as MemoryTransport & { sendCopy?: (segs: Uint8Array[]) => boolean }).sendCopy = (segs) => {
      record(segs);
      send(segs.map((s) => s.slice()));
      return true;
    };
  }
  return out;
}

/** Runs every shape once on a new pair; the server's Returns and where each was sent from. */
async function run(copying: boolean): Promise<{ returns: Uint8Array[]; from: ArrayBufferLike[]; results: unknown[] }> {
  const impl = new Shapes();
  await using p = makePair(impl);
  impl.self = localCapability(impl);
  const from: ArrayBufferLike[] = [];
  const returns = recordReturns(p.serverTransport, copying, from);
  await p.boot.whenResolved();
  const results: unknown[] = [];
  const one = async (op: Op, a: number, read: (r: capnp.Struct) => unknown): Promise<void> => {
    const pc = call(p.boot, op, (b) => (b.a = a));
    try {
      const r = await pc;
      results.push(read(r.results(Box)));
      r.close();
    } catch (e) {
      results.push((e as RpcError).message);
    }
  };
  const i32 = (r: capnp.Struct): number => capnp.Struct.getInt32(0, r);
  for (const a of [1, -7, 0x7ffffffe]) await one(Op.d8, a, i32);
  await one(Op.d24, 9, (r) => [i32(r), capnp.Struct.getFloat64(8, r), capnp.Struct.getUint64(16, r)]);
  await one(Op.void_, 0, () => "void");
  await one(Op.none, 0, () => "none");
  await one(Op.box, 4, (r) => [i32(r), capnp.Struct.getText(0, r)]);
  await one(Op.big, 5, (r) => capnp.Struct.getInt32(FLAT_RETURN_MAX_DATA, r));
  await one(Op.fail, 6, () => "not reached");
  await one(Op.d8, 2, i32); // the flat buffer is free again after an exception
  // An async method's results: written after the dispatch returned; a second call meanwhile
  // finds the buffer taken (general path) and both arrive.
  const first = one(Op.async_, 10, i32);
  await drain();
  const second = one(Op.pair, 11, i32);
  await drain();
  for (const w of impl.waiting.splice(0)) w();
  await Promise.all([first, second]);
  await one(Op.tail, 12, i32);
  await one(Op.d8, 3, i32);
  // A local caller of the same server: results copied out of the flat buffer, read after it.
  const local = impl.self.newCall(CALC, Op.d8, Box);
  local.params.a = 41;
  const lr = await local.send();
  results.push(capnp.Struct.getInt32(0, lr.results(Box)));
  lr.close();
  impl.self.close();
  impl.self = null;
  return { returns, from, results };
}

describe("flat Returns on the wire", () => {
  it("every shape: the same bytes and results as the general path", async () => {
    const f = await run(true);
    const g = await run(false);
    expect(f.results).toEqual(g.results);
    expect(f.results).toEqual([
      2, -6, 0x7fffffff,
      [9, 3, 0xfedcba9876543210n],
      "void", "none",
      [4, "with a pointer"],
      5,
      "no 6",
      3,
      20, 22,
      13,
      4,
      42,
    ]);
    expect(f.returns.length).toBe(g.returns.length);
    for (let i = 0; i < f.returns.length; i++) expect(f.returns[i]).toEqual(g.returns[i]);
    // Which Returns came from the flat buffer: data-only results to the peer, one call at a time.
    const flatFrom = f.from[1]!; // the second Return: d8 (the first is the Bootstrap's)
    const fromFlat = f.returns.map((r, i) => f.from[i] === flatFrom && new rpc.Message(new capnp.Message(r.slice().buffer, false, true).getSegment(0), 0).getReturn().which() === rpc.Return.RESULTS);
    // Bootstrap, d8 ×3, d24, void, none (empty results: their own path), box, big, fail, d8,
    // async and pair (the first holds the buffer: in order of their Returns, async then pair),
    // tail (a tail call to a server in this vat: the d8 it calls answers the peer's question
    // itself, from the flat buffer), d8. The local caller's d8 is not on the wire.
    expect(fromFlat).toEqual([false, true, true, true, true, true, false, false, false, false, true, true, false, true, true]);
    // Without a copying transport no Return comes from the flat buffer.
    expect(g.from.filter((b) => b === flatFrom).length).toBe(0);
  });
});
