// The decode budget (docs/rpc.md "Cost model"), its attribution to a Call, and the
// FrameTracker / FrameBudget that bound partial frames across connections.
import { describe, expect, it } from "vitest";
import {
  CallLimitError,
  DEFAULT_LIMITS,
  DECODE_BASE_UNITS,
  FrameBudget,
  FrameTracker,
  LimitError,
  RpcConnection,
  STRUCT_UNITS,
  decodeBudget,
  decodeCost,
  encodeFrameToBytes,
  localCapability,
  memoryTransportPair,
  partialFrameHold,
  validateMessage,
  validateRpcMessage,
} from "@multiprocess-ts/capnp";
import type { IncomingCall, Server, TransportSink } from "@multiprocess-ts/capnp";
import { MESSAGE_ATTACKS, bootstrapMessage, callMessage, finishMessage, Words } from "../../../test/hostile/dist/index.js";
import { listPtr, seg, structPtr, NULL, type Word } from "./fixtures/wire.js";

/** A root struct with one pointer to `...rest` (offsets relative to word 1). */
function rooted(...rest: Word[]): Uint8Array[] {
  return [seg(structPtr(0, 0, 1), ...rest)];
}

describe("decode units", () => {
  it("a struct visit costs its words + STRUCT_UNITS; Void and Bool elements one unit each; other lists their words", () => {
    expect(decodeCost([seg(structPtr(0, 2, 0), NULL, NULL)])).toBe(2 + STRUCT_UNITS);
    const root = STRUCT_UNITS + 1;
    expect(decodeCost(rooted(listPtr(0, 0, 1000)))).toBe(root + 1 + 1000); // List(Void)
    expect(decodeCost([seg(structPtr(0, 0, 1), listPtr(0, 1, 640), ...Array.from({ length: 10 }, () => NULL))])).toBe(root + 1 + 640); // List(Bool)
    expect(decodeCost([seg(structPtr(0, 0, 1), listPtr(0, 2, 64), ...Array.from({ length: 8 }, () => NULL))])).toBe(root + 1 + 8); // bytes: words
  });

  it("zero-sized composite elements cost STRUCT_UNITS each; a shared pointer is charged at every visit", () => {
    const tag: Word = [(1000 << 2) >>> 0, 0];
    expect(decodeCost(rooted(listPtr(0, 7, 0), tag))).toBe(STRUCT_UNITS + 1 + 1 + 1000 * STRUCT_UNITS);
    // Two pointers to one 3-word struct: 2 x (3 + STRUCT_UNITS).
    const dag = [seg(structPtr(0, 0, 2), structPtr(1, 3, 0), structPtr(0, 3, 0), NULL, NULL, NULL)];
    expect(decodeCost(dag)).toBe(STRUCT_UNITS + 2 + 2 * (3 + STRUCT_UNITS));
  });

  it("budget = min(decodeUnitLimit, decodeAmplification x words + 64 Ki); both configurable", () => {
    expect(decodeBudget(800)).toBe(64 * 100 + DECODE_BASE_UNITS);
    expect(decodeBudget(1 << 30)).toBe(DEFAULT_LIMITS.decodeUnitLimit);
    expect(decodeBudget(800, { decodeAmplification: 2 })).toBe(200 + DECODE_BASE_UNITS);
    const voids = rooted(listPtr(0, 0, 100_000));
    expect(() => validateMessage(voids)).toThrow(/decode budget of 65728 units/);
    expect(validateMessage(voids, { decodeAmplification: Infinity })).toBe(1 + 100_000);
    expect(() => validateMessage(voids, { decodeAmplification: Infinity, decodeUnitLimit: 1000 })).toThrow(/decodeUnitLimit = 1000/);
  });

  it("every issue-11 attack is within budget, or refused, at CI size (and its cost never exceeds the budget when served)", () => {
    for (const a of MESSAGE_ATTACKS) {
      const segs = a.build(7, 0, a.ciScale);
      const budget = decodeBudget(encodeFrameToBytes(segs).byteLength);
      if (a.served(a.ciScale)) expect(decodeCost(segs), a.name).toBeLessThanOrEqual(budget);
      else {
        let err: unknown;
        try {
          validateRpcMessage(segs);
        } catch (e) {
          err = e;
        }
        expect(err, a.name).toBeInstanceOf(CallLimitError);
        expect((err as CallLimitError).questionId, a.name).toBe(7);
      }
    }
  });
});

describe("attribution", () => {
  const voidParams = (qid: number): Uint8Array[] =>
    callMessage(qid, { bootstrapQid: 0, interfaceId: 1n, methodId: 0 }, (w, p) => {
      const s = w.alloc(1);
      w.structPtr(p, s, 0, 1);
      w.listPtr(s, s + 1, 0, 1_000_000);
    });

  it("over a limit in a Call's params: CallLimitError with the question ID; elsewhere: a plain LimitError", () => {
    expect(() => validateRpcMessage(voidParams(5))).toThrow(CallLimitError);
    // The same excess in a Bootstrap (not attributable).
    const w = new Words();
    w.alloc(1);
    const m = w.alloc(2);
    w.structPtr(0, m, 1, 1);
    w.u16(m, 0, 8);
    const b = w.alloc(3);
    w.structPtr(m + 1, b, 1, 2);
    w.listPtr(b + 2, b + 3, 0, 10_000_000);
    let err: unknown;
    try {
      validateRpcMessage([w.segment()]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LimitError);
    expect(err).not.toBeInstanceOf(CallLimitError);
  });

  it("the engine answers the refused call with an exception Return and keeps serving the connection", async () => {
    const [peer, mine] = memoryTransportPair();
    let calls = 0;
    const server: Server = {
      dispatch(_call: IncomingCall) {
        calls++;
      },
    };
    const conn = new RpcConnection(mine, { bootstrap: localCapability(server) });
    const got: Uint8Array[][] = [];
    let wake: (() => void) | undefined;
    const sink: TransportSink = {
      message: (m) => {
        got.push(m);
        wake?.();
      },
      closed: () => {},
    };
    peer.start(sink);
    const next = async (n: number): Promise<void> => {
      while (got.length < n) await new Promise<void>((r) => (wake = r));
    };
    peer.send(bootstrapMessage(0));
    await next(1);
    peer.send(voidParams(1));
    await next(2);
    const { readMessage } = await import("@multiprocess-ts/capnp");
    const rpc = await import("capnp-ts/src/std/rpc.capnp.js");
    const ret = readMessage(got[1]!).getRoot(rpc.Message).getReturn();
    expect(ret.getAnswerId()).toBe(1);
    expect(ret.which()).toBe(rpc.Return.EXCEPTION);
    expect(ret.getException().getReason()).toMatch(/^call params: .*decode budget/);
    expect(calls).toBe(0);
    expect(conn.stats().answers).toBe(2);
    peer.send(finishMessage(1));
    peer.send(finishMessage(0));
    await new Promise((r) => setImmediate(r));
    expect(conn.stats().answers).toBe(0);
    void conn.close();
    expect(await conn.closed).toBeUndefined();
    expect(conn.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
  });
});

describe("FrameTracker / FrameBudget", () => {
  const frameOf = (words: number): Uint8Array => encodeFrameToBytes([new Uint8Array(words * 8)]);

  it("counts frames across any chunking and knows since when a frame is incomplete", () => {
    let now = 100;
    const t = new FrameTracker(null, () => now);
    const bytes = new Uint8Array([...frameOf(3), ...frameOf(0), ...frameOf(1)]);
    for (let i = 0; i < bytes.byteLength; i += 5) {
      now++;
      expect(t.push(bytes.subarray(i, i + 5))).toBe(true);
    }
    expect(t.messages).toBe(3);
    expect(t.partialSince).toBe(-1);
    t.push(frameOf(2).subarray(0, 10));
    expect(t.partialSince).toBe(now);
    expect(t.messages).toBe(3);
  });

  it("counts whole frames inside one chunk without keeping anything, then follows a frame left incomplete", () => {
    let now = 7;
    const t = new FrameTracker(null, () => now);
    const two = frameOf(2);
    const bytes = new Uint8Array([...frameOf(3), ...frameOf(0), ...two.subarray(0, 12)]);
    expect(t.push(bytes)).toBe(true);
    expect(t.messages).toBe(2);
    expect(t.partialSince).toBe(7);
    now = 9;
    expect(t.push(new Uint8Array([...two.subarray(12), ...frameOf(1), ...frameOf(4)]))).toBe(true);
    expect(t.messages).toBe(5);
    expect(t.partialSince).toBe(-1);
    // A table claiming more segments than allowed is refused, as by the decoder.
    const bad = new Uint8Array(16);
    new DataView(bad.buffer).setUint32(0, 70000, true);
    expect(new FrameTracker(null, () => 0, 100).push(bad)).toBe(false);
  });

  it("push(chunk, len) follows only the first len bytes (a read into a larger buffer), never frames in the bytes after them", () => {
    const t = new FrameTracker(null, () => 5);
    // A buffer whose bytes past the read look like whole frames (here: a zeroed slab, where
    // every 8 bytes parse as an empty one-segment frame).
    const slab = new Uint8Array(1024);
    const first = frameOf(2);
    slab.set(first);
    expect(t.push(slab, first.byteLength + 4)).toBe(true);
    expect(t.messages).toBe(1);
    expect(t.partialSince).toBe(5); // 4 bytes of the next header: a frame started
    const untracked = new FrameTracker(null, () => 0);
    untracked.push(slab); // the whole buffer: the zeros count as 127 more frames
    expect(untracked.messages).toBe(1 + (1024 - first.byteLength) / 8);
  });

  it("charges partial frames (with the decoder's allocation ahead) to a shared budget, refuses past it, gives back on completion and release", () => {
    const budget = new FrameBudget(1 << 20);
    const a = new FrameTracker(budget, () => 0);
    const b = new FrameTracker(budget, () => 0);
    const big = frameOf(1 << 20); // 8 MiB frame
    expect(a.push(big.subarray(0, 1000))).toBe(true);
    expect(a.held).toBe(partialFrameHold(big.byteLength, 1000));
    expect(budget.used).toBe(a.held);
    expect(b.push(big.subarray(0, 40_000))).toBe(false); // 40 000 + 32 x 40 000 > 1 MiB - a.held
    expect(budget.refused).toBe(1);
    a.release();
    expect(budget.used).toBe(0);
    b.release(); // the refused stream is closed
    const c = new FrameTracker(budget, () => 0);
    expect(c.push(frameOf(10))).toBe(true);
    expect(c.messages).toBe(1);
    expect(budget.used).toBe(0);
    expect(budget.peak).toBeLessThanOrEqual(budget.limit);
    expect(() => new FrameBudget(0)).toThrow(RangeError);
  });
});
