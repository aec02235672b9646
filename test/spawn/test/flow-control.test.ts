// Write-side flow control (docs/rpc.md "Flow control", issue 11 item 4) over real Unix sockets:
// a client that never reads its replies makes the server stop reading that client (the bound is
// asserted through the transport's counters), a well-behaved client is served throughout, and a
// peer whose already-read calls overflow the hard cap loses its connection with a LimitError
// while the process and the other connection carry on. Runs on the loop thread of the test.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { once } from "node:events";
import { LimitError, streamTransport, type FlowControlledTransport, type WriteFlowLimits, type WriteFlowStats } from "@multiprocess-ts/capnp";
import { EventLoop, connectTransport, serveTransport, type Connection } from "@multiprocess-ts/runtime";
import { clientConnection, connectSocket } from "@multiprocess-ts/node";
import { FooInterfaceClient, FooInterfaceServer, type FooInterface } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { assertNoHandleLeaks, handleBaseline, type HandleBaseline } from "@multiprocess-ts/testing";

let baseline: HandleBaseline;
let serverLoop: EventLoop;
let clientLoop: EventLoop;
let dir: string;

beforeEach(() => {
  baseline = handleBaseline();
  const quiet = { level: "error" as const, logFn: (): void => {} };
  serverLoop = new EventLoop("server", { log: quiet });
  clientLoop = new EventLoop("client", { log: quiet });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mp-flow-"));
});
afterEach(async () => {
  await Promise.all([serverLoop.done, clientLoop.done]);
  await assertNoHandleLeaks(baseline);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** FooInterface whose passData answers `reply(arg)` and counts the calls it served. */
function fooImpl(reply: (arg: Uint8Array) => Uint8Array): FooInterface & { passDataCalls: number } {
  const impl = {
    passDataCalls: 0,
    add: (a: number, b: number) => a + b,
    passData(arg: Uint8Array): Uint8Array {
      impl.passDataCalls++;
      return reply(arg);
    },
  };
  return impl as unknown as FooInterface & { passDataCalls: number };
}

/** A Unix socket server whose connections use `flow`; keeps each connection's transport. */
async function flowServer(flow: Partial<WriteFlowLimits>, impl: FooInterface) {
  const sock = path.join(dir, "flow.sock");
  const transports: FlowControlledTransport[] = [];
  const conns: Connection[] = [];
  const server = net.createServer((s) => {
    const t = streamTransport(s, undefined, flow);
    transports.push(t);
    conns.push(serveTransport(serverLoop, t, impl, FooInterfaceServer, { ownsImpl: false }));
  });
  server.listen(sock);
  await once(server, "listening");
  return {
    sock,
    transports,
    conns,
    async close(): Promise<void> {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const c of conns) await c.disconnected;
    },
  };
}

/** A client on a socket we can stop reading (pause) while its calls keep going out. */
async function pausableClient(sock: string): Promise<{ client: FooInterfaceClient; socket: net.Socket }> {
  const socket = net.connect({ path: sock });
  await once(socket, "connect");
  const client = await connectTransport(clientLoop, streamTransport(socket), FooInterfaceClient);
  expect(await client.add(1, 1)).toBe(2); // served
  return { client, socket };
}

function nextFlowEvent(t: FlowControlledTransport, want: (s: WriteFlowStats) => boolean): Promise<WriteFlowStats> {
  return new Promise((resolve) => {
    const stop = t.watchFlow((s) => {
      if (!want(s)) return;
      stop();
      resolve(s);
    });
  });
}

describe("write-side flow control (stream transport)", () => {
  it("stops reading a peer that does not read its replies; resumes when it catches up", async () => {
    const flow = { pauseReadingAt: 64 * 1024, resumeReadingAt: 16 * 1024, maxQueuedBytes: 4 * 1024 * 1024 };
    const impl = fooImpl((arg) => arg);
    const srv = await flowServer(flow, impl);
    const hostile = await pausableClient(srv.sock);
    const t = srv.transports[0]!;
    const paused = nextFlowEvent(t, (s) => s.readPaused);
    hostile.socket.pause(); // never reads from now on
    const N = 400;
    const payload = new Uint8Array(16 * 1024).fill(7);
    const calls = Array.from({ length: N }, () => hostile.client.passData(payload));
    const atPause = await paused;
    expect(atPause.queuedBytes).toBeGreaterThanOrEqual(flow.pauseReadingAt);

    // A well-behaved client is served while the hostile one is held.
    const good = await connectSocket(clientLoop, srv.sock, FooInterfaceClient);
    for (let i = 0; i < 20; i++) expect(await good.add(i, 1)).toBe(i + 1);
    expect((await good.passData(new Uint8Array([1, 2, 3]))).length).toBe(3);
    // The bound: reading stays paused (it may have resumed briefly while the kernel's socket
    // buffers took more bytes), most of the hostile peer's calls were never read, and its queue
    // never passed the cap.
    const served = impl.passDataCalls - 1; // minus the good client's passData
    const held = t.flowStats();
    expect(held.readPaused).toBe(true);
    expect(held.pauses).toBeGreaterThanOrEqual(1);
    expect(served).toBeLessThan(N / 2);
    expect(held.peakQueuedBytes).toBeLessThanOrEqual(flow.maxQueuedBytes);

    // The peer catches up: reading resumes and every call is answered.
    hostile.socket.resume();
    const results = await Promise.all(calls);
    expect(results.every((r) => r.length === payload.length)).toBe(true);
    expect(impl.passDataCalls).toBe(N + 1);
    expect(t.flowStats().readPaused).toBe(false);
    await good.close();
    await hostile.client.close();
    await srv.close();
  });

  it("past maxQueuedBytes only that connection ends, with a LimitError", async () => {
    const flow = { pauseReadingAt: 16 * 1024, resumeReadingAt: 8 * 1024, maxQueuedBytes: 1024 * 1024 };
    const big = 512 * 1024;
    const impl = fooImpl(() => new Uint8Array(big)); // small call, big reply
    const srv = await flowServer(flow, impl);
    const hostile = await pausableClient(srv.sock);
    const good = await connectSocket(clientLoop, srv.sock, FooInterfaceClient);
    expect(await good.add(1, 2)).toBe(3);
    hostile.socket.pause();
    // Sent in one tick: one chunk, read at once, before reading can pause.
    const calls = Array.from({ length: 16 }, () => hostile.client.passData(new Uint8Array(8)).then(() => "answered", () => "failed"));
    const err = await srv.conns[0]!.rpc.closed;
    expect(err).toBeInstanceOf(LimitError);
    expect(err!.message).toMatch(/maxQueuedBytes = 1048576/);
    const stats = srv.transports[0]!.flowStats();
    expect(stats.peakQueuedBytes).toBeGreaterThan(flow.maxQueuedBytes);
    expect(stats.peakQueuedBytes).toBeLessThanOrEqual(flow.maxQueuedBytes + big + 1024); // checked at every reply
    // The process and the other connection carry on.
    for (let i = 0; i < 10; i++) expect(await good.add(i, i)).toBe(2 * i);
    expect(srv.conns[1]!.rpc.isClosed).toBe(false);
    hostile.socket.resume(); // let the hostile client see the end
    expect(await Promise.all(calls)).toContain("failed");
    await clientConnection(hostile.client).disconnected;
    await hostile.client.close();
    await good.close();
    await srv.close();
  });
});
