// Flat Calls (params of data words only, no capabilities) sent as bytes (fastpath.ts
// encodeFlatCall, questions.ts sendFlat) against the general builder (fastpath.ts callMessage +
// the target and question ID questions.ts writes), byte for byte: over many shapes and values,
// edge values included, and on the wire of a connection, to an import and to a promised answer;
// and flat Calls with capabilities in a struct of their own (twelfth session: a Context; questions.ts
// sendFlatCaps, flat-call.ts encodeFlatCapsCall) against the general path on the wire, with the
// cases that take the general path.
// Threading: loop thread (the test's thread).
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { describe, expect, it } from "vitest";
import {
  DirectCall,
  deferred,
  fastpath,
  localCapability,
  promiseCapability,
  writeCap,
  type Capability,
  type MemoryTransport,
  type RpcError,
} from "@multiprocess-ts/capnp";
import { Box, CALC, COUNTER, CounterServer, M, drain, makePair } from "./rpc-helpers.js";
import { rng } from "./seeded-rng.js";

import { encodeFlatCall, flatCallBytes } from "../dist/flat-call.js";
import { hookOf } from "../dist/rpc/client.js";

const { CALL, callMessage, dataViewOf } = fastpath;


type Rand = () => number;
const int = (r: Rand, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;
const U32_EDGES = [0, 1, 2, 1023, 1024, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const U16_EDGES = [0, 1, 0x7fff, 0x8000, 0xffff];
const U64_EDGES = [0n, 1n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn];
const u32 = (r: Rand): number => (r() < 0.4 ? pick(r, U32_EDGES) : int(r, 0x100000000));
const u16 = (r: Rand): number => (r() < 0.4 ? pick(r, U16_EDGES) : int(r, 0x10000));
const u64 = (r: Rand): bigint => (r() < 0.4 ? pick(r, U64_EDGES) : (BigInt(int(r, 0x100000000)) << 32n) | BigInt(int(r, 0x100000000)));

interface Shape {
  qid: number;
  iid: bigint;
  mid: number;
  dataWords: number;
  /** The params' data section (dataWords * 8 bytes). */
  data: Uint8Array;
  importId: number;
  pqid: number;
  path: number[] | null;
}

function shape(r: Rand): Shape {
  const dataWords = int(r, 10);
  const data = new Uint8Array(dataWords * 8);
  for (let i = 0; i < data.length; i++) data[i] = r() < 0.3 ? 0 : r() < 0.2 ? 0xff : int(r, 256);
  const imported = r() < 0.5;
  const pathLen = int(r, 6);
  return {
    qid: u32(r),
    iid: u64(r),
    mid: u16(r),
    dataWords,
    data,
    importId: imported ? u32(r) : -1,
    pqid: imported ? 0 : u32(r),
    path: imported ? null : r() < 0.2 ? null : Array.from({ length: pathLen }, () => u16(r)),
  };
}

/** The general path: callMessage, the params' data, then what questions.ts's send writes. */
function general(s: Shape): Uint8Array {
  const m = callMessage(s.iid, s.mid, new capnp.ObjectSize(s.dataWords * 8, 0));
  const seg = m._capnp.segments[0]!;
  const dv = dataViewOf(seg);
  new Uint8Array(seg.buffer).set(s.data, CALL.envelopeBytes);
  if (s.importId >= 0) dv.setUint32(CALL.importedCap, s.importId, true);
  else {
    // core.ts writePromisedAnswer, as questions.ts calls it on the Call's target.
    const pa = new rpc.MessageTarget(seg, CALL.targetPtr).initPromisedAnswer();
    pa.setQuestionId(s.pqid);
    const path = s.path ?? [];
    if (path.length > 0) {
      const ops = pa.initTransform(path.length);
      for (let i = 0; i < path.length; i++) ops.get(i).setGetPointerField(path[i]!);
    }
  }
  dv.setUint32(CALL.qid, s.qid, true);
  expect(m._capnp.segments.length).toBe(1);
  return new Uint8Array(seg.buffer, 0, seg.byteLength).slice();
}

function flat(s: Shape, out: Uint8Array): Uint8Array {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const len = encodeFlatCall(out, dv, s.qid, s.iid, s.mid, s.dataWords, s.importId, s.pqid, s.path);
  expect(len).toBe(flatCallBytes(s.dataWords, s.importId, s.path));
  out.set(s.data, CALL.envelopeBytes);
  return out.slice(0, len);
}

describe("encodeFlatCall", () => {
  it("writes the general builder's bytes over many shapes and values", () => {
    const r = rng(Number(process.env.FASTPATH_SEED ?? 4242));
    // One buffer for every message, full of garbage first: whatever the last one left is cleared.
    const out = new Uint8Array(512).fill(0xa5);
    for (let i = 0; i < 2000; i++) {
      const s = shape(r);
      expect(flat(s, out), `shape ${i}: ${JSON.stringify({ ...s, iid: String(s.iid), data: s.data.length })}`).toEqual(general(s));
    }
  });

  it("writes the edge values exactly", () => {
    const out = new Uint8Array(512).fill(0xff);
    for (const importId of [0, 0xffffffff, -1]) {
      for (const path of [null, [], [0], [0xffff, 0, 1, 2, 3, 4, 5, 6]]) {
        const s: Shape = { qid: 0xffffffff, iid: 0xffffffffffffffffn, mid: 0xffff, dataWords: 1, data: new Uint8Array(8).fill(0xff), importId, pqid: 0xffffffff, path };
        expect(flat(s, out)).toEqual(general(s));
      }
    }
  });

  it("the message is valid Cap'n Proto that capnp-ts reads back", () => {
    const out = new Uint8Array(512);
    const s: Shape = { qid: 7, iid: CALC, mid: 3, dataWords: 2, data: new Uint8Array(16).fill(9), importId: -1, pqid: 5, path: [1, 2] };
    const bytes = flat(s, out);
    const m = new capnp.Message(bytes.slice().buffer, false, true);
    const c = m.getRoot(rpc.Message).getCall();
    expect(c.getQuestionId()).toBe(7);
    expect(c.getInterfaceId()).toBe(CALC);
    expect(c.getMethodId()).toBe(3);
    const pa = c.getTarget().getPromisedAnswer();
    expect(pa.getQuestionId()).toBe(5);
    expect(pa.getTransform().map((op) => op.getGetPointerField())).toEqual([1, 2]);
    expect(c.getParams().hasCapTable()).toBe(false);
  });
});

/** Records every settle and reads `a` from the results. */
class Probe extends DirectCall {
  readonly settled: (RpcError | null)[] = [];
  a = -1;
  protected settle(err: RpcError | null): void {
    this.settled.push(err);
    if (err === null) this.a = this.results(Box).a;
    this.releaseResults();
  }
}

/**
 * The Calls `t` sends from now on (copies of their bytes), through a copying `sendCopy`; `from`
 * gets the buffer each was sent from (the flat path sends every Call from its one buffer).
 */
function recordCalls(t: MemoryTransport, from: ArrayBufferLike[] = []): Uint8Array[] {
  const calls: Uint8Array[] = [];
  const send = t.send.bind(t);
  const copying = t as MemoryTransport & { sendCopy?: (segs: Uint8Array[]) => boolean };
  copying.sendCopy = (segs) => {
    const copies = segs.map((s) => s.slice());
    if (copies.length === 1 && new DataView(copies[0]!.buffer).getUint16(8, true) === 2) {
      calls.push(copies[0]!);
      from.push(segs[0]!.buffer);
    }
    send(copies);
    return true;
  };
  return calls;
}

const write = (a: number, b: number) => (dv: DataView, at: number): void => {
  dv.setInt32(at, a, true);
  dv.setInt32(at + 4, b, true);
};

/** A flat params struct: Box's `a` and `b` (the server reads it as Box, widened). */
class Flat extends capnp.Struct {
  static readonly _capnp = { displayName: "Flat", id: "f0000000000000f1", size: new capnp.ObjectSize(8, 0) };
  set a(v: number) {
    capnp.Struct.setInt32(0, v, this);
  }
  set b(v: number) {
    capnp.Struct.setInt32(4, v, this);
  }
}
const BOX = Flat as unknown as capnp.StructCtor<capnp.Struct>;

/** A copy of Call `b` with its question ID and its promised answer's question ID zeroed. */
function withoutIds(b: Uint8Array): Uint8Array {
  const c = b.slice();
  const dv = new DataView(c.buffer);
  dv.setUint32(CALL.qid, 0, true);
  if (dv.getUint16(CALL.targetWhich, true) === 1) dv.setUint32(80 + 8 + (dv.getUint32(80, true) >> 2) * 8, 0, true);
  return c;
}

async function roundTrip(target: Capability, a: number, b: number, flatPath: boolean, iid = CALC, mid: number = M.add): Promise<Probe> {
  const c = new Probe();
  if (flatPath) c.sendFlat(target, iid, mid, BOX, write(a, b));
  else {
    const p = c.begin(target, iid, mid, Flat);
    p.a = a;
    p.b = b;
    c.sendCall();
  }
  await drain();
  return c;
}

describe("flat Calls on the wire", () => {
  it("to an import: the same bytes as the general path, and the results", async () => {
    await using p = makePair();
    const from: ArrayBufferLike[] = [];
    const calls = recordCalls(p.clientTransport, from);
    await p.boot.whenResolved();
    for (const [a, b] of [[2, 40], [-1, 0x7fffffff], [-0x80000000, 0]] as const) {
      const f = await roundTrip(p.boot, a, b, true);
      const g = await roundTrip(p.boot, a, b, false);
      expect(f.settled).toEqual([null]);
      expect(g.settled).toEqual([null]);
      expect(f.a).toBe((a + b) | 0);
      expect(g.a).toBe(f.a);
    }
    // Another interface and method in between (the flat path patches the last Call's layout):
    // the server does not implement them, the Calls' bytes still match.
    for (const [iid, mid] of [[0xffffffffffffffffn, 0xffff], [0n, 0], [CALC, M.add]] as const) {
      const f = await roundTrip(p.boot, 1, 2, true, iid, mid);
      const g = await roundTrip(p.boot, 1, 2, false, iid, mid);
      expect(f.settled.length).toBe(1);
      expect(g.settled.length).toBe(1);
      expect(f.settled[0]?.kind).toBe(g.settled[0]?.kind);
    }
    expect(calls.length).toBe(12);
    // The flat Calls (even indexes) came from the flat path's one buffer, the others did not.
    for (let i = 2; i < calls.length; i += 2) expect(from[i]).toBe(from[0]);
    for (let i = 1; i < calls.length; i += 2) expect(from[i]).not.toBe(from[0]);
    for (let i = 0; i < calls.length; i += 2) expect(withoutIds(calls[i]!)).toEqual(withoutIds(calls[i + 1]!));
  });

  it("to a promised answer (pipelined): the same bytes as the general path", async () => {
    await using p = makePair();
    const from: ArrayBufferLike[] = [];
    const calls = recordCalls(p.clientTransport, from);
    await p.boot.whenResolved();
    for (const flatPath of [true, true, false]) {
      // makeCounter's results are not back yet: a call on their pointer 0 is pipelined.
      const req = p.boot.newCall(CALC, M.makeCounter, Box);
      req.params.a = 0;
      const pc = req.send();
      const self = pc.pipeline(0);
      const c = new Probe();
      if (flatPath) c.sendFlat(self, COUNTER, 0, BOX, write(20, 22));
      else {
        const params = c.begin(self, COUNTER, 0, Flat);
        params.a = 20;
        params.b = 22;
        c.sendCall();
      }
      await drain();
      expect(c.settled).toEqual([null]);
      expect(c.a).toBe(20); // a fresh counter at 0, plus 20
      self.close();
      (await pc).close();
      await drain();
    }
    const at = calls.flatMap((b, i) => (new DataView(b.buffer).getUint16(CALL.targetWhich, true) === 1 ? [i] : []));
    expect(at.length).toBe(3);
    // The two flat Calls came from the flat path's one buffer, the general one did not.
    expect(from[at[1]!]).toBe(from[at[0]!]);
    expect(from[at[2]!]).not.toBe(from[at[0]!]);
    expect(withoutIds(calls[at[0]!]!)).toEqual(withoutIds(calls[at[2]!]!));
    expect(withoutIds(calls[at[1]!]!)).toEqual(withoutIds(calls[at[2]!]!));
  });

  it("a writer that throws sends nothing and leaves no question", async () => {
    await using p = makePair();
    const calls = recordCalls(p.clientTransport);
    await p.boot.whenResolved();
    const c = new Probe();
    const boom = new RangeError("bad param");
    expect(() =>
      c.sendFlat(p.boot, CALC, M.add, BOX, () => {
        throw boom;
      }),
    ).toThrow(boom);
    c.drop();
    await drain();
    expect(calls.length).toBe(0);
    expect(c.settled).toEqual([]);
    expect(p.client.stats().questions).toBe(0);
  });
});

/** A params struct of `dataWords` data words and `ptrs` pointers. */
function paramsOf(dataWords: number, ptrs: number): capnp.StructCtor<capnp.Struct> {
  return class extends capnp.Struct {
    static readonly _capnp = { displayName: "P", id: "f0000000000000f2", size: new capnp.ObjectSize(dataWords * 8, ptrs) };
  };
}
/** The capabilities' struct (as runtime proxy-context.ts's Context: no data, `ptrs` pointers). */
function capsStructOf(ptrs: number): capnp.StructCtor<capnp.Struct> {
  return class extends capnp.Struct {
    static readonly _capnp = { displayName: "C", id: "f0000000000000f3", size: new capnp.ObjectSize(0, ptrs) };
  };
}

/** One cap-table shape: the params' layout, where the capabilities go, which they are. */
interface CapsShape {
  dataWords: number;
  ptrWords: number;
  capStruct: number;
  capStructPtrs: number;
  slots: number[];
  caps: Capability[];
}

/**
 * Sends a Call of shape `s` to `target` (a, b in the data) the flat way (DirectCall.sendFlatCaps)
 * or the general way (begin, the data, the struct initialised and the caps written with writeCap
 * in table order, sendCall: what the runtime's general path does); the Probe and whether the flat
 * path took it.
 */
async function capsTrip(target: Capability, s: CapsShape, flatPath: boolean): Promise<[Probe, boolean]> {
  const c = new Probe();
  const Params = paramsOf(s.dataWords, s.ptrWords);
  const w = s.dataWords === 0 ? () => {} : write(20, 22);
  let took = false;
  if (flatPath) took = c.sendFlatCaps(target, CALC, M.add, Params, w, s.capStruct, s.capStructPtrs, s.caps, s.slots, s.caps.length);
  if (!took) {
    const params = c.begin(target, CALC, M.add, Params);
    w(dataViewOf(params.segment), CALL.envelopeBytes);
    const st = capnp.Struct.initStructAt(s.capStruct, capsStructOf(s.capStructPtrs), params);
    for (let i = 0; i < s.caps.length; i++) writeCap(st, s.slots[i]!, s.caps[i]!);
    c.sendCall();
  }
  await drain();
  return [c, took];
}

describe("flat Calls with capabilities on the wire", () => {
  it("to an import: the same bytes as the general path for several cap-table shapes, the same exports", async () => {
    await using p = makePair();
    const from: ArrayBufferLike[] = [];
    const calls = recordCalls(p.clientTransport, from);
    await p.boot.whenResolved();
    const local = localCapability(new CounterServer(1));
    const local2 = localCapability(new CounterServer(2));
    const resolver = deferred<Capability>();
    const later = promiseCapability(resolver.promise);
    // Each exported once beforehand, so that both paths find the same export IDs (a call's
    // exports are released after it, and the freed IDs come back in another order).
    const exportsOf = (p.client as unknown as { core: { exports: { exportHook(h: unknown): { id: number }; release(id: number, n: number): void } } }).core.exports;
    const held = [local, local2, later].map((c) => exportsOf.exportHook(hookOf(c)).id);
    const shapes: CapsShape[] = [
      // The Context of a runtime call: callbackThread (pointer 1), then thread (pointer 0).
      { dataWords: 1, ptrWords: 1, capStruct: 0, capStructPtrs: 2, slots: [1, 0], caps: [local, local2] },
      { dataWords: 1, ptrWords: 1, capStruct: 0, capStructPtrs: 2, slots: [1], caps: [local] },
      { dataWords: 0, ptrWords: 1, capStruct: 0, capStructPtrs: 2, slots: [1, 0], caps: [local, p.boot] },
      { dataWords: 2, ptrWords: 3, capStruct: 2, capStructPtrs: 3, slots: [2, 0, 1], caps: [later, local, local] },
      { dataWords: 1, ptrWords: 2, capStruct: 1, capStructPtrs: 1, slots: [0], caps: [p.boot] },
    ];
    for (const s of shapes) {
      const before = p.client.stats().exports;
      const [f, tookF] = await capsTrip(p.boot, s, true);
      const [g, tookG] = await capsTrip(p.boot, s, false);
      expect(tookF).toBe(true);
      expect(tookG).toBe(false);
      // (Params without data words fail on the server, which reads them as Box: both alike.)
      expect(f.settled.length).toBe(1);
      expect(g.settled.length).toBe(1);
      expect(f.settled[0]?.kind).toBe(g.settled[0]?.kind);
      expect(g.a).toBe(f.a);
      // The server released the params' caps after each call: no export left behind by either.
      expect(p.client.stats().exports).toBe(before);
    }
    expect(calls.length).toBe(shapes.length * 2);
    for (let i = 2; i < calls.length; i += 2) expect(from[i]).toBe(from[0]);
    for (let i = 1; i < calls.length; i += 2) expect(from[i]).not.toBe(from[0]);
    for (let i = 0; i < calls.length; i += 2) expect(withoutIds(calls[i]!), `shape ${i / 2}`).toEqual(withoutIds(calls[i + 1]!));
    for (const id of held) exportsOf.release(id, 1);
    resolver.resolve(localCapability(new CounterServer(5)));
    later.close();
    local.close();
    local2.close();
    await drain();
  });

  it("declines, sending nothing, for a receiverAnswer cap, a promisedAnswer target or a local target", async () => {
    await using p = makePair();
    const calls = recordCalls(p.clientTransport);
    await p.boot.whenResolved();
    const local = localCapability(new CounterServer(1));
    const req = p.boot.newCall(CALC, M.makeCounter, Box);
    req.params.a = 0;
    const pc = req.send();
    const pipelined = pc.pipeline(0); // its Return not read yet: a promise on a promised answer
    const sent = calls.length;
    const ctx = { dataWords: 1, ptrWords: 1, capStruct: 0, capStructPtrs: 2, slots: [1, 0] };
    const decline = (target: Capability, caps: Capability[]): boolean =>
      new Probe().sendFlatCaps(target, CALC, M.add, paramsOf(1, 1), write(1, 2), ctx.capStruct, ctx.capStructPtrs, caps, ctx.slots, caps.length);
    expect(decline(p.boot, [local, pipelined])).toBe(false);
    expect(decline(pipelined, [local])).toBe(false);
    expect(decline(local, [local])).toBe(false);
    expect(calls.length).toBe(sent);
    expect(p.client.stats().exports).toBe(0);
    // Taken the general way (capsTrip sends before it waits), the receiverAnswer one goes out.
    const [g, took] = await capsTrip(p.boot, { ...ctx, caps: [local, pipelined] }, true);
    expect(took).toBe(false);
    expect(calls.length).toBe(sent + 1);
    expect(g.settled).toEqual([null]);
    pipelined.close();
    (await pc).close();
    local.close();
    await drain();
  });
});
