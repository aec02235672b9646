// Paused-connection idle timeout (issue 11, docs/rpc.md "Flow control"): a peer that stops
// reading its replies gets its connection paused by write-side flow control; if it takes none of
// its queue for `pausedTimeoutMs`, that connection alone ends with a LimitError saying so. A peer
// that reads slowly is paused too but never cut, and a good client is served throughout.
// Counters: the server connection's end error, the answers each peer got. Real Unix and TCP
// 127.0.0.1 sockets; loop thread.
import { afterEach, describe, expect, it } from "vitest";
import { LimitError } from "@multiprocess-ts/capnp";
import { assertRpcIdle } from "@multiprocess-ts/testing";
import { GoodClient, HostileServer, passDataCall, RawPeer, type Transport } from "../dist/index.js";

const REPLY = 64 * 1024;
/** Replies far past the socket buffers (loopback TCP autotunes to several MiB) and the pause mark. */
const NEVER_CALLS = { unix: 64, tcp: 512 } as const;
const SLOW_CALLS = 96;
const FLOW = { pauseReadingAt: 128 * 1024, resumeReadingAt: 32 * 1024, pausedTimeoutMs: 400 };
/** The slow reader's server allows more: the reader shares this (loaded) process's loop with the server. */
const SLOW_FLOW = { ...FLOW, pausedTimeoutMs: 2000 };

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(transport: Transport, flow = FLOW): Promise<{ server: HostileServer; good: GoodClient }> {
  const server = await HostileServer.start(transport, { flow, frameTimeoutMs: 0, firstMessageTimeoutMs: 0 });
  cleanup.push(async () => {
    await server.close();
    expect(server.released).toBe(server.served);
    expect(server.loop.numRefs).toBe(0);
  });
  const good = await GoodClient.connect(server.target);
  cleanup.push(async () => {
    await good.close();
    expect(good.loop.numRefs).toBe(0);
    assertRpcIdle(good.client.$connection, "good client");
  });
  return { server, good };
}

async function rawPeer(server: HostileServer): Promise<RawPeer> {
  const p = await RawPeer.connect(server.target);
  cleanup.push(async () => {
    p.destroy();
    await p.closed;
  });
  return p;
}

describe.each<Transport>(["unix", "tcp"])("paused connections over %s", (transport) => {
  it("a peer that never reads is cut after pausedTimeoutMs with a LimitError; the good client is served", async () => {
    const { server, good } = await setup(transport);
    const p = await rawPeer(server);
    p.socket.pause(); // never reads again
    for (let i = 0; i < NEVER_CALLS[transport]; i++) p.send(passDataCall(p.qid(), 0, REPLY));
    await p.closed;
    const conn = server.connections[1]!; // [0] is the good client's
    await conn.disconnected;
    expect(conn.error).toBeInstanceOf(LimitError);
    expect(conn.error!.message).toMatch(/paused for 400 ms .*pausedTimeoutMs = 400/);
    expect(await good.once()).toBeGreaterThan(0);
    expect(server.connections[0]!.error).toBeUndefined();
  });

  it("a peer that reads slowly (a little every 5 ms) is not cut and gets every answer", async () => {
    const { server, good } = await setup(transport, SLOW_FLOW);
    const p = await rawPeer(server);
    p.socket.pause();
    const qids: number[] = [];
    for (let i = 0; i < SLOW_CALLS; i++) {
      const q = p.qid();
      qids.push(q);
      p.send(passDataCall(q, 0, REPLY));
    }
    // Read what has arrived every 5 ms (read() hands it to the 'data' listener that decodes).
    const reader = setInterval(() => void p.socket.read(), 5);
    try {
      // A cut would close the socket first: fail then instead of waiting for answers that never come.
      const answers = await Promise.race([Promise.all(qids.map((q) => p.answer(q))), p.closed.then(() => "closed" as const)]);
      if (answers === "closed") throw new Error(`the slow reader was cut: ${String(server.connections[1]?.error)}`);
      expect(answers.every((a) => a.kind === "results")).toBe(true);
    } finally {
      clearInterval(reader);
    }
    const conn = server.connections[1]!;
    expect(conn.error).toBeUndefined();
    expect(p.abortReason).toBeUndefined();
    expect(await good.once()).toBeGreaterThan(0);
  });
});
