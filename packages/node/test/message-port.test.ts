import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { MessageChannel } from "node:worker_threads";
import * as capnp from "capnp-ts";
import { DisconnectedError, LimitError, ProtocolError, fastpath, isAdoptedBuffer, writeData } from "@multiprocess-ts/capnp";
import { messagePortTransport } from "@multiprocess-ts/node";
import { assertNoHandleLeaks, handleBaseline, msg, startRecording, msgValues, type HandleBaseline } from "@multiprocess-ts/testing";

let baseline: HandleBaseline;
beforeEach(() => {
  baseline = handleBaseline();
});
afterEach(async () => {
  await assertNoHandleLeaks(baseline);
});

describe("messagePortTransport", () => {
  it("carries messages both ways in order and transfers segment buffers", async () => {
    const { port1, port2 } = new MessageChannel();
    const a = messagePortTransport(port1);
    const b = messagePortTransport(port2);
    const sa = startRecording(a);
    const sb = startRecording(b);
    const m1 = msg(1, 2, 3);
    a.send(m1);
    a.send(msg(4));
    b.send(msg(5, 6));
    await sb.waitFor(2);
    await sa.waitFor(1);
    expect(sb.messages.map(msgValues)).toEqual([[1, 2, 3], [4]]);
    expect(sa.messages.map(msgValues)).toEqual([[5, 6]]);
    // The sender's segment was transferred (its buffer is detached now), not copied.
    expect(m1[0]!.byteLength).toBe(0);
    await a.close();
    expect(await sb.ended.promise).toBeUndefined();
    expect(await sa.ended.promise).toBeUndefined();
    expect(sa.closedCalls + sb.closedCalls).toBe(2);
  });

  it("copies segments that are views into a larger buffer", async () => {
    const { port1, port2 } = new MessageChannel();
    const a = messagePortTransport(port1);
    const b = messagePortTransport(port2);
    startRecording(a);
    const sb = startRecording(b);
    const big = new Uint8Array(32);
    new DataView(big.buffer).setUint32(8, 77, true);
    new DataView(big.buffer).setUint32(16, 78, true);
    // Two segments sharing one buffer: both are copied, the original stays usable.
    a.send([big.subarray(8, 16), big.subarray(16, 24)]);
    await sb.waitFor(1);
    expect(sb.messages.map(msgValues)).toEqual([[77, 78]]);
    expect(big.byteLength).toBe(32);
    await b.close();
    await a.close();
  });

  it("copies a caller's buffer adopted as a segment (large Data) instead of detaching it", async () => {
    class D extends capnp.Struct {
      static readonly _capnp = { displayName: "D", id: "f0000000000000d1", size: new capnp.ObjectSize(0, 1) };
    }
    const { port1, port2 } = new MessageChannel();
    const a = messagePortTransport(port1);
    const b = messagePortTransport(port2);
    startRecording(a);
    const sb = startRecording(b);
    const data = new Uint8Array(1 << 16).fill(0x5a);
    const { msg: m, params } = fastpath.newCallMessage(1n, 0, D);
    writeData(0, data, params);
    expect(isAdoptedBuffer(data.buffer)).toBe(true);
    const segs = m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength));
    a.send(segs);
    await sb.waitFor(1);
    // The caller's buffer still holds its bytes; the peer got an equal copy (its own buffer).
    expect(data.byteLength).toBe(1 << 16);
    const got = sb.messages[0]!.find((s) => s.byteLength === 1 << 16)!;
    expect(got.buffer).not.toBe(data.buffer);
    expect(Buffer.from(got).equals(Buffer.from(data))).toBe(true);
    await b.close();
    await a.close();
  });

  it("delivers messages that arrive before start(), then the end", async () => {
    const { port1, port2 } = new MessageChannel();
    const a = messagePortTransport(port1);
    const b = messagePortTransport(port2);
    const sa = startRecording(a);
    a.send(msg(9));
    await a.close();
    await sa.ended.promise;
    const sb = startRecording(b);
    expect(await sb.ended.promise).toBeUndefined();
    expect(sb.messages.map(msgValues)).toEqual([[9]]);
  });

  it("reports a port closed without the end marker as a DisconnectedError", async () => {
    const { port1, port2 } = new MessageChannel();
    const b = messagePortTransport(port2);
    const sb = startRecording(b);
    port1.close(); // like a worker thread that exited
    const err = await sb.ended.promise;
    expect(err).toBeInstanceOf(DisconnectedError);
  });

  it("rejects malformed messages and limit violations", async () => {
    {
      const { port1, port2 } = new MessageChannel();
      const b = messagePortTransport(port2);
      const sb = startRecording(b);
      port1.postMessage({ s: ["not a buffer"] });
      expect(await sb.ended.promise).toBeInstanceOf(ProtocolError);
      port1.close();
    }
    {
      const { port1, port2 } = new MessageChannel();
      const b = messagePortTransport(port2, { limits: { maxSegments: 2 } });
      const sb = startRecording(b);
      const a = messagePortTransport(port1);
      startRecording(a);
      a.send([...msg(1), ...msg(2), ...msg(3)]);
      expect(await sb.ended.promise).toBeInstanceOf(LimitError);
      await a.close();
    }
  });

  it("destroy ends both sides and drops later sends", async () => {
    const { port1, port2 } = new MessageChannel();
    const a = messagePortTransport(port1);
    const b = messagePortTransport(port2);
    const sa = startRecording(a);
    const sb = startRecording(b);
    const reason = new Error("local reason");
    a.destroy(reason);
    a.send(msg(1)); // dropped silently
    expect(await sa.ended.promise).toBe(reason);
    expect(await sb.ended.promise).toBeInstanceOf(DisconnectedError);
    expect(sb.messages).toEqual([]);
  });
});
