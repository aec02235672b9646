import { afterEach, describe, expect, it, vi } from "vitest";
import { countWrites, unixSocketPair as socketPairOf } from "@multiprocess-ts/testing";
import * as net from "node:net";
import { Duplex, PassThrough, Writable } from "node:stream";
import { LAZY_MS, streamTransport } from "../dist/stream.js";
import { encodeFrameToBytes } from "../dist/framing.js";
import { DisconnectedError, LimitError, ProtocolError } from "../dist/errors.js";
import { deferred } from "../dist/errors.js";
import type { Transport } from "../dist/transport.js";
import { msg, tagOf } from "./tagged-messages.js";

interface Rec {
  msgs: Uint8Array[][];
  closed: (Error | undefined)[];
  whenClosed: Promise<Error | undefined>;
  waitFor(n: number): Promise<void>;
}

function start(t: Transport): Rec {
  const closedD = deferred<Error | undefined>();
  let waiter: { n: number; resolve: () => void } | undefined;
  const rec: Rec = {
    msgs: [],
    closed: [],
    whenClosed: closedD.promise,
    waitFor(n) {
      if (rec.msgs.length >= n) return Promise.resolve();
      const d = deferred<void>();
      waiter = { n, resolve: d.resolve };
      return Promise.race([d.promise, closedD.promise.then((e) => Promise.reject(e ?? new Error("closed early")))]);
    },
  };
  t.start({
    message(segs) {
      rec.msgs.push(segs);
      if (waiter !== undefined && rec.msgs.length >= waiter.n) {
        const w = waiter;
        waiter = undefined;
        w.resolve();
      }
    },
    closed(err) {
      rec.closed.push(err);
      closedD.resolve(err);
    },
  });
  return rec;
}

/** Two Duplex ends joined by PassThroughs. */
function passThroughPair(): [Duplex, Duplex] {
  const ab = new PassThrough();
  const ba = new PassThrough();
  // Destroying a Duplex.from() end aborts these inner streams; the ends report it, so the inner
  // streams' own 'error' events carry nothing new.
  ab.on("error", () => {});
  ba.on("error", () => {});
  return [Duplex.from({ readable: ba, writable: ab }), Duplex.from({ readable: ab, writable: ba })];
}

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function unixSocketPair(): Promise<[net.Socket, net.Socket]> {
  const p = await socketPairOf();
  cleanups.push(() => p.close());
  return [p.client, p.server];
}

describe("streamTransport over a Unix socket", () => {
  it("carries messages both ways in order, including one spanning many chunks", async () => {
    const [c, s] = await unixSocketPair();
    const tc = streamTransport(c);
    const ts = streamTransport(s);
    const rc = start(tc);
    const rs = start(ts);
    for (let i = 0; i < 100; i++) tc.send(msg(i, 1 + (i % 5)));
    tc.send([...msg(1000, 600_000), ...msg(1001, 3)]); // ~4.8 MB, two segments
    for (let i = 0; i < 10; i++) ts.send(msg(500 + i));
    await rs.waitFor(101);
    await rc.waitFor(10);
    expect(rs.msgs.slice(0, 100).map(tagOf)).toEqual([...Array(100).keys()]);
    const big = rs.msgs[100]!;
    expect(big.map((x) => x.byteLength)).toEqual([4_800_000, 24]);
    expect(tagOf(big)).toBe(1000);
    expect(rc.msgs.map(tagOf)).toEqual([...Array(10).keys()].map((i) => 500 + i));
    await tc.close();
    expect(await rs.whenClosed).toBeUndefined();
    expect(await rc.whenClosed).toBeUndefined();
    expect(rc.closed).toHaveLength(1);
    expect(rs.closed).toHaveLength(1);
    await new Promise<void>((r) => (s.closed ? r() : s.once("close", () => r())));
    expect(c.destroyed && s.destroyed).toBe(true);
  });

  it("many small sends in one tick become one writev", async () => {
    const [c, s] = await unixSocketPair();
    const tc = streamTransport(c);
    const rs = start(streamTransport(s));
    start(tc);
    const sock = c as unknown as { _writev: (...a: unknown[]) => unknown; _write: (...a: unknown[]) => unknown };
    let writev = 0;
    let write = 0;
    const origV = sock._writev.bind(c);
    const orig = sock._write.bind(c);
    sock._writev = (...a) => (writev++, origV(...a));
    sock._write = (...a) => (write++, orig(...a));
    for (let i = 0; i < 1000; i++) tc.send(msg(i));
    await rs.waitFor(1000);
    expect(rs.msgs.map(tagOf)).toEqual([...Array(1000).keys()]);
    expect(writev + write).toBe(1);
    await tc.close();
    await rs.whenClosed;
  });

  it("a lazy message (sendLazy) rides with the next message sent from a promise continuation: one write", async () => {
    const [c, s] = await unixSocketPair();
    const tc = streamTransport(c);
    const rs = start(streamTransport(s));
    start(tc);
    const writes = countWrites(c);
    // A call loop: the Finish of the last call is lazy, the next Call comes a few promise hops later.
    tc.sendLazy!(msg(1));
    void Promise.resolve()
      .then(() => undefined)
      .then(() => undefined)
      .then(() => tc.send(msg(2)));
    await rs.waitFor(2);
    expect(rs.msgs.map(tagOf)).toEqual([1, 2]);
    expect(writes()).toBe(1);
    // Alone, a lazy message still goes out (once this turn's microtasks have run).
    tc.sendLazy!(msg(3));
    await rs.waitFor(3);
    expect(writes()).toBe(2);
    // Order is kept with a large (unbatched) message sent right after it.
    tc.sendLazy!(msg(4));
    tc.send(msg(5, 300));
    tc.sendLazy!(msg(6));
    await rs.waitFor(6);
    expect(rs.msgs.map(tagOf)).toEqual([1, 2, 3, 4, 5, 6]);
    await tc.close();
    await rs.whenClosed;
  });

  it("a lazy message alone waits for the next event-loop turn's message (a relayed call loop): one write", async () => {
    const [c, s] = await unixSocketPair();
    const tc = streamTransport(c);
    const rs = start(streamTransport(s));
    start(tc);
    const writes = countWrites(c);
    // The worker bridge's loop: a Return's Finish is lazy, the worker's next call arrives as a
    // message in a later macrotask (here: the next setImmediate, i.e. after this turn ends).
    tc.sendLazy!(msg(1));
    setImmediate(() => tc.send(msg(2)));
    await rs.waitFor(2);
    expect(rs.msgs.map(tagOf)).toEqual([1, 2]);
    expect(writes()).toBe(1);
    // Nothing follows: it still goes out by itself.
    tc.sendLazy!(msg(3));
    await rs.waitFor(3);
    expect(writes()).toBe(2);
    await tc.close();
    await rs.whenClosed;
  });

  it("a lazy message waits for the next message however many turns pass, up to its timer's second tick", async () => {
    // Only setTimeout is faked: the lazy timer's ticks are driven by hand, everything else is real.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const [c, s] = await unixSocketPair();
      const tc = streamTransport(c);
      const rs = start(streamTransport(s));
      start(tc);
      const writes = countWrites(c);
      // A relayed call loop whose next call comes after the thread went idle: many turns later.
      tc.sendLazy!(msg(1));
      for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
      expect(writes()).toBe(0);
      // One tick is not enough to send it: it was added since the timer last ticked.
      vi.advanceTimersByTime(LAZY_MS);
      for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
      expect(writes()).toBe(0);
      tc.send(msg(2));
      await rs.waitFor(2);
      expect(rs.msgs.map(tagOf)).toEqual([1, 2]);
      expect(writes()).toBe(1);
      // Nothing follows: the second tick after it was added sends it alone.
      tc.sendLazy!(msg(3));
      vi.advanceTimersByTime(LAZY_MS);
      for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
      expect(writes()).toBe(1);
      vi.advanceTimersByTime(LAZY_MS);
      await rs.waitFor(3);
      expect(writes()).toBe(2);
      // Lazy messages in a row, then normal ones: one write, in order (a Finish, then Releases).
      tc.sendLazy!(msg(4));
      tc.sendLazy!(msg(5));
      tc.send(msg(6));
      tc.send(msg(7));
      await rs.waitFor(7);
      expect(rs.msgs.map(tagOf)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect(writes()).toBe(3);
      // A timer tick with nothing waiting sends nothing and stops ticking.
      vi.advanceTimersByTime(5 * LAZY_MS);
      expect(vi.getTimerCount()).toBe(0);
      await tc.close();
      await rs.whenClosed;
    } finally {
      vi.useRealTimers();
    }
  });

  it("a lazy message waiting at close() goes out before the end; its timer is gone after the link ends", async () => {
    const [c, s] = await unixSocketPair();
    const tc = streamTransport(c);
    const rs = start(streamTransport(s));
    const rc = start(tc);
    tc.send(msg(1));
    tc.sendLazy!(msg(2)); // joins the flush already scheduled
    await rs.waitFor(2);
    tc.sendLazy!(msg(3)); // waits for its timer
    const view = tc as unknown as { lazyTimer: unknown };
    expect(view.lazyTimer).not.toBeNull();
    await tc.close();
    expect(await rs.whenClosed).toBeUndefined();
    expect(rs.msgs.map(tagOf)).toEqual([1, 2, 3]);
    await rc.whenClosed;
    expect(view.lazyTimer).toBeNull();
  });

  it("reuses the batch buffer of a write the socket completed at once; every message arrives intact", async () => {
    const [c, s] = await unixSocketPair();
    const tc = streamTransport(c);
    const rs = start(streamTransport(s));
    start(tc);
    const view = tc as unknown as { spare: Buffer | null; batch: Buffer | null };
    const seen = new Set<Buffer>();
    for (let i = 0; i < 200; i++) {
      tc.send(msg(i, 1 + (i % 9))); // one flush per turn, sizes varying
      seen.add(view.batch!);
      await new Promise<void>((r) => setImmediate(r));
    }
    await rs.waitFor(200);
    expect(rs.msgs.map(tagOf)).toEqual([...Array(200).keys()]);
    expect(rs.msgs.map((m) => m[0]!.byteLength)).toEqual([...Array(200).keys()].map((i) => 8 * (1 + (i % 9))));
    expect(seen.size).toBeLessThan(20); // buffers were reused (a new one only when a write stayed queued)
    await tc.close();
    await rs.whenClosed;
  });

  it("a new connection's first batch is built in the buffer another connection's completed write gave back", async () => {
    const [c1, s1] = await unixSocketPair();
    const t1 = streamTransport(c1);
    const r1 = start(streamTransport(s1));
    start(t1);
    const v1 = t1 as unknown as { batch: Buffer | null };
    t1.send(msg(1));
    const first = v1.batch!;
    await r1.waitFor(1); // written at once: its buffer is a spare of this thread now
    const [c2, s2] = await unixSocketPair();
    const t2 = streamTransport(c2);
    const r2 = start(streamTransport(s2));
    start(t2);
    t2.send(msg(2));
    expect((t2 as unknown as { batch: Buffer | null }).batch).toBe(first);
    await r2.waitFor(1);
    expect(r1.msgs.map(tagOf)).toEqual([1]);
    expect(r2.msgs.map(tagOf)).toEqual([2]);
    await t1.close();
    await t2.close();
    await r1.whenClosed;
    await r2.whenClosed;
  });

  it("a PassThrough (which hands the written chunk on as is) never gets a reused batch buffer", async () => {
    const [a, b] = passThroughPair();
    const ta = streamTransport(a);
    const rb = start(streamTransport(b));
    start(ta);
    const view = ta as unknown as { batch: Buffer | null };
    const seen = new Set<Buffer>();
    for (let i = 0; i < 20; i++) {
      ta.send(msg(i));
      seen.add(view.batch!);
      await new Promise<void>((r) => setImmediate(r));
    }
    expect(seen.size).toBe(20); // none went back to the spares: each batch had a buffer of its own
    await rb.waitFor(20);
    expect(rb.msgs.map(tagOf)).toEqual([...Array(20).keys()]);
    await ta.close();
  });

  it("a lazy message sent just before close() is flushed, not dropped", async () => {
    const [c, s] = await unixSocketPair();
    const tc = streamTransport(c);
    const rs = start(streamTransport(s));
    start(tc);
    tc.sendLazy!(msg(7));
    await tc.close();
    expect(await rs.whenClosed).toBeUndefined();
    expect(rs.msgs.map(tagOf)).toEqual([7]);
  });

  it("peer going away is a clean closed(); send afterwards drops silently", async () => {
    const [c, s] = await unixSocketPair();
    const tc = streamTransport(c);
    const rc = start(tc);
    s.destroy();
    expect(await rc.whenClosed).toBeUndefined();
    tc.send(msg(1));
    await tc.close();
    expect(rc.closed).toHaveLength(1);
  });

  it("a frame over the limits: closed(LimitError) at once, the write side still tells the peer why, close() hangs up", async () => {
    const [c, s] = await unixSocketPair();
    const tc = streamTransport(c, { maxMessageBytes: 1024 });
    const rc = start(tc);
    const peer = streamTransport(s);
    const rs = start(peer);
    peer.send(msg(1, 10));
    peer.send(msg(2, 200)); // 1608 bytes > 1024
    peer.send(msg(3, 1)); // never read
    const err = await rc.whenClosed;
    expect(err).toBeInstanceOf(LimitError);
    expect(err!.message).toMatch(/maxMessageBytes = 1024/);
    expect(rc.msgs.map(tagOf)).toEqual([1]);
    // What the engine does on a transport ProtocolError: send Abort, then close().
    tc.send(msg(77));
    await tc.close();
    await rs.waitFor(1);
    expect(rs.msgs.map(tagOf)).toEqual([77]);
    expect(await rs.whenClosed).toBeUndefined(); // then the peer sees EOF
    expect(rc.closed).toHaveLength(1);
    await new Promise<void>((r) => (c.closed ? r() : c.once("close", () => r())));
    expect(c.destroyed).toBe(true);
  });
});

describe("streamTransport over PassThrough pairs", () => {
  it("round trip and close from either side", async () => {
    const [a, b] = passThroughPair();
    const ta = streamTransport(a);
    const tb = streamTransport(b);
    const ra = start(ta);
    const rb = start(tb);
    ta.send(msg(1));
    tb.send(msg(2));
    await rb.waitFor(1);
    await ra.waitFor(1);
    let resolved = false;
    const p = tb.close().then(() => (resolved = true));
    tb.send(msg(3)); // after close: dropped
    await p;
    expect(resolved).toBe(true);
    expect(await ra.whenClosed).toBeUndefined();
    expect(await rb.whenClosed).toBeUndefined();
    expect(ra.msgs.map(tagOf)).toEqual([2]);
    await ta.close(); // idempotent after the end
    await tb.close();
  });

  it("messages that arrive before start() are delivered after it", async () => {
    const [a, b] = passThroughPair();
    const ta = streamTransport(a);
    const tb = streamTransport(b);
    ta.send(msg(7));
    ta.send(msg(8));
    await new Promise<void>((r) => setImmediate(r));
    const rb = start(tb);
    start(ta);
    await rb.waitFor(2);
    expect(rb.msgs.map(tagOf)).toEqual([7, 8]);
    await ta.close();
    await rb.whenClosed;
  });

  it("stream errors are DisconnectedErrors carrying the I/O error", async () => {
    const [a, b] = passThroughPair();
    const ra = start(streamTransport(a));
    const rb = start(streamTransport(b));
    const io = new Error("EPIPE-ish");
    a.destroy(io);
    const err = await ra.whenClosed;
    expect(err).toBeInstanceOf(DisconnectedError);
    expect(err!.cause).toBe(io);
    expect(await rb.whenClosed).toBeInstanceOf(DisconnectedError); // its readable side was aborted
  });

  it("EOF inside a message is a ProtocolError", async () => {
    const [a, b] = passThroughPair();
    const rb = start(streamTransport(b));
    const aErr = deferred<Error>();
    a.on("error", aErr.resolve); // a raw end: destroying b aborts a's readable side
    const frame = encodeFrameToBytes(msg(1, 4));
    a.write(frame.subarray(0, 20));
    a.end();
    const err = await rb.whenClosed;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err!.message).toMatch(/stream ended inside a message/);
  });

  it("garbage with too many segments is a LimitError; close() then ends and destroys the stream", async () => {
    const [a, b] = passThroughPair();
    const tb = streamTransport(b, { maxSegments: 2 });
    const rb = start(tb);
    const aErr = deferred<Error>();
    a.on("error", aErr.resolve); // a raw end: destroying b aborts a's readable side
    const fromB: Buffer[] = [];
    a.on("data", (c: Buffer) => fromB.push(c));
    a.write(new Uint8Array([5, 0, 0, 0, 1, 0, 0, 0]));
    const err = await rb.whenClosed;
    expect(err).toBeInstanceOf(LimitError);
    expect(err!.message).toMatch(/maxSegments = 2/);
    expect(b.destroyed).toBe(false); // the write side is kept for the Abort
    tb.send(msg(5));
    await tb.close();
    expect(b.destroyed).toBe(true);
    expect(rb.closed).toHaveLength(1);
    expect(Buffer.concat(fromB).readUInt32LE(8)).toBe(5);
    await aErr.promise.catch(() => {});
  });

  it("destroy(err) reports err once, asynchronously, and drops queued writes", async () => {
    const [a, b] = passThroughPair();
    const ta = streamTransport(a);
    const ra = start(ta);
    const rb = start(streamTransport(b));
    const e = new Error("local");
    ta.send(msg(1));
    ta.destroy(e);
    ta.destroy(new Error("again"));
    expect(ra.closed).toHaveLength(0);
    expect(await ra.whenClosed).toBe(e);
    await rb.whenClosed;
    expect(ra.closed).toEqual([e]);
  });

  it("a throwing sink ends the link with its error instead of crashing", async () => {
    const [a, b] = passThroughPair();
    const tb = streamTransport(b);
    const closed = deferred<Error | undefined>();
    tb.start({
      message() {
        throw new Error("sink bug");
      },
      closed: (e) => closed.resolve(e),
    });
    const ta = streamTransport(a);
    start(ta);
    ta.send(msg(1));
    expect((await closed.promise)?.message).toBe("sink bug");
  });
});

describe("streamTransport batching", () => {
  it("small and large messages keep their order across the batch buffer; close() flushes the batch", async () => {
    const [a, b] = passThroughPair();
    const ta = streamTransport(a);
    const rb = start(streamTransport(b));
    start(ta);
    const sizes: number[] = [];
    for (let i = 0; i < 300; i++) {
      const words = i % 7 === 0 ? 300 : 1 + (i % 5); // every 7th is large (zero-copy path)
      sizes.push(words * 8);
      ta.send(i % 11 === 0 ? [...msg(i, words), new Uint8Array(3)] : msg(i, words)); // some odd-sized segments
    }
    await ta.close(); // in the same tick as the sends: the batch must be flushed before end()
    expect(await rb.whenClosed).toBeUndefined();
    expect(rb.msgs.map(tagOf)).toEqual([...Array(300).keys()]);
    expect(rb.msgs.map((m) => m[0]!.byteLength)).toEqual(sizes);
    expect(rb.msgs[11]!.map((s) => s.byteLength)).toEqual([sizes[11], 8]); // padded to a word
  });
});

describe("streamTransport backpressure", () => {
  it("queues while write() returns false and flushes on 'drain', in order", async () => {
    // A writable that holds each write until we let it go.
    const pending: (() => void)[] = [];
    const received: Buffer[] = [];
    const sinkSide = new Writable({
      highWaterMark: 64,
      write(chunk: Buffer, _enc, cb) {
        received.push(chunk);
        pending.push(cb);
      },
      writev(chunks, cb) {
        for (const c of chunks) received.push(c.chunk as Buffer);
        pending.push(cb);
      },
    });
    const readSide = new PassThrough();
    const d = Duplex.from({ readable: readSide, writable: sinkSide });
    const t = streamTransport(d);
    start(t);
    // 1608 bytes per frame: above the small-message batching, so each frame is its own chunks.
    for (let i = 0; i < 50; i++) t.send(msg(i, 200));
    await new Promise<void>((r) => setImmediate(r));
    // Only what fit before write() said false went into the stream; the rest waits in our queue.
    expect(d.writableLength).toBeLessThan(50 * 1608);
    let rounds = 0;
    while (pending.length > 0) {
      rounds++;
      pending.shift()!();
      await new Promise<void>((r) => setImmediate(r));
      if (rounds > 1000) throw new Error("no progress");
    }
    const all = Buffer.concat(received);
    expect(all.byteLength).toBe(50 * 1608);
    for (let i = 0; i < 50; i++) expect(all.readUInt32LE(i * 1608 + 8)).toBe(i);
    expect(rounds).toBeGreaterThan(1);
    const closing = t.close();
    await new Promise<void>((r) => setImmediate(r));
    while (pending.length > 0) pending.shift()!();
    await closing;
  });

  it("close() while blocked writes the queue first, then ends", async () => {
    const pending: (() => void)[] = [];
    const received: Buffer[] = [];
    let finalCalledAfter = -1;
    const sinkSide = new Writable({
      highWaterMark: 64,
      write(chunk: Buffer, _enc, cb) {
        received.push(chunk);
        pending.push(cb);
      },
      final(cb) {
        finalCalledAfter = Buffer.concat(received).byteLength;
        cb();
      },
    });
    const d = Duplex.from({ readable: new PassThrough(), writable: sinkSide });
    const t = streamTransport(d);
    start(t);
    for (let i = 0; i < 20; i++) t.send(msg(i, 200));
    let closed = false;
    const closing = t.close().then(() => (closed = true));
    t.send(msg(99)); // after close: dropped
    expect(() => t.send([])).not.toThrow(); // dropped before any check: the transport is closing
    let rounds = 0;
    while (!closed) {
      if (pending.length > 0) pending.shift()!();
      await new Promise<void>((r) => setImmediate(r));
      if (++rounds > 1000) throw new Error("no progress");
    }
    await closing;
    expect(Buffer.concat(received).byteLength).toBe(20 * 1608);
    expect(finalCalledAfter).toBe(20 * 1608);
  });

  it("sending an empty segment list is a RangeError (a caller bug)", async () => {
    const [a, b] = passThroughPair();
    const bErr = deferred<Error>();
    b.on("error", bErr.resolve); // a raw end: destroying a aborts b's readable side
    const t = streamTransport(a);
    expect(() => t.send([])).toThrow(RangeError);
    t.destroy();
    await bErr.promise;
  });
});
