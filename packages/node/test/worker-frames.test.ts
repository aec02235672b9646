// Flat frames of the worker bridge (protocol.ts): a capability-free call or return is one bare
// ArrayBuffer (packed content + a 32-byte trailer). These tests pin the encoding (round trip of
// every trailer field, the content read in place and copied out by its size, a return in a
// reused call buffer, malformed frames rejected with a ProtocolError) and when a payload may not be a frame (a capability in it, or
// content only the general copy handles). The worker-level order of frames with the other RPC
// messages is in worker-bridge.test.ts ("flat frames").
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import { ProtocolError, localCapability, writeCap } from "@multiprocess-ts/capnp";
import {
  FRAME_TRAILER,
  callFrame,
  decodeFrame,
  decodePayloadInto,
  encodeFramed,
  framable,
  payloadContent,
  returnFrame,
} from "../dist/worker/protocol.js";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";

class Args extends capnp.Struct {
  static override readonly _capnp = { displayName: "Args", id: "0", size: new capnp.ObjectSize(8, 2) };
}

function args(a: number, text: string): Args {
  const s = new capnp.Message().initRoot(Args);
  capnp.Struct.setInt32(0, a, s);
  capnp.Struct.setText(1, text, s);
  return s;
}

const never = (): never => {
  throw new Error("no capability expected");
};

describe("worker bridge flat frames", () => {
  it("a call frame carries question, target, method, Context index and interface id; its content is copied out by size", () => {
    const p = encodeFramed(args(-7, "héllo"), never);
    expect(framable(p)).toBe(true);
    expect(p.buf.byteLength).toBe(p.size! + FRAME_TRAILER);
    const frame = callFrame(p, 0xfffffffe, 12, 0xf00dfacecafebeefn, 65535, -1);
    const m = decodeFrame(frame);
    expect(m).toMatchObject({ op: "call", q: 0xfffffffe, target: 12, iid: 0xf00dfacecafebeefn, mid: 65535, ctx: -1 });
    if (m.op !== "call") throw new Error("not a call");
    expect(m.params.caps).toEqual([]);
    const dst = new capnp.Message().initRoot(Args);
    decodePayloadInto(m.params, dst, never);
    expect(capnp.Struct.getInt32(0, dst)).toBe(-7);
    expect(capnp.Struct.getText(1, dst)).toBe("héllo");
    // The Context index survives as a signed number.
    const q = decodeFrame(callFrame(encodeFramed(args(1, ""), never), 1, 1, 1n, 0, 1));
    expect(q).toMatchObject({ op: "call", ctx: 1 });
  });

  it("a return frame is read in place: the frame is the results' segment, the trailer unused", () => {
    const p = encodeFramed(args(41, "results"), never);
    const m = decodeFrame(returnFrame(p, 9));
    expect(m).toMatchObject({ op: "return", q: 9 });
    if (m.op !== "return") throw new Error("not a return");
    const r = capnp.Struct.getAs(Args, payloadContent(m.results!));
    expect(capnp.Struct.getInt32(0, r)).toBe(41);
    expect(capnp.Struct.getText(1, r)).toBe("results");
  });

  it("a return packed into a reused buffer: content at its start, the gap zeroed, its size in the trailer", () => {
    // The loop returns a call's results in the buffer of that call's params (RpcEnd.#spare).
    const call = encodeFramed(args(5, "a longer text than the results carry"), never);
    const spare = callFrame(call, 1, 1, 1n, 0, -1);
    new Uint8Array(spare).fill(0xee); // what the old params left behind
    const p = encodeFramed(args(41, "r"), never, spare);
    expect(p.buf).toBe(spare);
    expect(p.size! + FRAME_TRAILER).toBeLessThan(spare.byteLength);
    const m = decodeFrame(returnFrame(p, 3));
    expect(m).toMatchObject({ op: "return", q: 3 });
    if (m.op !== "return") throw new Error("not a return");
    expect(m.results!.size).toBe(p.size);
    // Everything between the content and the trailer is zero: nothing of the old params is left.
    expect(new Uint8Array(spare, p.size!, spare.byteLength - FRAME_TRAILER - p.size!).every((b) => b === 0)).toBe(true);
    const r = capnp.Struct.getAs(Args, payloadContent(m.results!));
    expect(capnp.Struct.getInt32(0, r)).toBe(41);
    expect(capnp.Struct.getText(1, r)).toBe("r");
    const dst = new capnp.Message().initRoot(Args);
    decodePayloadInto(m.results!, dst, never);
    expect(capnp.Struct.getText(1, dst)).toBe("r");

    // A buffer too small for the content is left alone: a new one is made.
    const small = new ArrayBuffer(16 + FRAME_TRAILER);
    const q = encodeFramed(args(1, "does not fit in two words"), never, small);
    expect(q.buf).not.toBe(small);
    expect(q.buf.byteLength).toBe(q.size! + FRAME_TRAILER);
    // A return frame whose trailer names more content than there is room for is rejected.
    const bad = returnFrame(encodeFramed(args(1, ""), never), 1);
    new DataView(bad, bad.byteLength - FRAME_TRAILER).setUint32(8, bad.byteLength, true);
    expect(() => decodeFrame(bad)).toThrow(ProtocolError);
  });

  it("a payload with a capability, or one only the general copy handles, is not a frame", () => {
    const server = { released: 0, dispatch() {}, onRelease() { this.released++; } };
    const cap = localCapability(server);
    const withCap = new capnp.Message().initRoot(Args);
    writeCap(withCap, 0, cap);
    let described = 0;
    const p = encodeFramed(withCap, () => (described++, { l: 1 }));
    expect(described).toBe(1);
    expect(framable(p)).toBe(false);
    cap.close();
    const table = (withCap.segment.message as unknown as { _capnp: { capTable?: { release(): void }[] } })._capnp.capTable ?? [];
    for (const h of table) h?.release();
    expect(server.released).toBe(1); // the descriptor callback borrowed it; nothing leaked

    // A far root pointer: the general copy's buffer has no trailer room (no size).
    const src = new capnp.Message(new MultiSegmentArena([new ArrayBuffer(8)]));
    const root = src.initRoot(Args);
    capnp.Struct.setText(1, "y".repeat(40_000), root);
    const g = encodeFramed(root, never);
    expect(g.size).toBeUndefined();
    expect(framable(g)).toBe(false);
    const dst = new capnp.Message().initRoot(Args);
    decodePayloadInto(g, dst, never);
    expect(capnp.Struct.getText(1, dst)).toBe("y".repeat(40_000));
  });

  it("rejects malformed frames with a ProtocolError", () => {
    expect(() => decodeFrame(new ArrayBuffer(8))).toThrow(ProtocolError);
    expect(() => decodeFrame(new ArrayBuffer(16 + FRAME_TRAILER + 4))).toThrow(ProtocolError);
    // Right size, no check word.
    expect(() => decodeFrame(new ArrayBuffer(16 + FRAME_TRAILER))).toThrow(/without its trailer/);
    // A check word and an unknown kind.
    const p = encodeFramed(args(1, ""), never);
    const f = returnFrame(p, 1);
    new DataView(f, p.size!).setUint32(0, 7, true);
    expect(() => decodeFrame(f)).toThrow(/kind 7/);
  });
});
