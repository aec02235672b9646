import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as capnp from "capnp-ts";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { FrameDecoder } from "../dist/framing.js";
import { validateMessage, validateRpcMessage, readMessage } from "../dist/validate.js";
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
    const noDecodeBudget = { decodeAmplification: Infinity, decodeUnitLimit: Infinity };
    expect(validateMessage(segs, { traversalLimitWords: 1 + n + n * 3000, ...noDecodeBudget })).toBe(1 + n + n * 3000);
    limitError(segs, noDecodeBudget, /traversalLimitWords = 8388608/);
    // With the default decode budget (64 units per word + 64 Ki), it stops far earlier.
    limitError(segs, {}, /decode budget of 449728 units/);
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

describe("validateRpcMessage (rpc.capnp envelope)", () => {
  function rpcMsg(build: (m: rpc.Message) => void, multi = false): Uint8Array[] {
    const m = multi ? new capnp.Message(new MultiSegmentArena()) : new capnp.Message();
    build(m.initRoot(rpc.Message));
    return segmentsOf(m);
  }
  function rpcError(segs: Uint8Array[], re: RegExp): void {
    expect(() => validateMessage(segs)).not.toThrow(); // structurally fine
    const e = errorOf(() => validateRpcMessage(segs));
    expect(e).toBeInstanceOf(ProtocolError);
    expect(e.message).toMatch(re);
  }
  function setWord(segs: Uint8Array[], seg: number, word: number, w: readonly [number, number]): void {
    const dv = new DataView(segs[seg]!.buffer, segs[seg]!.byteOffset, segs[seg]!.byteLength);
    dv.setUint32(word * 8, w[0], true);
    dv.setUint32(word * 8 + 4, w[1], true);
  }

  it("accepts every message kind capnp-ts builds, in one segment and across segments", () => {
    for (const multi of [false, true]) {
      const msgs = [
        rpcMsg((m) => (m.initBootstrap().questionId = 1), multi),
        rpcMsg((m) => {
          const c = m.initCall();
          const pa = c.initTarget().initPromisedAnswer();
          pa.initTransform(2).get(0).getPointerField = 1;
          const t = c.initParams().initCapTable(3);
          t.get(0).senderHosted = 1;
          t.get(1).initReceiverAnswer().initTransform(1);
          t.get(2).setNone();
        }, multi),
        rpcMsg((m) => m.initReturn().initException().reason = "nope", multi),
        rpcMsg((m) => m.initReturn().initResults(), multi),
        rpcMsg((m) => (m.initFinish().questionId = 3), multi),
        rpcMsg((m) => m.initResolve().initCap().senderPromise = 2, multi),
        rpcMsg((m) => m.initResolve().initException().reason = "", multi),
        rpcMsg((m) => (m.initRelease().id = 4), multi),
        rpcMsg((m) => m.initDisembargo().initTarget().importedCap = 2, multi),
        rpcMsg((m) => m.initAbort().reason = "bye", multi),
        rpcMsg((m) => m.initUnimplemented().initCall().initTarget().importedCap = 1, multi),
      ];
      for (const segs of msgs) expect(() => validateRpcMessage(segs)).not.toThrow();
    }
  });

  it("accepts rpc messages encoded by C++ `capnp encode` (when installed)", () => {
    const tool = ["/usr/bin/capnp", "/usr/local/bin/capnp"].find((p) => existsSync(p));
    const schema = "/usr/include/capnp/rpc.capnp";
    if (tool === undefined || !existsSync(schema)) return; // the capnp-ts-built messages above still run
    const texts = [
      "(call = (questionId = 3, target = (promisedAnswer = (questionId = 1, transform = [(getPointerField = 0)])), " +
        "interfaceId = 123, methodId = 2, params = (capTable = [(senderHosted = 1), " +
        "(receiverAnswer = (questionId = 2, transform = [])), (none = void)])))",
      '(return = (answerId = 4, releaseParamCaps = false, exception = (reason = "boom", type = overloaded)))',
      "(return = (answerId = 1, results = (capTable = [(senderHosted = 0)])))",
      "(resolve = (promiseId = 2, cap = (senderPromise = 5)))",
      "(disembargo = (target = (importedCap = 3), context = (senderLoopback = 9)))",
      '(abort = (reason = "bye", type = disconnected))',
      "(unimplemented = (bootstrap = (questionId = 0)))",
      "(finish = (questionId = 3, releaseResultCaps = false))",
    ];
    for (const t of texts) {
      const bytes = execFileSync(tool, ["encode", schema, "Message"], { input: t, env: { ...process.env, PWD: process.cwd() } });
      const msgs = new FrameDecoder().push(new Uint8Array(bytes));
      expect(msgs).toHaveLength(1);
      expect(() => validateRpcMessage(msgs[0]!), t).not.toThrow();
    }
  });

  it("rejects a list where a struct is expected (Message body, Call.target)", () => {
    // Message.finish pointer (root struct at word 1: 1 data word, pointer at word 2) → a list.
    const f = rpcMsg((m) => (m.initFinish().questionId = 3));
    setWord(f, 0, 2, listPtr(0, 2, 0));
    rpcError(f, /Message body is not a struct pointer/);
    const c = rpcMsg((m) => (m.initCall().initTarget().importedCap = 5));
    // Call struct at word 3 (3 data words): target pointer at word 6.
    setWord(c, 0, 6, listPtr(0, 2, 0));
    rpcError(c, /Call.target is not a struct pointer/);
  });

  it("rejects a capability where the cap table list is expected, and short cap-table elements", () => {
    const segs = rpcMsg((m) => m.initCall().initParams().initCapTable(1).get(0).senderHosted = 1);
    const words = segs[0]!.byteLength / 8;
    // find the capTable pointer: the only composite list pointer in the message
    let at = -1;
    const dv = new DataView(segs[0]!.buffer, segs[0]!.byteOffset, segs[0]!.byteLength);
    for (let w = 0; w < words; w++) if ((dv.getUint32(w * 8, true) & 3) === 1 && (dv.getUint32(w * 8 + 4, true) & 7) === 7) at = w;
    expect(at).toBeGreaterThan(0);
    const capCopy = segs.map((s) => s.slice());
    setWord(capCopy, 0, at, capPtr(0));
    rpcError(capCopy, /capTable is not a list of structs/);
    // shrink the element size in the tag (1 data word, 1 pointer → 0 data words, 1 pointer)
    const lo = dv.getUint32(at * 8, true);
    const tagWord = at + 1 + ((lo | 0) >> 2);
    const hi = dv.getUint32(tagWord * 8 + 4, true);
    const shortCopy = segs.map((s) => s.slice());
    const sdv = new DataView(shortCopy[0]!.buffer);
    sdv.setUint32(tagWord * 8 + 4, (hi & 0xffff0000) | 0, true);
    rpcError(shortCopy, /elements are smaller than the schema's/);
  });

  it("rejects Text that is not a byte list or not NUL-terminated", () => {
    const segs = rpcMsg((m) => (m.initAbort().reason = "abc"));
    const dv = new DataView(segs[0]!.buffer, segs[0]!.byteOffset, segs[0]!.byteLength);
    const bytes = segs[0]!;
    // the text bytes "abc\0" live in the last word
    const last = bytes.byteLength - 8;
    expect([...bytes.subarray(last, last + 4)]).toEqual([97, 98, 99, 0]);
    const noNul = segs.map((s) => s.slice());
    noNul[0]![last + 3] = 33;
    rpcError(noNul, /reason is Text that is not NUL-terminated/);
    // Exception struct: find its first pointer (the reason) and make it a word list
    let reasonAt = -1;
    for (let w = 0; w * 8 < bytes.byteLength; w++) {
      if ((dv.getUint32(w * 8, true) & 3) === 1 && (dv.getUint32(w * 8 + 4, true) & 7) === 2) reasonAt = w;
    }
    const wrongKind = segs.map((s) => s.slice());
    const wdv = new DataView(wrongKind[0]!.buffer);
    wdv.setUint32(reasonAt * 8 + 4, (wdv.getUint32(reasonAt * 8 + 4, true) & ~7) | 5, true);
    expect(() => validateMessage(wrongKind)).toThrow(); // 4 words do not fit: structural error first
    wdv.setUint32(reasonAt * 8 + 4, (1 << 3) | 5, true); // one 8-byte element: fits
    rpcError(wrongKind, /reason is not Text/);
  });
});
