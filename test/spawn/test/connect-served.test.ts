// Issue 11 item 7 over real Unix sockets: `connectSocket` to an Init without `construct` resolves
// only once the server answered Bootstrap (so it waits while parked at the connection limit), and
// a frame cut off by the peer's EOF gets an Abort naming the reason, while the server's own
// connection ends with the same ProtocolError; served sockets are read through a SocketReader
// (onread) unless `readInPlace: false`, with the same behaviour. Runs on the loop thread of the test.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { once } from "node:events";
import { describeRpcMessage, encodeFrameToBytes, FrameDecoder, ProtocolError, socketReadPath } from "@multiprocess-ts/capnp";
import { EventLoop, type Connection } from "@multiprocess-ts/runtime";
import { clientConnection, connectSocket, listenConnections, type Listener } from "@multiprocess-ts/node";
import { FooInterfaceClient, FooInterfaceServer, type FooInterface } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { assertNoHandleLeaks, handleBaseline, type HandleBaseline } from "@multiprocess-ts/testing";

const foo = { add: (a: number, b: number) => a + b, passData: (d: Uint8Array) => d } as unknown as FooInterface;

/**
 * How the listener's served sockets are read, in accept order: a 'connection' listener on its
 * net.Server (private; registered after the listener's own, so the socket has been served).
 */
function readPaths(l: Listener): string[] {
  const paths: string[] = [];
  (l as unknown as { server: net.Server }).server.on("connection", (s: net.Socket) => paths.push(socketReadPath(s)));
  return paths;
}

let baseline: HandleBaseline;
let serverLoop: EventLoop;
let clientLoop: EventLoop;
let dir: string;
let served: Connection[];
const track = { onConnection: (c: Connection): void => void served.push(c) };

beforeEach(() => {
  baseline = handleBaseline();
  served = [];
  const quiet = { level: "error" as const, logFn: (): void => {} };
  serverLoop = new EventLoop("server", { log: quiet });
  clientLoop = new EventLoop("client", { log: quiet });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mp-connect-"));
});
afterEach(async () => {
  for (const c of served) await c.disconnected;
  await Promise.all([serverLoop.done, clientLoop.done]);
  await assertNoHandleLeaks(baseline);
  fs.rmSync(dir, { recursive: true, force: true });
});

function next(l: Listener, ev: "serve" | "park" | "release" | "drop"): Promise<number> {
  return new Promise((resolve) => l.once(ev, (id: number) => resolve(id)));
}

async function closeClient(c: FooInterfaceClient): Promise<void> {
  const conn = clientConnection(c);
  await c.close();
  await conn.disconnected;
}

describe("connectSocket waits until the connection is served", () => {
  it("an Init without construct: parked at the limit, resolves when a slot frees", async () => {
    const sock = path.join(dir, "foo.sock");
    const l = await listenConnections(sock, serverLoop, foo, FooInterfaceServer, { ...track, maxConnections: 1 });
    const a = await connectSocket(clientLoop, sock, FooInterfaceClient);
    expect(await a.add(1, 2)).toBe(3);
    const parked = next(l, "park");
    let bReady = false;
    const bPromise = connectSocket(clientLoop, sock, FooInterfaceClient).then((b) => ((bReady = true), b));
    await parked;
    // Several round trips on a: b's socket is connected, but nobody answers its Bootstrap.
    for (let i = 0; i < 5; i++) expect(await a.add(i, 1)).toBe(i + 1);
    expect(bReady).toBe(false);
    expect(l.pending).toBe(1);
    const bServed = next(l, "serve");
    await closeClient(a);
    await bServed;
    const b = await bPromise;
    expect(await b.add(20, 22)).toBe(42);
    await closeClient(b);
    await l.close();
  });

  it("an abort signal ends the wait with its reason and frees the parked socket", async () => {
    const sock = path.join(dir, "foo.sock");
    const l = await listenConnections(sock, serverLoop, foo, FooInterfaceServer, { ...track, maxConnections: 1 });
    const a = await connectSocket(clientLoop, sock, FooInterfaceClient);
    const parked = next(l, "park");
    const ac = new AbortController();
    const bPromise = connectSocket(clientLoop, sock, FooInterfaceClient, { signal: ac.signal });
    await parked;
    const dropped = new Promise<void>((resolve) => l.on("release", () => resolve()));
    const reason = new Error("gave up waiting");
    ac.abort(reason);
    await expect(bPromise).rejects.toBe(reason);
    // The parked socket is served (a's slot frees), sees the hang-up and is released.
    await closeClient(a);
    await dropped;
    await l.close();
  });
});

describe("served sockets are read through onread (readInPlace, the default) or as streams", () => {
  for (const readInPlace of [undefined, false]) {
    it(`readInPlace ${String(readInPlace)}: small calls and a 3 MB Data echo`, async () => {
      const sock = path.join(dir, "foo.sock");
      const l = await listenConnections(sock, serverLoop, foo, FooInterfaceServer, { ...track, readInPlace });
      const paths = readPaths(l);
      const a = await connectSocket(clientLoop, sock, FooInterfaceClient);
      expect(paths).toEqual([readInPlace === false ? "stream" : "onread"]);
      for (let i = 0; i < 20; i++) expect(await a.add(i, 1)).toBe(i + 1);
      const big = new Uint8Array(3_000_000);
      for (let i = 0; i < big.length; i += 4093) big[i] = (i >>> 12) & 0xff;
      const back = await a.passData(big);
      expect(back.byteLength).toBe(big.byteLength);
      expect(Buffer.compare(back, big)).toBe(0);
      await closeClient(a);
      await l.close();
    });
  }
});

describe("a frame cut off by EOF", () => {
  it.each([undefined, false])("gets an Abort naming the reason; the server's connection ends with the ProtocolError (readInPlace %s)", async (readInPlace) => {
    const sock = path.join(dir, "foo.sock");
    const l = await listenConnections(sock, serverLoop, foo, FooInterfaceServer, { ...track, readInPlace });
    const paths = readPaths(l);
    const served1 = next(l, "serve");
    const raw = net.connect({ path: sock });
    await once(raw, "connect");
    const back: Buffer[] = [];
    raw.on("data", (c: Buffer) => back.push(c));
    const frame = encodeFrameToBytes([new Uint8Array(64)]);
    raw.end(frame.subarray(0, frame.length - 8)); // half-close: we still read the answer
    await served1;
    expect(paths).toEqual([readInPlace === false ? "stream" : "onread"]);
    await once(raw, "end");
    const conn = served[0]!;
    const err = await conn.rpc.closed;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err!.message).toMatch(/stream ended inside a message/);
    // What came back: exactly one message, an Abort carrying that reason.
    const got: Uint8Array[][] = [];
    const dec = new FrameDecoder();
    dec.decode(Buffer.concat(back), (m) => got.push(m));
    dec.end();
    expect(got.map((m) => describeRpcMessage(m).which)).toEqual(["abort"]);
    expect(Buffer.from(got[0]![0]!).toString("latin1")).toContain("stream ended inside a message");
    await once(raw, "close");
    await l.close();
  });
});
