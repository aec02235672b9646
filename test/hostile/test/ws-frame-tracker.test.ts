// WsFrameTracker (packages/node/src/ws-guard.ts): follows a WebSocket client's frames byte by
// byte as the listener does (frame boundaries only) — fragmented messages with control frames in
// between, 16- and 64-bit lengths, chunks cut anywhere — and charges the message in progress to
// a FrameBudget, giving it back at each message boundary. Pure, any thread.
import { describe, expect, it } from "vitest";
import { FrameBudget } from "@multiprocess-ts/capnp";
import { WsFrameTracker } from "@multiprocess-ts/node";
import { wsFrameHeader } from "../dist/index.js";

function frame(opcode: number, fin: boolean, payload: number): Buffer {
  return Buffer.concat([wsFrameHeader(opcode, fin, payload), Buffer.alloc(payload)]);
}

describe("WsFrameTracker", () => {
  it("counts whole messages across fragments and control frames, in chunks cut anywhere", () => {
    // Message 1: 3 fragments (continuation opcode 0) with a ping between; message 2: 70 000 bytes
    // (16-bit length); a pong; message 3: 70 000 bytes sent with a 64-bit length.
    const big = Buffer.concat([Buffer.from([0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]), Buffer.alloc(4), Buffer.alloc(70_000)]);
    const stream = Buffer.concat([frame(2, false, 10), frame(9, true, 5), frame(0, false, 300), frame(0, true, 0), frame(2, true, 70_000), frame(10, true, 3), big]);
    for (const cut of [1, 7, 1000, stream.length]) {
      let t = 0;
      const budget = new FrameBudget(1 << 20);
      const tr = new WsFrameTracker(budget, () => ++t);
      const seen: number[] = [];
      for (let off = 0; off < stream.length; off += cut) {
        expect(tr.push(stream.subarray(off, off + cut))).toBe(true);
        seen.push(tr.messages);
        if (tr.messages === 0) expect(tr.partialSince).toBeGreaterThan(0);
      }
      expect(tr.messages).toBe(3);
      expect(tr.partialSince).toBe(-1);
      expect(tr.held).toBe(0);
      expect(budget.used).toBe(0);
      expect(budget.peak).toBeLessThanOrEqual(70_000 + 14);
      expect(seen.at(-1)).toBe(3);
    }
  });

  it("a partial message is charged as it arrives; past the budget push() refuses; release() gives it back", () => {
    const budget = new FrameBudget(100_000);
    const tr = new WsFrameTracker(budget, () => 1);
    expect(tr.push(wsFrameHeader(2, true, 60 * 1024 * 1024))).toBe(true);
    expect(tr.push(Buffer.alloc(50_000))).toBe(true);
    expect(budget.used).toBe(50_014);
    expect(tr.partialSince).toBe(1);
    expect(tr.push(Buffer.alloc(60_000))).toBe(false);
    expect(budget.refused).toBe(1);
    tr.release();
    expect(budget.used).toBe(0);
  });
});
