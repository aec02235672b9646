// The hand-written rpc.capnp envelope codec (src/fastpath.ts) against capnp-ts, byte for byte:
// the fast encoders produce exactly the segments capnp-ts builds for the same message (same
// allocation order, same first-segment size), and the fast decoder reads exactly what capnp-ts
// reads (or declines, and the connection uses capnp-ts).
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import { preallocateSegments } from "capnp-ts/src/serialization/message.js";
import { describe, expect, it } from "vitest";
import { fastpath, validateRpcMessage, DEFAULT_LIMITS } from "@multiprocess-ts/capnp";
import { rng } from "./seeded-rng.js";

const { CALL, RET, Envelope, dataViewOf, decodeControl, decodeEnvelope, decodeEnvelopeSlow, encodeFinish, encodeRelease, messageInPlace, newCallMessage, newReturnMessage, setReturnHeader } = fastpath;

const SEED = Number(process.env.FASTPATH_SEED ?? 12345);
const N = 400;

type Rand = () => number;
const int = (r: Rand, n: number): number => Math.floor(r() * n);
const u32 = (r: Rand): number => int(r, 0x100000000);
const u64 = (r: Rand): bigint => (BigInt(u32(r)) << 32n) | BigInt(u32(r));

/** A struct class of a random size. */
function structClass(r: Rand): capnp.StructCtor<capnp.Struct> {
  const dataBytes = int(r, 5) * 8;
  const ptrs = int(r, 4);
  return class extends capnp.Struct {
    static readonly _capnp = { displayName: "R", id: "f00000000000000f", size: new capnp.ObjectSize(dataBytes, ptrs) };
  };
}

/** Random content; `script` replays the same writes on another struct. */
function contentScript(r: Rand, ctor: capnp.StructCtor<capnp.Struct>): (s: capnp.Struct) => void {
  const size = ctor._capnp.size;
  const ops: ((s: capnp.Struct) => void)[] = [];
  for (let i = 0; i < size.dataByteLength; i += 4) {
    const v = u32(r);
    if (r() < 0.7) ops.push((s) => capnp.Struct.setUint32(i, v, s));
  }
  for (let i = 0; i < size.pointerLength; i++) {
    const k = r();
    if (k < 0.3) {
      const t = "x".repeat(int(r, 40));
      ops.push((s) => capnp.Struct.setText(i, t, s));
    } else if (k < 0.5) {
      // Sometimes bigger than the reserved room: a second segment.
      const n = r() < 0.3 ? 300 + int(r, 5000) : int(r, 64);
      const bytes = new Uint8Array(n).map((_, j) => (j * 7 + n) & 0xff);
      ops.push((s) => capnp.Struct.initData(i, n, s).copyBuffer(bytes));
    } else if (k < 0.6) {
      const id = int(r, 5);
      ops.push((s) => {
        const p = capnp.Struct.getPointer(i, s);
        setInterfacePointerLike(id, p);
      });
    }
  }
  return (s) => {
    for (const op of ops) op(s);
  };
}

/** An interface pointer (type 3, capability index), written as capnp-ts writes it. */
function setInterfacePointerLike(index: number, p: capnp.Pointer): void {
  p.segment.setUint32(p.byteOffset, 3);
  p.segment.setUint32(p.byteOffset + 4, index);
}

function bytesOf(m: capnp.Message): Uint8Array[] {
  return m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength).slice());
}

function refMessage(firstSegmentBytes: number): capnp.Message {
  return new capnp.Message(new MultiSegmentArena([new ArrayBuffer(firstSegmentBytes)]), false);
}

function roundUp(n: number): number {
  return (n + 7) & ~7;
}

function writeCapTable(payload: rpc.Payload, descs: number[][]): void {
  if (descs.length === 0) return;
  const list = payload.initCapTable(descs.length);
  descs.forEach(([kind, id], i) => {
    const d = list.get(i);
    if (kind === 0) d.setNone();
    else if (kind === 1) d.setSenderHosted(id!);
    else if (kind === 2) d.setSenderPromise(id!);
    else d.setReceiverHosted(id!);
  });
}

function randomDescs(r: Rand): number[][] {
  const n = r() < 0.5 ? 0 : int(r, 4);
  return Array.from({ length: n }, () => [int(r, 4), int(r, 100)]);
}

function writePromised(pa: rpc.PromisedAnswer, qid: number, path: number[]): void {
  pa.setQuestionId(qid);
  if (path.length > 0) {
    const ops = pa.initTransform(path.length);
    path.forEach((f, i) => ops.get(i).setGetPointerField(f));
  }
}

describe(`fastpath encoder == capnp-ts (FASTPATH_SEED=${SEED})`, () => {
  it("Call messages", () => {
    const r = rng(SEED);
    let multi = 0;
    for (let n = 0; n < N; n++) {
      const P = structClass(r);
      const iid = u64(r);
      const mid = int(r, 0x10000);
      const qid = u32(r);
      const promised = r() < 0.3;
      const imp = u32(r);
      const path = Array.from({ length: int(r, 3) }, () => int(r, 8));
      const yourself = r() < 0.2;
      const descs = randomDescs(r);
      const script = contentScript(r, P);

      const fast = newCallMessage(iid, mid, P);
      script(fast.params);
      const seg = fast.msg._capnp.segments[0]!;
      const dv = new DataView(seg.buffer);
      if (promised) writePromised(new rpc.MessageTarget(seg, CALL.targetPtr).initPromisedAnswer(), imp, path);
      else dv.setUint32(CALL.importedCap, imp, true);
      if (yourself) dv.setUint16(CALL.sendResultsTo, 1, true);
      dv.setUint32(CALL.qid, qid, true);
      writeCapTable(new rpc.Payload(seg, CALL.paramsPtr), descs);

      const size = P._capnp.size;
      const ref = refMessage(roundUp(CALL.envelopeBytes + roundUp(size.dataByteLength) + size.pointerLength * 8 + 128));
      const call = ref.initRoot(rpc.Message).initCall();
      call.setQuestionId(qid);
      call.setInterfaceId(iid);
      call.setMethodId(mid);
      const t = call.initTarget();
      const params = call.initParams();
      script(capnp.Struct.initStructAt(0, P, params));
      if (promised) writePromised(t.initPromisedAnswer(), imp, path);
      else t.setImportedCap(imp);
      if (yourself) call.getSendResultsTo().setYourself();
      writeCapTable(params, descs);

      const a = bytesOf(fast.msg);
      const b = bytesOf(ref);
      if (a.length > 1) multi++;
      expect(a).toEqual(b);
    }
    expect(multi).toBeGreaterThan(0);
  });

  it("Return messages (results, empty results)", () => {
    const r = rng(SEED + 1);
    for (let n = 0; n < N; n++) {
      const empty = r() < 0.2;
      const R = structClass(r);
      const aid = u32(r);
      const rpc_ = r() < 0.5;
      const descs = randomDescs(r);
      const script = contentScript(r, R);

      const fast = newReturnMessage(empty ? null : R, empty ? 0 : 128);
      if (!empty) script(fast.results!);
      writeCapTable(new rpc.Payload(fast.msg._capnp.segments[0]!, RET.resultsPtr), descs);
      setReturnHeader(fast.msg, aid, rpc_);

      const size = R._capnp.size;
      const ref = refMessage(
        empty ? RET.envelopeBytes : roundUp(RET.envelopeBytes + roundUp(size.dataByteLength) + size.pointerLength * 8 + 128),
      );
      const ret = ref.initRoot(rpc.Message).initReturn();
      const results = ret.initResults();
      if (!empty) script(capnp.Struct.initStructAt(0, R, results));
      writeCapTable(results, descs);
      ret.setAnswerId(aid);
      ret.setReleaseParamCaps(rpc_);
      expect(bytesOf(fast.msg)).toEqual(bytesOf(ref));
    }
  });

  it("Finish and Release", () => {
    const r = rng(SEED + 2);
    for (let n = 0; n < N; n++) {
      const id = u32(r);
      const rr = r() < 0.5;
      const ref = refMessage(128);
      const f = ref.initRoot(rpc.Message).initFinish();
      f.setQuestionId(id);
      f.setReleaseResultCaps(rr);
      expect([encodeFinish(id, rr)]).toEqual(bytesOf(ref));
      const ef = new Envelope();
      expect(decodeControl(encodeFinish(id, rr), ef)).toBe(true);
      expect([ef.which, ef.id, ef.releaseResultCaps]).toEqual([4, id, rr]);

      const count = u32(r);
      const ref2 = refMessage(128);
      const rel = ref2.initRoot(rpc.Message).initRelease();
      rel.setId(id);
      rel.setReferenceCount(count);
      expect([encodeRelease(id, count)]).toEqual(bytesOf(ref2));
      const er = new Envelope();
      expect(decodeControl(encodeRelease(id, count), er)).toBe(true);
      expect([er.which, er.id, er.referenceCount]).toEqual([6, id, count]);
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** A random rpc.Message built with capnp-ts in a random field order and first-segment size. */
function randomMessage(r: Rand): capnp.Message {
  // A tiny first segment pushes structs into later segments (far pointers): the slow path.
  const m = refMessage(r() < 0.15 ? 16 : 8 * (16 + int(r, 64)));
  const root = m.initRoot(rpc.Message);
  const k = int(r, 10);
  if (k < 4) {
    const c = root.initCall();
    const writes: (() => void)[] = [
      () => c.setQuestionId(u32(r)),
      () => c.setInterfaceId(u64(r)),
      () => c.setMethodId(int(r, 0x10000)),
      () => {
        const t = c.initTarget();
        if (r() < 0.7) t.setImportedCap(u32(r));
        else writePromised(t.initPromisedAnswer(), u32(r), [int(r, 4)]);
      },
      () => {
        const p = c.initParams();
        const P = structClass(r);
        if (r() < 0.9) contentScript(r, P)(capnp.Struct.initStructAt(0, P, p));
        writeCapTable(p, randomDescs(r));
      },
      () => {
        const s = int(r, 3);
        if (s === 1) c.getSendResultsTo().setYourself();
        else if (s === 2) capnp.Struct.setUint16(6, 2, c); // thirdParty
      },
    ];
    // Random order: structs can come before or after their parents' other pointers.
    while (writes.length > 0) writes.splice(int(r, writes.length), 1)[0]!();
  } else if (k < 7) {
    const ret = root.initReturn();
    ret.setAnswerId(u32(r));
    ret.setReleaseParamCaps(r() < 0.5);
    ret.setNoFinishNeeded(r() < 0.3);
    const w = int(r, 5);
    if (w === 0) {
      const p = ret.initResults();
      const R = structClass(r);
      if (r() < 0.9) contentScript(r, R)(capnp.Struct.initStructAt(0, R, p));
      writeCapTable(p, randomDescs(r));
    } else if (w === 1) {
      const e = ret.initException();
      e.setReason("boom");
      e.setType(int(r, 4) as rpc.Exception_Type);
    } else if (w === 2) ret.setCanceled();
    else if (w === 3) ret.setResultsSentElsewhere();
    else ret.setTakeFromOtherQuestion(u32(r));
  } else if (k === 7) {
    const f = root.initFinish();
    f.setQuestionId(u32(r));
    f.setReleaseResultCaps(r() < 0.5);
  } else if (k === 8) {
    const rel = root.initRelease();
    rel.setId(u32(r));
    rel.setReferenceCount(u32(r));
  } else {
    root.initBootstrap().setQuestionId(u32(r));
  }
  return m;
}

function received(segs: Uint8Array[]): capnp.Message {
  const m = new capnp.Message(new MultiSegmentArena(segs.map((s) => s.slice().buffer)), false, false);
  preallocateSegments(m);
  m._capnp.traversalLimit = Infinity;
  return m;
}

function fields(e: InstanceType<typeof Envelope>): Record<string, unknown> {
  const o: Record<string, unknown> = { which: e.which };
  if (e.which === 2) {
    Object.assign(o, {
      id: e.id, interfaceId: e.interfaceId, methodId: e.methodId, sendResultsTo: e.sendResultsTo,
      targetWhich: e.targetWhich, hasCapTable: e.hasCapTable,
    });
    if (e.targetWhich === 0) o.importedCap = e.importedCap;
  } else if (e.which === 3) {
    Object.assign(o, {
      id: e.id, retWhich: e.retWhich, releaseParamCaps: e.releaseParamCaps, noFinishNeeded: e.noFinishNeeded,
      hasCapTable: e.hasCapTable,
    });
    if (e.retWhich === 4) o.takeFromOtherQuestion = e.takeFromOtherQuestion;
  } else if (e.which === 4) Object.assign(o, { id: e.id, releaseResultCaps: e.releaseResultCaps });
  else if (e.which === 6) Object.assign(o, { id: e.id, referenceCount: e.referenceCount });
  const c = e.content;
  o.content = c === null ? null : { seg: c.segment.id, off: c.byteOffset, depth: c._capnp.depthLimit, isNull: capnp.Pointer.isNull(c) };
  return o;
}

describe(`fastpath decoder == capnp-ts reads (FASTPATH_SEED=${SEED})`, () => {
  it("random rpc messages in random layouts", () => {
    const r = rng(SEED + 3);
    let fastHits = 0;
    let slow = 0;
    let controlHits = 0;
    for (let n = 0; n < 4 * N; n++) {
      const segs = bytesOf(randomMessage(r));
      validateRpcMessage(segs, DEFAULT_LIMITS);
      const depth = DEFAULT_LIMITS.nestingLimit;

      const m1 = received(segs);
      const e1 = new Envelope();
      e1.reset(m1._capnp.segments[0]!, depth);
      const fast = decodeEnvelope(m1._capnp.segments[0]!, depth, e1);

      const m2 = received(segs);
      const root = new rpc.Message(m2._capnp.segments[0]!, 0, depth);
      const e2 = new Envelope();
      e2.reset(m2._capnp.segments[0]!, depth, root);
      decodeEnvelopeSlow(root, e2);

      // decodeControl: Finish/Release from a view at an offset into a larger buffer.
      const host = new Uint8Array(segs[0]!.byteLength + 24);
      host.set(segs[0]!, 16);
      const e3 = new Envelope();
      const control = decodeControl(host.subarray(16, 16 + segs[0]!.byteLength), e3);
      // (It may decline, e.g. when the struct lives in another segment.)
      if (control) {
        expect([4, 6]).toContain(e2.which);
        controlHits++;
        expect(fields(e3)).toEqual(fields(e2));
      }

      if (!fast) {
        slow++;
        continue;
      }
      fastHits++;
      expect(fields(e1)).toEqual(fields(e2));
      // The fast decoder never touches the message (capnp-ts may initialize null pointers it reads).
      expect(bytesOf(m1)).toEqual(segs);
    }
    expect(fastHits).toBeGreaterThan(2 * N);
    expect(slow).toBeGreaterThan(0);
    expect(controlHits).toBeGreaterThan(N / 4);
  });

  it("messages from the fast encoders decode fast, with the values written", () => {
    const r = rng(SEED + 4);
    for (let n = 0; n < N; n++) {
      const P = structClass(r);
      const iid = u64(r);
      const mid = int(r, 0x10000);
      const qid = u32(r);
      const imp = u32(r);
      const { msg, params } = newCallMessage(iid, mid, P);
      contentScript(r, P)(params);
      const dv = new DataView(msg._capnp.segments[0]!.buffer);
      dv.setUint32(CALL.importedCap, imp, true);
      dv.setUint32(CALL.qid, qid, true);
      const m = received(bytesOf(msg));
      const e = new Envelope();
      e.reset(m._capnp.segments[0]!, 64);
      expect(decodeEnvelope(m._capnp.segments[0]!, 64, e)).toBe(true);
      expect([e.which, e.id, e.interfaceId, e.methodId, e.targetWhich, e.importedCap, e.sendResultsTo, e.hasCapTable]).toEqual([
        2, qid, iid, mid, 0, imp, 0, false,
      ]);
      expect(e.content!.byteOffset).toBe(CALL.contentPtr);
    }
  });

  it("one envelope reused across fast and slow decodes reads each Call's own interface id", () => {
    // The fast decode reuses the last interface id's BigInt when the bits match; the slow one
    // must leave that cache matching what it read, or the next fast decode would keep its id.
    const a = 0x90de09db457f4d3bn;
    const b = 0x90de09db00000000n | 0x12345n; // same high half as a
    const c = (a & 0xffffffffn) | (0x1n << 32n); // same low half as a
    const msgOf = (iid: bigint): capnp.Message => received(bytesOf(newCallMessage(iid, 1, structClass(rng(SEED + 7))).msg));
    const e = new Envelope();
    const fast = (iid: bigint): bigint => {
      const seg = msgOf(iid)._capnp.segments[0]!;
      e.reset(seg, 64);
      expect(decodeEnvelope(seg, 64, e)).toBe(true);
      return e.interfaceId;
    };
    const slow = (iid: bigint): bigint => {
      const seg = msgOf(iid)._capnp.segments[0]!;
      const root = new rpc.Message(seg, 0, 64);
      e.reset(seg, 64, root);
      decodeEnvelopeSlow(root, e);
      return e.interfaceId;
    };
    const order: [boolean, bigint][] = [[true, a], [true, a], [false, b], [true, a], [true, b], [false, b], [true, b], [true, c], [false, a], [true, c], [true, 0n]];
    expect(order.map(([f, iid]) => (f ? fast(iid) : slow(iid)))).toEqual(order.map(([, iid]) => iid));
  });

  it("a message read in place at an offset of a larger buffer decodes like its copy, and never grows into the bytes after it", () => {
    const r = rng(SEED + 5);
    for (let n = 0; n < N / 4; n++) {
      const P = structClass(r);
      const { msg, params } = newCallMessage(u64(r), int(r, 0x10000), P);
      contentScript(r, P)(params);
      const [seg] = bytesOf(msg);
      if (msg._capnp.segments.length !== 1) continue;
      // The message between two others' bytes, as in a socket chunk (word-aligned offset).
      const before = 8 * (1 + int(r, 8));
      const chunk = new Uint8Array(before + seg!.byteLength + 64).fill(0xa5);
      chunk.set(seg!, before);
      const view = chunk.subarray(before, before + seg!.byteLength);
      validateRpcMessage([view]);
      const m = messageInPlace(view);
      const s0 = m._capnp.segments[0]!;
      expect(s0.byteOffset).toBe(before);
      const e = new Envelope();
      e.reset(s0, 64);
      expect(decodeEnvelope(s0, 64, e)).toBe(true);
      const c = received([seg!]);
      const ec = new Envelope();
      ec.reset(c._capnp.segments[0]!, 64);
      expect(decodeEnvelope(c._capnp.segments[0]!, 64, ec)).toBe(true);
      // Offsets count from the buffer's start: the content lies `before` bytes further on.
      const shifted = (f: Record<string, unknown>): Record<string, unknown> => {
        const content = f.content as { off: number };
        return { ...f, content: { ...content, off: content.off - before } };
      };
      expect(shifted(fields(e))).toEqual(fields(ec));
      expect(e.content!.byteOffset).toBe(CALL.contentPtr + before);
      // The slow path reads the same root.
      const slow = new Envelope();
      const root = new rpc.Message(s0, s0.byteOffset, 64);
      slow.reset(s0, 64, root);
      decodeEnvelopeSlow(root, slow);
      expect(shifted(fields(slow))).toEqual(fields(ec));
      // Writing into it allocates a new segment: the bytes after the view stay as they were.
      const tail = chunk.slice(before + seg!.byteLength);
      const content = capnp.Struct.getPointer(0, root.getCall().getParams());
      capnp.Pointer.disown(content);
      capnp.Struct.initStruct(new capnp.ObjectSize(64, 0), new capnp.Struct(content.segment, content.byteOffset));
      expect(m._capnp.segments.length).toBe(2);
      expect(chunk.slice(before + seg!.byteLength)).toEqual(tail);
    }
  });

  it("messages read in place from one buffer share its view; each still reads its own bytes, also after one from another buffer", () => {
    const bytes = (qid: number): Uint8Array => {
      const { msg } = newCallMessage(0x1234n, 7, structClass(rng(SEED + 6)));
      dataViewOf(msg._capnp.segments[0]!).setUint32(CALL.qid, qid, true);
      return bytesOf(msg)[0]!;
    };
    const a = bytes(11);
    const b = bytes(22);
    const chunk = new Uint8Array(a.byteLength + b.byteLength); // two messages of one socket read
    chunk.set(a, 0);
    chunk.set(b, a.byteLength);
    const ma = messageInPlace(chunk.subarray(0, a.byteLength));
    const mb = messageInPlace(chunk.subarray(a.byteLength));
    const other = messageInPlace(bytes(33).slice());
    const qid = (m: ReturnType<typeof messageInPlace>): number => {
      const s = m._capnp.segments[0]!;
      const e = new Envelope();
      e.reset(s, 64);
      expect(decodeEnvelope(s, 64, e)).toBe(true);
      return e.id;
    };
    expect([qid(ma), qid(mb), qid(other), qid(ma)]).toEqual([11, 22, 33, 11]);
    const view = (m: ReturnType<typeof messageInPlace>): DataView => dataViewOf(m._capnp.segments[0]!);
    expect(view(ma)).toBe(view(mb));
    expect(view(other)).not.toBe(view(ma));
    expect(Object.prototype.toString.call(ma._capnp.segments[0])).toBe("[object Segment]");
  });
});
