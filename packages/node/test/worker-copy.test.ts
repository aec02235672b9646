// The bridge's struct copy (worker/copy.ts): a struct with data, text, nested structs, lists of
// every shape and capabilities (in pointer fields, pointer lists and composite-list elements)
// survives pack → unpack into an engine-owned struct, with its capabilities renumbered into the
// destination's cap table and each reference accounted for. The raw-word fast path (raw-copy.ts)
// gives the same bytes as the general one, and hands far pointers and capabilities to it; a block
// goes over a destination's old struct on the raw words only when that struct has no pointer set
// and its segment has room (else capnp-ts's erase and allocate, far pointers included).
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import { localCapability, readCap, writeCap, type Capability, type Server } from "@multiprocess-ts/capnp";
import { capFromTable, packStruct, packStructGeneral, unpackGeneral, unpackStructInto } from "../dist/worker/copy.js";
import { packRaw, pointerFieldNull, structFieldView, unpackBlock } from "../dist/worker/raw-copy.js";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";

class Item extends capnp.Struct {
  static override readonly _capnp = { displayName: "Item", id: "1", size: new capnp.ObjectSize(8, 2) };
}
class Root extends capnp.Struct {
  static override readonly _capnp = { displayName: "Root", id: "2", size: new capnp.ObjectSize(16, 6) };
}

function named(name: string): { server: Server & { released: number }; cap: Capability } {
  const server = { name, released: 0, dispatch() {}, onRelease() { this.released++; } };
  return { server, cap: localCapability(server) };
}

describe("struct copy across threads", () => {
  it("copies data, text, nested structs, lists and capabilities, renumbering the cap table", () => {
    const a = named("a");
    const b = named("b");
    const src = new capnp.Message();
    const root = src.initRoot(Root);
    capnp.Struct.setInt32(0, -7, root);
    capnp.Struct.setFloat64(8, 2.5, root);
    capnp.Struct.setText(0, "héllo", root);
    writeCap(root, 1, a.cap);
    const nested = capnp.Struct.initStructAt(2, Item, root);
    capnp.Struct.setUint32(0, 99, nested);
    writeCap(nested, 0, b.cap);
    capnp.Struct.setText(1, "inner", nested);
    const items = capnp.Struct.initList(3, capnp.CompositeList(Item), 3, root);
    capnp.Struct.setUint32(0, 10, items.get(0));
    capnp.Struct.setUint32(0, 11, items.get(1));
    writeCap(items.get(1), 1, a.cap); // the same cap again, inside a composite list
    capnp.Struct.setText(0, "third", items.get(2));
    const ints = capnp.Struct.initList(4, capnp.Int32List, 3, root);
    ints.set(0, 1);
    ints.set(1, -2);
    ints.set(2, 3);
    const bools = capnp.Struct.initList(5, capnp.BoolList, 10, root);
    bools.set(9, true);

    // Pack: each distinct source table index is reported once, in order of appearance.
    const seen: number[] = [];
    const buf = packStruct(root, (i) => seen.push(i));
    expect(seen).toHaveLength(3); // a (ptr 1), b (nested), a again at a different table index

    // Unpack into an engine-style destination whose table already has an entry.
    const dstMsg = new capnp.Message();
    const other = named("other");
    const dst = dstMsg.initRoot(Root);
    writeCap(dst, 0, other.cap); // table entry 0 in dst, overwritten below
    const caps = seen.map((i) => capFromTable(src, i));
    unpackStructInto(buf, dst, caps);

    expect(capnp.Struct.getInt32(0, dst)).toBe(-7);
    expect(capnp.Struct.getFloat64(8, dst)).toBe(2.5);
    expect(capnp.Struct.getText(0, dst)).toBe("héllo");
    const ca = readCap(dst, 1)!;
    expect(ca.localServer()).toBe(a.server);
    const dn = capnp.Struct.getStruct(2, Item, dst);
    expect(capnp.Struct.getUint32(0, dn)).toBe(99);
    expect(capnp.Struct.getText(1, dn)).toBe("inner");
    const cb = readCap(dn, 0)!;
    expect(cb.localServer()).toBe(b.server);
    const dItems = capnp.Struct.getList(3, capnp.CompositeList(Item), dst);
    expect(dItems.getLength()).toBe(3);
    expect(capnp.Struct.getUint32(0, dItems.get(0))).toBe(10);
    expect(capnp.Struct.getUint32(0, dItems.get(1))).toBe(11);
    expect(readCap(dItems.get(0), 1)).toBeNull();
    const ca2 = readCap(dItems.get(1), 1)!;
    expect(ca2.localServer()).toBe(a.server);
    expect(capnp.Struct.getText(0, dItems.get(2))).toBe("third");
    expect([...capnp.Struct.getList(4, capnp.Int32List, dst).toArray()]).toEqual([1, -2, 3]);
    const dBools = capnp.Struct.getList(5, capnp.BoolList, dst);
    expect(dBools.getLength()).toBe(10);
    expect(dBools.get(9)).toBe(true);
    expect(dBools.get(8)).toBe(false);

    // References: dropping every handle and both messages' tables releases each server once.
    for (const c of [ca, cb, ca2, a.cap, b.cap, other.cap]) c.close();
    for (const m of [src, dstMsg]) {
      const table = (m as unknown as { _capnp: { capTable?: { release(): void }[] } })._capnp.capTable ?? [];
      for (const h of table) h?.release();
    }
    expect([a.server.released, b.server.released, other.server.released]).toEqual([1, 1, 1]);
  });

  it("packs into one unframed segment that grows past its first buffer (large content)", () => {
    const x = named("x");
    const src = new capnp.Message();
    const root = src.initRoot(Root);
    const text = "x".repeat(20_000);
    capnp.Struct.setText(0, text, root);
    const items = capnp.Struct.initList(3, capnp.CompositeList(Item), 300, root);
    for (let i = 0; i < 300; i++) capnp.Struct.setUint32(0, i, items.get(i));
    writeCap(items.get(299), 1, x.cap);
    const seen: number[] = [];
    const buf = packStruct(root, (i) => seen.push(i));
    expect(buf.byteLength).toBeGreaterThan(20_000);
    // No stream framing: the buffer is segment 0 itself, the root pointer in its first word.
    const raw = new capnp.Message(buf, false, true);
    expect(capnp.Struct.getText(0, capnp.Struct.getStruct(0, Root, raw.getRoot(Item)))).toBe(text);
    const dstMsg = new capnp.Message();
    const dst = dstMsg.initRoot(Root);
    unpackStructInto(buf, dst, seen.map((i) => capFromTable(src, i)));
    expect(capnp.Struct.getText(0, dst)).toBe(text);
    const dItems = capnp.Struct.getList(3, capnp.CompositeList(Item), dst);
    expect(dItems.getLength()).toBe(300);
    expect(capnp.Struct.getUint32(0, dItems.get(123))).toBe(123);
    const c = readCap(dItems.get(299), 1)!;
    expect(c.localServer()).toBe(x.server);
    c.close();
    x.cap.close();
    for (const m of [src, dstMsg]) {
      const table = (m as unknown as { _capnp: { capTable?: { release(): void }[] } })._capnp.capTable ?? [];
      for (const h of table) h?.release();
    }
    expect(x.server.released).toBe(1);
  });

  it("copies a null struct as null and takes ownership of the caps even when it fails", () => {
    const src = new capnp.Message();
    const root = src.initRoot(Root);
    const buf = packStruct(capnp.Struct.getPointer(2, root), () => {
      throw new Error("no caps expected");
    });
    const dst = new capnp.Message().initRoot(Item);
    unpackStructInto(buf, dst, []);
    expect(capnp.Pointer.isNull(dst)).toBe(true);

    const x = named("x");
    const withCap = new capnp.Message().initRoot(Root);
    writeCap(withCap, 1, x.cap);
    const packed = packStruct(withCap, () => {});
    const dst2 = new capnp.Message().initRoot(Root);
    // One descriptor short: unpack throws, and still closes what it was given.
    const given = x.cap.dup();
    expect(() => unpackStructInto(packed, dst2, [])).toThrow(/has no descriptor/);
    // An extra, unused descriptor is closed too.
    unpackStructInto(packStruct(new capnp.Message().initRoot(Item), () => {}), new capnp.Message().initRoot(Item), [given]);
    expect(given.closed).toBe(true);
    x.cap.close();
    const table = (withCap.segment.message as unknown as { _capnp: { capTable?: { release(): void }[] } })._capnp.capTable ?? [];
    for (const h of table) h?.release();
    expect(x.server.released).toBe(1);
  });

  it("the raw fast path packs and unpacks the same bytes as the general path", () => {
    const src = new capnp.Message();
    const root = src.initRoot(Root);
    capnp.Struct.setInt32(0, -7, root);
    capnp.Struct.setFloat64(8, 2.5, root);
    capnp.Struct.setText(0, "héllo", root);
    capnp.Struct.initStructAt(1, Item, root); // an empty nested struct (all zero, non-null)
    const nested = capnp.Struct.initStructAt(2, Item, root);
    capnp.Struct.setUint32(0, 99, nested);
    capnp.Struct.setText(1, "inner", nested);
    const items = capnp.Struct.initList(3, capnp.CompositeList(Item), 3, root);
    capnp.Struct.setUint32(0, 10, items.get(0));
    capnp.Struct.setText(0, "third", items.get(2));
    const texts = capnp.Struct.initList(4, capnp.TextList, 3, root);
    texts.set(0, "a");
    texts.set(2, "ccc");
    const bools = capnp.Struct.initList(5, capnp.BoolList, 70, root);
    bools.set(69, true);
    const fast = packRaw(root, () => {
      throw new Error("no caps expected");
    });
    expect(fast).toBeDefined();
    const general = packStructGeneral(root, () => {});
    // Same layout; the general path's arena buffer only has a zero tail more.
    expect(new Uint8Array(general, 0, fast!.byteLength)).toEqual(new Uint8Array(fast!));
    expect(new Uint8Array(general, fast!.byteLength).every((b) => b === 0)).toBe(true);
    // Lists of every other element size.
    for (const [List, x] of [[capnp.VoidList, undefined], [capnp.Uint8List, 7], [capnp.Int16List, -7], [capnp.Float64List, 0.5]] as const) {
      const r = new capnp.Message().initRoot(Root);
      const l = capnp.Struct.initList(3, List as never, 9, r) as unknown as { set(i: number, x: unknown): void };
      if (x !== undefined) l.set(8, x);
      const b = packRaw(r, () => {})!;
      expect(new Uint8Array(b)).toEqual(new Uint8Array(packStructGeneral(r, () => {}), 0, b.byteLength));
    }

    // Unpacked as one block, or field by field: the same destination content.
    const d1 = new capnp.Message().initRoot(Root);
    expect(unpackBlock(fast!, d1)).toBe(true);
    const d2 = new capnp.Message().initRoot(Root);
    unpackGeneral(fast!, d2, []);
    expect(new Uint8Array(packStructGeneral(d1, () => {}))).toEqual(new Uint8Array(packStructGeneral(d2, () => {})));
    expect(capnp.Struct.getText(0, capnp.Struct.getList(3, capnp.CompositeList(Item), d1).get(2))).toBe("third");
    expect(capnp.Struct.getList(5, capnp.BoolList, d1).get(69)).toBe(true);
  });

  it("the raw fast path leaves far pointers and capabilities to the general path", () => {
    // A first segment too small for the root struct: the root pointer is a far pointer.
    const src = new capnp.Message(new MultiSegmentArena([new ArrayBuffer(8)]));
    const root = src.initRoot(Root);
    capnp.Struct.setText(0, "y".repeat(40_000), root);
    expect(src.getSegment(0).getUint32(0) & 3).toBe(2);
    let reported = 0;
    expect(packRaw(root, () => reported++)).toBeUndefined();
    expect(reported).toBe(0);
    const buf = packStruct(root, () => {});
    const dst = new capnp.Message().initRoot(Root);
    unpackStructInto(buf, dst, []);
    expect(capnp.Struct.getText(0, dst)).toBe("y".repeat(40_000));

    // A capability inside: packed fast (renumbered), never unpacked as a block.
    const x = named("x");
    const withCap = new capnp.Message().initRoot(Root);
    writeCap(withCap, 1, x.cap);
    writeCap(capnp.Struct.initStructAt(2, Item, withCap), 0, x.cap);
    const seen: number[] = [];
    const packed = packRaw(withCap, (i) => seen.push(i))!;
    expect(seen).toEqual([0, 1]);
    expect(unpackBlock(packed, new capnp.Message().initRoot(Root))).toBeUndefined();
    x.cap.close();
    const table = (withCap.segment.message as unknown as { _capnp: { capTable?: { release(): void }[] } })._capnp.capTable ?? [];
    for (const h of table) h?.release();
    expect(x.server.released).toBe(1);
  });
  it("places a block over a destination on the raw words only when its old struct holds no pointer and its segment has room", () => {
    const src = new capnp.Message().initRoot(Item);
    capnp.Struct.setUint32(0, 77, src);
    capnp.Struct.setText(1, "moved", src);
    const buf = packRaw(src, () => {})!;
    const read = (d: capnp.Struct): [number, string] => {
      const it = capnp.Struct.getStruct(0, Item, d);
      return [capnp.Struct.getUint32(0, it), capnp.Struct.getText(1, it)];
    };
    // Old struct with data but no pointer (a request's params as newCall makes them, filled in):
    // its words are zeroed, the block goes at the segment's end, the pointer is a near one.
    const m1 = new capnp.Message();
    const d1 = m1.initRoot(Root);
    const oldInner = capnp.Struct.initStructAt(0, Item, d1);
    capnp.Struct.setUint32(0, 0xdeadbeef, oldInner);
    const seg1 = m1.getSegment(0);
    const innerAt = oldInner.byteOffset + 8 + ((seg1.getInt32(oldInner.byteOffset) >> 2) * 8);
    const end1 = seg1.byteLength;
    const holder = capnp.Struct.getPointer(0, d1);
    expect(unpackBlock(buf, holder)).toBe(true);
    expect(seg1.getUint32(innerAt)).toBe(0); // the old struct's data word
    expect(seg1.byteLength).toBe(end1 + buf.byteLength - 16);
    expect(seg1.getUint32(holder.byteOffset) & 3).toBe(0); // near struct pointer
    expect(read(d1)).toEqual([77, "moved"]);

    // Old struct with a pointer set: capnp-ts's erase and allocate take it, same result.
    const m2 = new capnp.Message();
    const d2 = m2.initRoot(Root);
    const old2 = capnp.Struct.initStructAt(0, Item, d2);
    capnp.Struct.setText(1, "old text", old2);
    expect(pointerFieldNull(old2, 1)).toBe(false);
    expect(pointerFieldNull(old2, 0)).toBe(true);
    expect(pointerFieldNull(old2, 5)).toBe(true); // beyond its pointer section
    expect(unpackBlock(buf, capnp.Struct.getPointer(0, d2))).toBe(true);
    expect(read(d2)).toEqual([77, "moved"]);

    // A full segment: the block goes to a new segment behind a far pointer (capnp-ts's way).
    const m3 = new capnp.Message(new MultiSegmentArena([new ArrayBuffer(8 + 8 * 6 + 8 * 2)]));
    const d3 = m3.initRoot(Root);
    capnp.Struct.initStructAt(0, Item, d3);
    expect(m3.getSegment(0).hasCapacity(buf.byteLength - 16)).toBe(false);
    expect(unpackBlock(buf, capnp.Struct.getPointer(0, d3))).toBe(true);
    expect(m3.getSegment(0).getUint32(capnp.Struct.getPointer(0, d3).byteOffset) & 3).toBe(2);
    expect(read(d3)).toEqual([77, "moved"]);
    expect(pointerFieldNull(capnp.Struct.getPointer(0, d3), 0)).toBe(false); // a far pointer: general path
  });
  it("views a struct field on the raw words as capnp-ts's getStruct does, and leaves other shapes to it", () => {
    const m = new capnp.Message();
    const root = m.initRoot(Root);
    const item = capnp.Struct.initStructAt(2, Item, root);
    capnp.Struct.setUint32(0, 5, item);
    const view = structFieldView(Item, root, 2)!;
    expect(view).toBeInstanceOf(Item);
    const ref = capnp.Struct.getStruct(2, Item, root);
    expect([view.segment, view.byteOffset, view._capnp.depthLimit]).toEqual([ref.segment, ref.byteOffset, ref._capnp.depthLimit]);
    capnp.Struct.setText(1, "via the view", view); // writable like getStruct's
    expect(capnp.Struct.getText(1, ref)).toBe("via the view");
    expect(structFieldView(Item, root, 1)).toBeUndefined(); // null: getStruct initializes it
    expect(structFieldView(Item, root, 9)).toBeUndefined(); // past the pointer section
    expect(structFieldView(Root, root, 2)).toBeUndefined(); // smaller than the view's class
    // A far pointer (the field's struct in another segment): capnp-ts's way.
    const far = new capnp.Message(new MultiSegmentArena([new ArrayBuffer(8 + 8 * 8)]));
    const farRoot = far.initRoot(Root);
    capnp.Struct.initStructAt(2, Item, farRoot);
    expect(far.getSegment(0).getUint32(capnp.Struct.getPointer(2, farRoot).byteOffset) & 3).toBe(2);
    expect(structFieldView(Item, farRoot, 2)).toBeUndefined();
  });
});
