// SlotMap (threads/slot-map.ts) behaves as a Map: get/has/set/delete/size/clear, insertion-order
// iteration (the slot's entry stays first), SameValueZero keys (NaN, -0), and the slot is reused
// once the Map behind it is empty again. Compared operation by operation against a real Map.
import { describe, expect, it } from "vitest";
import { SlotMap } from "@multiprocess-ts/runtime";

function same<K, V>(a: Map<K, V>, b: Map<K, V>): void {
  expect(a.size).toBe(b.size);
  expect([...a]).toEqual([...b]);
  expect([...a.keys()]).toEqual([...b.keys()]);
  expect([...a.values()]).toEqual([...b.values()]);
  const seen: [K, V][] = [];
  a.forEach((v, k, m) => {
    expect(m).toBe(a);
    seen.push([k, v]);
  });
  expect(seen).toEqual([...b.entries()]);
}

describe("SlotMap", () => {
  it("matches a Map over a sequence of sets and deletes, order included", () => {
    const s = new SlotMap<number, string>();
    const m = new Map<number, string>();
    const ops: [op: "set" | "delete", k: number][] = [
      ["set", 1], ["set", 2], ["set", 3], ["delete", 1], ["set", 4], ["set", 1], ["delete", 2],
      ["delete", 3], ["delete", 4], ["delete", 1], ["set", 5], ["set", 6], ["delete", 5], ["set", 5],
      ["set", 6], ["delete", 9],
    ];
    let i = 0;
    for (const [op, k] of ops) {
      if (op === "set") expect(s.set(k, `v${i}`)).toBe(s), m.set(k, `v${i}`);
      else expect(s.delete(k)).toBe(m.delete(k));
      i++;
      same(s, m);
      for (const key of [1, 2, 3, 4, 5, 6, 9]) {
        expect(s.has(key)).toBe(m.has(key));
        expect(s.get(key)).toBe(m.get(key));
      }
    }
    s.clear();
    m.clear();
    same(s, m);
    expect(s.get(5)).toBeUndefined();
    s.set(7, "x");
    expect([...s]).toEqual([[7, "x"]]);
  });

  it("uses a Map's key equality: NaN finds NaN, -0 is 0, objects by identity", () => {
    const s = new SlotMap<unknown, number>();
    s.set(NaN, 1);
    expect(s.get(NaN)).toBe(1);
    expect(s.has(NaN)).toBe(true);
    s.set(-0, 2);
    expect(s.get(0)).toBe(2);
    expect([...s.keys()].some((k) => Object.is(k, -0))).toBe(false);
    const a = {};
    s.set(a, 3);
    expect(s.get({})).toBeUndefined();
    expect(s.get(a)).toBe(3);
    expect(s.delete(NaN)).toBe(true);
    expect(s.size).toBe(2);
    expect(String(s)).toBe("[object SlotMap]");
  });
});
