// writeData and writeDataElement (adopt.ts): a large caller buffer (a Data field, or an element
// of a List(Data)) becomes a segment of the outgoing message without a copy, the wire bytes stay those of capnp-ts's copy, and no in-process reader (a server or
// caller in the same vat, a memory transport's peer) ever holds a view of the adopted buffer.
// Threading: loop thread (the test's thread).
import * as capnp from "capnp-ts";
import { describe, expect, it } from "vitest";
import { ADOPT_MIN_BYTES, encodeFrameToBytes, fastpath, isAdoptedBuffer, localCapability, writeData, writeDataElement } from "@multiprocess-ts/capnp";
import type { IncomingCall, Server } from "@multiprocess-ts/capnp";
import { Box, CALC, M, call, makePair } from "./rpc-helpers.js";

const { newCallMessage, newReturnMessage } = fastpath;

/** The segments of an outgoing message, as the engine hands them to a transport. */
function segmentsOf(m: capnp.Message): Uint8Array[] {
  return m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength));
}

function pattern(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

/** Byte equality without vitest's element-wise diff (slow on MiB-sized arrays). */
function same(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** The frame bytes of a Call whose Box params carry `v` at Data slot 1, written by `write`. */
function callFrame(v: Uint8Array, write: (b: Box, v: Uint8Array) => void, text?: string): { bytes: Uint8Array; msg: capnp.Message } {
  const { msg, params } = newCallMessage(CALC, M.echo, Box);
  if (text !== undefined) params.setText(0, text);
  write(params, v);
  params.a = 7;
  return { bytes: encodeFrameToBytes(segmentsOf(msg)), msg };
}

const copyWrite = (b: Box, v: Uint8Array): void => { capnp.Struct.initData(1, v.byteLength, b).copyBuffer(v); };
const adoptWrite = (b: Box, v: Uint8Array): void => { writeData(1, v, b); };

describe("writeData: adoption of large Data", () => {
  it("writes the same bytes as capnp-ts's copy, for sizes around the adoption threshold", () => {
    for (const n of [0, 8, 100, ADOPT_MIN_BYTES - 8, ADOPT_MIN_BYTES - 1, ADOPT_MIN_BYTES, ADOPT_MIN_BYTES + 1, ADOPT_MIN_BYTES + 8, 65_536, 1 << 20, (1 << 20) + 4]) {
      const v = pattern(n, n);
      expect(same(callFrame(v, adoptWrite).bytes, callFrame(v, copyWrite).bytes), `size ${n}`).toBe(true);
      // With a Text written first (the landing pad then goes after it in segment 0).
      expect(same(callFrame(v, adoptWrite, "x".repeat(200)).bytes, callFrame(v, copyWrite, "x".repeat(200)).bytes), `size ${n} after text`).toBe(true);
    }
  });

  it("adopts a whole word-sized ArrayBuffer of at least ADOPT_MIN_BYTES (no copy), and nothing else", () => {
    const whole = pattern(1 << 16);
    const { msg } = callFrame(whole, adoptWrite);
    expect(msg._capnp.segments.map((s) => s.buffer)).toContain(whole.buffer);
    expect(isAdoptedBuffer(whole.buffer)).toBe(true);

    const cases: [string, Uint8Array][] = [
      ["a view at an offset", new Uint8Array(new ArrayBuffer(1 << 16), 8, 1 << 15)],
      ["a view of part of its buffer", new Uint8Array(new ArrayBuffer(1 << 16), 0, 1 << 15)],
      ["a length that is not a multiple of 8", pattern((1 << 15) + 3)],
      ["a small buffer", pattern(ADOPT_MIN_BYTES - 8)],
      ["a SharedArrayBuffer", new Uint8Array(new SharedArrayBuffer(1 << 15))],
    ];
    for (const [what, v] of cases) {
      const m = callFrame(v, adoptWrite).msg;
      expect(m._capnp.segments.some((s) => s.buffer === v.buffer), what).toBe(false);
      expect(isAdoptedBuffer(v.buffer), what).toBe(false);
    }
  });

  it("is not used for a single-segment message (the bytes are copied)", () => {
    const v = pattern(1 << 15);
    const m = new capnp.Message();
    const b = m.initRoot(Box);
    writeData(1, v, b);
    expect(m._capnp.segments).toHaveLength(1);
    expect(same(b.data(1), v)).toBe(true);
    expect(isAdoptedBuffer(v.buffer)).toBe(false);
  });

  it("results written into a Return message read back the caller's bytes", () => {
    const v = pattern(1 << 15, 3);
    const { msg, results: r } = newReturnMessage(Box);
    const results = r!;
    writeData(1, v, results);
    expect(msg._capnp.segments.some((s) => s.buffer === v.buffer)).toBe(true);
    expect(same(results.data(1), v)).toBe(true);
  });

  it("a server in the same vat gets its own copy of adopted params, a caller its own copy of adopted results", async () => {
    let kept: Uint8Array | null = null;
    const out = pattern(1 << 15, 9);
    const server: Server = {
      dispatch(c: IncomingCall): void {
        kept = c.params(Box).data(1);
        writeData(1, out, c.results(Box));
      },
    };
    const cap = localCapability(server);
    const arg = pattern(1 << 15, 5);
    const resp = await call(cap, M.echo, (b) => { writeData(1, arg, b); });
    const got = resp.results(Box).data(1);
    expect(same(got, out)).toBe(true);
    expect(same(kept, pattern(1 << 15, 5))).toBe(true);
    // Both owners write their buffers again: the other side's values do not change.
    arg.fill(0xee);
    out.fill(0xdd);
    expect(same(kept, pattern(1 << 15, 5))).toBe(true);
    expect(same(got, pattern(1 << 15, 9))).toBe(true);
    expect(got.buffer).not.toBe(out.buffer);
    resp.close();
    cap.close();
  });

  it("over a memory transport, the server's params do not keep the caller's adopted buffer", async () => {
    let kept: Uint8Array | null = null;
    const server: Server = {
      dispatch(c: IncomingCall): void {
        kept = c.params(Box).data(1);
        writeData(1, kept, c.results(Box)); // the echo adopts the server's own incoming segment
      },
    };
    await using p = makePair(server);
    const arg = pattern(1 << 16, 1);
    const resp = await call(p.boot, M.echo, (b) => { writeData(1, arg, b); });
    const got = resp.results(Box).data(1);
    expect(same(got, pattern(1 << 16, 1))).toBe(true);
    expect(kept!.buffer).not.toBe(arg.buffer);
    arg.fill(0);
    expect(same(kept, pattern(1 << 16, 1))).toBe(true);
    expect(same(got, pattern(1 << 16, 1))).toBe(true);
    resp.close();
    await p.dispose();
  });
});

/** The frame bytes of a Call whose Box params carry `vs` as a List(Data) at pointer slot 1. */
function listFrame(vs: Uint8Array[], write: (l: capnp.List<capnp.Data>, i: number, v: Uint8Array) => void): { bytes: Uint8Array; msg: capnp.Message; l: capnp.List<capnp.Data> } {
  const { msg, params } = newCallMessage(CALC, M.echo, Box);
  params.setText(0, "list");
  const l = capnp.Struct.initList(1, capnp.DataList, vs.length, params);
  vs.forEach((v, i) => write(l, i, v));
  return { bytes: encodeFrameToBytes(segmentsOf(msg)), msg, l };
}

const copyElement = (l: capnp.List<capnp.Data>, i: number, v: Uint8Array): void => {
  const d = l.get(i);
  capnp.List.initList(capnp.ListElementSize.BYTE, v.byteLength, d);
  d.copyBuffer(v);
};

describe("writeDataElement: adoption of large List(Data) elements", () => {
  it("writes the same bytes as capnp-ts's copy, for element sizes around the threshold, mixed in one list", () => {
    const sizes = [0, 8, ADOPT_MIN_BYTES - 8, ADOPT_MIN_BYTES, ADOPT_MIN_BYTES + 3, 65_536, 100, 1 << 20];
    const vs = sizes.map((n) => pattern(n, n));
    expect(same(listFrame(vs, writeDataElement).bytes, listFrame(vs, copyElement).bytes)).toBe(true);
    for (const v of vs) expect(same(listFrame([v], writeDataElement).bytes, listFrame([v], copyElement).bytes), `size ${v.byteLength}`).toBe(true);
  });

  it("adopts whole word-sized buffers of at least ADOPT_MIN_BYTES, copies the rest; elements read back", () => {
    const big = [pattern(1 << 16, 1), pattern(ADOPT_MIN_BYTES, 2)];
    const copied = [pattern(ADOPT_MIN_BYTES - 8, 3), new Uint8Array(new ArrayBuffer(1 << 16), 8, 1 << 12), pattern((1 << 15) + 5, 4)];
    const { msg, l } = listFrame([...big, ...copied], writeDataElement);
    const buffers = msg._capnp.segments.map((seg) => seg.buffer);
    for (const v of big) expect(buffers).toContain(v.buffer);
    for (const v of copied) expect(buffers).not.toContain(v.buffer);
    [...big, ...copied].forEach((v, i) => expect(same(l.get(i).toUint8Array(), v), `element ${i}`).toBe(true));
  });

  it("over a memory transport, the server's List(Data) params do not keep the caller's adopted buffers", async () => {
    let kept: Uint8Array[] = [];
    const server: Server = {
      dispatch(c: IncomingCall): void {
        const l = capnp.Struct.getList(1, capnp.DataList, c.params(Box));
        kept = [0, 1].map((i) => l.get(i).toUint8Array());
      },
    };
    await using p = makePair(server);
    const args = [pattern(1 << 15, 5), pattern(1 << 14, 6)];
    const resp = await call(p.boot, M.echo, (b) => {
      const l = capnp.Struct.initList(1, capnp.DataList, 2, b);
      args.forEach((v, i) => writeDataElement(l, i, v));
    });
    for (const v of args) expect(isAdoptedBuffer(v.buffer)).toBe(true);
    for (const v of args) v.fill(0);
    expect(same(kept[0]!, pattern(1 << 15, 5)) && same(kept[1]!, pattern(1 << 14, 6))).toBe(true);
    resp.close();
    await p.dispose();
  });
});
