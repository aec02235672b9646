// The small-call mechanisms of issue 13 over a real Unix socket (streamTransport): the lazy Finish
// (one write per call per side in a call loop), the recycling of our own outgoing message
// buffers (buffers.ts), which must never let a builder kept past send alias another message, and
// incoming messages read in place (in their socket chunk, or in a shared slab).
// Threading: loop thread (the test's thread).
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { countWrites, unixSocketPair } from "@multiprocess-ts/testing";
import { RpcConnection, RpcError, localCapability, streamTransport } from "@multiprocess-ts/capnp";
import type { Capability, IncomingCall, Server } from "@multiprocess-ts/capnp";
import { Segment } from "capnp-ts/src/serialization/segment.js";
import { freeBufferCount, recycleMessage, takeBuffer, takeView } from "../dist/buffers.js";
import { callMessage, dataViewOf, messageInPlace, newReturnMessage } from "../dist/fastpath.js";
import { Box, CALC, CalcServer, M, call, callA } from "./rpc-helpers.js";

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface SocketPair {
  client: RpcConnection;
  server: RpcConnection;
  boot: Capability;
  /** The server's end of the socket (read through 'data' events). */
  serverSocket: net.Socket;
  /** write()/writev() calls on the client's socket so far. */
  clientWrites(): number;
  /** Close both, then check that both tables are empty. */
  dispose(): Promise<void>;
}

async function socketPair(impl: Server): Promise<SocketPair> {
  const sockets = await unixSocketPair();
  const { client: c, server: s } = sockets;
  const writes = countWrites(c);
  const bootCap = localCapability(impl);
  const server = new RpcConnection(streamTransport(s), { bootstrap: bootCap, name: "server" });
  bootCap.close();
  const client = new RpcConnection(streamTransport(c), { name: "client" });
  const boot = client.bootstrap();
  let disposed = false;
  const pair: SocketPair = {
    client,
    server,
    boot,
    serverSocket: s,
    clientWrites: writes,
    async dispose() {
      if (disposed) return;
      disposed = true;
      boot.close();
      await client.close();
      await server.closed;
      expect(client.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
      expect(server.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
    },
  };
  cleanups.push(async () => {
    await pair.dispose();
    await sockets.close();
  });
  return pair;
}

/** Resolves once the server's answer table has `n` entries, checked after each chunk it reads. */
function waitForAnswers(p: SocketPair, n: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const check = (): boolean => {
      if (p.server.stats().answers !== n) return false;
      resolve();
      return true;
    };
    if (check()) return;
    const onData = (): void => {
      // The transport's own 'data' listener (registered first) has handed the chunk to the engine.
      if (check()) p.serverSocket.off("data", onData);
    };
    p.serverSocket.on("data", onData);
  });
}

describe("small calls over a Unix socket", () => {
  it("a sequential call loop writes once per call: each Finish rides with the next Call", async () => {
    const p = await socketPair(new CalcServer());
    expect(await callA(p.boot, M.add, (b) => { b.a = 1; b.b = 1; })).toBe(2); // bootstrap done, warm
    const before = p.clientWrites();
    const n = 50;
    for (let i = 0; i < n; i++) expect(await callA(p.boot, M.add, (b) => { b.a = i; b.b = 1; })).toBe(i + 1);
    const writes = p.clientWrites() - before;
    // n Calls in n writes (their Returns say noFinishNeeded: no Finish; with Finishes, each would
    // ride with the next Call and the last go out alone, n + 1 writes).
    expect(writes).toBeLessThanOrEqual(n + 1);
    expect(writes).toBeGreaterThanOrEqual(n);
    await p.dispose();
    expect(p.server.stats().answers).toBe(0); // every Finish arrived
  });

  it("a lone call's Finish reaches the server without a next call (its bounded wait), in one write of its own", async () => {
    const p = await socketPair(new CalcServer());
    expect(await callA(p.boot, M.add, (b) => { b.a = 1; b.b = 1; })).toBe(2); // bootstrap done
    await waitForAnswers(p, 0);
    const before = p.clientWrites();
    // A failed call: its Return (an exception) needs a Finish (results without capabilities
    // would not: their Return says noFinishNeeded).
    const err = await call(p.boot, M.fail, (b) => b.setText(0, "failed")).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect(p.server.stats().answers).toBe(1); // its Finish has not been written yet
    await waitForAnswers(p, 0); // nothing else is sent: the Finish goes out by itself
    expect(p.clientWrites() - before).toBe(2); // the Call, then the Finish alone
    await p.dispose();
  });

  it("calls in flight, each sent again from its continuation: the calls one read's Returns wake share a write", async () => {
    const p = await socketPair(new CalcServer());
    expect(await callA(p.boot, M.add, (b) => { b.a = 1; b.b = 1; })).toBe(2); // bootstrap done
    const before = p.clientWrites();
    const lanes = 16;
    const rounds = 10;
    const lane = async (k: number): Promise<void> => {
      for (let r = 0; r < rounds; r++) expect(await callA(p.boot, M.add, (b) => { b.a = k; b.b = r; })).toBe(k + r);
    };
    await Promise.all(Array.from({ length: lanes }, (_, k) => lane(k)));
    // The server answers a read's calls in one write, so the client reads their Returns at once;
    // the continuations they wake send before the flush (a promise reaction queued after them).
    const writes = p.clientWrites() - before;
    expect(writes).toBeLessThanOrEqual(2 * rounds);
    await p.dispose();
  });

  it("a request's params kept past send cannot write into a later call's message", async () => {
    const p = await socketPair(new CalcServer());
    expect(await callA(p.boot, M.add, (b) => { b.a = 1; })).toBe(1);
    const a = p.boot.newCall(CALC, M.add, Box);
    a.params.a = 40;
    a.params.b = 2;
    const ra = a.send();
    // The Call was copied into the transport's batch: its buffer is reused by the next request.
    const b = p.boot.newCall(CALC, M.add, Box);
    b.params.a = 7;
    b.params.b = 3;
    expect(() => {
      a.params.a = 1000; // a stale builder: must not land in b's message
    }).toThrow(RangeError);
    const rb = b.send();
    const [resA, resB] = await Promise.all([ra, rb]);
    expect(resA.results(Box).a).toBe(42);
    expect(resB.results(Box).a).toBe(10);
    resA.close();
    resB.close();
    await p.dispose();
  });

  it("a server's results builder kept past its Return cannot write into a later Return", async () => {
    let kept: Box | null = null;
    const stale: unknown[] = [];
    const impl: Server = {
      dispatch(call: IncomingCall): void {
        if (kept !== null) {
          try {
            kept.a = 666; // the previous call's results, already sent
          } catch (e) {
            stale.push(e);
          }
        }
        const r = call.results(Box);
        r.a = call.params(Box).a * 2;
        kept = r;
      },
    };
    const p = await socketPair(impl);
    for (let i = 1; i <= 5; i++) expect(await callA(p.boot, M.add, (b) => { b.a = i; })).toBe(i * 2);
    expect(stale).toHaveLength(4);
    for (const e of stale) expect(e).toBeInstanceOf(RangeError);
    await p.dispose();
  });
});

describe("incoming messages read in place", () => {
  it("pipelined calls sharing socket chunks keep their own bytes: views a server keeps stay intact", async () => {
    const kept: { id: number; data: Uint8Array; text: string }[] = [];
    const impl: Server = {
      dispatch(call: IncomingCall): void {
        const p = call.params(Box);
        // A view into the incoming message (in its socket chunk, or a shared slab), kept past
        // the call: later messages must never be written over it.
        kept.push({ id: p.a, data: p.data(1), text: p.text(0) });
        const r = call.results(Box);
        r.a = p.a;
        r.setData(1, p.data(1));
      },
    };
    const p = await socketPair(impl);
    const bytes = (i: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, k) => (i * 31 + k) & 0xff);
    // Sizes around the in-place and slab thresholds (1 KiB buffers, 512-byte slab messages).
    const sizes = [0, 8, 100, 400, 500, 600, 1000, 3000];
    const n = 256;
    const calls = [];
    for (let i = 0; i < n; i++) {
      const req = p.boot.newCall(CALC, M.echo, Box);
      req.params.a = i;
      req.params.setText(0, `call ${i}`);
      req.params.setData(1, bytes(i, sizes[i % sizes.length]!));
      calls.push(req.send());
    }
    const results = await Promise.all(calls);
    for (let i = 0; i < n; i++) {
      const r = results[i]!.results(Box);
      expect(r.a).toBe(i);
      expect(r.data(1)).toEqual(bytes(i, sizes[i % sizes.length]!));
      results[i]!.close();
    }
    expect(kept).toHaveLength(n);
    for (const k of kept) {
      expect(k.text).toBe(`call ${k.id}`);
      expect(k.data).toEqual(bytes(k.id, sizes[k.id % sizes.length]!));
    }
    await p.dispose();
  });
});

describe("buffers.ts", () => {
  it("a recycled buffer comes back zeroed; the recycled message is cut off from it", () => {
    const { msg, results } = newReturnMessage(Box, 128);
    results!.a = -1;
    results!.setText(0, "hello");
    const size = msg._capnp.segments[0]!.buffer.byteLength;
    const buf = msg._capnp.segments[0]!.buffer;
    const n = freeBufferCount();
    recycleMessage(msg);
    expect(freeBufferCount()).toBe(n + 1);
    expect(msg._capnp.segments[0]!.byteLength).toBe(0);
    expect(() => results!.a).toThrow(RangeError);
    recycleMessage(msg); // a second time: nothing left to take
    expect(freeBufferCount()).toBe(n + 1);
    const again = takeBuffer(size);
    expect(again).toBe(buf);
    expect(new Uint8Array(again).every((x) => x === 0)).toBe(true);
  });

  it("a recycled buffer comes back zeroed whether its message used a few words or most of it", () => {
    // Up to 256 used bytes are zeroed through the buffer's DataView, more with a typed array fill.
    for (const text of ["x", "y".repeat(200), "z".repeat(600)]) {
      const { msg, results } = newReturnMessage(Box, 800); // a buffer under 1 KiB: pooled
      results!.a = -1;
      results!.setText(0, text);
      const buf = msg._capnp.segments[0]!.buffer;
      expect(msg._capnp.segments).toHaveLength(1);
      recycleMessage(msg);
      const again = takeBuffer(buf.byteLength);
      expect(again).toBe(buf);
      expect(new Uint8Array(again).every((x) => x === 0)).toBe(true);
    }
  });

  it("a recycled buffer keeps its DataView: the next message over it reuses the view, not a new one", () => {
    const { msg } = newReturnMessage(Box, 64);
    const seg = msg._capnp.segments[0]!;
    const buf = seg.buffer;
    const dv = dataViewOf(seg);
    recycleMessage(msg);
    const again = takeView(buf.byteLength);
    expect(again).toBe(dv);
    expect(again.buffer).toBe(buf);
    // A Call over a recycled Call's buffer: same buffer, same view.
    const m1 = callMessage(1n, 2, Box._capnp.size);
    const dv1 = dataViewOf(m1._capnp.segments[0]!);
    recycleMessage(m1);
    const m2 = callMessage(1n, 2, Box._capnp.size);
    expect(dataViewOf(m2._capnp.segments[0]!)).toBe(dv1);
    expect(m2._capnp.segments[0]!.buffer).toBe(dv1.buffer);
    expect(dataViewOf(m1._capnp.segments[0]!)).not.toBe(dv1); // the recycled message is cut off
  });

  it("segments made without capnp-ts's constructor have its fields, in its order", () => {
    const fresh = new Segment(0, new (class {})() as never, new ArrayBuffer(8), 8);
    const { msg } = newReturnMessage(Box, 64);
    expect(Reflect.ownKeys(msg._capnp.segments[0]!)).toEqual(Reflect.ownKeys(fresh));
    expect(msg._capnp.segments[0]).toBeInstanceOf(Segment);
  });

  it("in-place messages in one buffer share its DataView and read their own bytes; another buffer gets its own", () => {
    const slab = new Uint8Array(1024);
    const a = slab.subarray(0, 16);
    const b = slab.subarray(16, 32);
    new DataView(slab.buffer).setUint32(8, 0x1111, true);
    new DataView(slab.buffer).setUint32(24, 0x2222, true);
    const ma = messageInPlace(a);
    const mb = messageInPlace(b);
    const sa = ma._capnp.segments[0]!;
    const sb = mb._capnp.segments[0]!;
    expect(dataViewOf(sa)).toBe(dataViewOf(sb));
    expect(Reflect.ownKeys(sa)).toEqual(Reflect.ownKeys(new Segment(0, ma, slab.buffer, 8)));
    expect(sa.hasCapacity(8)).toBe(false); // in place: never grows into the bytes after it
    expect(dataViewOf(sa).getUint32(sa.byteOffset + 8, true)).toBe(0x1111);
    expect(dataViewOf(sb).getUint32(sb.byteOffset + 8, true)).toBe(0x2222);
    expect([sa.byteOffset, sa.byteLength, sb.byteOffset, sb.byteLength]).toEqual([0, 16, 16, 32]);
    const other = messageInPlace(new Uint8Array(16))._capnp.segments[0]!;
    expect(dataViewOf(other)).not.toBe(dataViewOf(sa));
    expect(dataViewOf(other).buffer).toBe(other.buffer);
  });

  it("multi-segment and large messages are not taken", () => {
    const n = freeBufferCount();
    const { msg, results } = newReturnMessage(Box, 0);
    results!.setData(1, new Uint8Array(4096)); // does not fit: a second segment
    expect(msg._capnp.segments.length).toBeGreaterThan(1);
    recycleMessage(msg);
    const big = newReturnMessage(Box, 2048).msg;
    recycleMessage(big);
    expect(freeBufferCount()).toBe(n);
    expect(results!.data(1).byteLength).toBe(4096); // still readable
  });
});
