// The fast primitive accessors of the generated code's Struct (src/gen/struct.ts) against
// capnp-ts's own: the same bytes written, the same values read, and capnp-ts's behaviour (its
// errors included) wherever the fast path declines: composite-list elements, a struct smaller
// than the field's offset, far pointers, default masks.
// Threading: the test's thread (pure functions, no connections).
import * as capnp from "capnp-ts";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import { describe, expect, it } from "vitest";
import { Struct } from "@multiprocess-ts/runtime/gen/capnp";

const KINDS = [
  ["Int8", 1, -5], ["Uint8", 1, 250], ["Int16", 2, -30000], ["Uint16", 2, 65000], ["Int32", 4, -2_000_000_000],
  ["Uint32", 4, 4_000_000_000], ["Float32", 4, 1.5], ["Float64", 8, -2.25], ["Int64", 8, -(2n ** 62n)], ["Uint64", 8, 2n ** 63n + 5n],
] as const;

type Acc = Record<string, (...a: unknown[]) => unknown>;
const fast = Struct as unknown as Acc;
const ref = capnp.Struct as unknown as Acc;

class Wide extends Struct {
  static readonly _capnp = { displayName: "Wide", id: "f0000000000000c1", size: new capnp.ObjectSize(24, 1) };
}

function fresh(): Wide {
  return new capnp.Message().initRoot(Wide);
}

function bytes(s: capnp.Struct): Uint8Array {
  const seg = s.segment;
  return new Uint8Array(seg.buffer, 0, seg.byteLength).slice();
}

describe("gen Struct fast accessors", () => {
  it("is capnp-ts's Struct with only the primitive accessors replaced", () => {
    expect(Object.getPrototypeOf(Struct)).toBe(capnp.Struct);
    expect(fresh()).toBeInstanceOf(capnp.Struct);
    expect(fast.getInt32).not.toBe(ref.getInt32);
    expect(fast.getText).toBe(ref.getText);
  });

  it("writes the bytes capnp-ts writes and reads what it reads, at every offset", () => {
    for (const [kind, len, v] of KINDS) {
      for (let off = 0; off + len <= 24; off += len) {
        const a = fresh();
        const b = fresh();
        fast[`set${kind}`]!(off, v, a);
        ref[`set${kind}`]!(off, v, b);
        expect(bytes(a)).toEqual(bytes(b));
        expect(fast[`get${kind}`]!(off, b)).toEqual(ref[`get${kind}`]!(off, b));
        expect(fast[`get${kind}`]!(off, a)).toEqual(v);
      }
    }
    for (let bit = 0; bit < 24 * 8; bit += 13) {
      const a = fresh();
      const b = fresh();
      fast.setBit!(bit, true, a);
      ref.setBit!(bit, true, b);
      expect(bytes(a)).toEqual(bytes(b));
      expect(fast.getBit!(bit, b)).toBe(true);
      expect(fast.getBit!(bit + 1, b)).toBe(ref.getBit!(bit + 1, b));
      fast.setBit!(bit, false, a);
      expect(fast.getBit!(bit, a)).toBe(false);
    }
  });

  it("declines to capnp-ts for list elements, smaller structs, far pointers and default masks", () => {
    // Composite-list elements.
    const m = new capnp.Message();
    const holder = m.initRoot(Wide);
    const list = capnp.Struct.initList(0, capnp.CompositeList(Wide), 3, holder);
    fast.setInt32!(4, 77, list.get(2));
    expect(ref.getInt32!(4, list.get(2))).toBe(77);
    expect(ref.getInt32!(4, list.get(1))).toBe(0);
    expect(fast.getInt32!(4, list.get(2))).toBe(77);
    // A field beyond a smaller struct: capnp-ts's error.
    class Small extends Struct {
      static readonly _capnp = { displayName: "Small", id: "f0000000000000c2", size: new capnp.ObjectSize(8, 0) };
    }
    const small = new capnp.Message().initRoot(Small);
    expect(() => fast.getInt32!(8, small)).toThrow();
    expect(() => ref.getInt32!(8, small)).toThrow();
    expect(() => fast.setInt32!(8, 1, small)).toThrow();
    // A struct behind a far pointer (the first segment holds only the root pointer).
    const fm = new capnp.Message(new MultiSegmentArena([new ArrayBuffer(8)]), false);
    const far = fm.initRoot(Wide);
    expect(fm._capnp.segments.length).toBe(2);
    expect(new DataView(fm._capnp.segments[0]!.buffer).getUint32(0, true) & 3).toBe(2); // far
    fast.setUint16!(2, 513, far);
    expect(ref.getUint16!(2, far)).toBe(513);
    expect(fast.getUint16!(2, far)).toBe(513);
    // Default masks: capnp-ts's own XOR semantics.
    const mask = new DataView(new Uint8Array([0xff, 0, 0, 0, 0, 0, 0, 0]).buffer);
    const a = fresh();
    const b = fresh();
    fast.setUint8!(3, 7, a, mask);
    ref.setUint8!(3, 7, b, mask);
    expect(bytes(a)).toEqual(bytes(b));
    expect(fast.getUint8!(3, a, mask)).toBe(7);
  });
});
