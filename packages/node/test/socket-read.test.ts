import { describe, it, expect, beforeEach, afterEach } from "vitest";
import * as net from "node:net";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Duplex, PassThrough } from "node:stream";
// Sockets read through net.Socket's onread option (packages/capnp socket-read.ts), as
// connectSocket and serveSpawned create them.
import { ACTIVE_SLAB, LimitError, ProtocolError, SocketReader, encodeFrameToBytes, readSocketInPlace, socketReadPath, streamTransport, type Transport } from "@multiprocess-ts/capnp";
import { assertNoHandleLeaks, handleBaseline, msg, msgValues, startRecording, type HandleBaseline, type RecordingSink } from "@multiprocess-ts/testing";
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

/** Small, multi-segment and large messages (a 16-byte segment table among them). */
const MESSAGES: Uint8Array[][] = [
  [pattern(16, 1)],
  [pattern(8, 2), pattern(24, 3), pattern(8, 4)],
  [pattern(200 * 1024, 5)],
  [pattern(40 * 1024, 6), pattern(8, 7), pattern(20 * 1024, 8)],
  [pattern(64, 9)],
];

function expectSameMessages(got: Uint8Array[][], want: Uint8Array[][]): void {
  expect(got.map((m) => m.map((s) => s.byteLength))).toEqual(want.map((m) => m.map((s) => s.byteLength)));
  got.forEach((m, i) => m.forEach((s, j) => expect(Buffer.compare(s, want[i]![j]!), `message ${i} segment ${j}`).toBe(0)));
}

/**
 * Plays the kernel and Node's onStreamRead for a SocketReader: asks `buffer()` for a buffer when
 * the handle is set up and after every callback, writes the next bytes of `src` into it and calls
 * `callback(n, buf)`, as lib/internal/stream_base_commons.js does. Records every buffer handed out.
 */
class FakeKernel {
  readonly regions: Uint8Array[] = [];
  /** Each read: the buffer it went into and its size. */
  readonly reads: { into: Uint8Array; n: number }[] = [];
  private buf: Uint8Array;
  private off = 0;
  stopped = false;

  constructor(
    readonly reader: SocketReader,
    private readonly src: Uint8Array,
  ) {
    this.buf = this.take();
  }

  get done(): boolean {
    return this.off >= this.src.byteLength;
  }

  /** One read of at most `n` bytes (and at most the buffer handed out). */
  read(n: number): number {
    const k = Math.min(n, this.buf.byteLength, this.src.byteLength - this.off);
    if (k <= 0) throw new Error("nothing to read");
    this.buf.set(this.src.subarray(this.off, this.off + k));
    this.off += k;
    this.reads.push({ into: this.buf, n: k });
    this.stopped = this.reader.onread.callback(k, this.buf) === false;
    this.buf = this.take();
    return k;
  }

  private take(): Uint8Array {
    const b = (this.reader.onread.buffer as () => Uint8Array)();
    expect(b.byteLength).toBeGreaterThan(0);
    this.regions.push(b);
    return b;
  }
}

/** A Duplex standing in for the socket (pause/resume/end/destroy; its writes go nowhere we read). */
function fakeSocket(): Duplex {
  const d = Duplex.from({ readable: new PassThrough(), writable: new PassThrough() });
  d.on("error", () => {});
  return d;
}

/** A reader-fed transport over a fake socket, started; closed by the test's cleanup. */
function fakeTransport(src: Uint8Array, limits?: Parameters<typeof streamTransport>[1]): { k: FakeKernel; t: Transport; sink: RecordingSink } {
  const reader = new SocketReader();
  const k = new FakeKernel(reader, src);
  const t = streamTransport(fakeSocket(), limits, undefined, reader);
  const sink = startRecording(t);
  cleanups.push(async () => {
    await t.close();
    expect(sink.closedCalls).toBeLessThanOrEqual(1);
  });
  return { k, t, sink };
}

/** Mulberry32: a small seeded generator, so a failing read pattern can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("SocketReader: chunk boundaries", () => {
  it("a two-read stream split at every byte (inside the header, the segment table and the segments)", () => {
    const want = [MESSAGES[0]!, MESSAGES[1]!, MESSAGES[4]!];
    const bytes = concat(want.map((m) => encodeFrameToBytes(m)));
    for (let split = 1; split < bytes.byteLength; split++) {
      const { k, sink } = fakeTransport(bytes);
      k.read(split);
      while (!k.done) k.read(bytes.byteLength);
      expectSameMessages(sink.messages, want);
    }
  });

  it("random read sizes (seeded): every message intact, large segments read straight into their own buffer", () => {
    const bytes = concat(MESSAGES.map((m) => encodeFrameToBytes(m)));
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed);
      const { k, sink } = fakeTransport(bytes);
      // Mostly small reads at first (the header and tables cut anywhere), then socket-sized ones.
      while (!k.done) k.read(r() < 0.5 ? 1 + Math.floor(r() * 40) : 1 + Math.floor(r() * 70_000));
      expectSameMessages(sink.messages, MESSAGES);
      // The 200 KiB segment: at least 136 KiB of it were still missing after the read that
      // carried its table (a slab read is at most 64 KiB). The decoder's allowance may have
      // given it a 64 KiB buffer first (grown, with one copy, once 64 KiB had arrived), so at
      // least 136 - 64 KiB were read straight into its final buffer.
      const seg = sink.messages[2]![0]!;
      const direct = k.reads.filter((r) => r.into.buffer === seg.buffer).reduce((n, r) => n + r.n, 0);
      expect(direct, `seed ${seed}`).toBeGreaterThanOrEqual(72 * 1024);
      // A segment that spanned reads is a whole buffer of its own.
      expect(seg.byteOffset === 0 && seg.byteLength === seg.buffer.byteLength).toBe(true);
    }
  });

  it("a large message across many reads: the kernel fills the message's own buffer (no slab bytes in it after its first read)", () => {
    const big = [pattern(1024 * 1024, 11)];
    const bytes = encodeFrameToBytes(big);
    const { k, sink } = fakeTransport(bytes);
    let reads = 0;
    while (!k.done) {
      k.read(64 * 1024);
      reads++;
    }
    expectSameMessages(sink.messages, [big]);
    expect(reads).toBeGreaterThanOrEqual(16);
    const seg = sink.messages[0]![0]!;
    // After the first read (64 KiB of the slab: the table and the payload's start), the kernel
    // read into the segment's own buffer, each time exactly up to the segment's end, until less
    // than DIRECT_MIN (4 KiB) was missing.
    const direct = k.reads.filter((r) => r.into.buffer === seg.buffer);
    for (const r of direct) expect(r.into.byteOffset + r.into.byteLength === seg.byteLength).toBe(true);
    const directBytes = direct.reduce((n, r) => n + r.n, 0);
    expect(directBytes).toBeGreaterThanOrEqual(seg.byteLength - 64 * 1024 - 4 * 1024);
  });

  it("never hands the kernel a region that overlaps a message already delivered", () => {
    const bytes = concat(Array.from({ length: 3000 }, (_, i) => encodeFrameToBytes([pattern(8 * (1 + (i % 40)), i)])));
    const r = rng(7);
    const reader = new SocketReader();
    const delivered: Uint8Array[] = [];
    const k = new FakeKernel(reader, bytes);
    const t = streamTransport(fakeSocket(), undefined, undefined, reader);
    t.start({ message: (m) => void delivered.push(...m), closed: () => {} });
    cleanups.push(() => t.close());
    let checked = 0;
    let overlaps = 0;
    while (!k.done) {
      k.read(1 + Math.floor(r() * 3000));
      const region = k.regions[k.regions.length - 1]!;
      for (const v of delivered) {
        if (v.buffer !== region.buffer) continue;
        checked++;
        if (v.byteOffset + v.byteLength > region.byteOffset && region.byteOffset + region.byteLength > v.byteOffset) overlaps++;
      }
    }
    expect(delivered).toHaveLength(3000);
    expect(overlaps).toBe(0);
    expect(checked).toBeGreaterThan(1000); // slab-mates were compared
    // Views of the slab keep their bytes.
    delivered.forEach((v, i) => expect(Buffer.compare(v, pattern(8 * (1 + (i % 40)), i))).toBe(0));
  });

  it("slabs are 1 KiB while reads are small, 64 KiB once a read fills its region, 4 KiB after 64 small reads", () => {
    const small = encodeFrameToBytes(msg(1, 2, 3)); // 32 bytes
    const bytes = concat([...Array.from({ length: 10 }, () => small), new Uint8Array(encodeFrameToBytes([pattern(4000, 1)])), ...Array.from({ length: 200 }, () => small)]);
    const { k, sink } = fakeTransport(bytes);
    const slabSize = (): number => k.regions[k.regions.length - 1]!.buffer.byteLength;
    expect(slabSize()).toBe(1024); // what an idle connection holds
    for (let i = 0; i < 10; i++) k.read(small.byteLength);
    expect(slabSize()).toBe(1024);
    const first = k.read(4008 + 32); // the 4 KiB message fills the region (the slab's rest)
    expect(first).toBe(1024 - 10 * 32);
    expect(slabSize()).toBe(64 * 1024);
    k.read(4008 - first); // the rest of it
    expect(sink.messages).toHaveLength(11);
    let reads = 0;
    while (slabSize() === 64 * 1024) {
      k.read(small.byteLength);
      reads++;
    }
    expect(reads).toBe(64); // the 64th small read in a row: the next region is in a new 4 KiB slab
    expect(slabSize()).toBe(ACTIVE_SLAB);
    while (!k.done) k.read(small.byteLength);
    expect(sink.messages).toHaveLength(211);
    expect(msgValues(sink.messages[210]!)).toEqual([1, 2, 3]);
  });

  it("a read before the transport attaches is kept (reading stops) and decoded once it does", async () => {
    const reader = new SocketReader();
    const bytes = concat([encodeFrameToBytes(msg(1, 2)), encodeFrameToBytes(msg(3))]);
    const k = new FakeKernel(reader, bytes);
    k.read(bytes.byteLength - 3);
    expect(k.stopped).toBe(true);
    const t = streamTransport(fakeSocket(), undefined, undefined, reader);
    cleanups.push(() => t.close());
    const sink = startRecording(t);
    k.read(3);
    expect(k.stopped).toBe(false);
    await sink.waitFor(2);
    expect(sink.messages.map(msgValues)).toEqual([[1, 2], [3]]);
  });
});

describe("SocketReader.tap", () => {
  it("sees every read's bytes, after the transport had them, early reads included; null stops it", async () => {
    const reader = new SocketReader();
    const bytes = concat([encodeFrameToBytes(msg(1, 2)), encodeFrameToBytes([pattern(100 * 1024, 4)]), encodeFrameToBytes(msg(3))]);
    const seen: Uint8Array[] = [];
    let delivered = -1;
    const k = new FakeKernel(reader, bytes);
    reader.tap((buf, n) => seen.push(buf.slice(0, n)));
    k.read(5); // before the transport attaches
    const t = streamTransport(fakeSocket(), undefined, undefined, reader);
    cleanups.push(() => t.close());
    const sink = startRecording(t);
    reader.tap((buf, n) => {
      seen.push(buf.slice(0, n));
      delivered = sink.messages.length; // the transport decoded this read first
    });
    k.read(40);
    expect(delivered).toBe(1);
    while (!k.done) k.read(7000); // the large message, read straight into its own buffer
    reader.tap(null);
    const last = seen.length;
    expect(Buffer.compare(concat(seen), bytes)).toBe(0);
    await sink.waitFor(3);
    expect(seen).toHaveLength(last);
  });
});

describe("SocketReader: limits", () => {
  it("too many segments: LimitError, reading stops", async () => {
    const table = new Uint8Array(8);
    new DataView(table.buffer).setUint32(0, 1000, true); // 1001 segments
    const { k, sink } = fakeTransport(concat([table, new Uint8Array(8000)]), { maxSegments: 16 });
    k.read(8);
    expect(k.stopped).toBe(true);
    expect(await sink.ended.promise).toBeInstanceOf(LimitError);
  });

  it("a message over maxMessageBytes: LimitError before anything is allocated for it", async () => {
    const big = encodeFrameToBytes([pattern(64 * 1024, 1)]);
    const { k, sink } = fakeTransport(big, { maxMessageBytes: 32 * 1024 });
    k.read(8);
    expect(k.stopped).toBe(true);
    const err = await sink.ended.promise;
    expect(err).toBeInstanceOf(LimitError);
    expect(err!.message).toMatch(/maxMessageBytes = 32768/);
    expect(k.regions.every((r) => r.byteLength <= 64 * 1024)).toBe(true);
  });

  it("a huge claimed segment gets regions within the decoder's allowance, growing with what arrived", () => {
    const table = new Uint8Array(8);
    new DataView(table.buffer).setUint32(4, (48 * 1024 * 1024) / 8, true); // one 48 MiB segment
    const src = concat([table, new Uint8Array(1024 * 1024)]); // only 1 MiB of it ever comes
    const { k, sink } = fakeTransport(src);
    let arrived = 0;
    while (!k.done) {
      arrived += k.read(256 * 1024);
      const r = k.regions[k.regions.length - 1]!;
      // What the decoder holds (region's buffer) never exceeds max(64 KiB, 32 × bytes arrived).
      expect(r.buffer.byteLength).toBeLessThanOrEqual(Math.max(64 * 1024, 32 * (arrived + 1)));
    }
    expect(sink.messages).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Real sockets

for (const side of ["connected", "accepted"] as const) describe(`SocketReader over a Unix socket (${side})`, () => {
  it("messages both ways, a 4.8 MB two-segment message among small ones; clean close", async () => {
    const { ours, reader, peer } = await readerSocketPair(side, cleanups);
    const a = streamTransport(ours, undefined, undefined, reader);
    const b = streamTransport(peer);
    const sa = startRecording(a);
    const sb = startRecording(b);
    const big = [pattern(4_800_000, 3), pattern(24, 4)];
    for (let i = 0; i < 50; i++) b.send(msg(i));
    b.send(big);
    b.send(msg(99));
    a.send(msg(7));
    await sa.waitFor(52);
    expect(sa.messages.slice(0, 50).map(msgValues)).toEqual([...Array(50).keys()].map((i) => [i]));
    expectSameMessages([sa.messages[50]!], [big]);
    expect(msgValues(sa.messages[51]!)).toEqual([99]);
    await sb.waitFor(1);
    await a.close();
    expect(await sa.ended.promise).toBeUndefined();
    expect(await sb.ended.promise).toBeUndefined();
  });

  it("reading paused in the middle of a large message, then resumed: the message arrives intact", async () => {
    const { ours, reader, peer } = await readerSocketPair(side, cleanups);
    const a = streamTransport(ours, undefined, undefined, reader);
    const sa = startRecording(a);
    const big = [pattern(600 * 1024, 8)];
    const bytes = concat([encodeFrameToBytes(big), encodeFrameToBytes(msg(5))]);
    const flow = a as unknown as { pauseReading(): void; resumeReading(): void };
    const half = 300 * 1024;
    peer.write(bytes.subarray(0, half));
    while (ours.bytesRead < half) await new Promise<void>((r) => setImmediate(r)); // until it was read
    flow.pauseReading();
    expect(ours.isPaused()).toBe(true);
    // (Not awaiting the write: with our end paused, the kernel may not take all of it.)
    peer.write(bytes.subarray(half));
    for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
    expect(sa.messages).toHaveLength(0);
    expect(ours.bytesRead).toBe(half); // nothing read while paused
    flow.resumeReading();
    await sa.waitFor(2);
    expectSameMessages([sa.messages[0]!], [big]);
    expect(msgValues(sa.messages[1]!)).toEqual([5]);
  });

  for (const [what, cut] of [
    ["inside the segment table", 4],
    ["inside a large segment's first read", 2000],
    ["inside a large segment read in place", 200 * 1024],
  ] as const) {
    it(`EOF ${what}: ProtocolError, and the write side stays open for the Abort`, async () => {
      const { ours, reader, peer } = await readerSocketPair(side, cleanups);
      const a = streamTransport(ours, undefined, undefined, reader);
      const sa = startRecording(a);
      const frame = encodeFrameToBytes([pattern(512 * 1024, 2)]);
      const peerGot: Buffer[] = [];
      peer.on("data", (c: Buffer) => peerGot.push(c));
      peer.end(frame.subarray(0, cut));
      const err = await sa.ended.promise;
      expect(err).toBeInstanceOf(ProtocolError);
      expect(err!.message).toMatch(/stream ended inside a message/);
      a.send(msg(42)); // what the engine does: Abort, then close()
      await a.close();
      await once(peer, "end");
      expect(msgValues([concat(peerGot).subarray(8)])).toEqual([42]);
      expect(sa.messages).toHaveLength(0);
    });
  }
});

describe("readSocketInPlace: only a plain, unread net.Socket with a handle", () => {
  it("refuses (changing nothing) a socket without a handle, a subclass, one with 'data' listeners or bytes already read", async () => {
    const reader = new SocketReader();
    const bare = new net.Socket();
    expect(readSocketInPlace(bare, reader)).toBe(false);
    bare.destroy();
    class Sub extends net.Socket {}
    const sub = new Sub();
    expect(readSocketInPlace(sub, reader)).toBe(false);
    sub.destroy();
    // A socket that was read as a stream (bytes buffered in its Readable) stays a stream.
    const { ours: connected, peer } = await plainPair();
    peer.write("abc");
    connected.pause();
    while (connected.readableLength === 0) await new Promise<void>((r) => setImmediate(r));
    expect(readSocketInPlace(connected, reader)).toBe(false);
    expect(socketReadPath(connected)).toBe("stream");
    // A socket someone reads through 'data' stays a stream.
    const onData: string[] = [];
    peer.on("data", (c: Buffer) => onData.push(String(c)));
    expect(readSocketInPlace(peer, reader)).toBe(false);
    connected.write("xyz");
    while (onData.length === 0) await new Promise<void>((r) => setImmediate(r));
    expect(onData.join("")).toBe("xyz");
    expect(socketReadPath(peer)).toBe("stream");
  });

  it("a socket switched once refuses a second reader", async () => {
    const { ours } = await plainPair(true);
    expect(readSocketInPlace(ours, new SocketReader())).toBe(true);
    expect(readSocketInPlace(ours, new SocketReader())).toBe(false);
    expect(socketReadPath(ours)).toBe("onread");
  });
});

/** A plain Unix socket pair (`ours` accepted, with pauseOnConnect when `paused`). */
async function plainPair(paused = false): Promise<{ ours: net.Socket; peer: net.Socket }> {
  const dir = mkdtempSync(join(tmpdir(), "mpts-plain-"));
  const path = join(dir, "s.sock");
  const server = net.createServer({ pauseOnConnect: paused });
  server.listen(path);
  await once(server, "listening");
  const accepted = once(server, "connection");
  const peer = net.connect({ path });
  await once(peer, "connect");
  const [ours] = (await accepted) as [net.Socket];
  server.close();
  cleanups.push(() => {
    ours.destroy();
    peer.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  return { ours, peer };
}
