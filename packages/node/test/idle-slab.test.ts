// A SocketReader's slab after a burst (packages/capnp socket-read.ts): large while the connection
// is busy, back to 1 KiB once it has read nothing for a whole sweep period (the idle sweep,
// driven here by calling sweepIdleReaders() in place of its timer), with reads going on correctly
// into the new slab; the 4 KiB slab of a connection of small reads. Runs on the test's thread.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { Duplex, PassThrough } from "node:stream";
import { ACTIVE_SLAB, SocketReader, encodeFrameToBytes, streamTransport, sweepIdleReaders } from "@multiprocess-ts/capnp";
import { assertNoHandleLeaks, handleBaseline, msg, msgValues, startRecording, type HandleBaseline } from "@multiprocess-ts/testing";
import { concat, pattern, readerSocketPair } from "./reader-sockets.js";

let baseline: HandleBaseline;
const cleanups: (() => void | Promise<void>)[] = [];
beforeEach(() => {
  baseline = handleBaseline();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await assertNoHandleLeaks(baseline);
});

/** 200 small frames in one write: the first read fills the reader's 1 KiB region. */
const BURST = concat(Array.from({ length: 200 }, (_, i) => encodeFrameToBytes(msg(i, i + 1))));

for (const side of ["connected", "accepted"] as const) describe(`idle slab release over a Unix socket (${side})`, () => {
  it("a burst makes the slab 64 KiB; a sweep period without reads makes it 1 KiB; reads go on into it", async () => {
    const { ours, reader, peer } = await readerSocketPair(side, cleanups);
    const t = streamTransport(ours, undefined, undefined, reader);
    const sink = startRecording(t);
    cleanups.push(() => t.close());
    expect(reader.slabBytes).toBe(1024);
    peer.write(BURST);
    await sink.waitFor(200);
    expect(reader.slabBytes).toBe(64 * 1024);
    sweepIdleReaders(); // first look: noted
    expect(reader.slabBytes).toBe(64 * 1024);
    sweepIdleReaders(); // nothing read since: released
    expect(reader.slabBytes).toBe(1024);
    // The kernel's next reads land in the new slab: small messages, then a large one read in place.
    const big = [pattern(300 * 1024, 3)];
    peer.write(concat([encodeFrameToBytes(msg(1000)), encodeFrameToBytes(msg(1001, 2)), encodeFrameToBytes(big), encodeFrameToBytes(msg(1002))]));
    await sink.waitFor(204);
    expect(sink.messages.slice(0, 200).map(msgValues)).toEqual(Array.from({ length: 200 }, (_, i) => [i, i + 1]));
    expect(msgValues(sink.messages[200]!)).toEqual([1000]);
    expect(msgValues(sink.messages[201]!)).toEqual([1001, 2]);
    expect(Buffer.compare(sink.messages[202]![0]!, big[0]!)).toBe(0);
    expect(msgValues(sink.messages[203]!)).toEqual([1002]);
  });

  it("a connection that keeps reading between two looks keeps its slab", async () => {
    const { ours, reader, peer } = await readerSocketPair(side, cleanups);
    const t = streamTransport(ours, undefined, undefined, reader);
    const sink = startRecording(t);
    cleanups.push(() => t.close());
    peer.write(BURST);
    await sink.waitFor(200);
    for (let i = 0; i < 3; i++) {
      sweepIdleReaders();
      peer.write(encodeFrameToBytes(msg(500 + i)));
      await sink.waitFor(201 + i);
    }
    sweepIdleReaders();
    expect(reader.slabBytes).toBe(64 * 1024);
    expect(sink.messages.slice(200).map(msgValues)).toEqual([[500], [501], [502]]);
  });
});

/** A Duplex standing in for the socket (the reader is fed by hand below). */
function fakeSocket(): Duplex {
  const d = Duplex.from({ readable: new PassThrough(), writable: new PassThrough() });
  d.on("error", () => {});
  return d;
}

describe("idle slab release without a socket to swap", () => {
  it("while the kernel holds a large message's own buffer, an idle reader drops its slab; the message completes", () => {
    const reader = new SocketReader();
    const t = streamTransport(fakeSocket(), undefined, undefined, reader);
    const sink = startRecording(t);
    cleanups.push(() => t.close());
    const gen = reader.onread.buffer as () => Uint8Array;
    const cb = reader.onread.callback;
    const big = [pattern(200 * 1024, 9)];
    const bytes = concat([BURST, encodeFrameToBytes(big), encodeFrameToBytes(msg(7))]);
    let off = 0;
    let region = gen();
    const read = (max: number): void => {
      const n = Math.min(max, region.byteLength, bytes.byteLength - off);
      region.set(bytes.subarray(off, off + n));
      off += n;
      cb(n, region);
      region = gen();
    };
    while (off < BURST.byteLength + 64 * 1024) read(64 * 1024); // the burst, then part of the message
    expect(reader.slabBytes).toBe(64 * 1024);
    expect(region.byteLength).toBeGreaterThan(64 * 1024); // the message's own buffer
    sweepIdleReaders();
    sweepIdleReaders();
    expect(reader.slabBytes).toBe(0);
    while (off < bytes.byteLength) read(64 * 1024);
    expect(sink.messages).toHaveLength(202);
    expect(Buffer.compare(sink.messages[200]![0]!, big[0]!)).toBe(0);
    expect(msgValues(sink.messages[201]!)).toEqual([7]);
    expect(reader.slabBytes).toBe(1024);
  });

  it("a connection of small reads goes on with 4 KiB slabs once its first 1 KiB slab is used up", () => {
    const reader = new SocketReader();
    const t = streamTransport(fakeSocket(), undefined, undefined, reader);
    const sink = startRecording(t);
    cleanups.push(() => t.close());
    const one = encodeFrameToBytes([pattern(152, 1)]); // 160 B: P1's call
    const sizes: number[] = [];
    let region = (reader.onread.buffer as () => Uint8Array)();
    for (let i = 0; i < 30; i++) {
      sizes.push(region.buffer.byteLength);
      region.set(one);
      reader.onread.callback(one.byteLength, region);
      region = (reader.onread.buffer as () => Uint8Array)();
    }
    expect(sink.messages).toHaveLength(30);
    expect(sizes.slice(0, 5)).toEqual([1024, 1024, 1024, 1024, 1024]);
    expect(sizes.slice(5)).toEqual(Array(25).fill(ACTIVE_SLAB));
    sweepIdleReaders();
    sweepIdleReaders();
    expect(reader.slabBytes).toBe(ACTIVE_SLAB); // a Duplex, not a socket: the region cannot be swapped
  });
});
