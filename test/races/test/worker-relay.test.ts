// A worker passes a client of the loop's Connection A into a call on Connection B. Inside a worker
// all clients share one Connection, so only the loop can tell A's client from B's: it must wrap it
// in a relay on B (like exportObject on the loop thread), so B's server's Context calls on it
// reach A with a Context filled for A, not with B's thread handles ("invalid thread handle").
// Threading: loop thread (the test's thread); workers run dist/workers/foo-worker.js.
import { describe, expect, it } from "vitest";
import { memoryTransportPair } from "@multiprocess-ts/capnp";
import { EventLoop, ThreadContext, connectTransport, serveTransport } from "@multiprocess-ts/runtime";
import { ThreadedCallbackClient, ThreadedCallbackServer, type ThreadedCallback } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import { assertIdle } from "@multiprocess-ts/testing";
import { createWorkerSetup } from "../dist/index.js";

describe("worker passes a client of one Connection into a call on another", () => {
  it("is relayed: B's server calls it back with a Context and A runs it on the worker's thread", async () => {
    await using t = await createWorkerSetup();
    const aLoop = new EventLoop("a-server", { log: { level: "info", logFn: (level, msg) => t.logs.push({ side: "server", level, msg: `[a-server] ${msg}` }) } });
    const ran: string[] = [];
    const impl: ThreadedCallback = {
      call(arg) {
        ran.push(ThreadContext.current(aLoop).name);
        return arg * 10;
      },
      initThreadMap() {},
    };
    const [ct, st] = memoryTransportPair();
    const aServerConn = serveTransport(aLoop, st, impl, ThreadedCallbackServer);
    const cbA = await connectTransport(t.clientLoop, ct, ThreadedCallbackClient);
    const aClientConn = cbA.$connection;
    await cbA.initThreadMap();
    const unshare = t.support.share("cbA", cbA);

    const w = t.start("relayAcross");
    const r = await w.done;
    expect(r).toMatchObject({ ok: true });
    expect(r.value).toEqual({ direct: 10, outcomes: [20, 30] });
    // Every call ran on A on the worker's own server Thread for A (the direct call's one).
    expect(ran).toHaveLength(3);
    expect(ran[1]).toBe(ran[0]);
    expect(ran[2]).toBe(ran[0]);
    expect(ran[0]).toMatch(/\(from .*\/relayAcross\)$/);

    await w.exited;
    await w.session.closed;
    unshare();
    await cbA.close();
    await aClientConn.disconnected;
    await aServerConn.disconnected;
    await aLoop.done;
    assertIdle({ connections: { aClientConn, aServerConn }, loops: { aLoop } });
    expect(aServerConn.threads.size).toBe(0);
  });
});
