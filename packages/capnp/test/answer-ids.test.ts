// The answer table keys the peer's calls by the question ID the peer picked (rpc/answers.ts: a
// dense array below 1024, a Map above, as capnp-c++'s ImportTable). A raw peer picks IDs in both
// ranges and across the boundary: calls are answered, pipelined on, finished and their IDs reused;
// a duplicate ID is a protocol error in either range; the connection's end cancels the calls
// outstanding in both. Every test ends with the connection's stats() back to zero and the served
// capability released.
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { ProtocolError, deferred } from "@multiprocess-ts/capnp";
import type { IncomingCall, Server } from "@multiprocess-ts/capnp";
import { Box, CalcServer, addCall, drain, finish, rawServed } from "./rpc-helpers.js";

const ZERO = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };
const MAX_ID = 0xffff_ffff;


/** The `a` of the results of the last Return for `qid`, or an error's text. */
function returned(got: rpc.Message[], qid: number): number | string | undefined {
  const ret = got.filter((m) => m.which() === rpc.Message.RETURN && m.getReturn().getAnswerId() === qid).pop()?.getReturn();
  if (ret === undefined) return undefined;
  if (ret.which() !== rpc.Return.RESULTS) return `return kind ${ret.which()}`;
  return capnp.Struct.getStruct(0, Box, ret.getResults()).a; // Payload.content is its pointer 0
}

/** Whether the last Return for `qid` says noFinishNeeded. */
function noFinishNeeded(got: rpc.Message[], qid: number): boolean | undefined {
  return got.filter((m) => m.which() === rpc.Message.RETURN && m.getReturn().getAnswerId() === qid).pop()?.getReturn().getNoFinishNeeded();
}

/** Holds every call until `open()`; keeps each call's cancellation signal. */
class Held implements Server {
  readonly signals: AbortSignal[] = [];
  private readonly gate = deferred<void>();
  released = 0;
  async dispatch(call: IncomingCall): Promise<void> {
    this.signals.push(call.signal);
    await this.gate.promise;
  }
  open(): void {
    this.gate.resolve();
  }
  onRelease(): void {
    this.released++;
  }
}

describe("answers by the peer's question ID", () => {
  it("IDs below, at and above the dense range are answered, pipelined on, finished and reused", async () => {
    const calc = new CalcServer();
    const { conn, peer } = rawServed(calc);
    const ids = [0, 1, 1022, 1023, 1024, 70_000, MAX_ID - 1];
    for (const boot of [MAX_ID, 7]) {
      peer.send((r) => r.initBootstrap().setQuestionId(boot)); // the calls pipeline on this answer
      for (const [i, id] of ids.entries()) if (id !== boot) peer.send(addCall(id, boot, i * 10));
      await drain();
      for (const [i, id] of ids.entries()) if (id !== boot) expect(returned(peer.got, id)).toBe(i * 10 + 1);
      // Results without capabilities: a dense ID's answer is dropped as its Return goes out
      // (noFinishNeeded); a sparse one waits for its Finish, as does the bootstrap (a capability).
      for (const id of ids) if (id !== boot) expect(noFinishNeeded(peer.got, id), `${id}`).toBe(id < 1024);
      const kept = ids.filter((id) => id >= 1024 && id !== boot).length;
      expect(conn.stats().answers).toBe(kept + 1);
      // The Finishes come anyway (a caller may send one): ignored for the dropped answers.
      for (const id of ids) peer.send(finish(id));
      peer.send(finish(boot));
      await drain();
      expect(conn.stats()).toEqual(ZERO);
    }
    expect(conn.isClosed).toBe(false);
    await conn.close();
    expect(calc.released).toBe(1);
  });

  for (const id of [5, 1023, 1024, 5000]) {
    it(`a second call with question ID ${id} while the first is outstanding is a ProtocolError`, async () => {
      const held = new Held();
      const { conn, peer } = rawServed(held);
      peer.send((r) => r.initBootstrap().setQuestionId(id + 1));
      peer.send(addCall(id, id + 1, 1));
      await drain(); // the first call is running
      expect(held.signals).toHaveLength(1);
      peer.send(addCall(id, id + 1, 2));
      const err = await conn.closed;
      expect(err).toBeInstanceOf(ProtocolError);
      expect(err!.message).toMatch(new RegExp(`question ID ${id} is already in use`));
      expect(held.signals).toHaveLength(1); // the duplicate never ran
      expect(held.signals[0]!.aborted).toBe(true);
      held.open();
      await drain();
      expect(conn.stats()).toEqual(ZERO);
      expect(held.released).toBe(1);
    });
  }

  it("the connection's end cancels the calls outstanding in both ranges", async () => {
    const held = new Held();
    const { conn, peer } = rawServed(held);
    peer.send((r) => r.initBootstrap().setQuestionId(0));
    for (const id of [3, 1023, 1024, 3000]) peer.send(addCall(id, 0, id));
    await drain();
    expect(held.signals).toHaveLength(4);
    expect(conn.stats().answers).toBe(5);
    await conn.close();
    expect(held.signals.map((s) => s.aborted)).toEqual([true, true, true, true]);
    held.open();
    await drain();
    expect(conn.stats()).toEqual(ZERO);
    expect(held.released).toBe(1);
  });
});
