// Write-side flow control of the WebSocket transport (docs/rpc.md "Flow control"), over a real
// loopback WebSocket: a client that stops reading makes the server stop reading it once
// `bufferedAmount` passes the mark (asserted through the transport's counters) while another
// client is served; past `maxQueuedBytes` that connection alone ends with a LimitError.
// Runs on the loop thread of the test.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { WebSocket } from "ws";
import { once } from "node:events";
import { deferred, LimitError, type FlowControlledTransport, type WriteFlowLimits, type WriteFlowStats } from "@multiprocess-ts/capnp";
import { encodeSingleFrame, listenWebSocket, openWebSocket, type WebSocketListener } from "@multiprocess-ts/node";
import { assertNoHandleLeaks, handleBaseline, type HandleBaseline, msg, msgValues, startRecording } from "@multiprocess-ts/testing";

let baseline: HandleBaseline;
beforeEach(() => {
  baseline = handleBaseline();
});
afterEach(async () => {
  await assertNoHandleLeaks(baseline);
});

const TOKEN = "flow-token";

/**
 * A server answering a message `msg(n)` with n messages of `replyBytes` bytes (`msg(0)`: one
 * small reply); counts the messages it read per connection.
 */
async function replyServer(flow: Partial<WriteFlowLimits>, replyBytes: number) {
  const conns: { t: FlowControlledTransport; read: number; ended: Promise<Error | undefined> }[] = [];
  const arrivals = [deferred<void>()];
  const listener: WebSocketListener = await listenWebSocket({ token: TOKEN, flow }, (t) => {
    const d = deferred<Error | undefined>();
    const c = { t, read: 0, ended: d.promise };
    conns.push(c);
    arrivals.push(deferred<void>());
    arrivals[conns.length - 1]!.resolve();
    t.start({
      message: (segs) => {
        c.read++;
        const n = msgValues(segs)[0]!;
        if (n === 0) t.send(msg(0));
        for (let i = 0; i < n; i++) t.send([new Uint8Array(replyBytes)]);
      },
      closed: (err) => d.resolve(err),
    });
  });
  /** Resolves once the server has accepted `n` connections. */
  const accepted = (n: number): Promise<void> => {
    while (arrivals.length < n) arrivals.push(deferred<void>());
    return arrivals[n - 1]!.promise;
  };
  return { listener, conns, accepted };
}

/** A raw client that stops reading once open, then sends `msg(tag)` `n` times at once. */
async function stalledClient(url: string, n: number, tag = 1): Promise<{ ws: WebSocket; replies: () => number }> {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${TOKEN}` }, perMessageDeflate: false });
  ws.on("error", () => {});
  await once(ws, "open");
  let replies = 0;
  ws.on("message", () => void replies++);
  ws.pause();
  for (let i = 0; i < n; i++) ws.send(encodeSingleFrame(msg(tag)));
  return { ws, replies: () => replies };
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


describe("WebSocket write-side flow control", () => {
  it("pauses reading a peer that does not read (bufferedAmount), serves another peer, resumes", async () => {
    const flow = { pauseReadingAt: 256 * 1024, resumeReadingAt: 64 * 1024, maxQueuedBytes: 32 * 1024 * 1024 };
    const { listener, conns, accepted } = await replyServer(flow, 64 * 1024);
    const N = 1000;
    const hostile = await stalledClient(listener.url, 0);
    await accepted(1);
    const h = conns[0]!;
    const paused = nextFlowEvent(h.t, (s) => s.readPaused);
    for (let i = 0; i < N; i++) hostile.ws.send(encodeSingleFrame(msg(1)));
    const atPause = await paused;
    expect(atPause.queuedBytes).toBeGreaterThanOrEqual(flow.pauseReadingAt);

    const good = await openWebSocket(listener.url, { token: TOKEN });
    const sink = startRecording(good);
    for (let i = 1; i <= 10; i++) {
      good.send(msg(0));
      await sink.waitFor(i);
    }
    const held = h.t.flowStats();
    expect(held.readPaused).toBe(true);
    expect(h.read).toBeLessThan(N);
    expect(held.peakQueuedBytes).toBeLessThanOrEqual(flow.maxQueuedBytes);

    // The peer reads again: the server resumes and answers everything.
    const all = new Promise<void>((resolve) => hostile.ws.on("message", () => hostile.replies() === N && resolve()));
    hostile.ws.resume();
    await all;
    expect(h.read).toBe(N);
    expect(h.t.flowStats().readPaused).toBe(false);
    await good.close();
    hostile.ws.close(1000);
    expect(await h.ended).toBeUndefined();
    await listener.close();
  });

  it("past maxQueuedBytes the connection ends with a LimitError; the other peer is unaffected", async () => {
    const flow = { pauseReadingAt: 16 * 1024, resumeReadingAt: 8 * 1024, maxQueuedBytes: 1024 * 1024 };
    const { listener, conns, accepted } = await replyServer(flow, 2 * 1024 * 1024);
    const good = await openWebSocket(listener.url, { token: TOKEN });
    const sink = startRecording(good);
    good.send(msg(0));
    await sink.waitFor(1);
    // Replies to requests already read pass the cap: pausing reading cannot help any more.
    // 32 MiB of replies per request: more than loopback TCP buffers take, far past the cap.
    const hostile = await stalledClient(listener.url, 4, 16);
    await accepted(2);
    const err = await conns[1]!.ended;
    expect(err).toBeInstanceOf(LimitError);
    expect(err!.message).toMatch(/maxQueuedBytes = 1048576/);
    good.send(msg(0));
    await sink.waitFor(2);
    expect(listener.connections).toBe(1);
    hostile.ws.resume();
    if (hostile.ws.readyState !== WebSocket.CLOSED) await once(hostile.ws, "close");
    await good.close();
    await listener.close();
  });
});
