/**
 * The direct write of socket-write.ts: an idle plain net.Socket's batch goes to its handle's own
 * `writeBuffer` with a request object reused across writes (no `_write`, no new WriteWrap per
 * write); a write libuv cannot finish at once keeps its request and its chunk, holds later
 * messages in order, and completes through the request's `oncomplete`; errors (at once or at
 * completion) end the link as Node's handle write reports them; a socket with a timeout takes
 * Node's handle write. Each test ends with a handle leak check. Runs on the test's main thread.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assertNoHandleLeaks, countWrites, handleBaseline, unixSocketPair, type HandleBaseline } from "@multiprocess-ts/testing";
import * as net from "node:net";
import { streamTransport } from "../dist/stream.js";
import { findWriteReq } from "../dist/socket-write.js";
import { readSocketInPlace, SocketReader } from "../dist/socket-read.js";
import { deferred, DisconnectedError } from "../dist/errors.js";
import type { FlowControlledTransport } from "../dist/write-flow.js";
import { msg, recorder } from "./tagged-messages.js";

const cleanups: (() => void | Promise<void>)[] = [];
let baseline: HandleBaseline;
beforeEach(() => {
  baseline = handleBaseline();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await assertNoHandleLeaks(baseline);
});

async function pair(): Promise<{ a: net.Socket; b: net.Socket; ta: FlowControlledTransport }> {
  const sockets = await unixSocketPair();
  cleanups.push(() => sockets.close());
  return { a: sockets.server, b: sockets.client, ta: streamTransport(sockets.server) };
}

/** Counts calls of the socket's `_write` (Node's handle write, the path the direct write skips). */
function countHandleWrites(s: net.Socket): () => number {
  const f = s as unknown as { _write: (...a: unknown[]) => unknown };
  const orig = f._write.bind(s);
  let n = 0;
  f._write = (...a) => (n++, orig(...a));
  return () => n;
}


/**
 * Sends ~1 KiB messages, one per event-loop turn, until a write stays pending (the peer reads
 * nothing: the socket buffers fill). Returns how many were sent.
 */
async function fill(ta: FlowControlledTransport, from = 0): Promise<number> {
  let sent = from;
  while (ta.flowStats().queuedBytes === 0) {
    if (sent - from === 10_000) throw new Error("the socket never filled");
    ta.send(msg(sent++, 125));
    await new Promise<void>((r) => setImmediate(r));
  }
  return sent;
}

/** The error's `cause` as Node's handle write makes it: `write CODE`, errno, code, syscall. */
function expectWriteError(err: Error | undefined): void {
  expect(err).toBeInstanceOf(DisconnectedError);
  const cause = (err as Error & { cause?: NodeJS.ErrnoException }).cause!;
  expect(cause).toBeInstanceOf(Error);
  expect(["EPIPE", "ECONNRESET"]).toContain(cause.code);
  expect(cause.message).toBe(`write ${cause.code}`);
  expect(cause.syscall).toBe("write");
  expect(cause.errno).toBeLessThan(0);
}

describe("the direct socket write", () => {
  it("is available on this Node: the write request class is found", () => {
    const C = findWriteReq();
    expect(C).not.toBeNull();
    expect(C!.name).toBe("WriteWrap");
    expect(findWriteReq()).toBe(C); // once per thread
  });

  it("writes an idle socket's batches through its handle's writeBuffer, not _write; bytesWritten stays true", async () => {
    const { a, b, ta } = await pair();
    ta.start({ message() {}, closed() {} });
    const rb = recorder(streamTransport(b));
    const handleWrites = countWrites(a);
    const viaWrite = countHandleWrites(a);
    const before = a.bytesWritten;
    for (let i = 0; i < 20; i++) {
      ta.send(msg(i, 1 + (i % 5))); // 8-40 B messages: frames of 16-48 bytes
      await rb.waitFor(i + 1);
    }
    expect(rb.tags).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(handleWrites()).toBe(20);
    expect(viaWrite()).toBe(0);
    let bytes = 0;
    for (let i = 0; i < 20; i++) bytes += 8 + 8 * (1 + (i % 5)); // header + the message's words
    expect(a.bytesWritten - before).toBe(bytes);
    await ta.close();
    expect(await rb.closed).toBeUndefined();
  });

  it("writes a TCP socket's batches directly too", async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
    const port = (server.address() as net.AddressInfo).port;
    const a = net.connect(port, "127.0.0.1");
    await new Promise<void>((r, j) => a.once("connect", r).once("error", j));
    const b = await accepted;
    cleanups.push(() => { a.destroy(); b.destroy(); });
    const ta = streamTransport(a);
    ta.start({ message() {}, closed() {} });
    const rb = recorder(streamTransport(b));
    const handleWrites = countWrites(a);
    const viaWrite = countHandleWrites(a);
    for (let i = 0; i < 5; i++) {
      ta.send(msg(i));
      await rb.waitFor(i + 1);
    }
    expect(rb.tags).toEqual([0, 1, 2, 3, 4]);
    expect(handleWrites()).toBe(5);
    expect(viaWrite()).toBe(0);
    await ta.close();
    expect(await rb.closed).toBeUndefined();
  });

  it("a write the kernel cannot take at once holds later messages, in order, and direct writes resume after it", async () => {
    const { a, b, ta } = await pair();
    ta.start({ message() {}, closed() {} });
    b.pause();
    const viaWrite = countHandleWrites(a);
    const handleWrites = countWrites(a);
    let sent = await fill(ta); // the last one went partly to the kernel: libuv holds the rest
    expect(viaWrite()).toBe(0); // the pending write is a direct one
    expect(a.writableLength).toBe(0); // nothing went into the socket's Writable
    const pendingWrites = handleWrites();
    for (let i = 0; i < 50; i++) ta.send(msg(sent++, 125)); // held behind it, in our queue
    await new Promise<void>((r) => setImmediate(r));
    expect(handleWrites()).toBe(pendingWrites); // nothing else reached the handle meanwhile
    expect(ta.flowStats().queuedBytes).toBeGreaterThan(50 * 1000);
    const rb = recorder(streamTransport(b));
    b.resume();
    await rb.waitFor(sent);
    expect(ta.flowStats().queuedBytes).toBe(0);
    // Idle again: the next batches are direct writes again, after everything before them.
    const directBefore = handleWrites();
    const writesBefore = viaWrite();
    for (let i = 0; i < 3; i++) {
      ta.send(msg(sent++));
      await rb.waitFor(sent);
    }
    expect(handleWrites() - directBefore).toBe(3);
    expect(viaWrite()).toBe(writesBefore);
    expect(rb.tags).toEqual(Array.from({ length: sent }, (_, i) => i));
    await ta.close();
    expect(await rb.closed).toBeUndefined();
  });

  it("a write that fails at once (the peer is gone) ends the link with Node's write error", async () => {
    const { a, b, ta } = await pair();
    const closed = deferred<Error | undefined>();
    ta.start({ message() {}, closed: (e) => closed.resolve(e) });
    const viaWrite = countHandleWrites(a);
    b.destroy();
    ta.send(msg(1));
    const err = await closed.promise;
    expectWriteError(err);
    expect(viaWrite()).toBe(0);
    expect(a.destroyed).toBe(true);
    await ta.close();
  });

  it("a pending write that fails (the peer closes mid-write, our reading paused) ends the link with Node's write error", async () => {
    // Read through `onread` (socket-read.ts), so that pause() stops the handle's reads.
    const sockets = await unixSocketPair();
    cleanups.push(() => sockets.close());
    const { server: a, client: b } = sockets;
    const reader = new SocketReader();
    expect(readSocketInPlace(a, reader)).toBe(true);
    const ta = streamTransport(a, undefined, undefined, reader);
    const closed = deferred<Error | undefined>();
    ta.start({ message() {}, closed: (e) => closed.resolve(e) });
    b.pause();
    await fill(ta);
    a.pause(); // the handle stops reading: only the pending write can see the peer go
    b.destroy(); // libuv's pending write now fails
    const err = await closed.promise;
    expectWriteError(err);
    expect(a.destroyed).toBe(true);
    await ta.close();
  });

  it("a peer that closes mid-write while we read ends the link once", async () => {
    const { a, b, ta } = await pair();
    const ends: (Error | undefined)[] = [];
    const closed = deferred<void>();
    ta.start({ message() {}, closed: (e) => (ends.push(e), closed.resolve()) });
    b.pause();
    await fill(ta);
    b.destroy(); // our read or the pending write sees it first
    await closed.promise;
    await new Promise<void>((r) => setImmediate(r));
    expect(ends).toHaveLength(1);
    expect(ends[0]).toBeInstanceOf(DisconnectedError);
    expect(a.destroyed).toBe(true);
    await ta.close();
  });

  it("destroying the socket during a pending write ends the link once, without a write error", async () => {
    const { a, b, ta } = await pair();
    const ends: (Error | undefined)[] = [];
    const closed = deferred<void>();
    ta.start({ message() {}, closed: (e) => (ends.push(e), closed.resolve()) });
    b.pause();
    const sent = await fill(ta);
    ta.send(msg(sent, 125)); // queued behind the pending write
    a.destroy(); // cancels libuv's write: its completion is not an error
    await closed.promise;
    await new Promise<void>((r) => setImmediate(r));
    expect(ends).toHaveLength(1);
    expect(ends[0]).toBeInstanceOf(DisconnectedError);
    expect((ends[0] as Error & { cause?: unknown }).cause).toBeUndefined(); // closed, not a write error
    await ta.close();
  });

  it("ending the transport during a pending write sends everything before the end", async () => {
    const { b, ta } = await pair();
    ta.start({ message() {}, closed() {} });
    b.pause();
    let sent = await fill(ta);
    for (let i = 0; i < 10; i++) ta.send(msg(sent++, 125));
    const done = ta.close();
    const rb = recorder(streamTransport(b));
    b.resume();
    await rb.waitFor(sent);
    await done;
    expect(rb.tags).toEqual(Array.from({ length: sent }, (_, i) => i));
    expect(await rb.closed).toBeUndefined();
  });

  it("a socket with a timeout takes Node's handle write, which refreshes its timer", async () => {
    const { a, b, ta } = await pair();
    ta.start({ message() {}, closed() {} });
    const rb = recorder(streamTransport(b));
    a.setTimeout(60_000);
    const viaWrite = countHandleWrites(a);
    for (let i = 0; i < 3; i++) {
      ta.send(msg(i));
      await rb.waitFor(i + 1);
    }
    expect(viaWrite()).toBe(3);
    a.setTimeout(0);
    ta.send(msg(3));
    await rb.waitFor(4);
    expect(viaWrite()).toBe(3); // no timeout: direct again
    await ta.close();
    expect(await rb.closed).toBeUndefined();
  });
});
