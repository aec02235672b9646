/**
 * Flat params on the server (docs/rpc.md "Flat params on the server"): a hot-shaped Call to a
 * generated server whose method has a flat params reader (mpgen's `ServerMethod.read`) is read
 * from its bytes, with no reader's message. A hand-driven peer sends the same Call bytes to two
 * servers of `FlatEcho` (proto/test/fixtures.capnp): one that reads flat and one whose own
 * `dispatch` turns the flat read off (the general path: capnp-ts struct readers, the struct widened
 * when the sender's is smaller). Both must see the same values for every numeric kind, a params
 * struct with fewer data words (an older peer) or more (a newer one), and null content; what the
 * flat path does not take (a pointer in the params, a cap table, a promisedAnswer target, tracing
 * on) goes the general way; Finish before the Return cancels a flat-read call; noFinishNeeded
 * holds. Every test ends with the leak check.
 *
 * Threading: loop thread (the test's thread).
 */
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { memoryTransportPair, type IncomingCall, type MemoryTransport } from "@multiprocess-ts/capnp";
import { Connection, EventLoop, serveTransport } from "@multiprocess-ts/runtime";
import { assertIdle } from "@multiprocess-ts/testing";
import { describe, expect, it } from "vitest";
import { FlatEchoServer, FlatEcho_echo$Params, FlatEcho_echo$Results, type FlatEcho } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import { FLAT_ECHO_CASES } from "./flat-echo-cases.js";

type Seen = Awaited<ReturnType<FlatEcho["echo"]>>;

/** FlatEcho that counts the flat reads the engine asked for. */
class FlatServer extends FlatEchoServer {
  static flatReads = 0;
  override flatParams(interfaceId: bigint, methodId: number): ReturnType<FlatEchoServer["flatParams"]> {
    const r = super.flatParams(interfaceId, methodId);
    if (r !== undefined) FlatServer.flatReads++;
    return r;
  }
}

/** FlatEcho read the general way: a `dispatch` of its own turns the flat reader off. */
class GeneralServer extends FlatEchoServer {
  override dispatch(call: IncomingCall): void | Promise<void> {
    if (call.flatParams !== undefined) throw new Error("a flat read reached a server without one");
    return super.dispatch(call);
  }
}

/** What the impl saw, per call; `hold` makes the next call wait (for cancellation). */
function echoImpl(seen: Seen[], hold: { next: ((signal: AbortSignal) => Promise<void>) | null }): FlatEcho {
  return {
    echo(i8, u8, i16, u16, i32, u32, i64, u64, f32, f64, k, ctx) {
      const v = { i8, u8, i16, u16, i32, u32, i64, u64, f32, f64, k };
      seen.push(v);
      const h = hold.next;
      hold.next = null;
      return h === null ? v : h(ctx!.signal).then(() => v);
    },
  };
}

/** A peer writing raw messages to a served FlatEcho, decoding what it gets back. */
class RawPeer {
  readonly got: rpc.Message[] = [];
  constructor(private readonly t: MemoryTransport) {
    t.start({
      message: (segs) => this.got.push(new capnp.Message(segs[0]!.slice().buffer, false, true).getRoot(rpc.Message)),
      closed: () => {},
    });
  }
  send(build: (r: rpc.Message) => void): void {
    const m = new capnp.Message();
    build(m.initRoot(rpc.Message));
    this.t.send(m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength)));
  }
  ret(qid: number): rpc.Return | undefined {
    return this.got.filter((m) => m.which() === rpc.Message.RETURN && m.getReturn().getAnswerId() === qid).pop()?.getReturn();
  }
}

interface Served {
  conn: Connection;
  loop: EventLoop;
  peer: RawPeer;
  seen: Seen[];
  hold: { next: ((signal: AbortSignal) => Promise<void>) | null };
  /** The bootstrap FlatEcho's export ID (from its Return's cap table). */
  cap: number;
  close(): Promise<void>;
}

async function serve(Server: typeof FlatEchoServer, trace = false): Promise<Served> {
  const [ta, tb] = memoryTransportPair();
  const loop = new EventLoop("flat-read", { log: { level: trace ? "trace" : "warning", logFn: () => {} } });
  const seen: Seen[] = [];
  const hold: Served["hold"] = { next: null };
  const conn = serveTransport(loop, ta, echoImpl(seen, hold), Server);
  const peer = new RawPeer(tb);
  peer.send((r) => r.initBootstrap().setQuestionId(0));
  await settle();
  const ret = peer.ret(0)!;
  const cap = ret.getResults().getCapTable().get(0).getSenderHosted();
  return {
    conn, loop, peer, seen, hold, cap,
    async close() {
      await conn.close();
      await loop.done;
      assertIdle({ connections: { server: conn }, loops: { server: loop } });
    },
  };
}

/** Lets the connection deliver, dispatch and answer what was sent (microtasks and a macrotask). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

/** The data section of a full `echo` params struct holding `v` (written by capnp-ts's setters). */
function paramsBytes(v: Seen): Uint8Array {
  const m = new capnp.Message();
  const p = m.initRoot(FlatEcho_echo$Params);
  Object.assign(p, v);
  const seg = m.getSegment(0);
  return new Uint8Array(seg.buffer.slice(8, 8 + FlatEcho_echo$Params._capnp.size.dataByteLength));
}

interface CallShape {
  /** Data words of the params struct (its bytes: `data`'s first, zero beyond); null: null content. */
  words: number | null;
  /** Pointer words of the params struct (one non-null text pointer in the first when > 0). */
  ptrs?: number;
  capTable?: boolean;
  promisedTarget?: boolean;
}

function echoCall(qid: number, cap: number, data: Uint8Array, shape: CallShape) {
  return (r: rpc.Message): void => {
    const c = r.initCall();
    c.setQuestionId(qid);
    if (shape.promisedTarget === true) c.initTarget().initPromisedAnswer().setQuestionId(0);
    else c.initTarget().setImportedCap(cap);
    c.setInterfaceId(FlatEchoServer.interfaceId);
    c.setMethodId(0);
    const payload = c.initParams();
    if (shape.capTable === true) payload.initCapTable(1).get(0).setNone();
    if (shape.words === null) return;
    const ptrs = shape.ptrs ?? 0;
    const content = payload.getContent();
    const st = new capnp.Struct(content.segment, content.byteOffset, content._capnp.depthLimit);
    capnp.Struct.initStruct(new capnp.ObjectSize(shape.words * 8, ptrs), st);
    // Its data section: where the struct pointer just written points.
    const dv = new DataView(content.segment.buffer);
    const at = content.byteOffset + 8 + (dv.getInt32(content.byteOffset, true) >> 2) * 8;
    for (let i = 0; i < Math.min(data.byteLength, shape.words * 8); i++) dv.setUint8(at + i, data[i]!);
    if (ptrs > 0) capnp.Struct.setText(0, "x", st);
  };
}

const CASES: Seen[] = [...FLAT_ECHO_CASES];

/** Sends each shape of each case to both servers; returns what the impls saw (flat, general). */
async function both(shapes: CallShape[], cases: Seen[], trace = false): Promise<{ flat: Seen[]; general: Seen[]; flatReads: number; returns: Seen[] }> {
  const flat = await serve(FlatServer, trace);
  const general = await serve(GeneralServer);
  FlatServer.flatReads = 0;
  const returns: Seen[] = [];
  try {
    let qid = 1;
    for (const v of cases) {
      const data = paramsBytes(v);
      for (const shape of shapes) {
        for (const s of [flat, general]) s.peer.send(echoCall(qid, s.cap, data, shape));
        await settle();
        const r = flat.peer.ret(qid)!;
        expect(r.which()).toBe(rpc.Return.RESULTS);
        const res = capnp.Struct.getStruct(0, FlatEcho_echo$Results, r.getResults());
        returns.push({ i8: res.i8, u8: res.u8, i16: res.i16, u16: res.u16, i32: res.i32, u32: res.u32, i64: res.i64, u64: res.u64, f32: res.f32, f64: res.f64, k: res.k });
        qid++;
      }
    }
    return { flat: flat.seen, general: general.seen, flatReads: FlatServer.flatReads, returns };
  } finally {
    await flat.close();
    await general.close();
  }
}

describe("flat params reader on the server", () => {
  it("reads every numeric kind as the general path does, and the results go back", async () => {
    const r = await both([{ words: 6 }], CASES);
    expect(r.flatReads).toBe(CASES.length);
    expect(r.flat).toEqual(CASES);
    expect(r.general).toEqual(CASES);
    expect(r.returns).toEqual(CASES);
  });

  it("a smaller params struct (an older peer) reads the missing fields as defaults; a larger one (a newer peer) reads ours", async () => {
    const shapes: CallShape[] = [0, 1, 2, 3, 4, 5, 8].map((words) => ({ words }));
    const r = await both(shapes, CASES.slice(1, 3));
    expect(r.flatReads).toBe(shapes.length * 2);
    expect(r.flat).toEqual(r.general);
    // Spot checks against the layout (fixtures.capnp: i32 in word 1, f64 in word 5).
    expect(r.flat[1]!.i32).toBe(0);
    expect(r.flat[2]!.i32).toBe(CASES[1]!.i32);
    expect(r.flat[5]!.f64).toBe(0);
    expect(r.flat[6]!).toEqual(CASES[1]);
  });

  it("null params content reads as all defaults", async () => {
    const r = await both([{ words: null }], [CASES[1]!]);
    expect(r.flatReads).toBe(1);
    expect(r.flat).toEqual([CASES[0]]);
    expect(r.general).toEqual([CASES[0]]);
  });

  it("what it does not take goes the general way: a pointer in the params, a cap table, a promisedAnswer target, tracing on", async () => {
    const shapes: CallShape[] = [{ words: 6, ptrs: 1 }, { words: 6, capTable: true }, { words: 6, promisedTarget: true }];
    const r = await both(shapes, [CASES[2]!]);
    expect(r.flatReads).toBe(0);
    expect(r.flat).toEqual([CASES[2], CASES[2], CASES[2]]);
    expect(r.general).toEqual(r.flat);
    const t = await both([{ words: 6 }], [CASES[2]!], true);
    expect(t.flatReads).toBe(0);
    expect(t.flat).toEqual([CASES[2]]);
  });

  it("Finish before the Return cancels a flat-read call (its signal aborts, the Return says canceled); a finished one said noFinishNeeded", async () => {
    const s = await serve(FlatServer);
    FlatServer.flatReads = 0;
    try {
      let aborted = false;
      s.hold.next = (signal) => new Promise<void>((resolve) => signal.addEventListener("abort", () => {
        aborted = true;
        resolve();
      }));
      s.peer.send(echoCall(1, s.cap, paramsBytes(CASES[2]!), { words: 6 }));
      await settle();
      expect(s.seen).toEqual([CASES[2]]);
      expect(s.peer.ret(1)).toBeUndefined();
      s.peer.send((r) => {
        const f = r.initFinish();
        f.setQuestionId(1);
        f.setReleaseResultCaps(true);
      });
      await settle();
      expect(aborted).toBe(true);
      expect(s.peer.ret(1)!.which()).toBe(rpc.Return.CANCELED);
      // The ID is free again; a call that returns says noFinishNeeded and leaves no answer.
      s.peer.send(echoCall(1, s.cap, paramsBytes(CASES[1]!), { words: 6 }));
      await settle();
      const ret = s.peer.ret(1)!;
      expect(ret.which()).toBe(rpc.Return.RESULTS);
      expect(ret.getNoFinishNeeded()).toBe(true);
      expect(FlatServer.flatReads).toBe(2);
      expect(s.conn.rpc.stats().answers).toBe(1); // the bootstrap's
    } finally {
      await s.close();
    }
  });
});
