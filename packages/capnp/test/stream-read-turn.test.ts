/**
 * The stream transport's read turn (stream.ts endReadTurn): what a read's messages make the
 * receiver send synchronously, or from the microtask the engine dispatches them in (a server's
 * Returns), is written by one microtask after that dispatch, together; what is sent later in the
 * turn takes the usual flush (a promise reaction queued by its first message). A read that makes
 * the receiver send nothing writes nothing. Over a Unix socket, read both
 * through the Readable stream and through `onread` (SocketReader), as the bench's server is.
 * Runs on the test's main thread.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { countWrites, unixSocketPair } from "@multiprocess-ts/testing";
import * as net from "node:net";
import { promiseHooks } from "node:v8";
import { streamTransport } from "../dist/stream.js";
import { SocketReader, readSocketInPlace, socketReadPath } from "../dist/socket-read.js";
import { deferred } from "../dist/errors.js";
import type { Transport, TransportSink } from "../dist/transport.js";
import { msg, tagOf } from "./tagged-messages.js";

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type ReadPath = "stream" | "onread";

/** A connected Unix socket pair; the accepted (server) end's transport reads through `path`. */
async function pair(path: ReadPath): Promise<{ client: net.Socket; server: Transport; serverSock: net.Socket }> {
  // onread: switched before its first read (readSocketInPlace), so the socket starts paused.
  const sockets = await unixSocketPair({ pauseOnConnect: path === "onread" });
  const { client, server: serverSock } = sockets;
  let reader: SocketReader | undefined;
  if (path === "onread") {
    reader = new SocketReader();
    expect(readSocketInPlace(serverSock, reader)).toBe(true);
    expect(socketReadPath(serverSock)).toBe("onread");
  }
  const server = streamTransport(serverSock, undefined, undefined, reader);
  cleanups.push(() => sockets.close());
  return { client, server, serverSock };
}

/** The client side: a transport recording what it receives. */
function recorder(t: Transport): { msgs: number[]; sizes: number[]; waitFor(n: number): Promise<void>; closed: Promise<Error | undefined> } {
  const msgs: number[] = [];
  const sizes: number[] = [];
  const closed = deferred<Error | undefined>();
  let waiter: { n: number; resolve: () => void } | undefined;
  t.start({
    message(segs) {
      msgs.push(tagOf(segs));
      sizes.push(segs[0]!.byteLength);
      if (waiter !== undefined && msgs.length >= waiter.n) waiter.resolve();
    },
    closed: (e) => closed.resolve(e),
  });
  return {
    msgs,
    sizes,
    closed: closed.promise,
    waitFor(n) {
      if (msgs.length >= n) return Promise.resolve();
      const d = deferred<void>();
      waiter = { n, resolve: d.resolve };
      return Promise.race([d.promise, closed.promise.then((e) => Promise.reject(e ?? new Error("closed early")))]);
    },
  };
}

describe.each<ReadPath>(["stream", "onread"])("streamTransport read turn (read through %s)", (path) => {
  it("replies sent from the microtask after a read go out in one write before any later microtask; a later one takes the usual flush", async () => {
    const { client, server, serverSock } = await pair(path);
    const rc = recorder(streamTransport(client));
    const writes = countWrites(serverSock);
    const seen = deferred<number>();
    const sink: TransportSink = {
      message() {
        void Promise.resolve().then(() => {
          // The engine's dispatch microtask: a server answering two calls synchronously.
          server.send(msg(10));
          server.send(msg(11, 200)); // over the batch size: corked, written after the batch
          server.send(msg(12));
          // Queued after the read turn's flush: the replies are already written.
          void Promise.resolve().then(() => {
            seen.resolve(writes());
            server.send(msg(13)); // later in the same turn: the usual flush, a write of its own
          });
        });
      },
      closed() {},
    };
    server.start(sink);
    client.write(Buffer.from([0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])); // one 1-word message
    expect(await seen.promise).toBe(1);
    await rc.waitFor(4);
    expect(rc.msgs).toEqual([10, 11, 12, 13]);
    expect(rc.sizes).toEqual([8, 1600, 8, 8]);
    expect(writes()).toBe(2);
    await server.close();
    expect(await rc.closed).toBeUndefined();
  });

  it("replies sent during a read, from a nextTick and from later microtasks keep their order", async () => {
    const { client, server } = await pair(path);
    const rc = recorder(streamTransport(client));
    let n = 0;
    server.start({
      message() {
        const k = n++;
        server.send(msg(100 + k));
        // A reply that needs more promise hops than the dispatch (a method that awaits).
        void Promise.resolve()
          .then(() => undefined)
          .then(() => undefined)
          .then(() => server.send(msg(200 + k)));
        // One from a nextTick, ordered after the read turn's writes by the batch.
        process.nextTick(() => server.send(msg(300 + k)));
      },
      closed() {},
    });
    const one = Buffer.from([0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    client.write(one);
    await rc.waitFor(3);
    client.write(one);
    await rc.waitFor(6);
    // Within each read: the synchronous reply, then the nextTick's, then the awaited one.
    expect(rc.msgs).toEqual([100, 300, 200, 101, 301, 201]);
    await server.close();
    expect(await rc.closed).toBeUndefined();
  });

  it("a read that makes the receiver send nothing flushes nothing; one that sends flushes once", async () => {
    const { client, server } = await pair(path);
    const rc = recorder(streamTransport(client));
    const uncork = vi.spyOn(server as unknown as { uncork(): void }, "uncork");
    let reply = false;
    const got = deferred<void>();
    server.start({
      message() {
        if (reply) server.send(msg(1));
        got.resolve();
      },
      closed() {},
    });
    const one = Buffer.from([0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    client.write(one);
    await got.promise;
    await new Promise<void>((r) => setImmediate(r));
    expect(uncork).toHaveBeenCalledTimes(0);
    reply = true;
    client.write(one);
    await rc.waitFor(1);
    expect(uncork).toHaveBeenCalledTimes(1);
    expect(rc.msgs).toEqual([1]);
    await server.close();
    expect(await rc.closed).toBeUndefined();
  });

  it("a read that sends nothing makes no promise; what the microtasks it wakes send goes out in one write", async () => {
    const { client, server, serverSock } = await pair(path);
    const rc = recorder(streamTransport(client));
    const writes = countWrites(serverSock);
    const made = deferred<number>();
    let replies = false;
    server.start({
      message() {
        if (!replies) {
          // Promises made from here to the next macrotask: the transport's, if it queues any.
          let n = 0;
          const stop = promiseHooks.createHook({ init: () => void n++ });
          setImmediate(() => {
            stop();
            made.resolve(n);
          });
          return;
        }
        // Returns for two callers: each sends its next call from the microtask it is woken in.
        void Promise.resolve().then(() => server.send(msg(1)));
        void Promise.resolve().then(() => server.send(msg(2)));
      },
      closed() {},
    });
    const one = Buffer.from([0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    client.write(one);
    expect(await made.promise).toBe(0);
    expect(writes()).toBe(0);
    replies = true;
    client.write(one);
    await rc.waitFor(2);
    expect(rc.msgs).toEqual([1, 2]);
    expect(writes()).toBe(1);
    await server.close();
    expect(await rc.closed).toBeUndefined();
  });

  it("a sink that throws after sending ends the link with its error; the read turn's flush then writes nothing", async () => {
    const { client, server, serverSock } = await pair(path);
    const rc = recorder(streamTransport(client));
    const closed = deferred<Error | undefined>();
    server.start({
      message() {
        server.send(msg(1));
        throw new Error("sink bug");
      },
      closed: (e) => closed.resolve(e),
    });
    client.write(Buffer.from([0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]));
    expect((await closed.promise)?.message).toBe("sink bug");
    expect(await rc.closed).toBeUndefined(); // EOF: the link is gone; the reply was dropped
    expect(rc.msgs).toEqual([]);
    expect(serverSock.destroyed).toBe(true);
  });
});
