// A peer's calls and a local caller's calls reach a local server in arrival order (E-order): from
// the LocalHook's dispatch microtask, never during the message's delivery, never nested in a call
// that is running (a transport that delivers from inside the server's code), and a call that
// throws does not stop the next. The peer here is a transport whose sink the test calls
// synchronously, so "during delivery" and "after it" can be told apart without any timing. Every
// test ends with the connection's stats() back to zero and the server released. (bench/README
// "Server call path (eighth session)": dispatching during delivery was measured and not kept.)
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { RpcConnection, RpcError, localCapability } from "@multiprocess-ts/capnp";
import type { IncomingCall, Server, Transport, TransportSink } from "@multiprocess-ts/capnp";
import { Box, CALC, M, addCall, drain, finish } from "./rpc-helpers.js";

const ZERO = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

/** A transport the test drives: `deliver` calls the connection's sink now; sends are decoded into `got`. */
class SyncPeer implements Transport {
  sink: TransportSink | null = null;
  readonly got: rpc.Message[] = [];
  start(sink: TransportSink): void {
    this.sink = sink;
  }
  send(segments: Uint8Array[]): void {
    expect(segments).toHaveLength(1); // the engine's messages here are one segment each
    const m = new capnp.Message(segments[0]!.slice().buffer, false, true);
    this.got.push(m.getRoot(rpc.Message));
  }
  close(): Promise<void> {
    const s = this.sink;
    this.sink = null;
    queueMicrotask(() => s?.closed(undefined));
    return Promise.resolve();
  }
  destroy(): void {
    void this.close();
  }
  /** One message from the peer, delivered synchronously. */
  deliver(build: (r: rpc.Message) => void): void {
    const m = new capnp.Message();
    build(m.initRoot(rpc.Message));
    this.sink!.message(m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength)));
  }
  /** The results' `a` (or the exception's reason) of the Return for `qid`. */
  returned(qid: number): number | string | undefined {
    const ret = this.got.filter((m) => m.which() === rpc.Message.RETURN && m.getReturn().getAnswerId() === qid).pop()?.getReturn();
    if (ret === undefined) return undefined;
    if (ret.which() === rpc.Return.EXCEPTION) return ret.getException().getReason();
    return capnp.Struct.getStruct(0, Box, ret.getResults()).a;
  }
}


/** Records each call's `a` as it starts and ends; `during(a)` runs inside the call for `a`. */
class Recorder implements Server {
  readonly log: string[] = [];
  during: ((a: number) => void) | null = null;
  released = 0;
  dispatch(call: IncomingCall): void {
    const a = call.params(Box).a;
    this.log.push(`start ${a}`);
    if (a < 0) throw new RpcError("failed", `refused ${a}`);
    this.during?.(a);
    call.results(Box).a = a + 1;
    this.log.push(`end ${a}`);
  }
  onRelease(): void {
    this.released++;
  }
}

function setup(): { peer: SyncPeer; conn: RpcConnection; server: Recorder; local: ReturnType<typeof localCapability> } {
  const server = new Recorder();
  const local = localCapability(server);
  const peer = new SyncPeer();
  const boot = local.dup();
  const conn = new RpcConnection(peer, { bootstrap: boot, name: "server" });
  boot.close(); // the connection holds its own reference
  peer.deliver((r) => r.initBootstrap().setQuestionId(0));
  return { peer, conn, server, local };
}

async function teardown(s: ReturnType<typeof setup>, qids: number[]): Promise<void> {
  for (const q of [...qids, 0]) s.peer.deliver(finish(q));
  await drain();
  expect(s.conn.stats()).toEqual(ZERO);
  s.local.close();
  await s.conn.close();
  await drain(); // the transport reports its end from a microtask
  expect(s.conn.isClosed).toBe(true);
  expect(s.server.released).toBe(1);
}

describe("a peer's calls to a local server, in arrival order", () => {
  it("an idle server runs the peer's calls after their delivery, from one dispatch, in order", async () => {
    const s = setup();
    s.peer.deliver(addCall(1, 0, 10));
    s.peer.deliver(addCall(2, 0, 20));
    expect(s.server.log).toEqual([]);
    await drain();
    expect(s.server.log).toEqual(["start 10", "end 10", "start 20", "end 20"]);
    expect([s.peer.returned(1), s.peer.returned(2)]).toEqual([11, 21]);
    await teardown(s, [1, 2]);
  });

  it("a peer's call that arrives while a local caller's call waits for dispatch runs after it", async () => {
    const s = setup();
    const req = s.local.newCall(CALC, M.add, Box);
    req.params.a = 100;
    const pending = req.send(); // queued: the local caller gets its PendingCall first
    s.peer.deliver(addCall(1, 0, 1));
    s.peer.deliver(addCall(2, 0, 2));
    expect(s.server.log).toEqual([]);
    const resp = await pending;
    expect(resp.results(Box).a).toBe(101);
    resp.close();
    await drain();
    expect(s.server.log).toEqual(["start 100", "end 100", "start 1", "end 1", "start 2", "end 2"]);
    expect([s.peer.returned(1), s.peer.returned(2)]).toEqual([2, 3]);
    await teardown(s, [1, 2]);
  });

  it("a call delivered while the server runs another one waits for it (no nested dispatch), then runs in order", async () => {
    const s = setup();
    s.server.during = (a) => {
      if (a === 1) {
        s.peer.deliver(addCall(2, 0, 2)); // as a transport delivering from inside the server's code
        s.peer.deliver(addCall(3, 0, 3));
      }
    };
    s.peer.deliver(addCall(1, 0, 1));
    await drain();
    expect(s.server.log).toEqual(["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
    expect([s.peer.returned(1), s.peer.returned(2), s.peer.returned(3)]).toEqual([2, 3, 4]);
    s.peer.deliver(addCall(4, 0, 4)); // idle again
    await drain();
    expect(s.peer.returned(4)).toBe(5);
    await teardown(s, [1, 2, 3, 4]);
  });

  it("a call that throws is answered with its error, and the next call of the same dispatch still runs", async () => {
    const s = setup();
    s.peer.deliver(addCall(1, 0, -5));
    s.peer.deliver(addCall(2, 0, 7));
    await drain();
    expect(s.peer.returned(1)).toMatch(/refused -5/);
    expect(s.peer.returned(2)).toBe(8);
    expect(s.server.log).toEqual(["start -5", "start 7", "end 7"]);
    await teardown(s, [1, 2]);
  });
});
