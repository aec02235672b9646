/**
 * The dispatcher's validation fast path (rpc/hot-shape.ts): it must accept the hot messages a
 * scalar call exchanges (so the fast path is taken), and it must never accept a message the full
 * validation (`validateRpcMessageNear`) would refuse or read with a far pointer: checked on the
 * real messages, on limits at and below what they need, and on seeded random mutations of them.
 * `hotEnvelope`, the same check as the dispatcher runs it, must also read the envelope exactly as
 * the decoders it replaces there (fastpath.ts decodeEnvelope, decodeControl) do.
 */
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS, fastpath } from "@multiprocess-ts/capnp";
import { hotEnvelope, hotShape } from "../dist/rpc/hot-shape.js";
import { validateRpcMessageNear } from "../dist/validate.js";
import { resolveLimits, type ReaderLimits } from "../dist/limits.js";
import { xorshift } from "./fuzz-support.js";

/** A params/results struct: `dataBytes` of data, `ptrs` pointers (left null). */
function structClass(dataBytes: number, ptrs: number): capnp.StructCtor<capnp.Struct> {
  return class extends capnp.Struct {
    static readonly _capnp = { displayName: "S", id: "f00000000000000e", size: new capnp.ObjectSize(dataBytes, ptrs) };
  };
}

/** Segment 0 of `m`, only its used bytes, as a fresh word-aligned array. */
function bytesOf(m: capnp.Message): Uint8Array {
  const s = m._capnp.segments[0]!;
  return new Uint8Array(s.buffer, 0, s.byteLength).slice();
}

function call(S: capnp.StructCtor<capnp.Struct>, fill = true): Uint8Array {
  const { msg, params } = fastpath.newCallMessage(0x90de09db457f4d3bn, 3, S, 0);
  if (fill && S._capnp.size.dataByteLength >= 8) {
    capnp.Struct.setInt32(0, 41, params);
    capnp.Struct.setInt32(4, 1, params);
  }
  return bytesOf(msg);
}

function ret(S: capnp.StructCtor<capnp.Struct> | null): Uint8Array {
  const { msg, results } = fastpath.newReturnMessage(S, 0);
  if (results !== null && S!._capnp.size.dataByteLength >= 4) capnp.Struct.setInt32(0, 42, results);
  fastpath.setReturnHeader(msg, 7, true);
  return bytesOf(msg);
}

/** What the full validation says: "near" (passes, no far pointer), "far" or "refused". */
function full(s: Uint8Array, lim: ReaderLimits): "near" | "far" | "refused" {
  try {
    return validateRpcMessageNear([s], lim) ? "near" : "far";
  } catch {
    return "refused";
  }
}

const HOT: [string, Uint8Array][] = [
  ["Call, 8-byte params (add)", call(structClass(8, 0))],
  ["Call, empty params", call(structClass(0, 0), false)],
  ["Call, params with null pointers", call(structClass(16, 2))],
  ["Return, 8-byte results", ret(structClass(8, 0))],
  ["Return, no results struct", ret(null)],
  ["Return, results with null pointers", ret(structClass(8, 3))],
  ["Finish", fastpath.encodeFinish(12, true)],
  ["Finish, keep result caps", fastpath.encodeFinish(12, false)],
  ["Release", fastpath.encodeRelease(5, 2)],
];

describe("hotShape", () => {
  it.each(HOT)("accepts the hot message: %s", (_name, s) => {
    expect(hotShape(s, DEFAULT_LIMITS)).toBe(true);
    expect(full(s, DEFAULT_LIMITS)).toBe("near");
  });

  it("takes the full path for a Call with a cap table, a capability or a non-null pointer in the params", () => {
    const nested = fastpath.newCallMessage(1n, 0, structClass(8, 1), 64);
    capnp.Struct.initStructAt(0, structClass(8, 0), nested.params);
    const cap = call(structClass(8, 1));
    cap.set([3, 0, 0, 0, 0, 0, 0, 0], fastpath.CALL.envelopeBytes + 8); // params pointer 0: capability 0
    const table = fastpath.newCallMessage(1n, 0, structClass(8, 0), 64);
    table.msg.getRoot(rpc.Message).getCall().getParams().initCapTable(1).get(0).setSenderHosted(0);
    for (const s of [bytesOf(nested.msg), cap, bytesOf(table.msg)]) {
      expect(table.msg._capnp.segments.length).toBe(1);
      expect(hotShape(s, DEFAULT_LIMITS)).toBe(false);
      expect(full(s, DEFAULT_LIMITS)).toBe("near");
    }
  });

  it("refuses when a limit is at or below what the message needs, and agrees with the full check there", () => {
    const s = call(structClass(8, 0));
    const words = s.byteLength / 8;
    const cases: [Partial<ReaderLimits>, boolean][] = [
      [{ nestingLimit: 3 }, false],
      [{ nestingLimit: 4 }, true],
      [{ maxMessageBytes: s.byteLength + 7 }, false],
      [{ maxMessageBytes: s.byteLength + 8 }, true],
      [{ traversalLimitWords: 4 }, false],
      [{ traversalLimitWords: words * 2 }, true],
      [{ decodeUnitLimit: 20 }, false],
      [{ maxSegments: 1 }, true],
    ];
    for (const [limits, want] of cases) {
      const lim = resolveLimits(limits);
      expect(hotShape(s, lim), JSON.stringify(limits)).toBe(want);
      if (want) expect(full(s, lim), JSON.stringify(limits)).toBe("near");
    }
    // Below what the walk needs, the full check refuses too (the fast path only ever defers).
    expect(full(s, resolveLimits({ nestingLimit: 3 }))).toBe("refused");
    expect(full(s, resolveLimits({ maxMessageBytes: s.byteLength + 7 }))).toBe("refused");
  });

  it("never accepts what the full validation refuses or reads with a far pointer (seeded mutations)", () => {
    const rand = xorshift(0x9e3779b9);
    const interesting = [0, 1, 2, 3, 4, 5, 6, 7, 0xfc, 0xfd, 0xfe, 0xff, 0x80, 0x7f, 0x10];
    let accepted = 0;
    let refusedByFull = 0;
    const limits = [DEFAULT_LIMITS, resolveLimits({ nestingLimit: 4, traversalLimitWords: 40, decodeUnitLimit: 120 })];
    for (let round = 0; round < 20000; round++) {
      const base = HOT[rand(HOT.length)]![1];
      let s = base.slice();
      const edits = 1 + rand(3);
      for (let e = 0; e < edits; e++) {
        const at = rand(s.byteLength);
        s[at] = rand(2) === 0 ? interesting[rand(interesting.length)]! : rand(256);
      }
      if (rand(10) === 0) s = s.slice(0, 8 * rand(s.byteLength / 8 + 1));
      for (const lim of limits) {
        const verdict = full(s, lim);
        if (hotShape(s, lim)) {
          accepted++;
          expect(verdict, `round ${round}: ${Buffer.from(s).toString("hex")}`).toBe("near");
        } else if (verdict === "refused") refusedByFull++;
      }
    }
    // The mutations exercise both sides: many still hot, many refused by the full check.
    expect(accepted).toBeGreaterThan(1000);
    expect(refusedByFull).toBeGreaterThan(1000);
  });
});

/** The envelope fields a decoder fills, for comparison (`content` as its byte offset from the message start). */
function fields(env: fastpath.Envelope, start: number): Record<string, unknown> {
  const o: Record<string, unknown> = { which: env.which, id: env.id, hasCapTable: env.hasCapTable };
  if (env.which === fastpath.MSG_CALL) {
    Object.assign(o, {
      interfaceId: env.interfaceId,
      methodId: env.methodId,
      sendResultsTo: env.sendResultsTo,
      targetWhich: env.targetWhich,
      importedCap: env.importedCap,
      capTableAt: env.capTableAt,
    });
  } else if (env.which === fastpath.MSG_RETURN) {
    Object.assign(o, {
      retWhich: env.retWhich,
      releaseParamCaps: env.releaseParamCaps,
      noFinishNeeded: env.noFinishNeeded,
      takeFromOtherQuestion: env.takeFromOtherQuestion,
    });
  } else if (env.which === fastpath.MSG_FINISH) o.releaseResultCaps = env.releaseResultCaps;
  else o.referenceCount = env.referenceCount;
  if (env.which === fastpath.MSG_CALL || env.which === fastpath.MSG_RETURN) {
    o.content = env.content === null ? null : env.content.byteOffset - start;
  }
  return o;
}

/** What the dispatcher's decoders read from `s` (placed at byte 8 of a larger buffer, as in a socket read). */
function decoded(s: Uint8Array): Record<string, unknown> {
  const env = new fastpath.Envelope();
  if (fastpath.decodeControl(s, env)) return fields(env, 0);
  const m = fastpath.messageInPlace(s);
  const seg = m._capnp.segments[0]!;
  env.reset(seg, 64);
  expect(fastpath.decodeEnvelope(seg, 64, env)).toBe(true);
  const o = fields(env, seg.byteOffset);
  // The content struct's data section, read from the content pointer's own bytes.
  if (typeof o.content === "number") {
    const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
    const at = o.content;
    const lo = dv.getUint32(at, true);
    const hi = dv.getUint32(at + 4, true);
    const isNull = lo === 0 && hi === 0;
    o.dataAt = isNull ? -1 : at + 8 + (lo >> 2) * 8;
    o.dataWords = isNull ? 0 : hi & 0xffff;
  }
  return o;
}

/** What hotEnvelope reads from `s`, or null when it does not take it. */
function hot(s: Uint8Array, env = new fastpath.Envelope()): Record<string, unknown> | null {
  if (!hotEnvelope(s, DEFAULT_LIMITS, env)) return null;
  if (env.contentAt >= 0) {
    const m = fastpath.messageInPlace(s);
    const seg = m._capnp.segments[0]!;
    env.content = fastpath.pointerAt(capnp.Pointer, seg, seg.byteOffset + env.contentAt, 61);
    const o = fields(env, seg.byteOffset);
    o.dataAt = env.dataAt < 0 ? -1 : env.dataAt - s.byteOffset;
    o.dataWords = env.dataWords;
    return o;
  }
  return fields(env, 0);
}

/** `s` at byte 8 of a buffer holding other bytes around it, as a message inside a socket chunk. */
function inChunk(s: Uint8Array): Uint8Array {
  const b = new Uint8Array(s.byteLength + 24).fill(0xa5);
  b.set(s, 8);
  return b.subarray(8, 8 + s.byteLength);
}

describe("hotEnvelope", () => {
  it.each(HOT)("reads the envelope as the decoders do: %s", (_name, s) => {
    const v = inChunk(s);
    const got = hot(v);
    expect(got).not.toBeNull();
    expect(got).toEqual(decoded(v));
  });

  it("keeps reading right when one envelope goes from message to message (interface ids, fields of other kinds)", () => {
    const env = new fastpath.Envelope();
    const other = fastpath.newCallMessage(0x1234567890abcdefn, 9, structClass(8, 0), 0);
    const seq = [HOT[0]![1], HOT[3]![1], HOT[6]![1], bytesOf(other.msg), HOT[8]![1], HOT[0]![1], HOT[7]![1]];
    for (const s of seq) {
      const v = inChunk(s);
      expect(hot(v, env)).toEqual(decoded(v));
      env.clear();
    }
  });

  it("reads what the decoders read on every mutation it accepts (seeded)", () => {
    const rand = xorshift(0x2545f491);
    let accepted = 0;
    for (let round = 0; round < 5000; round++) {
      const s = HOT[rand(HOT.length)]![1].slice();
      const at = rand(s.byteLength);
      s[at] = rand(256);
      const v = inChunk(s);
      const got = hot(v);
      if (got === null) continue;
      accepted++;
      expect(full(v, DEFAULT_LIMITS), `round ${round}`).toBe("near");
      expect(got, `round ${round}: ${Buffer.from(s).toString("hex")}`).toEqual(decoded(v));
    }
    expect(accepted).toBeGreaterThan(1000);
  });
});
