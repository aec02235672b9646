/**
 * The message attacks of issue 11 (and a few more), as Call messages to FooInterface built by
 * hand: each is small on the wire but claims far more decode work than its bytes, or is big and
 * shaped to be slow to materialise. `scale` sets the claimed size, so CI runs them small and the
 * benchmark at full size; the bound is asserted through `decodeCost` / `decodeBudget` counters.
 * Threading: pure functions, any thread.
 */

import { callMessage, type CallTarget, type Words } from "./wire.js";

/** FooInterface (proto/test/foo.capnp). */
export const FOO_INTERFACE_ID = 0x90de09db457f4d3bn;
export const FOO_METHOD = { add: 0, mapSize: 1, pass: 2, passDataPointers: 22, passData: 24 } as const;

/** A Call that attacks the decoder. */
export interface MessageAttack {
  name: string;
  what: string;
  /** The full size for `scale`. */
  fullScale: number;
  /** A size small enough for CI that still passes the default decode budget by far. */
  ciScale: number;
  /** True when the message is legitimately shaped and must be served (within budget), false when refused. */
  served: (scale: number) => boolean;
  build: (qid: number, bootstrapQid: number, scale: number) => Uint8Array[];
}

function target(bootstrapQid: number, methodId: number): CallTarget {
  return { bootstrapQid, interfaceId: FOO_INTERFACE_ID, methodId };
}

/** Params struct with `ptrs` pointers at the content pointer; returns its first pointer word. */
function params(w: Words, ptrWord: number, ptrs: number): number {
  const s = w.alloc(ptrs);
  w.structPtr(ptrWord, s, 0, ptrs);
  return s;
}

/** mapSize(List(Pair)) whose list is a composite list of `n` zero-word elements (0 bytes each). */
const zeroSizedComposite: MessageAttack = {
  name: "zero-sized composite",
  what: "mapSize: List(Pair) tagged with n zero-word elements in 0 words",
  fullScale: 8_000_000,
  ciScale: 1_000_000,
  served: () => false,
  build: (qid, bq, n) =>
    callMessage(qid, target(bq, FOO_METHOD.mapSize), (w, p) => {
      const s = params(w, p, 1);
      const tag = w.alloc(1);
      w.listPtr(s, tag, 7, 0);
      w.tag(tag, n, 0, 0);
    }),
};

/** pass(FooStruct) whose vectorBool is a List(Bool) of `n` elements (n / 8 bytes). */
const boolList: MessageAttack = {
  name: "List(Bool)",
  what: "pass: FooStruct.vectorBool of n bits",
  fullScale: 500_000_000,
  ciScale: 40_000_000,
  // n bits cost n units; a message of n/8 bytes has 8n + 64 Ki units, capped at 16 Mi.
  served: (n) => n <= 16 * 1024 * 1024 - 4096,
  build: (qid, bq, n) =>
    callMessage(qid, target(bq, FOO_METHOD.pass), (w, p) => {
      const s = params(w, p, 1);
      const fs = w.alloc(6); // FooStruct: 1 data word, 5 pointers
      w.structPtr(s, fs, 1, 5);
      const words = Math.ceil(n / 64);
      const bits = w.alloc(words);
      w.listPtr(fs + 1 + 2, bits, 1, n);
      for (let i = 0; i < Math.min(words, 64); i++) w.u32(bits + i, 0, 0x55555555);
    }),
};

/** passDataPointers(List(Data)) of `n` null entries (8 bytes each). */
const nullDataList: MessageAttack = {
  name: "List(Data) of nulls",
  what: "passDataPointers: List(Data) of n null entries",
  fullScale: 8_000_000,
  ciScale: 200_000,
  served: () => true,
  build: (qid, bq, n) =>
    callMessage(qid, target(bq, FOO_METHOD.passDataPointers), (w, p) => {
      const s = params(w, p, 1);
      const list = w.alloc(n);
      w.listPtr(s, list, 6, n);
    }),
};

/** mapSize with an extra params pointer to a pointer DAG of `depth` levels: 2^depth visits. */
const pointerDag: MessageAttack = {
  name: "pointer DAG",
  what: "mapSize: an extra params pointer to 2 x 2 x ... shared structs (2^depth visits)",
  fullScale: 21,
  ciScale: 21,
  served: (d) => d < 10,
  build: (qid, bq, depth) =>
    callMessage(qid, target(bq, FOO_METHOD.mapSize), (w, p) => {
      const s = params(w, p, 2);
      let at = s + 1;
      let next = w.alloc(2);
      w.structPtr(at, next, 0, 2);
      for (let i = 0; i < depth; i++) {
        const here = next;
        next = w.alloc(2);
        w.structPtr(here, next, 0, 2);
        w.structPtr(here + 1, next, 0, 2);
        at = here;
      }
    }),
};

/** mapSize with an extra params pointer to a List(Void) of `n` elements (0 bytes). */
const voidList: MessageAttack = {
  name: "List(Void)",
  what: "mapSize: an extra params pointer to a List(Void) of n elements in 0 bytes",
  fullScale: 8_000_000,
  ciScale: 8_000_000,
  served: (n) => n < 60_000,
  build: (qid, bq, n) =>
    callMessage(qid, target(bq, FOO_METHOD.mapSize), (w, p) => {
      const s = params(w, p, 2);
      w.listPtr(s + 1, s + 2, 0, n);
    }),
};

/** mapSize(List(Pair(Text, Text))) of `n` pairs all pointing at one shared 8 KiB Text. */
const sharedText: MessageAttack = {
  name: "shared Text",
  what: "mapSize: n Pair elements whose Texts all point at one 8 KiB Text",
  fullScale: 100_000,
  ciScale: 20_000,
  served: () => false,
  build: (qid, bq, n) =>
    callMessage(qid, target(bq, FOO_METHOD.mapSize), (w, p) => {
      const s = params(w, p, 1);
      const list = w.alloc(1 + 2 * n);
      w.listPtr(s, list, 7, 2 * n);
      w.tag(list, n, 0, 2);
      const textWords = 1024;
      const text = w.alloc(textWords);
      for (let i = 0; i < textWords * 8 - 1; i++) w.byte(text, i, 0x61);
      for (let i = 0; i < n; i++) {
        w.listPtr(list + 1 + 2 * i, text, 2, textWords * 8);
        w.listPtr(list + 2 + 2 * i, text, 2, textWords * 8);
      }
    }),
};

/** mapSize({}) whose Payload carries a cap table of `n` `none` descriptors (the envelope, not the params). */
const capTableFlood: MessageAttack = {
  name: "cap table flood",
  what: "mapSize with an empty map and a cap table of n none descriptors (16 bytes each)",
  fullScale: 1_000_000,
  ciScale: 50_000,
  // 2 words + STRUCT_UNITS per descriptor: within 64 units per word, unless past decodeUnitLimit.
  served: (n) => n * 18 < 16 * 1024 * 1024 - 4096,
  build: (qid, bq, n) =>
    callMessage(qid, target(bq, FOO_METHOD.mapSize), (w, p) => {
      params(w, p, 1);
    }, n),
};

/** Every message attack, in the order the suite and the benchmark run them. */
export const MESSAGE_ATTACKS: readonly MessageAttack[] = [zeroSizedComposite, boolList, nullDataList, pointerDag, voidList, sharedText, capTableFlood];

/** A well-formed add(a, b) Call (what an honest client sends), for raw peers. */
export function addCall(qid: number, bootstrapQid: number, a: number, b: number): Uint8Array[] {
  return callMessage(qid, target(bootstrapQid, FOO_METHOD.add), (w, p) => {
    const s = w.alloc(1);
    w.structPtr(p, s, 1, 0);
    w.u32(s, 0, a);
    w.u32(s, 4, b);
  });
}

/** An honest passData(Data) call carrying `bytes` bytes: the server echoes them (a reply of that size). */
export function passDataCall(qid: number, bootstrapQid: number, bytes: number): Uint8Array[] {
  return callMessage(qid, target(bootstrapQid, FOO_METHOD.passData), (w, p) => {
    const s = params(w, p, 1);
    const d = w.alloc(Math.ceil(bytes / 8));
    w.listPtr(s, d, 2, bytes);
  });
}

/**
 * A Call refused over the decode budget (a List(Void) of 8 M elements in 0 bytes) whose cap table
 * names `exportIds` as capabilities the sender exports: the server imports and releases them at
 * once (the sender sees one Release per ID).
 */
export function refusedCallWithCaps(qid: number, bootstrapQid: number, exportIds: readonly number[]): Uint8Array[] {
  return callMessage(
    qid,
    target(bootstrapQid, FOO_METHOD.mapSize),
    (w, p) => {
      const s = params(w, p, 2);
      w.listPtr(s + 1, s + 2, 0, 8_000_000);
    },
    exportIds,
  );
}
