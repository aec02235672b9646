import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { memoryTransportPair, type MemoryTransport } from "../dist/memory.js";
import { DisconnectedError } from "../dist/errors.js";

/** Segments of a capnp-ts message (views over its segment buffers). */
function segmentsOf(m: capnp.Message): Uint8Array[] {
  return m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength));
}

function rpcMessage(build: (m: rpc.Message) => void): Uint8Array[] {
  const m = new capnp.Message();
  build(m.initRoot(rpc.Message));
  return segmentsOf(m);
}

function tagged(n: number): Uint8Array[] {
  return rpcMessage((m) => {
    m.initFinish().questionId = n;
  });
}

function tagOf(segs: Uint8Array[]): number {
  const buf = segs.map((s) => s.slice().buffer);
  // Rebuild a framed buffer to decode with capnp-ts.
  const header = new Uint32Array(Math.ceil((segs.length + 1) / 2) * 2);
  header[0] = segs.length - 1;
  segs.forEach((s, i) => (header[i + 1] = s.byteLength / 8));
  const total = header.byteLength + segs.reduce((a, s) => a + s.byteLength, 0);
  const out = new Uint8Array(total);
  out.set(new Uint8Array(header.buffer), 0);
  let o = header.byteLength;
  for (const b of buf) {
    out.set(new Uint8Array(b), o);
    o += b.byteLength;
  }
  return new capnp.Message(out, false).getRoot(rpc.Message).finish.questionId;
}

interface Recorder {
  got: number[];
  closed: (Error | undefined)[];
  closedCount: number;
}

function record(t: MemoryTransport): Recorder {
  const r: Recorder = { got: [], closed: [], closedCount: 0 };
  t.start({
    message: (segs) => r.got.push(tagOf(segs)),
    closed: (err) => {
      r.closed.push(err);
      r.closedCount++;
    },
  });
  return r;
}

/** Let queued microtasks (and the ones they queue) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
  await new Promise<void>((r) => setImmediate(r));
}

describe("memoryTransportPair", () => {
  it("delivers asynchronously and in order", async () => {
    const [a, b] = memoryTransportPair();
    const rb = record(b);
    record(a);
    for (let i = 1; i <= 5; i++) a.send(tagged(i));
    expect(rb.got).toEqual([]); // not synchronous
    await settle();
    expect(rb.got).toEqual([1, 2, 3, 4, 5]);
  });

  it("buffers messages until start()", async () => {
    const [a, b] = memoryTransportPair();
    a.send(tagged(7));
    await settle();
    const rb = record(b);
    await settle();
    expect(rb.got).toEqual([7]);
  });

  it("fence holds messages; release(n) delivers the first n; release() lifts the fence", async () => {
    const [a, b] = memoryTransportPair();
    const rb = record(b);
    record(a);
    a.send(tagged(1));
    a.fence();
    a.send(tagged(2));
    a.send(tagged(3));
    a.send(tagged(4));
    expect(a.held).toBe(3);
    await settle();
    expect(rb.got).toEqual([1]);
    a.release(1);
    expect(a.held).toBe(2);
    await settle();
    expect(rb.got).toEqual([1, 2]);
    a.send(tagged(5)); // still fenced
    expect(a.held).toBe(3);
    a.release();
    expect(a.held).toBe(0);
    await settle();
    expect(rb.got).toEqual([1, 2, 3, 4, 5]);
    a.send(tagged(6)); // fence lifted
    await settle();
    expect(rb.got).toEqual([1, 2, 3, 4, 5, 6]);
    expect(a.held).toBe(0);
  });

  it("fence on one side does not hold the other direction", async () => {
    const [a, b] = memoryTransportPair();
    const ra = record(a);
    record(b);
    a.fence();
    b.send(tagged(9));
    await settle();
    expect(ra.got).toEqual([9]);
  });

  it("close() flushes queued and held messages, then both sides see closed() once", async () => {
    const [a, b] = memoryTransportPair();
    const ra = record(a);
    const rb = record(b);
    a.send(tagged(1));
    a.fence();
    a.send(tagged(2));
    let closedResolved = false;
    const p = a.close().then(() => (closedResolved = true));
    a.send(tagged(3)); // after close: dropped
    await settle();
    expect(rb.got).toEqual([1]);
    expect(closedResolved).toBe(false);
    expect(rb.closedCount).toBe(0);
    a.release();
    await p;
    await settle();
    expect(rb.got).toEqual([1, 2]);
    expect(rb.closed).toEqual([undefined]);
    expect(ra.closed).toEqual([undefined]);
    b.send(tagged(4)); // after the link ended: dropped
    await settle();
    expect(ra.got).toEqual([]);
    await a.close(); // idempotent
    await b.close();
    await settle();
    expect(ra.closedCount).toBe(1);
    expect(rb.closedCount).toBe(1);
  });

  it("break(err) fails both sides with the error and drops what is in flight", async () => {
    const [a, b] = memoryTransportPair();
    const ra = record(a);
    const rb = record(b);
    a.fence();
    a.send(tagged(1));
    b.send(tagged(2));
    const err = new Error("boom");
    a.break(err);
    a.release();
    await settle();
    expect(ra.got).toEqual([]);
    expect(rb.got).toEqual([]);
    expect(ra.closed).toEqual([err]);
    expect(rb.closed).toEqual([err]);
    a.break();
    b.destroy();
    await settle();
    expect(ra.closedCount).toBe(1);
    expect(rb.closedCount).toBe(1);
  });

  it("break() without an error reports a DisconnectedError", async () => {
    const [a, b] = memoryTransportPair();
    const ra = record(a);
    const rb = record(b);
    b.break();
    await settle();
    expect(ra.closed[0]).toBeInstanceOf(DisconnectedError);
    expect(rb.closed[0]).toBe(ra.closed[0]);
  });

  it("closed() is reported asynchronously, never from inside the call", async () => {
    const [a, b] = memoryTransportPair();
    const ra = record(a);
    record(b);
    a.destroy(new Error("x"));
    expect(ra.closedCount).toBe(0);
    await settle();
    expect(ra.closedCount).toBe(1);
  });

  it("destroy(err): local sink sees err, peer sees a DisconnectedError caused by it", async () => {
    const [a, b] = memoryTransportPair();
    const ra = record(a);
    const rb = record(b);
    const err = new Error("local failure");
    a.send(tagged(1));
    a.destroy(err);
    a.send(tagged(2));
    await settle();
    expect(rb.got).toEqual([]);
    expect(ra.closed).toEqual([err]);
    expect(rb.closed[0]).toBeInstanceOf(DisconnectedError);
    expect((rb.closed[0] as Error).cause).toBe(err);
  });

  it("closed() is reported to a sink that starts after the end", async () => {
    const [a, b] = memoryTransportPair();
    a.break(new Error("early"));
    await settle();
    const ra = record(a);
    const rb = record(b);
    await settle();
    expect(ra.closedCount).toBe(1);
    expect(rb.closedCount).toBe(1);
  });

  it("a throwing sink breaks the link instead of crashing", async () => {
    const [a, b] = memoryTransportPair();
    const ra = record(a);
    const closed: (Error | undefined)[] = [];
    b.start({
      message: () => {
        throw new Error("sink bug");
      },
      closed: (e) => closed.push(e),
    });
    a.send(tagged(1));
    await settle();
    expect(closed).toHaveLength(1);
    expect(closed[0]?.message).toBe("sink bug");
    expect(ra.closed[0]?.message).toBe("sink bug");
  });

  it("wireLog names each rpc.capnp message kind sent, and the Return variant", () => {
    const [a] = memoryTransportPair();
    a.send(rpcMessage((m) => (m.initBootstrap().questionId = 0)));
    a.send(
      rpcMessage((m) => {
        const c = m.initCall();
        c.questionId = 1;
        c.interfaceId = 0x1234n;
        c.methodId = 2;
        c.initTarget().importedCap = 0;
        c.initParams();
      }),
    );
    a.send(
      rpcMessage((m) => {
        const r = m.initReturn();
        r.answerId = 1;
        r.releaseParamCaps = false;
        r.initException().reason = "nope";
      }),
    );
    a.send(
      rpcMessage((m) => {
        const r = m.initReturn();
        r.answerId = 2;
        r.initResults();
      }),
    );
    a.send(tagged(1));
    a.send(rpcMessage((m) => (m.initRelease().id = 3)));
    a.send(rpcMessage((m) => (m.initResolve().promiseId = 3)));
    a.send(rpcMessage((m) => m.initDisembargo().initContext().senderLoopback = 1));
    a.send(rpcMessage((m) => (m.initAbort().reason = "bye")));
    a.send([new Uint8Array(8)]); // null root
    expect(a.wireLog).toEqual([
      { dir: "out", which: "bootstrap" },
      { dir: "out", which: "call" },
      { dir: "out", which: "return", variant: "exception" },
      { dir: "out", which: "return", variant: "results" },
      { dir: "out", which: "finish" },
      { dir: "out", which: "release" },
      { dir: "out", which: "resolve" },
      { dir: "out", which: "disembargo" },
      { dir: "out", which: "abort" },
      { dir: "out", which: "?" },
    ]);
  });
});

describe("memoryTransportPair under an endless exchange", () => {
  it("two ends that always answer each other still let timers run", async () => {
    const [a, b] = memoryTransportPair();
    let exchanged = 0;
    let stop = false;
    const echo = (t: MemoryTransport) => ({
      message: (segs: Uint8Array[]) => {
        exchanged++;
        if (!stop) t.send(segs);
      },
      closed: () => {},
    });
    a.start(echo(a));
    b.start(echo(b));
    a.send(tagged(1));
    // Without the burst limit, this timer would never fire: microtasks would run forever.
    await new Promise<void>((r) => setTimeout(r, 1));
    stop = true;
    expect(exchanged).toBeGreaterThan(1000);
    a.break();
    await settle();
  });
});
