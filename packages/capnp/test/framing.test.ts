import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as capnp from "capnp-ts";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import {
  DEFAULT_LIMITS,
  encodeFrame,
  encodeFrameToBytes,
  FrameDecoder,
  frameHeaderBytes,
} from "../dist/framing.js";
import { LimitError, ProtocolError } from "../dist/errors.js";
import { concat, data, listPtr, nestedChain, segOf, segmentsOf, structPtr } from "./fixtures/wire.js";

const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url));
const sample = new Uint8Array(readFileSync(fixtures + "sample.bin"));
const sampleMulti = new Uint8Array(readFileSync(fixtures + "sample-multi.bin"));

function decodeAll(bytes: Uint8Array, limits?: ConstructorParameters<typeof FrameDecoder>[0]): Uint8Array[][] {
  const d = new FrameDecoder(limits);
  const out = d.push(bytes);
  d.end();
  return out;
}

function reframe(msgs: Uint8Array[][]): Uint8Array {
  return concat(msgs.flatMap((m) => encodeFrame(m)));
}

describe("DEFAULT_LIMITS", () => {
  it("are 512 segments, 64 MiB, 8 Mi words, 64 levels", () => {
    expect(DEFAULT_LIMITS).toEqual({
      maxSegments: 512,
      maxMessageBytes: 64 * 1024 * 1024,
      traversalLimitWords: 8 * 1024 * 1024,
      nestingLimit: 64,
      decodeUnitLimit: 16 * 1024 * 1024,
      decodeAmplification: 64,
    });
  });
  it("bad configuration is a RangeError", () => {
    expect(() => new FrameDecoder({ maxSegments: 0 })).toThrow(RangeError);
    expect(() => new FrameDecoder({ nestingLimit: 1.5 })).toThrow(/nestingLimit/);
    expect(new FrameDecoder({ maxSegments: 3 }).limits.maxSegments).toBe(3);
  });
});

describe("encodeFrame", () => {
  it("writes count-1 and sizes in words, padded to a word, and passes segments through", () => {
    const s1 = new Uint8Array(16);
    const s2 = new Uint8Array(8);
    const parts = encodeFrame([s1, s2]);
    expect(parts).toHaveLength(3);
    expect(parts[1]).toBe(s1);
    expect(parts[2]).toBe(s2);
    expect([...parts[0]!]).toEqual([1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect(frameHeaderBytes(1)).toBe(8);
    expect(frameHeaderBytes(2)).toBe(16);
    expect(frameHeaderBytes(3)).toBe(16);
    expect(frameHeaderBytes(4)).toBe(24);
  });
  it("pads a segment that is not whole words", () => {
    const bytes = encodeFrameToBytes([new Uint8Array([1, 2, 3])]);
    expect([...bytes]).toEqual([0, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0]);
  });
  it("rejects an empty segment list", () => {
    expect(() => encodeFrame([])).toThrow(RangeError);
  });
});

describe("FrameDecoder round trips", () => {
  it("capnp encode output (single segment) is reproduced byte for byte", () => {
    const msgs = decodeAll(sample);
    expect(msgs).toHaveLength(1);
    expect(msgs[0]).toHaveLength(1);
    expect(reframe(msgs)).toEqual(sample);
  });

  it("capnp encode output (multi segment) is reproduced byte for byte", () => {
    const msgs = decodeAll(sampleMulti);
    expect(msgs).toHaveLength(1);
    expect(msgs[0]!.length).toBeGreaterThan(1);
    expect(reframe(msgs)).toEqual(sampleMulti);
  });

  it("matches a live `capnp encode` when the tool is installed", () => {
    const tool = ["/usr/bin/capnp", "/usr/local/bin/capnp"].find((p) => existsSync(p));
    if (tool === undefined) return; // the checked-in fixtures above still cover the bytes
    const text =
      '(a = -7, b = 4000000000, flag = true, text = "héllo", data = 0x"deadbeef", ints = [1, -2, 3], ' +
      'inners = [(id = 1, name = "x"), (id = 2, child = (id = 3, name = "deep"))], texts = ["p", "qq", ""], ' +
      "nested = (id = 9, child = (id = 10, child = (id = 11))), bits = [true, false, true], voids = [void, void])";
    const live = new Uint8Array(execFileSync(tool, ["encode", "framing.capnp", "Sample"], { cwd: fixtures, input: text, env: { ...process.env, PWD: fixtures } }));
    expect(live).toEqual(sample);
    expect(reframe(decodeAll(live))).toEqual(live);
  });

  it("C++ `capnp decode` reads our framing of a multi-segment capnp-ts rpc message (when installed)", () => {
    const tool = ["/usr/bin/capnp", "/usr/local/bin/capnp"].find((p) => existsSync(p));
    const schema = "/usr/include/capnp/rpc.capnp";
    if (tool === undefined || !existsSync(schema)) return; // covered by the capnp-ts round trips below
    const m = new capnp.Message(new MultiSegmentArena());
    const call = m.initRoot(rpc.Message).initCall();
    call.questionId = 42;
    call.methodId = 7;
    const table = call.initParams().initCapTable(700);
    for (let i = 0; i < 700; i++) table.get(i).senderHosted = i;
    const segs = segmentsOf(m);
    expect(segs.length).toBeGreaterThan(1);
    const out = execFileSync(tool, ["decode", "--short", schema, "Message"], {
      input: encodeFrameToBytes(segs),
      cwd: fixtures,
      env: { ...process.env, PWD: fixtures },
    }).toString();
    expect(out).toMatch(/questionId = 42/);
    expect(out).toMatch(/methodId = 7/);
    expect(out).toMatch(/senderHosted = 699\b/);
    expect(out.match(/senderHosted = /g)).toHaveLength(700);
  });

  it("segments of several messages in one chunk are views of the chunk (no copy)", () => {
    const stream = concat([sample, sampleMulti, sample]);
    const msgs = decodeAll(stream);
    expect(msgs).toHaveLength(3);
    for (const m of msgs) for (const s of m) expect(s.buffer).toBe(stream.buffer);
    expect(reframe(msgs)).toEqual(stream);
  });

  it("capnp-ts Message.toArrayBuffer() matches encodeFrame of its segments (1 and many segments)", () => {
    const one = new capnp.Message();
    const r = one.initRoot(rpc.Message).initCall();
    r.questionId = 42;
    r.interfaceId = 0x1234567890abcdefn;
    r.initTarget().importedCap = 7;
    const many = new capnp.Message(new MultiSegmentArena());
    const call = many.initRoot(rpc.Message).initCall();
    call.questionId = 1;
    const content = call.initParams().initCapTable(300);
    for (let i = 0; i < 300; i++) content.get(i).senderHosted = i;
    for (const m of [one, many]) {
      const segs = segmentsOf(m);
      const expected = new Uint8Array(m.toArrayBuffer());
      expect(encodeFrameToBytes(segs)).toEqual(expected);
      const back = decodeAll(expected);
      expect(back).toHaveLength(1);
      expect(back[0]).toEqual(segs);
    }
    expect(segmentsOf(many).length).toBeGreaterThan(1);
  });

  it("split delivery at every offset gives the same messages", () => {
    const small3 = encodeFrameToBytes([new Uint8Array(8).fill(1), new Uint8Array(16).fill(2), new Uint8Array(0)]);
    const cases: [Uint8Array, number][] = [
      [concat([sample, small3, sample]), 1], // every offset
      [concat([sample, sampleMulti, small3]), 97], // large: every 97th offset
    ];
    for (const [stream, step] of cases) {
      const expected = decodeAll(stream);
      const expectedBytes = Buffer.from(reframe(expected));
      const shape = expected.map((m) => m.map((x) => x.byteLength).join(",")).join(";");
      for (let cut = 0; cut <= stream.byteLength; cut += step) {
        const d = new FrameDecoder();
        const got = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
        d.end();
        if (got.map((m) => m.map((x) => x.byteLength).join(",")).join(";") !== shape || !expectedBytes.equals(reframe(got))) {
          expect.fail(`split at ${cut} of ${stream.byteLength} gave different messages`);
        }
      }
    }
  });

  it("three-way splits at many offset pairs of a small stream, and 1-byte chunks", () => {
    const stream = concat([sample, sample]);
    const expected = Buffer.from(reframe(decodeAll(stream)));
    let checked = 0;
    for (let a = 0; a <= stream.byteLength; a += 3) {
      for (let b = a; b <= stream.byteLength; b += 5) {
        const d = new FrameDecoder();
        const got = [
          ...d.push(stream.subarray(0, a)),
          ...d.push(stream.subarray(a, b)),
          ...d.push(stream.subarray(b)),
        ];
        if (got.length !== 2 || !expected.equals(reframe(got))) expect.fail(`split at ${a}/${b} differs`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(1000);
    const d = new FrameDecoder();
    const got: Uint8Array[][] = [];
    for (let i = 0; i < sampleMulti.byteLength; i++) got.push(...d.push(sampleMulti.subarray(i, i + 1)));
    expect(d.idle).toBe(true);
    expect(reframe(got)).toEqual(sampleMulti);
  });

  it("a message with only empty segments", () => {
    const bytes = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const msgs = decodeAll(bytes);
    expect(msgs).toEqual([[new Uint8Array(0), new Uint8Array(0)]]);
    const d = new FrameDecoder();
    expect([...d.push(bytes.subarray(0, 5)), ...d.push(bytes.subarray(5))]).toHaveLength(1);
  });
});

  it("a message spanning chunks: each segment is a whole ArrayBuffer of exactly its size", () => {
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const segs = [new Uint8Array(24).fill(3), new Uint8Array(0), big, new Uint8Array(8).fill(9)];
    const frame = encodeFrameToBytes(segs);
    for (const step of [7, 4096, 65536, 100_000, frame.byteLength - 1]) {
      const d = new FrameDecoder();
      const got: Uint8Array[][] = [];
      for (let o = 0; o < frame.byteLength; o += step) got.push(...d.push(frame.subarray(o, o + step)));
      expect(d.idle).toBe(true);
      expect(got).toHaveLength(1);
      const m = got[0]!;
      expect(m.map((s) => s.byteLength)).toEqual([24, 0, 1 << 20, 8]);
      for (let i = 0; i < m.length; i++) {
        const s = m[i]!;
        expect(s.byteOffset).toBe(0);
        expect(s.buffer.byteLength).toBe(s.byteLength);
        expect(Buffer.from(s).equals(Buffer.from(segs[i]!))).toBe(true);
      }
      expect(new Set(m.map((s) => s.buffer)).size).toBe(4);
    }
  });

  it("a message spanning chunks is followed by messages in the same chunk", () => {
    const big = encodeFrameToBytes([new Uint8Array(16).fill(1), new Uint8Array(200_000).fill(2)]);
    const stream = concat([sample, big, sample, big]);
    const expected = Buffer.from(reframe(decodeAll(stream)));
    const d = new FrameDecoder();
    const got: Uint8Array[][] = [];
    for (let o = 0; o < stream.byteLength; o += 65_536) got.push(...d.push(stream.subarray(o, o + 65_536)));
    expect(got).toHaveLength(4);
    expect(Buffer.from(reframe(got)).equals(expected)).toBe(true);
  });

describe("FrameDecoder limits and bad input", () => {
  function header(count: number, sizes: number[]): Uint8Array {
    const b = new Uint8Array(frameHeaderBytes(count));
    const dv = new DataView(b.buffer);
    dv.setUint32(0, count - 1, true);
    sizes.forEach((s, i) => dv.setUint32(4 + 4 * i, s, true));
    return b;
  }

  it("maxSegments: a table claiming too many segments is a LimitError naming the limit", () => {
    const d = new FrameDecoder({ maxSegments: 4 });
    expect(() => d.push(header(5, [1, 1, 1, 1, 1]))).toThrow(LimitError);
    expect(() => new FrameDecoder({ maxSegments: 4 }).push(header(5, []).subarray(0, 4))).toThrow(/maxSegments = 4/);
    // 4 segments is fine
    expect(new FrameDecoder({ maxSegments: 4 }).push(concat([header(4, [0, 0, 0, 0])]))).toHaveLength(1);
    // Default: a count of 2^32 (0xffffffff + 1) is rejected before allocating anything.
    const huge = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
    expect(() => new FrameDecoder().push(huge)).toThrow(/segments, more than the limit maxSegments = 512/);
  });

  it("maxMessageBytes: a frame claiming too many bytes is a LimitError naming the limit", () => {
    const d = new FrameDecoder({ maxMessageBytes: 64 });
    expect(() => d.push(header(1, [8]))).toThrow(/maxMessageBytes = 64/); // 8 + 64 bytes
    expect(new FrameDecoder({ maxMessageBytes: 64 }).push(concat([header(1, [7]), new Uint8Array(56)]))).toHaveLength(1);
    // Default 64 MiB: a segment of 0xffffffff words.
    const e = (() => {
      try {
        new FrameDecoder().push(header(1, [0xffffffff]));
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(LimitError);
    expect((e as LimitError).code).toBe("MP_ERR_LIMIT");
    expect((e as LimitError).message).toMatch(/maxMessageBytes = 67108864/);
  });

  it("one-segment frames: a whole frame over maxMessageBytes is refused, not delivered as a view", () => {
    // The decoder's one-segment fast path must refuse what the general path refuses.
    const whole = concat([header(1, [8]), new Uint8Array(64)]); // 72 bytes, all in the chunk
    expect(() => new FrameDecoder({ maxMessageBytes: 64 }).push(whole)).toThrow(LimitError);
    expect(() => new FrameDecoder({ maxMessageBytes: 71 }).push(whole)).toThrow(/maxMessageBytes = 71/);
    const got = new FrameDecoder({ maxMessageBytes: 72 }).push(whole);
    expect(got).toHaveLength(1);
    expect(got[0]![0]!.byteLength).toBe(64);
    expect(got[0]![0]!.buffer).toBe(whole.buffer); // a view, no copy
  });

  it("decode(chunk, onMessage, end) decodes only the first `end` bytes of the chunk", () => {
    const a = encodeFrameToBytes([segOf([structPtr(0, 1, 0), data(7)])]);
    const b = encodeFrameToBytes([segOf([structPtr(0, 1, 0), data(9)])]);
    const buf = concat([a, b, new Uint8Array(24).fill(0xff)]); // trailing bytes not read
    const d = new FrameDecoder();
    const got: Uint8Array[][] = [];
    d.decode(buf, (m) => got.push(m), a.byteLength + 8); // a, then b's table
    expect(got.map((m) => m[0]!.byteLength)).toEqual([a.byteLength - 8]);
    expect(d.idle).toBe(false);
    d.decode(buf.subarray(a.byteLength + 8), (m) => got.push(m), b.byteLength - 8);
    expect(got).toHaveLength(2);
    expect(Array.from(got[1]![0]!)).toEqual(Array.from(b.subarray(8)));
    d.end(); // nothing pending: the 0xff bytes were never fed
  });

  it("traversalLimitWords (with validate: true): the message before the bad one is still delivered", () => {
    const wide = encodeFrameToBytes([segOf([structPtr(0, 0, 1), listPtr(0, 5, 100), ...Array.from({ length: 100 }, (_, i) => data(i))])]);
    const ok = encodeFrameToBytes(nestedChain(2));
    expect(new FrameDecoder({ traversalLimitWords: 101 }, { validate: true }).push(wide)).toHaveLength(1);
    const d = new FrameDecoder({ traversalLimitWords: 100 }, { validate: true });
    const got: Uint8Array[][] = [];
    expect(() => d.decode(concat([ok, wide]), (m) => got.push(m))).toThrow(/traversalLimitWords = 100/);
    expect(got).toHaveLength(1);
    expect(() => d.push(ok)).toThrow(LimitError);
    // without validate, the decoder only frames
    expect(new FrameDecoder({ traversalLimitWords: 100 }).push(wide)).toHaveLength(1);
  });

  it("nestingLimit (with validate: true)", () => {
    const deep = encodeFrameToBytes(nestedChain(9));
    expect(new FrameDecoder({ nestingLimit: 9 }, { validate: true }).push(deep)).toHaveLength(1);
    const e = (() => {
      try {
        new FrameDecoder({ nestingLimit: 8 }, { validate: true }).push(deep);
      } catch (err) {
        return err as Error;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(LimitError);
    expect(e!.message).toMatch(/nestingLimit = 8/);
    // and malformed pointers are ProtocolErrors
    expect(() => new FrameDecoder({}, { validate: true }).push(encodeFrameToBytes([segOf([structPtr(5, 1, 0)])]))).toThrow(
      /struct pointer out of bounds/,
    );
  });

  it("a table claiming a huge message does not allocate it before the bytes arrive", () => {
    const claim = new Uint8Array(8);
    new DataView(claim.buffer).setUint32(4, (60 * 1024 * 1024) / 8, true); // 1 segment of 60 MiB
    const decoders: FrameDecoder[] = [];
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 20; i++) {
      const d = new FrameDecoder();
      d.push(claim);
      d.push(new Uint8Array(100));
      decoders.push(d);
    }
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(grown).toBeLessThan(20 * 1024 * 1024); // 20 claims of 60 MiB would be 1.2 GiB
    expect(decoders.every((d) => d.bufferedBytes === 108)).toBe(true);
  });

  it("after an error the decoder keeps failing with the same error", () => {
    const d = new FrameDecoder({ maxSegments: 1 });
    let first: unknown;
    try {
      d.push(header(2, [0, 0]));
    } catch (e) {
      first = e;
    }
    expect(first).toBeInstanceOf(LimitError);
    expect(() => d.push(sample)).toThrow(first as Error);
  });

  it("end() inside a message is a ProtocolError", () => {
    const d = new FrameDecoder();
    d.push(sample.subarray(0, 20));
    expect(d.idle).toBe(false);
    expect(d.bufferedBytes).toBe(20);
    expect(() => d.end()).toThrow(ProtocolError);
    const d2 = new FrameDecoder();
    d2.push(sample.subarray(0, 3));
    expect(() => d2.end()).toThrow(/stream ended inside a message/);
  });
});
