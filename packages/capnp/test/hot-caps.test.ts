/**
 * The dispatcher's fast path for a Call with a small cap table (rpc/hot-caps.ts): it must accept
 * the Calls a method with a `Proxy.Context` (or a capability argument) sends, and it must never
 * accept a message the full validation (`validateRpcMessageNear`) would refuse or read with a far
 * pointer: checked on real messages (flat-call.ts `encodeFlatCapsCall`, the bytes P4's calls
 * carry, and capnp-ts's general builder), on limits at and below exactly what the walk charges
 * them, and on seeded random mutations. What it reads must be what fastpath.ts decodeEnvelope
 * reads, and a connection must route such a Call through it.
 * Threading: loop thread (the test's thread).
 */
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS, fastpath, localCapability, writeCap } from "@multiprocess-ts/capnp";
import { hotCapsCall } from "../dist/rpc/hot-caps.js";
import { hotShape } from "../dist/rpc/hot-shape.js";
import { Dispatcher } from "../dist/rpc/dispatch.js";
import { decodeCost, validateMessage, validateRpcMessageNear } from "../dist/validate.js";
import { encodeFlatCapsCall, flatCapsCallBytes } from "../dist/flat-call.js";
import { resolveLimits, type ReaderLimits } from "../dist/limits.js";
import { CallbackServer, M, callA, drain, makePair } from "./rpc-helpers.js";
import { xorshift } from "./fuzz-support.js";

const SENDER_HOSTED = 1;
const SENDER_PROMISE = 2;
const RECEIVER_HOSTED = 3;
const RECEIVER_ANSWER = 4;

/**
 * A Call written by encodeFlatCapsCall (what questions.ts `sendFlatCaps` sends): params of
 * `dataWords` data words and `ptrWords` pointers, the capabilities' struct at pointer `capStruct`
 * with `capStructPtrs` pointers, capability i at its pointer `slots[i]`, descriptors `descs`
 * ([kind, id]).
 */
function flatCaps(dataWords: number, ptrWords: number, capStruct: number, capStructPtrs: number, slots: number[], descs: [number, number][]): Uint8Array {
  const n = descs.length;
  const out = new Uint8Array(flatCapsCallBytes(dataWords, ptrWords, capStructPtrs, n));
  const dv = new DataView(out.buffer);
  const d0 = encodeFlatCapsCall(out, dv, 77, 0x90de09db457f4d3bn, 3, dataWords, ptrWords, capStruct, capStructPtrs, slots, n, 4);
  for (let i = 0; i < dataWords * 8; i++) out[fastpath.CALL.envelopeBytes + i] = (i * 37 + 5) & 0xff;
  for (let i = 0; i < n; i++) {
    dv.setUint16(d0 + i * 16, descs[i]![0], true);
    dv.setUint32(d0 + i * 16 + 4, descs[i]![1], true);
  }
  return out;
}

/** A params struct: `dataBytes` of data, `ptrs` pointers. */
function structClass(dataBytes: number, ptrs: number): capnp.StructCtor<capnp.Struct> {
  return class extends capnp.Struct {
    static readonly _capnp = { displayName: "S", id: "f00000000000000e", size: new capnp.ObjectSize(dataBytes, ptrs) };
  };
}

/** Segment 0 of `m`, only its used bytes, as a fresh word-aligned array. */
function bytesOf(m: capnp.Message): Uint8Array {
  expect(m._capnp.segments.length).toBe(1);
  const s = m._capnp.segments[0]!;
  return new Uint8Array(s.buffer, 0, s.byteLength).slice();
}

/**
 * capnp-ts's general builder: a Call whose params (8 data bytes, 3 pointers) hold a capability in
 * pointer 0, a struct of two capability pointers in pointer 2, and a cap table of `descs`.
 */
function general(descs: [number, number][]): Uint8Array {
  const { msg, params } = fastpath.newCallMessage(0x1234n, 1, structClass(8, 3), 256);
  capnp.Struct.setInt32(0, 99, params);
  capnp.Struct.initStructAt(2, structClass(0, 2), params);
  const table = msg.getRoot(rpc.Message).getCall().getParams().initCapTable(descs.length);
  descs.forEach(([kind, id], i) => {
    const d = table.get(i);
    if (kind === SENDER_HOSTED) d.setSenderHosted(id);
    else if (kind === SENDER_PROMISE) d.setSenderPromise(id);
    else if (kind === RECEIVER_HOSTED) d.setReceiverHosted(id);
    else if (kind === RECEIVER_ANSWER) d.initReceiverAnswer().setQuestionId(id);
  });
  const s = bytesOf(msg);
  const dv = new DataView(s.buffer);
  const capAt = (p: number, i: number): void => {
    dv.setUint32(p, 3, true);
    dv.setUint32(p + 4, i, true);
  };
  // A Struct's byteOffset is its pointer's: the struct lies where the pointer says.
  const targetOf = (p: number): number => p + 8 + (dv.getInt32(p, true) >> 2) * 8;
  const innerAt = targetOf(params.byteOffset) + 8 + 2 * 8; // params' pointer 2 (behind 1 data word)
  capAt(targetOf(params.byteOffset) + 8, 0);
  capAt(targetOf(innerAt), 1);
  capAt(targetOf(innerAt) + 8, 0);
  return s;
}

const CAPS: [string, Uint8Array][] = [
  // P4's Call: the Context (thread, callbackThread) in table order callbackThread, thread.
  ["the Context of a runtime call (senderHosted, receiverHosted)", flatCaps(1, 1, 0, 2, [1, 0], [[SENDER_HOSTED, 5], [RECEIVER_HOSTED, 0]])],
  ["one capability in the capabilities' struct", flatCaps(1, 1, 0, 2, [1], [[SENDER_HOSTED, 9]])],
  ["no data words", flatCaps(0, 1, 0, 2, [1, 0], [[SENDER_PROMISE, 2], [RECEIVER_HOSTED, 1]])],
  ["three capabilities, struct at pointer 2", flatCaps(2, 3, 2, 3, [2, 0, 1], [[SENDER_PROMISE, 3], [SENDER_HOSTED, 4], [SENDER_HOSTED, 4]])],
  ["general builder, capabilities in the params and in a struct", general([[SENDER_HOSTED, 1], [RECEIVER_HOSTED, 7]])],
];

/** What the full validation says: "near" (passes, no far pointer), "far" or "refused". */
function full(s: Uint8Array, lim: ReaderLimits): "near" | "far" | "refused" {
  try {
    return validateRpcMessageNear([s], lim) ? "near" : "far";
  } catch {
    return "refused";
  }
}

const check = (s: Uint8Array, lim: ReaderLimits): boolean => hotCapsCall(s, lim, new fastpath.Envelope());

describe("hotCapsCall", () => {
  it.each(CAPS)("accepts the Call, which the full check passes and hot-shape.ts does not take: %s", (_name, s) => {
    expect(check(s, DEFAULT_LIMITS)).toBe(true);
    expect(full(s, DEFAULT_LIMITS)).toBe("near");
    expect(hotShape(s, DEFAULT_LIMITS)).toBe(false);
  });

  it("takes the full path for a receiverAnswer descriptor, a list in the params, a struct nested deeper, or a capability as the content", () => {
    const answer = general([[SENDER_HOSTED, 1], [RECEIVER_ANSWER, 0]]);
    const list = (() => {
      const { msg, params } = fastpath.newCallMessage(1n, 0, structClass(8, 1), 256);
      capnp.Struct.initList(0, capnp.Int32List, 2, params);
      msg.getRoot(rpc.Message).getCall().getParams().initCapTable(1).get(0).setSenderHosted(0);
      return bytesOf(msg);
    })();
    const deep = (() => {
      const { msg, params } = fastpath.newCallMessage(1n, 0, structClass(8, 1), 256);
      const s1 = capnp.Struct.initStructAt(0, structClass(0, 1), params);
      capnp.Struct.initStructAt(0, structClass(8, 0), s1);
      msg.getRoot(rpc.Message).getCall().getParams().initCapTable(1).get(0).setSenderHosted(0);
      return bytesOf(msg);
    })();
    const capContent = flatCaps(1, 1, 0, 2, [1], [[SENDER_HOSTED, 9]]);
    new DataView(capContent.buffer).setUint32(fastpath.CALL.contentPtr, 3, true); // the content pointer: a capability
    for (const s of [answer, list, deep]) {
      expect(check(s, DEFAULT_LIMITS)).toBe(false);
      expect(full(s, DEFAULT_LIMITS)).toBe("near");
    }
    expect(check(capContent, DEFAULT_LIMITS)).toBe(false);
  });

  it.each(CAPS)("refuses exactly below the limits the walk charges, which the full check refuses there too: %s", (_name, s) => {
    const words = validateMessage([s]);
    const units = decodeCost([s]);
    const cases: [Partial<ReaderLimits>, boolean][] = [
      [{ nestingLimit: 4 }, false],
      [{ nestingLimit: 5 }, true],
      [{ maxMessageBytes: s.byteLength + 7 }, false],
      [{ maxMessageBytes: s.byteLength + 8 }, true],
      [{ traversalLimitWords: words - 1 }, false],
      [{ traversalLimitWords: words }, true],
      [{ decodeUnitLimit: units - 1 }, false],
      [{ decodeUnitLimit: units }, true],
      [{ maxSegments: 1 }, true],
    ];
    for (const [limits, want] of cases) {
      const lim = resolveLimits(limits);
      expect(check(s, lim), JSON.stringify(limits)).toBe(want);
      expect(full(s, lim), JSON.stringify(limits)).toBe(want ? "near" : "refused");
    }
  });

  it("never accepts what the full validation refuses or reads with a far pointer (seeded mutations)", () => {
    const rand = xorshift(0x51ed270b);
    const interesting = [0, 1, 2, 3, 4, 5, 6, 7, 0xfc, 0xfd, 0xfe, 0xff, 0x80, 0x7f, 0x10];
    const tight = CAPS.map(([, s]) => resolveLimits({ nestingLimit: 5, traversalLimitWords: validateMessage([s]), decodeUnitLimit: decodeCost([s]) }));
    let accepted = 0;
    let refusedByFull = 0;
    for (let round = 0; round < 20000; round++) {
      const k = rand(CAPS.length);
      let s = CAPS[k]![1].slice();
      const edits = 1 + rand(3);
      for (let e = 0; e < edits; e++) {
        const at = rand(s.byteLength);
        s[at] = rand(2) === 0 ? interesting[rand(interesting.length)]! : rand(256);
      }
      if (rand(10) === 0) s = s.slice(0, 8 * rand(s.byteLength / 8 + 1));
      for (const lim of [DEFAULT_LIMITS, tight[k]!]) {
        const verdict = full(s, lim);
        if (check(s, lim)) {
          accepted++;
          expect(verdict, `round ${round}: ${Buffer.from(s).toString("hex")}`).toBe("near");
        } else if (verdict === "refused") refusedByFull++;
      }
    }
    expect(accepted).toBeGreaterThan(1000);
    expect(refusedByFull).toBeGreaterThan(1000);
  });
});

/** The envelope fields handleCall reads (`content` and `capTableAt` as byte offsets from the message start). */
function fields(env: fastpath.Envelope, start: number): Record<string, unknown> {
  return {
    which: env.which,
    id: env.id,
    interfaceId: env.interfaceId,
    methodId: env.methodId,
    sendResultsTo: env.sendResultsTo,
    targetWhich: env.targetWhich,
    importedCap: env.importedCap,
    hasCapTable: env.hasCapTable,
    capTableAt: env.capTableAt - start,
    content: env.content === null ? null : env.content.byteOffset - start,
  };
}

/** `s` at byte 8 of a buffer holding other bytes around it, as a message inside a socket chunk. */
function inChunk(s: Uint8Array): Uint8Array {
  const b = new Uint8Array(s.byteLength + 24).fill(0xa5);
  b.set(s, 8);
  return b.subarray(8, 8 + s.byteLength);
}

/** decodeEnvelope's reading of `s` (read in place, as the dispatcher's full path does). */
function decoded(s: Uint8Array): Record<string, unknown> {
  const env = new fastpath.Envelope();
  const seg = fastpath.messageInPlace(s)._capnp.segments[0]!;
  env.reset(seg, 64);
  expect(fastpath.decodeEnvelope(seg, 64, env)).toBe(true);
  return fields(env, seg.byteOffset);
}

/** hotCapsCall's reading, completed as dispatch.ts `caps` completes it; null when it does not take `s`. */
function hot(s: Uint8Array, env = new fastpath.Envelope()): Record<string, unknown> | null {
  if (!hotCapsCall(s, DEFAULT_LIMITS, env)) return null;
  const seg = fastpath.messageInPlace(s)._capnp.segments[0]!;
  env.content = fastpath.pointerAt(capnp.Pointer, seg, seg.byteOffset + env.contentAt, 61);
  env.capTableAt += seg.byteOffset;
  const o = fields(env, seg.byteOffset);
  // The content's data section, as the content pointer's own words locate it.
  const dv = new DataView(s.buffer, s.byteOffset);
  const lo = dv.getUint32(env.contentAt, true);
  const hi = dv.getUint32(env.contentAt + 4, true);
  const isNull = lo === 0 && hi === 0;
  expect(env.dataAt).toBe(isNull ? -1 : s.byteOffset + env.contentAt + 8 + (lo >> 2) * 8);
  expect(env.dataWords).toBe(isNull ? 0 : hi & 0xffff);
  return o;
}

describe("hotCapsCall's envelope", () => {
  it.each(CAPS)("reads the envelope as decodeEnvelope does: %s", (_name, s) => {
    const v = inChunk(s);
    const got = hot(v);
    expect(got).not.toBeNull();
    expect(got).toEqual(decoded(v));
    expect(got!.hasCapTable).toBe(true);
  });

  it("reads what decodeEnvelope reads on every mutation it accepts (seeded)", () => {
    const rand = xorshift(0x7f4a7c15);
    let accepted = 0;
    const env = new fastpath.Envelope();
    for (let round = 0; round < 5000; round++) {
      const s = CAPS[rand(CAPS.length)]![1].slice();
      s[rand(s.byteLength)] = rand(256);
      const v = inChunk(s);
      const got = hot(v, env);
      env.clear();
      if (got === null) continue;
      accepted++;
      expect(full(v, DEFAULT_LIMITS), `round ${round}`).toBe("near");
      expect(got, `round ${round}: ${Buffer.from(s).toString("hex")}`).toEqual(decoded(v));
    }
    expect(accepted).toBeGreaterThan(1000);
  });
});

describe("a connection's Calls with capabilities", () => {
  it("take the cap-table fast path and run as before, releasing the capabilities", async () => {
    const proto = Dispatcher.prototype as unknown as { caps(s0: Uint8Array): void };
    const original = proto.caps;
    let taken = 0;
    proto.caps = function (this: unknown, s0: Uint8Array): void {
      taken++;
      original.call(this, s0);
    };
    try {
      await using p = makePair();
      await p.boot.whenResolved(); // else the first Call is pipelined on the Bootstrap (a promisedAnswer target)
      const cbs = new CallbackServer();
      const cb = localCapability(cbs);
      for (let i = 0; i < 3; i++) expect(await callA(p.boot, M.callback, (b) => { writeCap(b, 0, cb); b.a = i; })).toBe(i * 2);
      expect(cbs.values).toEqual([0, 1, 2]);
      expect(taken).toBe(3);
      cb.close();
      await drain();
      expect(cbs.released).toBe(1);
      expect(p.client.stats().exports).toBe(0);
      expect(p.server.stats().imports).toBe(0);
    } finally {
      proto.caps = original;
    }
  });
});
