// The Finish of a call a worker makes through the loop's socket Connection (docs/threading.md,
// "The RPC bridge"; docs/rpc.md, "Syscalls per call"): the loop's engine sends it lazily, so it
// waits for the next message on that socket. These tests pin that it still reaches the peer when
// no message follows (the transport's bounded wait), in order with the Release of a capability
// the worker got in the results, and that nothing is left in any table afterwards.
// Threading: the test runs on the loop thread; the fixture's scenarios run in worker threads.
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { countWrites, unixSocketPair } from "@multiprocess-ts/testing";
import * as capnp from "capnp-ts";
import { RpcConnection, RpcError, deferred, localCapability, streamTransport, writeCap, type IncomingCall, type Server } from "@multiprocess-ts/capnp";
import { loopBridge, loopHandleTransferList, WorkerHost } from "../dist/worker/index.js";

const FIXTURE = new URL("./worker-fixtures/bridge.mjs", import.meta.url);

// The fixture's Args layout: a, b (int32s), pointers 0 (a capability) and 1 (text).
class Args extends capnp.Struct {
  static override readonly _capnp = { displayName: "Args", id: "0", size: new capnp.ObjectSize(8, 2) };
}

/** The peer process's object, served over the socket: add (0), a failing call (4) and a counter factory (2). */
class Calc implements Server {
  counterReleased = deferred<void>();
  dispatch(call: IncomingCall): void {
    const p = call.params(Args);
    const r = call.results(Args);
    if (call.methodId === 0) {
      capnp.Struct.setInt32(0, capnp.Struct.getInt32(0, p) + capnp.Struct.getInt32(4, p), r);
      return;
    }
    if (call.methodId === 4) throw new RpcError("failed", "no sum here");
    let n = 0;
    const counter = localCapability({
      dispatch: (c: IncomingCall) => capnp.Struct.setInt32(0, ++n, c.results(Args)),
      onRelease: () => this.counterReleased.resolve(),
    });
    writeCap(r, 0, counter);
    counter.close();
    capnp.Struct.setText(1, `made ${capnp.Struct.getText(1, p)}`, r);
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Setup {
  peer: RpcConnection;
  /** The peer's trace: one line per message it received or sent. */
  peerLog: string[];
  calc: Calc;
  /** write()/writev() calls on the loop's socket so far. */
  loopWrites(): number;
  /** Resolves once the peer's answer table has no entry, checked after each chunk it reads. */
  peerAnswersDone(): Promise<void>;
  run(scenario: string): Promise<{ ok: boolean; value: unknown; stats: unknown }>;
}

async function setup(): Promise<Setup> {
  const sockets = await unixSocketPair();
  const { client: c, server: s } = sockets;
  const writes = countWrites(c);

  const calc = new Calc();
  const bootCap = localCapability(calc);
  const peerLog: string[] = [];
  const peer = new RpcConnection(streamTransport(s), {
    bootstrap: bootCap,
    name: "peer",
    log: (level, msg) => void peerLog.push(level === "trace" ? msg : `${level}: ${msg}`),
  });
  bootCap.close();
  const loopConn = new RpcConnection(streamTransport(c), { name: "loop" });
  const boot = loopConn.bootstrap();

  let refs = 0;
  const host = new WorkerHost({
    name: "finish-loop",
    ref: () => {
      refs++;
      let done = false;
      return { [Symbol.dispose]: () => void (done ? 0 : ((done = true), refs--)) };
    },
  });
  const bridge = loopBridge(host, {});
  const unshare = bridge.share("calc", boot);
  const exits: Promise<unknown>[] = [];

  cleanups.push(async () => {
    await Promise.all(exits);
    // Leak check: sessions, bridge tables and loop refs, then both ends of the socket.
    expect(host.sessions.size).toBe(0);
    expect(bridge.stats()).toEqual({ caps: 0, answers: 0, questions: 0, objects: 0, sessions: 0 });
    expect(refs).toBe(0);
    unshare();
    bridge.close();
    await host.close();
    boot.close();
    await loopConn.close();
    await peer.closed;
    expect(loopConn.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
    expect(peer.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
    await sockets.close();
  });

  return {
    peer,
    peerLog,
    calc,
    loopWrites: writes,
    peerAnswersDone: () =>
      new Promise<void>((resolve) => {
        if (peer.stats().answers === 0) return resolve();
        const onData = (): void => {
          // The transport's own 'data' listener (registered first) has handed the chunk over.
          if (peer.stats().answers !== 0) return;
          s.off("data", onData);
          resolve();
        };
        s.on("data", onData);
      }),
    run(scenario) {
      const handle = host.handle({ name: scenario });
      const session = [...host.sessions].find((x) => x.id === handle.session)!;
      const worker = new Worker(FIXTURE, { workerData: { handle, scenario }, transferList: loopHandleTransferList(handle) });
      const result = deferred<{ ok: boolean; value: unknown; stats: unknown }>();
      worker.on("message", (m) => result.resolve(m));
      worker.once("error", (e) => result.reject(e));
      exits.push(new Promise((r) => worker.once("exit", r)), session.closed);
      return result.promise;
    },
  };
}

describe("the Finish of a worker's call through the loop's socket Connection", () => {
  it("reaches the peer with no message after it (the bounded wait)", async () => {
    const t = await setup();
    const before = t.loopWrites(); // the bootstrap's Finish may still be waiting
    // A call that fails: its Return (an exception) needs a Finish (results without capabilities
    // would not: their Return says noFinishNeeded, see the next test).
    const r = await t.run("errors");
    expect(r).toMatchObject({ ok: true, value: { thrown: { message: "no sum here" } } });
    // Nothing else goes out on the socket: the worker's call's Finish leaves by itself.
    await t.peerAnswersDone();
    expect(t.loopWrites() - before).toBeGreaterThanOrEqual(2); // the Call, then that Finish
    expect(t.peerLog).toEqual([
      "peer: <- bootstrap q0",
      "peer: -> return a0 results",
      "peer: <- finish q0",
      "peer: <- call q0 1234/4",
      "peer: -> return a0 1234/4 exception: no sum here",
      "peer: <- finish q0", // the worker's call's Finish (question ids are reused)
    ]);
  });

  it("is not sent for results without capabilities: their Return says noFinishNeeded", async () => {
    const t = await setup();
    const r = await t.run("add");
    expect(r).toMatchObject({ ok: true, value: 5, stats: { imports: 0, exports: 0, questions: 0, answers: 0 } });
    await t.peerAnswersDone();
    expect(t.peerLog).toEqual([
      "peer: <- bootstrap q0",
      "peer: -> return a0 results",
      "peer: <- finish q0",
      "peer: <- call q0 1234/0",
      "peer: -> return a0 1234/0",
    ]);
  });

  it("reaches the peer before the Release of a capability from its results; nothing leaks", async () => {
    const t = await setup();
    const r = await t.run("capInResults");
    expect(r).toMatchObject({ ok: true, value: ["made counter", 1, 2] });
    await t.calc.counterReleased.promise; // the worker's close() reached the peer's object
    await t.peerAnswersDone();
    expect(t.peer.stats()).toMatchObject({ answers: 0, exports: 1 }); // the bootstrap only
    // The call that returned the counter was finished before the counter's Release came.
    const made = t.peerLog.findIndex((l) => / <- call q\d+ 1234\/2$/.test(l));
    expect(made).toBeGreaterThanOrEqual(0);
    const q = / <- call (q\d+) /.exec(t.peerLog[made]!)![1]!;
    const finish = t.peerLog.findIndex((l, i) => i > made && l === `peer: <- finish ${q}`);
    const release = t.peerLog.findIndex((l) => l.startsWith("peer: <- release"));
    expect(finish).toBeGreaterThan(made);
    expect(release).toBeGreaterThan(finish);
    expect(t.peerLog.filter((l) => !/: (<-|->) /.test(l))).toEqual([]); // no warning, no error
  });
});
