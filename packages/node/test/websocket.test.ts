import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { WebSocket } from "ws";
import { DisconnectedError, ProtocolError, deferred, type Transport } from "@multiprocess-ts/capnp";
import { listenWebSocket, openWebSocket, WebSocketRejectedError, type WebSocketListener } from "@multiprocess-ts/node";
import { assertNoHandleLeaks, handleBaseline, msg, startRecording, msgValues, type RecordingSink, type HandleBaseline } from "@multiprocess-ts/testing";

let baseline: HandleBaseline;
beforeEach(() => {
  baseline = handleBaseline();
});
afterEach(async () => {
  await assertNoHandleLeaks(baseline);
});

/** A server whose transports echo every message back, +1000 on each value. */
async function echoServer(opts: Parameters<typeof listenWebSocket>[0]): Promise<{ listener: WebSocketListener; accepted: Transport[]; ends: Promise<Error | undefined>[] }> {
  const accepted: Transport[] = [];
  const ends: Promise<Error | undefined>[] = [];
  const listener = await listenWebSocket(opts, (t) => {
    accepted.push(t);
    const d = deferred<Error | undefined>();
    ends.push(d.promise);
    t.start({
      message: (segs) => t.send(msg(...msgValues(segs).map((v) => v + 1000))),
      closed: (err) => d.resolve(err),
    });
  });
  return { listener, accepted, ends };
}

describe("WebSocket transport", () => {
  it("binds loopback and carries one message per binary frame with a bearer token", async () => {
    const { listener, ends } = await echoServer({ token: "s3cret" });
    expect(listener.host).toBe("127.0.0.1");
    const t = await openWebSocket(listener.url, { token: "s3cret" });
    const sink = startRecording(t);
    t.send(msg(1, 2));
    t.send([...msg(3), ...msg(4, 5)]); // a two-segment message survives the frame round trip
    await sink.waitFor(2);
    expect(sink.messages.map(msgValues)).toEqual([[1001, 1002], [1003, 1004, 1005]]);
    expect(listener.connections).toBe(1);
    await t.close();
    expect(await sink.ended.promise).toBeUndefined();
    expect(await ends[0]).toBeUndefined();
    await listener.close();
  });

  it("accepts the token as ?token= and rejects a wrong or missing token with 401", async () => {
    const { listener, accepted } = await echoServer({ token: "s3cret" });
    const t = await openWebSocket(`${listener.url}?token=s3cret`);
    const sink = startRecording(t);
    t.send(msg(7));
    await sink.waitFor(1);
    expect(msgValues(sink.messages[0]!)).toEqual([1007]);
    await t.close();

    const wrong = await openWebSocket(listener.url, { token: "nope" }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(WebSocketRejectedError);
    expect((wrong as WebSocketRejectedError).status).toBe(401);
    const missing = await openWebSocket(listener.url).catch((e: unknown) => e);
    expect((missing as WebSocketRejectedError).status).toBe(401);
    const wrongQuery = await openWebSocket(`${listener.url}?token=s3cre`).catch((e: unknown) => e);
    expect((wrongQuery as WebSocketRejectedError).status).toBe(401);
    expect(accepted.length).toBe(1); // rejected upgrades never reach the handler
    await listener.close();
  });

  it("checks the Origin against the allow-list (403 otherwise)", async () => {
    const { listener, accepted } = await echoServer({ allowedOrigins: ["https://app.example"] });
    const ok = await openWebSocket(listener.url, { origin: "https://app.example" });
    const sink = startRecording(ok);
    ok.send(msg(1));
    await sink.waitFor(1);
    await ok.close();
    const bad = await openWebSocket(listener.url, { origin: "https://evil.example" }).catch((e: unknown) => e);
    expect((bad as WebSocketRejectedError).status).toBe(403);
    const none = await openWebSocket(listener.url).catch((e: unknown) => e);
    expect((none as WebSocketRejectedError).status).toBe(403);
    expect(accepted.length).toBe(1);
    await listener.close();
  });

  it("with both token and origins, requires both", async () => {
    const { listener } = await echoServer({ token: "t", allowedOrigins: ["https://a"] });
    const noOrigin = await openWebSocket(listener.url, { token: "t" }).catch((e: unknown) => e);
    expect((noOrigin as WebSocketRejectedError).status).toBe(403);
    const noToken = await openWebSocket(listener.url, { origin: "https://a" }).catch((e: unknown) => e);
    expect((noToken as WebSocketRejectedError).status).toBe(401);
    const both = await openWebSocket(listener.url, { token: "t", origin: "https://a" });
    startRecording(both);
    await both.close();
    await listener.close();
  });

  it("refuses to listen without any authentication unless told so", async () => {
    await expect(listenWebSocket({}, () => {})).rejects.toThrow(/token or allowedOrigins/);
    const l = await listenWebSocket({ allowUnauthenticated: true }, (t) => t.start({ message() {}, closed() {} }));
    const t = await openWebSocket(l.url);
    startRecording(t);
    await t.close();
    await l.close();
  });

  it("treats a text frame as a protocol error", async () => {
    const got = deferred<Error | undefined>();
    const listener = await listenWebSocket({ token: "t" }, (t) => t.start({ message() {}, closed: (e) => got.resolve(e) }));
    const ws = new WebSocket(listener.url, { headers: { authorization: "Bearer t" } });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    const closedCode = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
    ws.send("hello");
    expect(await got.promise).toBeInstanceOf(ProtocolError);
    expect(await closedCode).toBe(1002);
    await listener.close();
  });

  it("a server shutting down ends client transports; an abrupt peer loss is a DisconnectedError", async () => {
    const { listener, accepted } = await echoServer({ token: "t" });
    const t1 = await openWebSocket(listener.url, { token: "t" });
    const s1: RecordingSink = startRecording(t1);
    t1.send(msg(1));
    await s1.waitFor(1);
    accepted[0]!.destroy(); // server side terminates the TCP connection without a close frame
    expect(await s1.ended.promise).toBeInstanceOf(DisconnectedError);

    const t2 = await openWebSocket(listener.url, { token: "t" });
    const s2 = startRecording(t2);
    t2.send(msg(2));
    await s2.waitFor(1);
    await listener.close(); // close code 1001 (going away): a clean end
    expect(await s2.ended.promise).toBeUndefined();
  });

  it("connecting to a closed port rejects", async () => {
    const l = await listenWebSocket({ token: "t" }, () => {});
    const url = l.url;
    await l.close();
    await expect(openWebSocket(url, { token: "t" })).rejects.toThrow(/ECONNREFUSED/);
  });
});
