/**
 * The dispatcher's validation fast path (rpc/hot-shape.ts): it must accept the hot messages a
 * scalar call exchanges (so the fast path is taken), and it must never accept a message the full
 * validation (`validateRpcMessageNear`) would refuse or read with a far pointer: checked on the
 * real messages, on limits at and below what they need, and on seeded random mutations of them.
 */
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS, fastpath } from "@multiprocess-ts/capnp";
import { hotShape } from "../dist/rpc/hot-shape.js";
import { validateRpcMessageNear } from "../dist/validate.js";
import { resolveLimits, type ReaderLimits } from "../dist/limits.js";

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
    let seed = 0x9e3779b9;
    const rand = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
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
