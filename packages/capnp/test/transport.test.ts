// The Transport contract (docs/contracts.md §1), checked the same way for every transport in
// this package: memoryTransportPair and streamTransport over a PassThrough pair.
import { describe, expect, it } from "vitest";
import { Duplex, PassThrough } from "node:stream";
import { memoryTransportPair, streamTransport, deferred } from "@multiprocess-ts/capnp";
import type { Transport } from "@multiprocess-ts/capnp";

type PairFactory = () => [Transport, Transport];

const factories: [string, PairFactory][] = [
  ["memoryTransportPair", () => memoryTransportPair()],
  [
    "streamTransport(PassThrough pair)",
    () => {
      const ab = new PassThrough();
      const ba = new PassThrough();
      ab.on("error", () => {});
      ba.on("error", () => {});
      return [
        streamTransport(Duplex.from({ readable: ba, writable: ab })),
        streamTransport(Duplex.from({ readable: ab, writable: ba })),
      ];
    },
  ],
];

function msg(tag: number): Uint8Array[] {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint32(0, tag, true);
  return [b];
}
const tagOf = (m: Uint8Array[]): number => new DataView(m[0]!.buffer, m[0]!.byteOffset, 8).getUint32(0, true);

function rec(t: Transport) {
  const got: number[] = [];
  const closed: (Error | undefined)[] = [];
  const done = deferred<Error | undefined>();
  let want = Infinity;
  let reached = deferred<void>();
  t.start({
    message: (m) => {
      got.push(tagOf(m));
      if (got.length >= want) reached.resolve();
    },
    closed: (e) => {
      closed.push(e);
      done.resolve(e);
    },
  });
  return {
    got,
    closed,
    done: done.promise,
    until(n: number): Promise<void> {
      want = n;
      reached = deferred<void>();
      if (got.length >= n) reached.resolve();
      return reached.promise;
    },
  };
}

describe.each(factories)("Transport contract: %s", (_name, make) => {
  it("start() twice throws", () => {
    const [a, b] = make();
    rec(a);
    expect(() => a.start({ message: () => {}, closed: () => {} })).toThrow(/twice/);
    a.destroy();
    b.destroy();
  });

  it("ordered delivery both ways; messages sent before the peer starts wait for it", async () => {
    const [a, b] = make();
    const ra = rec(a);
    for (let i = 0; i < 50; i++) a.send(msg(i));
    const rb = rec(b);
    for (let i = 0; i < 5; i++) b.send(msg(100 + i));
    await rb.until(50);
    await ra.until(5);
    expect(rb.got).toEqual([...Array(50).keys()]);
    expect(ra.got).toEqual([100, 101, 102, 103, 104]);
    await a.close();
    await Promise.all([ra.done, rb.done]);
  });

  it("close() flushes, both sinks see closed() once with no error, later sends drop", async () => {
    const [a, b] = make();
    const ra = rec(a);
    const rb = rec(b);
    a.send(msg(1));
    a.send(msg(2));
    const closing = a.close();
    a.send(msg(3));
    await closing;
    expect(await rb.done).toBeUndefined();
    expect(await ra.done).toBeUndefined();
    expect(rb.got).toEqual([1, 2]);
    b.send(msg(4));
    await a.close();
    await b.close();
    a.destroy();
    b.destroy(new Error("late"));
    await new Promise<void>((r) => setImmediate(r));
    expect(ra.closed).toEqual([undefined]);
    expect(rb.closed).toEqual([undefined]);
    expect(ra.got).toEqual([]);
  });

  it("destroy(err): closed(err) locally, asynchronously and once; the peer ends too", async () => {
    const [a, b] = make();
    const ra = rec(a);
    const rb = rec(b);
    const e = new Error("bye");
    a.destroy(e);
    expect(ra.closed).toEqual([]);
    expect(await ra.done).toBe(e);
    await rb.done;
    expect(rb.closed).toHaveLength(1);
    expect(ra.closed).toHaveLength(1);
  });

  it("the sink may call back into the transport from closed() and message()", async () => {
    const [a, b] = make();
    const done = deferred<void>();
    const seen: number[] = [];
    b.start({
      message: (m) => {
        seen.push(tagOf(m));
        b.send(msg(tagOf(m) + 1000)); // reply from inside the callback
        if (tagOf(m) === 2) b.destroy(); // end from inside the callback: later messages are dropped
      },
      closed: () => {
        b.send(msg(9)); // dropped, no throw
        void b.close().then(() => done.resolve());
      },
    });
    const ra = rec(a);
    a.send(msg(1));
    a.send(msg(2));
    a.send(msg(3));
    await done.promise;
    await ra.done;
    expect(seen).toEqual([1, 2]);
  });
});
