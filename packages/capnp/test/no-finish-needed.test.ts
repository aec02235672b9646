// Return.noFinishNeeded (rpc.capnp; upstream rpc.c++ sets it the same way): a Return of results
// without capabilities says so, and the answer is dropped as the Return goes out, so a call
// costs no Finish on either side. What must still hold: a caller that sends Finish anyway is
// ignored (once); a call pipelined on such an answer before the caller saw its Return fails
// without ending the connection; results with a capability, exceptions and IDs beyond the dense
// range still wait for their Finish; our own client sends no Finish after such a Return and
// reuses the question ID at once. Every test ends with the tables empty and the server released.
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { ProtocolError, type RpcConnection } from "@multiprocess-ts/capnp";
import { Box, CALC, CalcServer, M, addCall, callA, capture, drain, finish, makePair, rawPeer, rawServed } from "./rpc-helpers.js";

const ZERO = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

function lastReturn(got: rpc.Message[], qid: number): rpc.Return {
  const r = got.filter((m) => m.which() === rpc.Message.RETURN && m.getReturn().getAnswerId() === qid).pop();
  if (r === undefined) throw new Error(`no Return for ${qid}`);
  return r.getReturn();
}

/** A raw peer's Call (question `qid`) of `method` on the answer of its question `on`, path `path`. */
const callOn = (qid: number, on: number, method: number, path: number[] = []) => (r: rpc.Message): void => {
  const c = r.initCall();
  c.setQuestionId(qid);
  const pa = c.initTarget().initPromisedAnswer();
  pa.setQuestionId(on);
  if (path.length > 0) {
    const ops = pa.initTransform(path.length);
    path.forEach((p, i) => ops.get(i).setGetPointerField(p));
  }
  c.setInterfaceId(CALC);
  c.setMethodId(method);
  capnp.Struct.initStructAt(0, Box, c.initParams()).a = 1;
};

function serve(): { conn: RpcConnection; calc: CalcServer; peer: ReturnType<typeof rawPeer> } {
  const calc = new CalcServer();
  const { conn, peer } = rawServed(calc);
  peer.send((r) => r.initBootstrap().setQuestionId(0));
  return { conn, calc, peer };
}

describe("Return.noFinishNeeded", () => {
  it("results without capabilities: the Return says noFinishNeeded and the answer is gone before any Finish", async () => {
    const { conn, calc, peer } = serve();
    peer.send(addCall(3, 0, 41));
    await drain();
    const ret = lastReturn(peer.got, 3);
    expect(capnp.Struct.getStruct(0, Box, ret.getResults()).a).toBe(42);
    expect(ret.getNoFinishNeeded()).toBe(true);
    expect(lastReturn(peer.got, 0).getNoFinishNeeded()).toBe(false); // the bootstrap capability
    expect(conn.stats().answers).toBe(1); // only the bootstrap's
    // A Finish anyway (rpc.capnp allows it) is ignored; the ID is then free and reused.
    peer.send(finish(3));
    peer.send(addCall(3, 0, 1));
    await drain();
    expect(capnp.Struct.getStruct(0, Box, lastReturn(peer.got, 3).getResults()).a).toBe(2);
    expect(conn.isClosed).toBe(false);
    peer.send(finish(0));
    await drain();
    expect(conn.stats()).toEqual(ZERO);
    await conn.close();
    expect(calc.released).toBe(1);
  });

  it("a call pipelined on such an answer before its Return was seen fails, and the connection lives", async () => {
    const { conn, calc, peer } = serve();
    peer.send(addCall(3, 0, 1));
    await drain();
    expect(lastReturn(peer.got, 3).getNoFinishNeeded()).toBe(true);
    // Sent as a peer would have before reading the Return: on question 3's results, field 0.
    peer.send(callOn(4, 3, M.add, [0]));
    await drain();
    const failed = lastReturn(peer.got, 4);
    expect(failed.which()).toBe(rpc.Return.EXCEPTION);
    expect(failed.getException().getReason()).toMatch(/returned no capabilities/);
    expect(failed.getNoFinishNeeded()).toBe(false); // an exception still waits for its Finish
    expect(conn.isClosed).toBe(false);
    peer.send(finish(4));
    peer.send(finish(0));
    await drain();
    expect(conn.stats()).toEqual(ZERO);
    await conn.close();
    expect(calc.released).toBe(1);
  });

  it("a second Finish for a dropped answer is a protocol error, as for any unknown question", async () => {
    const { conn, peer } = serve();
    peer.send(addCall(3, 0, 1));
    await drain();
    peer.send(finish(3));
    peer.send(finish(3));
    const err = await conn.closed;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err!.message).toMatch(/Finish for unknown question ID 3/);
    expect(conn.stats()).toEqual(ZERO);
  });

  it("results with a capability, exceptions and sparse question IDs still wait for their Finish", async () => {
    const { conn, calc, peer } = serve();
    peer.send(callOn(5, 0, M.makeCounter));
    peer.send(callOn(6, 0, M.fail));
    peer.send(addCall(5000, 0, 1));
    await drain();
    expect(lastReturn(peer.got, 5).getNoFinishNeeded()).toBe(false);
    expect(lastReturn(peer.got, 6).which()).toBe(rpc.Return.EXCEPTION);
    expect(lastReturn(peer.got, 6).getNoFinishNeeded()).toBe(false);
    expect(lastReturn(peer.got, 5000).getNoFinishNeeded()).toBe(false);
    expect(conn.stats().answers).toBe(4);
    for (const q of [5, 6, 5000, 0]) peer.send(finish(q));
    await drain();
    expect(conn.stats().answers).toBe(0);
    // The counter's export: the peer releases it.
    peer.send((r) => {
      const rel = r.initRelease();
      rel.setId(lastReturn(peer.got, 5).getResults().getCapTable().get(0).getSenderHosted());
      rel.setReferenceCount(1);
    });
    await drain();
    expect(conn.stats()).toEqual(ZERO);
    await conn.close();
    expect(calc.released).toBe(1);
    expect(calc.counters[0]!.released).toBe(1);
  });

  it("our client sends no Finish after such a Return and reuses the question ID at once", async () => {
    await using p = makePair();
    expect(await callA(p.boot, M.add, (b) => { b.a = 1; b.b = 1; })).toBe(2); // bootstrap done
    await drain();
    const sent = capture(p.clientTransport);
    for (let i = 0; i < 5; i++) expect(await callA(p.boot, M.add, (b) => { b.a = i; b.b = 1; })).toBe(i + 1);
    await drain();
    expect(sent.map((m) => m.which())).toEqual(Array(5).fill(rpc.Message.CALL));
    expect(new Set(sent.map((m) => m.getCall().getQuestionId())).size).toBe(1);
    expect(p.client.stats().questions).toBe(0);
    expect(p.server.stats().answers).toBe(0);
  });
});
