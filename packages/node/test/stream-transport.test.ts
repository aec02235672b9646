import { describe, it, expect, beforeEach, afterEach } from "vitest";
import * as net from "node:net";
import { once } from "node:events";
// capnp's streamTransport over real loopback sockets, as connectStream/serveStream use it.
import { DisconnectedError, LimitError, ProtocolError, encodeFrameToBytes, streamTransport as duplexTransport } from "@multiprocess-ts/capnp";
import { assertNoHandleLeaks, handleBaseline, msg, startRecording, msgValues, type HandleBaseline } from "@multiprocess-ts/testing";

let baseline: HandleBaseline;
beforeEach(() => {
  baseline = handleBaseline();
});
afterEach(async () => {
  await assertNoHandleLeaks(baseline);
});

/** A connected pair of real loopback TCP sockets. */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  const accepted = once(server, "connection");
  const client = net.connect(port, "127.0.0.1");
  await once(client, "connect");
  const [serverSide] = (await accepted) as [net.Socket];
  server.close(); // stop listening now (its callback would wait for these sockets to close)
  return [client, serverSide];
}

describe("streamTransport over real sockets", () => {
  it("carries framed messages both ways and ends cleanly on close()", async () => {
    const [x, y] = await socketPair();
    const a = duplexTransport(x);
    const b = duplexTransport(y);
    const sa = startRecording(a);
    const sb = startRecording(b);
    a.send(msg(1, 2));
    a.send([...msg(3), ...msg(4)]);
    b.send(msg(5));
    await sb.waitFor(2);
    await sa.waitFor(1);
    expect(sb.messages.map(msgValues)).toEqual([[1, 2], [3, 4]]);
    expect(sb.messages[1]!.length).toBe(2);
    expect(sa.messages.map(msgValues)).toEqual([[5]]);
    await a.close();
    expect(await sa.ended.promise).toBeUndefined();
    expect(await sb.ended.promise).toBeUndefined();
  });

  it("reassembles messages split at every byte", async () => {
    const [x, y] = await socketPair();
    const b = duplexTransport(y);
    const sb = startRecording(b);
    const bytes = new Uint8Array([...encodeFrameToBytes(msg(7, 8, 9)), ...encodeFrameToBytes([...msg(10), ...msg(11)])]);
    for (let i = 0; i < bytes.length; i++) {
      x.write(bytes.subarray(i, i + 1));
      await new Promise<void>((r) => setImmediate(r)); // separate writes → separate reads, mostly
    }
    await sb.waitFor(2);
    expect(sb.messages.map(msgValues)).toEqual([[7, 8, 9], [10, 11]]);
    x.end();
    expect(await sb.ended.promise).toBeUndefined();
    await once(x, "close");
  });

  it("reports EOF inside a message as a ProtocolError and keeps the write side for the reply", async () => {
    const [x, y] = await socketPair();
    const tb = duplexTransport(y);
    const sb = startRecording(tb);
    const back: Buffer[] = [];
    x.on("data", (c: Buffer) => back.push(c));
    const frame = encodeFrameToBytes(msg(1, 2, 3));
    x.end(frame.subarray(0, frame.length - 3)); // half-close: x still reads
    const err = await sb.ended.promise;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err!.message).toMatch(/stream ended inside a message/);
    // The peer's EOF did not end our write side: what the engine sends now (its Abort) arrives.
    tb.send(msg(42));
    await tb.close();
    await once(x, "end");
    expect(Buffer.concat(back)).toEqual(Buffer.from(encodeFrameToBytes(msg(42))));
    expect(sb.closedCalls).toBe(1);
    await once(x, "close");
  });

  it("enforces reader limits", async () => {
    const [x, y] = await socketPair();
    const sb = startRecording(duplexTransport(y, { maxSegments: 1 }));
    x.on("error", () => {});
    x.write(encodeFrameToBytes([...msg(1), ...msg(2)]));
    expect(await sb.ended.promise).toBeInstanceOf(LimitError);
    x.destroy();
  });

  it("a peer reset is a DisconnectedError; destroy() ends at once with its reason", async () => {
    const [x, y] = await socketPair();
    const sb = startRecording(duplexTransport(y));
    x.resetAndDestroy();
    const err = await sb.ended.promise;
    expect(err).toBeInstanceOf(DisconnectedError);

    const [p, q] = await socketPair();
    const tp = duplexTransport(p);
    const sp = startRecording(tp);
    const sq = startRecording(duplexTransport(q));
    const reason = new Error("bye");
    tp.destroy(reason);
    tp.send(msg(1)); // dropped silently
    expect(await sp.ended.promise).toBe(reason);
    expect(await sq.ended.promise).toBeUndefined(); // the peer just sees EOF
  });
});
