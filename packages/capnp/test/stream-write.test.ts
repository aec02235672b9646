/**
 * The stream transport's write side on a plain net.Socket (stream.ts, socket-write.ts): a batch
 * is flushed by a promise reaction (no nextTick), after the reactions queued before it, so the
 * messages those send share its write; while the socket's Writable side is idle the batch goes
 * to the socket's handle write (`_write`) and not through `Writable.write()`; a write the kernel
 * cannot take at once holds later messages, in order, until it completes; a failed write ends
 * the link with a DisconnectedError. Runs on the test's main thread.
 */
import { afterEach, describe, expect, it } from "vitest";
import { countWrites, unixSocketPair } from "@multiprocess-ts/testing";
import type * as net from "node:net";
import { streamTransport } from "../dist/stream.js";
import { deferred, DisconnectedError } from "../dist/errors.js";
import type { FlowControlledTransport } from "../dist/write-flow.js";
import { msg, recorder } from "./tagged-messages.js";

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function pair(): Promise<{ a: net.Socket; b: net.Socket; ta: FlowControlledTransport }> {
  const sockets = await unixSocketPair();
  cleanups.push(() => sockets.close());
  return { a: sockets.server, b: sockets.client, ta: streamTransport(sockets.server) };
}


describe("streamTransport writes on a net.Socket", () => {
  it("flushes in a promise reaction: written before later reactions and ticks, shared by the reactions queued before it", async () => {
    const { a, b, ta } = await pair();
    ta.start({ message() {}, closed() {} });
    const rb = recorder(streamTransport(b));
    const writes = countWrites(a);
    const atTick = deferred<number>();
    const afterHops = deferred<number>();
    // Three reactions queued together (the continuations one Return dispatch wakes): each sends;
    // the flush the first one queues runs after the other two, so one write carries all three.
    const start = Promise.resolve();
    for (let i = 0; i < 3; i++) void start.then(() => ta.send(msg(i)));
    process.nextTick(() => atTick.resolve(writes()));
    void start.then(() => undefined).then(() => undefined).then(() => afterHops.resolve(writes()));
    expect(await afterHops.promise).toBe(1); // written within the microtask queue, not on a tick
    expect(await atTick.promise).toBe(1);
    await rb.waitFor(3);
    expect(rb.tags).toEqual([0, 1, 2]);
    expect(writes()).toBe(1);
    await ta.close();
    expect(await rb.closed).toBeUndefined();
  });

  it("writes an idle socket's batch through its handle write, not Writable.write(); a large message in between keeps its place", async () => {
    const { a, b, ta } = await pair();
    ta.start({ message() {}, closed() {} });
    const rb = recorder(streamTransport(b));
    const handleWrites = countWrites(a);
    let streamWrites = 0;
    const write = a.write.bind(a) as (...args: unknown[]) => boolean;
    (a as { write: unknown }).write = (...args: unknown[]) => (streamWrites++, write(...args));
    for (let i = 0; i < 5; i++) {
      ta.send(msg(i));
      await rb.waitFor(i + 1);
    }
    expect(streamWrites).toBe(0);
    expect(handleWrites()).toBe(5);
    // A large message is framed and written through the (corked) Writable, after the batch so far.
    ta.send(msg(5));
    ta.send(msg(6, 300));
    ta.send(msg(7));
    await rb.waitFor(8);
    expect(rb.tags).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(streamWrites).toBeGreaterThan(0);
    // Idle again: back to the handle write.
    const before = streamWrites;
    ta.send(msg(8));
    await rb.waitFor(9);
    expect(streamWrites).toBe(before);
    await ta.close();
    expect(await rb.closed).toBeUndefined();
  });

  it("a batch the kernel cannot take at once holds later messages, in order, counted as queued, until the peer reads", async () => {
    const { a, b, ta } = await pair();
    ta.start({ message() {}, closed() {} });
    b.pause(); // the peer reads nothing until resumed below
    // One ~1 KiB message per event-loop turn (each its own batch, written to the idle socket)
    // until a write stays pending: the socket buffers are full.
    let sent = 0;
    while (ta.flowStats().queuedBytes === 0) {
      if (sent === 10_000) throw new Error("the socket never filled");
      ta.send(msg(sent++, 125));
      await new Promise<void>((r) => setImmediate(r));
    }
    // The pending bytes are the handle write's: nothing went into the socket's Writable.
    expect(a.writableLength).toBe(0);
    for (let i = 0; i < 100; i++) ta.send(msg(sent++, 125)); // held behind it, in order
    await new Promise<void>((r) => setImmediate(r));
    expect(ta.flowStats().queuedBytes).toBeGreaterThan(100 * 1000);
    const n = sent;
    const rb = recorder(streamTransport(b));
    b.resume(); // paused explicitly: a 'data' listener alone does not resume it
    await rb.waitFor(n);
    expect(rb.tags).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(ta.flowStats().queuedBytes).toBe(0);
    await ta.close();
    expect(await rb.closed).toBeUndefined();
  });

  it("a write that fails (the peer is gone) ends the link with a DisconnectedError", async () => {
    const { a, b, ta } = await pair();
    const closed = deferred<Error | undefined>();
    ta.start({ message() {}, closed: (e) => closed.resolve(e) });
    b.destroy(); // the kernel closes the peer's end now; our side has not read its EOF yet
    ta.send(msg(1));
    const err = await closed.promise;
    expect(err).toBeInstanceOf(DisconnectedError);
    expect(a.destroyed).toBe(true);
    await ta.close();
  });
});
