import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as capnp from "capnp-ts";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { FrameDecoder } from "../dist/framing.js";
import { validateMessage, readMessage } from "../dist/validate.js";
import { LimitError, ProtocolError } from "../dist/errors.js";
import { capPtr, data, farPtr, listPtr, nestedChain, NULL, seg, segOf, segmentsOf, structPtr } from "./fixtures/wire.js";

const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url));
function framed(name: string): Uint8Array[] {
  const msgs = new FrameDecoder().push(new Uint8Array(readFileSync(fixtures + name)));
  expect(msgs).toHaveLength(1);
  return msgs[0]!;
}

/** Put segment 0's first word behind a root struct with one pointer (offsets stay valid). */
function wrap(segs: Uint8Array[]): Uint8Array[] {
  const s0 = new Uint8Array(segs[0]!.byteLength + 8);
  s0.set(seg(structPtr(0, 0, 1)));
  s0.set(segs[0]!, 8);
  return [s0, ...segs.slice(1)];
}

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}

function protocolError(segs: Uint8Array[], re: RegExp): void {
  const e = errorOf(() => validateMessage(segs));
  expect(e).toBeInstanceOf(ProtocolError);
  expect(e).not.toBeInstanceOf(LimitError);
  expect((e as ProtocolError).code).toBe("MP_ERR_PROTOCOL");
  expect(e.message).toMatch(re);
}

function limitError(segs: Uint8Array[], limits: object, re: RegExp): void {
  const e = errorOf(() => validateMessage(segs, limits));
  expect(e).toBeInstanceOf(LimitError);
  expect((e as LimitError).code).toBe("MP_ERR_LIMIT");
  expect(e.message).toMatch(re);
}

describe("validateMessage accepts valid messages", () => {
  it("capnp encode output, one and several segments (far pointers)", () => {
    const one = validateMessage(framed("sample.bin"));
    expect(one).toBeGreaterThan(10);
    const multi = framed("sample-multi.bin");
    expect(multi.length).toBeGreaterThan(1);
    expect(validateMessage(multi)).toBeGreaterThan(3000);
  });

  it("capnp-ts rpc messages across segments, then readMessage decodes them", () => {
    const m = new capnp.Message(new MultiSegmentArena());
    const call = m.initRoot(rpc.Message).initCall();
    call.questionId = 77;
    call.interfaceId = 0xfeedn;
    call.methodId = 3;
    const pa = call.initTarget().initPromisedAnswer();
    pa.questionId = 5;
    pa.initTransform(2).get(1).getPointerField = 4;
    const table = call.initParams().initCapTable(1200);
    for (let i = 0; i < 1200; i++) table.get(i).senderHosted = i;
    const segs = segmentsOf(m);
    expect(segs.length).toBeGreaterThan(1);
    validateMessage(segs);
    const back = readMessage(segs).getRoot(rpc.Message);
    expect(back.which()).toBe(rpc.Message.CALL);
    expect(back.call.questionId).toBe(77);
    expect(back.call.target.promisedAnswer.transform.get(1).getPointerField).toBe(4);
    expect(back.call.params.capTable.get(1199).senderHosted).toBe(1199);
  });

  it("readMessage copies views into larger buffers (capnp-ts needs offset 0)", () => {
    const m = new capnp.Message();
    m.initRoot(rpc.Message).initFinish().questionId = 9;
    const raw = new Uint8Array(m.toArrayBuffer());
    const big = new Uint8Array(raw.byteLength + 13);
    big.set(raw, 13);
    const segs = new FrameDecoder().push(big.subarray(13))[0]!;
    expect(segs[0]!.byteOffset).not.toBe(0);
    expect(readMessage(segs).getRoot(rpc.Message).finish.questionId).toBe(9);
  });

  it("null root, empty struct, capability pointers, double-far pointers", () => {
    expect(validateMessage([seg(NULL)])).toBe(0);
    expect(validateMessage([seg(structPtr(-1, 0, 0))])).toBe(0);
    // root struct with two pointers: a capability, and a double-far to a struct in segment 2
    const s0 = seg(structPtr(0, 0, 2), capPtr(5), farPtr(true, 0, 1));
    const s1 = seg(farPtr(false, 1, 2), structPtr(0, 1, 1)); // landing pad: far to seg 2 word 1, then tag
    const s2 = seg(data(0), data(0xabcdef), NULL);
    expect(validateMessage([s0, s1, s2])).toBe(2 + 2);
    // single far with landing pad in segment 1 pointing at a text list behind it
    const t0 = seg(farPtr(false, 0, 1));
    const t1 = seg(listPtr(0, 2, 5), data(0x6c6c6568, 0x6f));
    expect(validateMessage(wrap([t0, t1]))).toBe(1 + 1);
    // composite list of 2 structs (1 data word, 1 pointer each), second pointing to a bit list
    const c = seg(listPtr(0, 7, 4), structPtr(2, 1, 1), data(1), NULL, data(2), listPtr(0, 1, 64), data(-1, -1));
    expect(validateMessage(wrap([c]))).toBe(1 + 5 + 1);
  });
});

describe("validateMessage limits", () => {
  it("maxSegments", () => {
    const segs = [seg(NULL), seg(), seg()];
    expect(() => validateMessage(segs, { maxSegments: 3 })).not.toThrow();
    limitError(segs, { maxSegments: 2 }, /3 segments, more than the limit maxSegments = 2/);
  });

  it("maxMessageBytes (segment table included)", () => {
    const segs = [seg(NULL, NULL, NULL)]; // 8 + 24 bytes
    expect(() => validateMessage(segs, { maxMessageBytes: 32 })).not.toThrow();
    limitError(segs, { maxMessageBytes: 31 }, /32 bytes, more than the limit maxMessageBytes = 31/);
  });

  it("traversalLimitWords: total words visited", () => {
    const sample = framed("sample.bin");
    const used = validateMessage(sample);
    expect(() => validateMessage(sample, { traversalLimitWords: used })).not.toThrow();
    limitError(sample, { traversalLimitWords: used - 1 }, /traversalLimitWords = \d+/);
  });

  it("traversalLimitWords: repeated pointers to one object count each time (amplification)", () => {
    // A pointer list of 1000 entries, each pointing at the same 1000-word struct behind it:
    // 3000 + 3000 * 3000 words visited from a 48 KB message.
    const n = 3000;
    const words = [listPtr(0, 6, n)];
    for (let i = 0; i < n; i++) words.push(structPtr(n - 1 - i, 3000, 0));
    for (let i = 0; i < 3000; i++) words.push(data(i));
    const segs = wrap([segOf(words)]);
    expect(validateMessage(segs, { traversalLimitWords: 1 + n + n * 3000 })).toBe(1 + n + n * 3000);
    limitError(segs, {}, /traversalLimitWords = 8388608/);
  });

  it("traversalLimitWords: lists of void and of zero-sized structs count one word per element", () => {
    const voids = wrap([seg(listPtr(0, 0, (1 << 29) - 1))]);
    limitError(voids, {}, /traversalLimitWords/);
    expect(validateMessage(wrap([seg(listPtr(0, 0, 100))]))).toBe(1 + 100);
    // composite list of 2^28 zero-sized structs in 0 words
    const tag: [number, number] = [((1 << 28) << 2) >>> 0, 0];
    limitError(wrap([seg(listPtr(0, 7, 0), tag)]), {}, /traversalLimitWords/);
  });

  it("nestingLimit: a chain of structs", () => {
    expect(() => validateMessage(nestedChain(64))).not.toThrow();
    limitError(nestedChain(65), {}, /nestingLimit = 64/);
    expect(() => validateMessage(nestedChain(3), { nestingLimit: 3 })).not.toThrow();
    limitError(nestedChain(4), { nestingLimit: 3 }, /nestingLimit = 3/);
    expect(() => validateMessage(nestedChain(2000), { nestingLimit: 2000 })).not.toThrow();
  });

  it("nestingLimit: lists count one level (composite list and its elements share one)", () => {
    // root struct → pointer list → struct : 3 levels
    const s = [seg(structPtr(0, 0, 1), listPtr(0, 6, 1), structPtr(-1, 0, 0))];
    expect(() => validateMessage(s, { nestingLimit: 3 })).not.toThrow();
    limitError(s, { nestingLimit: 2 }, /nestingLimit = 2/);
    // root → composite list (1 element with a pointer) → struct: 3 levels
    const c = [seg(structPtr(0, 0, 1), listPtr(0, 7, 1), structPtr(1, 0, 1), structPtr(-1, 0, 0))];
    expect(() => validateMessage(c, { nestingLimit: 3 })).not.toThrow();
    limitError(c, { nestingLimit: 2 }, /nestingLimit = 2/);
  });

  it("a struct pointing at itself (a cycle) ends at the nesting limit", () => {
    limitError([seg(structPtr(0, 0, 1), structPtr(-1, 0, 1))], {}, /nestingLimit|traversalLimitWords/);
  });
});

describe("validateMessage rejects malformed messages with ProtocolError", () => {
  it("no segments, empty first segment, segment not whole words", () => {
    protocolError([], /no segments/);
    protocolError([new Uint8Array(0)], /no root pointer/);
    protocolError([new Uint8Array(12)], /not a whole number of words/);
  });
  it("struct and list out of bounds", () => {
    protocolError(wrap([seg(structPtr(0, 2, 0), data(1))]), /struct pointer out of bounds/);
    protocolError(wrap([seg(structPtr(-5, 0, 0))]), /struct pointer out of bounds/);
    protocolError(wrap([seg(listPtr(0, 4, 3), data(1))]), /list pointer out of bounds/);
    protocolError(wrap([seg(listPtr(0, 1, 65), data(1))]), /list pointer out of bounds/);
    protocolError(wrap([seg(listPtr(3, 6, 1))]), /list pointer out of bounds/);
  });
  it("composite lists: tag kind, element overrun, out of bounds", () => {
    protocolError(wrap([seg(listPtr(0, 7, 1), listPtr(0, 1, 1), data(0))]), /tag is not a struct/);
    protocolError(wrap([seg(listPtr(0, 7, 1), structPtr(2, 1, 0), data(0))]), /elements overrun/);
    protocolError(wrap([seg(listPtr(0, 7, 5), structPtr(1, 1, 0), data(0))]), /composite list out of bounds/);
  });
  it("far pointers: unknown segment, pad out of bounds, far to far, far to capability, bad double-far", () => {
    protocolError(wrap([seg(farPtr(false, 0, 1))]), /unknown segment 1/);
    protocolError(wrap([seg(farPtr(false, 1, 1)), seg(NULL)]), /landing pad out of bounds/);
    protocolError(wrap([seg(farPtr(true, 0, 1)), seg(farPtr(false, 0, 0))]), /landing pad out of bounds/);
    protocolError(wrap([seg(farPtr(false, 0, 1)), seg(farPtr(false, 0, 1))]), /landing pad is another far/);
    protocolError(wrap([seg(farPtr(false, 0, 1)), seg(capPtr(0))]), /far pointer to a capability/);
    protocolError(wrap([seg(farPtr(true, 0, 1)), seg(structPtr(0, 0, 0), structPtr(0, 0, 0))]), /double-far landing pad/);
    protocolError(wrap([seg(farPtr(true, 0, 1)), seg(farPtr(false, 0, 7), structPtr(0, 0, 0))]), /unknown segment 7/);
    protocolError(wrap([seg(farPtr(true, 0, 1)), seg(farPtr(false, 0, 0), capPtr(0))]), /tag is not a struct or list/);
    protocolError(wrap([seg(farPtr(true, 0, 1)), seg(farPtr(false, 0, 0), structPtr(0, 5, 0))]), /struct pointer out of bounds/);
  });
  it("a root that is not a struct (list, capability, far pointer to a list)", () => {
    protocolError([seg(listPtr(0, 2, 0))], /root is not a struct pointer/);
    protocolError([seg(capPtr(0))], /root is not a struct pointer/);
    protocolError([seg(farPtr(false, 0, 1)), seg(listPtr(0, 2, 0))], /root is not a struct pointer/);
    protocolError([seg(farPtr(true, 0, 1)), seg(farPtr(false, 0, 0), listPtr(0, 2, 0))], /root is not a struct pointer/);
    expect(validateMessage([seg(farPtr(false, 0, 1)), seg(structPtr(0, 1, 0), data(5))])).toBe(1);
  });
  it("unknown 'other' pointer kinds", () => {
    protocolError(wrap([seg([7, 0])]), /unknown 'other' pointer/);
  });
});

describe("validateMessage speed", () => {
  it("walks 200k pointers quickly", () => {
    const n = 200_000;
    const words = [listPtr(0, 6, n)];
    for (let i = 0; i < n; i++) words.push(structPtr(n - 1 - i, 1, 0));
    words.push(data(42));
    const segs = wrap([segOf(words)]);
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) validateMessage(segs);
    const ms = (performance.now() - t0) / 5;
    expect(validateMessage(segs)).toBe(1 + 2 * n);
    expect(ms).toBeLessThan(200); // typically a few ms
  });
});
