// Engine rules that belong to no single message: errors thrown by Server.onRelease reach the log
// of the connection whose release ran it, and the per-connection cap on outstanding incoming calls
// (maxIncomingCalls) answers `overloaded` and, for a peer that never sends Finish, aborts; the
// per-message trace lines go to the log only when `trace` is on.
// Every test ends with both sides' stats() back to zero.
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import {
  DEFAULT_MAX_INCOMING_CALLS,
  LimitError,
  RpcConnection,
  RpcError,
  deferred,
  localCapability,
  memoryTransportPair,
  writeCap,
} from "@multiprocess-ts/capnp";
import type { Capability, IncomingCall, Server } from "@multiprocess-ts/capnp";
import { Box, CALC, CalcServer, M, call, callA, drain, rawPeer } from "./rpc-helpers.js";

const ZERO = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };
type Log = [string, string][];

/** A server whose onRelease throws. */
class ThrowingRelease implements Server {
  released = 0;
  dispatch(call: IncomingCall): void {
    call.results(Box).a = call.params(Box).a * 2;
  }
  onRelease(): void {
    this.released++;
    throw new Error("boom from onRelease");
  }
}

function logged(log: Log): (level: string, msg: string) => void {
  return (level, msg) => {
    if (level !== "trace") log.push([level, msg]);
  };
}

describe("Server.onRelease errors", () => {
  it("go to the log of the connection that served the bootstrap capability, at its end", async () => {
    const [ta, tb] = memoryTransportPair();
    const serverLog: Log = [];
    const impl = new ThrowingRelease();
    const bootCap = localCapability(impl);
    const server = new RpcConnection(tb, { bootstrap: bootCap, name: "server", log: logged(serverLog) });
    bootCap.close();
    const client = new RpcConnection(ta, { name: "client" });
    const boot = client.bootstrap();
    expect(await callA(boot, 0, (p) => (p.a = 21), CALC)).toBe(42);
    boot.close();
    await drain();
    expect(impl.released).toBe(0);
    await server.close();
    await client.close();
    expect(impl.released).toBe(1);
    expect(serverLog).toContainEqual(["error", "server: Server.onRelease threw: Error: boom from onRelease"]);
    expect(client.stats()).toEqual(ZERO);
    expect(server.stats()).toEqual(ZERO);
  });

  it("go to the log of the connection whose peer released the export", async () => {
    const [ta, tb] = memoryTransportPair();
    const clientLog: Log = [];
    const calc = new CalcServer();
    const bootCap = localCapability(calc);
    const server = new RpcConnection(tb, { bootstrap: bootCap, name: "server" });
    bootCap.close();
    const client = new RpcConnection(ta, { name: "client", log: logged(clientLog) });
    const boot = client.bootstrap();
    const impl = new ThrowingRelease();
    const cb: Capability = localCapability(impl);
    // callback(cb, 5): the server calls cb once, then closes it (Release back to the client).
    const req = boot.newCall(CALC, M.callback, Box);
    req.params.a = 5;
    writeCap(req.params, 0, cb);
    cb.close();
    const resp = await req.send();
    expect(resp.results(Box).a).toBe(10);
    resp.close();
    await drain();
    expect(impl.released).toBe(1);
    expect(clientLog).toContainEqual(["error", "client: Server.onRelease threw: Error: boom from onRelease"]);
    boot.close();
    await drain();
    expect(client.stats()).toEqual(ZERO);
    expect(server.stats()).toEqual(ZERO);
    await client.close();
    await server.close();
  });
});

/** Holds every call until `open()`; counts calls that reached dispatch. */
class Gate implements Server {
  started = 0;
  private readonly gate = deferred<void>();
  async dispatch(call: IncomingCall): Promise<void> {
    this.started++;
    const a = call.params(Box).a;
    await this.gate.promise;
    call.results(Box).a = a + 1;
  }
  open(): void {
    this.gate.resolve();
  }
}

describe("maxIncomingCalls", () => {
  it("defaults to DEFAULT_MAX_INCOMING_CALLS and rejects a bad value with a RangeError", async () => {
    expect(DEFAULT_MAX_INCOMING_CALLS).toBe(16384);
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      const [ta] = memoryTransportPair();
      expect(() => new RpcConnection(ta, { maxIncomingCalls: bad })).toThrow(RangeError);
    }
  });

  it("a call over the limit gets an `overloaded` Return; the held ones and later ones succeed", async () => {
    const [ta, tb] = memoryTransportPair();
    const gate = new Gate();
    const bootCap = localCapability(gate);
    const server = new RpcConnection(tb, { bootstrap: bootCap, name: "server", maxIncomingCalls: 2 });
    bootCap.close();
    const client = new RpcConnection(ta, { name: "client" });
    const boot = client.bootstrap();
    await boot.whenResolved();
    await drain(); // the Bootstrap's Finish has reached the server: no answer left
    expect(server.stats().answers).toBe(0);
    const p1 = call(boot, 0, (p) => (p.a = 1));
    const p2 = call(boot, 0, (p) => (p.a = 2));
    const p3 = call(boot, 0, (p) => (p.a = 3));
    const err = await p3.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RpcError);
    expect(err).toMatchObject({ kind: "overloaded", code: "MP_ERR_OVERLOADED", remote: true });
    expect((err as Error).message).toMatch(/maxIncomingCalls = 2/);
    expect(gate.started).toBe(2);
    gate.open();
    const r1 = await p1;
    const r2 = await p2;
    expect([r1.results(Box).a, r2.results(Box).a]).toEqual([2, 3]);
    r1.close();
    r2.close();
    await drain();
    expect(await callA(boot, 0, (p) => (p.a = 9))).toBe(10);
    expect(server.isClosed).toBe(false);
    boot.close();
    await drain();
    expect(client.stats()).toEqual(ZERO);
    expect(server.stats()).toEqual(ZERO);
    await client.close();
    await server.close();
  });

  it("a peer that never sends Finish is aborted with a LimitError at twice the limit", async () => {
    const [ta, tb] = memoryTransportPair();
    const calc = new CalcServer();
    const bootCap = localCapability(calc);
    const conn = new RpcConnection(ta, { bootstrap: bootCap, maxIncomingCalls: 1 });
    bootCap.close();
    const peer = rawPeer(tb);
    const add = (qid: number) => (r: rpc.Message) => {
      const c = r.initCall();
      c.setQuestionId(qid);
      c.initTarget().initPromisedAnswer().setQuestionId(0);
      c.setInterfaceId(CALC);
      c.setMethodId(M.add);
      capnp.Struct.initStructAt(0, Box, c.initParams()).a = qid;
    };
    peer.send((r) => r.initBootstrap().setQuestionId(0)); // answered, never finished
    peer.send(add(1)); // over the limit: overloaded
    await drain();
    const ret1 = peer.got.find((m) => m.which() === rpc.Message.RETURN && m.getReturn().getAnswerId() === 1);
    expect(ret1?.getReturn().which()).toBe(rpc.Return.EXCEPTION);
    expect(ret1?.getReturn().getException().getType()).toBe(rpc.Exception_Type.OVERLOADED);
    expect(conn.isClosed).toBe(false);
    peer.send(add(2)); // two unfinished answers: the peer is aborted
    const err = await conn.closed;
    expect(err).toBeInstanceOf(LimitError);
    expect(err!.message).toMatch(/twice the limit maxIncomingCalls = 1/);
    await drain();
    const abort = peer.got.find((m) => m.which() === rpc.Message.ABORT);
    expect(abort?.getAbort().getReason()).toMatch(/maxIncomingCalls/);
    expect(conn.stats()).toEqual(ZERO);
    expect(calc.released).toBe(1);
  });
});

describe("trace option", () => {
  it("sends per-message trace lines to the log by default, none with trace: false", async () => {
    const levels = async (trace: boolean | undefined): Promise<string[]> => {
      const [ta, tb] = memoryTransportPair();
      const seen: string[] = [];
      const log = (level: string): void => void seen.push(level);
      const bootCap = localCapability(new CalcServer());
      const server = new RpcConnection(tb, { bootstrap: bootCap, name: "server", log, ...(trace === undefined ? {} : { trace }) });
      bootCap.close();
      const client = new RpcConnection(ta, { name: "client" });
      const boot = client.bootstrap();
      expect(await callA(boot, M.add, (p) => ((p.a = 20), (p.b = 22)), CALC)).toBe(42);
      boot.close();
      await drain();
      await server.close();
      await client.close();
      expect(server.stats()).toEqual(ZERO);
      expect(client.stats()).toEqual(ZERO);
      return seen;
    };
    expect((await levels(undefined)).filter((l) => l === "trace").length).toBeGreaterThanOrEqual(3); // bootstrap, call, return...
    expect(await levels(false)).toEqual([]);
  });
});
