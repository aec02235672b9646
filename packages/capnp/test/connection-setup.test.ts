// A connection's first messages, which the engine takes through paths of their own (constants
// chosen by data at the hot call sites, so that a warm process's new connection does not
// deoptimise the calls' code: docs/rpc.md "A new connection keeps the optimised code"). What they
// must still do, on a process's first connection and on later ones while others run calls: the
// Bootstrap's Return is one segment with its one cap, written before the answer completes, and
// waits for its Finish; calls pipelined on it and Finish / Release of it work; an interface ID
// read from one Call is not reused for a Call of another interface; the pooled buffers of the
// engine's messages come back for their size and a new size gets a buffer of its own. Every test
// ends with the tables empty and the servers released.
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { type RpcConnection } from "@multiprocess-ts/capnp";
import { Box, CALC, CalcServer, M, addCall, drain, rawServed } from "./rpc-helpers.js";

import { recycleMessage, takeView } from "../dist/buffers.js";
import { messageOver } from "../dist/fastpath.js";

const ZERO = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

type Peer = ReturnType<typeof rawServed>["peer"];

function returnOf(got: rpc.Message[], qid: number): rpc.Return {
  const r = got.filter((m) => m.which() === rpc.Message.RETURN && m.getReturn().getAnswerId() === qid).pop();
  if (r === undefined) throw new Error(`no Return for ${qid}`);
  return r.getReturn();
}

const sum = (ret: rpc.Return): number => capnp.Struct.getStruct(0, Box, ret.getResults()).a;

/** A Finish of `qid` that leaves its results' caps to Release messages (releaseResultCaps false). */
/** A Release of one reference to import `id`. */
const releaseOne = (id: number) => (r: rpc.Message): void => {
  const rel = r.initRelease();
  rel.setId(id);
  rel.setReferenceCount(1);
};
const finishKeep = (qid: number) => (r: rpc.Message): void => {
  const f = r.initFinish();
  f.setQuestionId(qid);
  f.setReleaseResultCaps(false);
};

/** A Call of `add(a, 1)` on import `id` (question `qid`), of interface `iid`. */
const importCall = (qid: number, id: number, a: number, iid = CALC) => (r: rpc.Message): void => {
  const c = r.initCall();
  c.setQuestionId(qid);
  c.initTarget().setImportedCap(id);
  c.setInterfaceId(iid);
  c.setMethodId(M.add);
  const p = capnp.Struct.initStructAt(0, Box, c.initParams());
  p.a = a;
  p.b = 1;
};

/** The peer's Bootstrap (question 0) and what it must get back; returns the bootstrap cap's export ID. */
async function bootstrap(peer: Peer): Promise<number> {
  peer.send((r) => r.initBootstrap().setQuestionId(0));
  await drain();
  const ret = returnOf(peer.got, 0);
  expect(ret.which()).toBe(rpc.Return.RESULTS);
  expect(ret.getNoFinishNeeded()).toBe(false); // a capability: it waits for its Finish
  expect(ret.getReleaseParamCaps()).toBe(false);
  const results = ret.getResults();
  // The peer reads the first segment only (rpc-helpers rawPeer): the cap table is in it.
  const caps = results.getCapTable();
  expect(caps.getLength()).toBe(1);
  const d = caps.get(0);
  expect(d.which()).toBe(rpc.CapDescriptor.SENDER_HOSTED);
  return d.getSenderHosted();
}

/** Calls on the bootstrap's answer (pipelined) and on its import, each answered. */
async function callBoth(peer: Peer, id: number, from: number): Promise<void> {
  peer.send(addCall(1, 0, from));
  peer.send(importCall(2, id, from + 10));
  await drain();
  expect(sum(returnOf(peer.got, 1))).toBe(from + 1);
  expect(sum(returnOf(peer.got, 2))).toBe(from + 11);
}

async function closeServed(conn: RpcConnection, calc: CalcServer): Promise<void> {
  expect(conn.stats()).toEqual(ZERO);
  await conn.close();
  expect(calc.released).toBe(1);
}

describe("a connection's first messages", () => {
  it("the Bootstrap's Return carries its cap in one segment and waits for its Finish, on each connection of a process", async () => {
    const calcs = [new CalcServer(), new CalcServer(), new CalcServer()];
    const served = calcs.map((c) => rawServed(c));
    // The first connection runs calls before the next one starts, and keeps running them.
    const first = await bootstrap(served[0]!.peer);
    await callBoth(served[0]!.peer, first, 100);
    for (let i = 1; i < served.length; i++) {
      const { peer } = served[i]!;
      const id = await bootstrap(peer);
      await callBoth(peer, id, 200 + i);
      await callBoth(served[0]!.peer, first, 300 + i);
    }
    for (let i = 0; i < served.length; i++) {
      const { conn, peer } = served[i]!;
      // Finish with releaseResultCaps (a hot-shaped Finish) drops the answer and its export.
      peer.send((r) => {
        const f = r.initFinish();
        f.setQuestionId(0);
        f.setReleaseResultCaps(true);
      });
      await drain();
      await closeServed(conn, calcs[i]!);
    }
  });

  it("a Finish that keeps the cap, then a Release of it, end the bootstrap's answer and export", async () => {
    const calc = new CalcServer();
    const { conn, peer } = rawServed(calc);
    const id = await bootstrap(peer);
    peer.send(finishKeep(0));
    await drain();
    expect(conn.stats()).toEqual({ ...ZERO, exports: 1 });
    peer.send(importCall(1, id, 1)); // a call on the import after its answer is gone
    await drain();
    expect(sum(returnOf(peer.got, 1))).toBe(2);
    peer.send(releaseOne(id));
    await drain();
    await closeServed(conn, calc);
  });

  it("a Call of another interface after calls of one is dispatched with its own interface ID", async () => {
    const calc = new CalcServer();
    const { conn, peer } = rawServed(calc);
    const id = await bootstrap(peer);
    const OTHER = 0x1234_5678_9abc_def0n;
    let q = 1;
    for (const iid of [CALC, CALC, OTHER, CALC, OTHER, OTHER, CALC]) {
      peer.send(importCall(q, id, q, iid));
      await drain();
      const ret = returnOf(peer.got, q);
      if (iid === CALC) expect(sum(ret)).toBe(q + 1);
      else {
        expect(ret.which()).toBe(rpc.Return.EXCEPTION);
        expect(ret.getException().getReason()).toContain(String(OTHER));
        peer.send(finishKeep(q)); // an exception waits for its Finish
      }
      q++;
    }
    peer.send(finishKeep(0));
    peer.send(releaseOne(id));
    await drain();
    await closeServed(conn, calc);
  });
});

describe("the engine's pooled message buffers (buffers.ts takeView)", () => {
  it("a size with a buffer given back gets that buffer; another size gets a new one of its own", () => {
    const size = 8 * 37; // a size no other test's messages use
    const v = takeView(size);
    expect(v.byteLength).toBe(size);
    recycleMessage(messageOver([v.buffer as ArrayBuffer], size, v)); // as a sent Return's

    expect(takeView(size)).toBe(v);
    const other = takeView(size + 8);
    expect(other).not.toBe(v);
    expect(other.byteLength).toBe(size + 8);
    expect(takeView(13).byteLength).toBe(13); // not a whole number of words: never pooled
  });
});
