// Engine rules that belong to no single message: errors thrown by Server.onRelease reach the log
// of the connection whose release ran it, and the per-connection cap on outstanding incoming calls
// (maxIncomingCalls) answers `overloaded` and, for a peer that never sends Finish, aborts.
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import {
  LimitError,
  RpcConnection,
  RpcError,
  deferred,
  localCapability,
  memoryTransportPair,
  writeCap,
} from "@multiprocess-ts/capnp";
import type { Capability, IncomingCall, MemoryTransport, Server } from "@multiprocess-ts/capnp";
import { Box, CALC, CalcServer, M, call, callA, drain } from "./rpc-helpers.js";

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
