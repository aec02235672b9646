// Conformance, TS client → C++ server: our engine (packages/capnp) calling the C++ reference peer
// (cpp/peer.c++ built against Debian's libcapnp-rpc) over a real Unix socket, and once over an
// inherited socketpair fd. Check names match the C++ client's (cpp-client.test.ts) so both
// directions read as one matrix. The checks share one connection and run in order; the last one
// is the leak check (C++ reports zero live objects, our stats() back to zero).
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CanceledError,
  DirectCall,
  DisconnectedError,
  RpcError,
  RpcConnection,
  deferred,
  describeRpcMessage,
  localCapability,
  promiseCapability,
  readCap,
  writeCap,
  writeData,
  type Capability,
} from "@multiprocess-ts/capnp";
import {
  CallbackServer,
  Tracker,
  WatcherServer,
  add,
  call,
  connectUnix,
  counterGet,
  counterInc,
  notify,
  schema as s,
  socketDir,
  spawnFdServer,
  streamTransport,
  startCppServer,
  stats,
  type CountingTransport,
  type CppServer,
} from "@multiprocess-ts/test-interop";

const { CALC_ID, COUNTER_ID, CalcMethod: M, CounterMethod } = s;

/** Sends a Calc call whose params hold one capability (pointer 0) and returns the PendingCall. */
function sendWithCap<P extends import("capnp-ts").Struct = s.OneCap>(
  calc: Capability, method: number, cap: Capability | null,
  Params: import("capnp-ts").StructCtor<P> = s.OneCap as unknown as import("capnp-ts").StructCtor<P>,
  build?: (p: P) => void,
) {
  const req = calc.newCall(CALC_ID, method, Params);
  writeCap(req.params, 0, cap);
  build?.(req.params);
  return req.send();
}

/**
 * A call sent with DirectCall.sendFlat (a flat params struct written as bytes, the generated
 * clients' path; over this socket it goes out with no capnp-ts message): resolves with the
 * int32 at byte 0 of the results.
 */
class FlatProbe extends DirectCall {
  readonly done = deferred<number>();
  protected settle(err: RpcError | null): void {
    if (err !== null) this.done.reject(err);
    else this.done.resolve(this.results(s.Calc_add$Results).sum);
    this.releaseResults();
  }
}

function flatCall(target: Capability, iid: bigint, method: number, Params: import("capnp-ts").StructCtor<import("capnp-ts").Struct>, a: number, b?: number): Promise<number> {
  const c = new FlatProbe();
  c.sendFlat(target, iid, method, Params, (dv, at) => {
    dv.setInt32(at, a, true);
    if (b !== undefined) dv.setInt32(at + 4, b, true);
  });
  return c.done.promise;
}

/** Reads the capability at pointer 0 of a response and closes the response. */
async function capResult(p: PromiseLike<import("@multiprocess-ts/capnp").Response>): Promise<Capability> {
  const resp = await p;
  try {
    const cap = readCap(resp.results(s.OneCap), 0);
    if (cap === null) throw new Error("null capability in results");
    return cap;
  } finally {
    resp.close();
  }
}

describe("TS client → C++ server (Unix socket)", () => {
  let dir: Awaited<ReturnType<typeof socketDir>>;
  let server: CppServer;
  let rpc: RpcConnection;
  let transport: CountingTransport;
  let calc: Capability;
  const tracker = new Tracker();

  beforeAll(async () => {
    dir = await socketDir();
    server = await startCppServer(join(dir.dir, "cpp.sock"));
    ({ rpc, transport } = await connectUnix(server.path, "ts-client", { wire: true }));
    calc = rpc.bootstrap();
  });

  afterAll(async () => {
    calc?.close();
    await rpc?.close();
    const code = await server?.stop();
    await dir?.remove();
    expect(code, `C++ peer stderr: ${server?.stderr()}`).toBe(0);
  });

  /** Index into the wire log, to look at the messages of one check. */
  const mark = () => transport.wire!.length;

  it("bootstrap", async () => {
    expect(await add(calc, 2, 3)).toBe(5);
    // The first call is pipelined on the Bootstrap question: sent before its Return came back.
    expect(transport.wireSince(0).slice(0, 2)).toEqual(["out bootstrap", "out call"]);
  });

  it("bootstrap-twice (a second Bootstrap; closing it releases only its own reference)", async () => {
    const second = rpc.bootstrap();
    expect(await add(second, 20, 22)).toBe(42);
    second.close();
    expect(await add(calc, 1, 2)).toBe(3);
    expect(rpc.stats().imports).toBe(1);
  });

  it("scalars", async () => {
    const [a, b] = await Promise.all([add(calc, 2147483647, 1), add(calc, -7, 4)]);
    expect(a).toBe(-2147483648);
    expect(b).toBe(-3);
    const sum = (values: number[]) => call(calc, CALC_ID, M.sum, s.Calc_sum$Params, (p) => { p.values = values; },
      s.Calc_sum$Results, (r) => r.total);
    expect(await sum([1, -2, 2147483647, 2147483647])).toBe(4294967293n);
    expect(await sum([])).toBe(0n);
  });

  it("text-data", async () => {
    const text = "héllo wörld ✓";
    const data = Uint8Array.from({ length: 256 }, (_, i) => i);
    const back = await call(calc, CALC_ID, M.echo, s.Calc_echo$Params, (p) => { p.text = text; p.data = data; },
      s.Calc_echo$Results, (r) => ({ text: r.text, data: r.data }));
    expect(back.text).toBe(text);
    expect(back.data).toEqual(data);
    const join = (parts: string[]) => call(calc, CALC_ID, M.join, s.Calc_join$Params, (p) => { p.parts = parts; },
      s.Calc_join$Results, (r) => ({ joined: r.joined, count: r.count }));
    expect(await join(["a", "bb", "", "cç"])).toEqual({ joined: "a,bb,,cç", count: 4 });
    expect(await join([])).toEqual({ joined: "", count: 0 });
  });

  it("big-data (1 MiB Data, 100 KiB Text, multi-segment messages)", async () => {
    const data = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 7) % 251);
    const text = Array.from({ length: 100 * 1024 }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");
    const back = await call(calc, CALC_ID, M.echo, s.Calc_echo$Params, (p) => { p.text = text; p.data = data; },
      s.Calc_echo$Results, (r) => ({ text: r.text, data: r.data }));
    expect(back.data.byteLength).toBe(data.byteLength);
    expect(Buffer.compare(back.data, data)).toBe(0);
    expect(back.text === text).toBe(true);
    // C++ builds its 1 MiB Return in several segments; we must have decoded a multi-segment frame.
    expect(transport.maxSegmentsIn).toBeGreaterThan(1);
  });

  it("big-data sent from the caller's buffer (writeData: adopted segment behind a double-far pointer)", async () => {
    const data = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 11) % 253);
    const back = await call(calc, CALC_ID, M.echo, s.Calc_echo$Params, (p) => { writeData(1, data, p); },
      s.Calc_echo$Results, (r) => ({ data: r.data }));
    expect(back.data.byteLength).toBe(data.byteLength);
    expect(Buffer.compare(back.data, data)).toBe(0);
  });

  it("callback-during-call", async () => {
    const cbs = new CallbackServer(tracker);
    const cb = localCapability(cbs);
    const resp = await sendWithCap(calc, M.subscribe, cb, s.Calc_subscribe$Params, (p) => { p.value = 41; });
    cb.close();
    try {
      expect(resp.results(s.Calc_subscribe$Results).ack).toBe(42);
    } finally {
      resp.close();
    }
    expect(cbs.calls).toEqual([{ value: 41, msg: "subscribe" }]);
  });

  it("promise-param (a promise capability as a param, resolved after the call was sent)", async () => {
    const d = deferred<Capability>();
    const promiseCb = promiseCapability(d.promise);
    const pc = sendWithCap(calc, M.subscribe, promiseCb, s.Calc_subscribe$Params, (p) => { p.value = 50; });
    promiseCb.close();
    const cbs = new CallbackServer(tracker);
    d.resolve(localCapability(cbs));
    const resp = await pc;
    try {
      expect(resp.results(s.Calc_subscribe$Results).ack).toBe(51);
    } finally {
      resp.close();
    }
    expect(cbs.calls).toEqual([{ value: 50, msg: "subscribe" }]);
  });

  it("null-cap (a null capability param; the callee's call on it fails)", async () => {
    const err = await Promise.resolve(sendWithCap(calc, M.subscribe, null, s.Calc_subscribe$Params, (p) => { p.value = 1; }))
      .then((r) => { r.close(); return null; }, (e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).kind).toBe("failed");
    expect((err as RpcError).remote).toBe(true);
  });

  it("pipeline-on-exception (a call pipelined on a failed result gets the same exception)", async () => {
    const req = calc.newCall(CALC_ID, M.fail, s.Calc_fail$Params);
    req.params.kind = s.Kind.overloaded;
    req.params.msg = "boom-pipelined";
    const pc = req.send();
    const target = pc.pipeline(0);
    const [a, b] = await Promise.all([
      Promise.resolve(pc).then((r) => { r.close(); return null; }, (e: unknown) => e),
      counterInc(target, 1).then(() => null, (e: unknown) => e),
    ]);
    target.close();
    for (const err of [a, b]) {
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).kind).toBe("overloaded");
      expect((err as RpcError).message).toContain("boom-pipelined");
    }
  });

  let kept: Capability | null = null;
  it("cap-result", async () => {
    const req = calc.newCall(CALC_ID, M.makeCounter, s.Calc_makeCounter$Params);
    req.params.start = 10;
    const counter = await capResult(req.send());
    expect(await counterInc(counter, 1)).toBe(11);
    expect(await counterGet(counter)).toBe(11);
    kept = counter;
  });

  it("cap-param-own (our import passed back is the callee's own object)", async () => {
    expect(kept).not.toBeNull();
    const r = await call(calc, CALC_ID, M.readCounter, s.OneCap, (p) => writeCap(p, 0, kept),
      s.Calc_readCounter$Results, (r) => ({ value: r.value, local: r.local }));
    kept!.close();
    kept = null;
    expect(r).toEqual({ value: 11, local: true });
  });

  it("cap-param-pipelined (a not-yet-returned result cap passed back is the callee's own object)", async () => {
    const mk = calc.newCall(CALC_ID, M.makeCounter, s.Calc_makeCounter$Params);
    mk.params.start = 7;
    const pc = mk.send();
    const counter = pc.pipeline(0);
    const r = await call(calc, CALC_ID, M.readCounter, s.OneCap, (p) => writeCap(p, 0, counter),
      s.Calc_readCounter$Results, (r) => ({ value: r.value, local: r.local }));
    counter.close();
    (await pc).close();
    expect(r).toEqual({ value: 7, local: true });
  });

  it("pipelined-result", async () => {
    const m = mark();
    const req = calc.newCall(CALC_ID, M.makeCounter, s.Calc_makeCounter$Params);
    req.params.start = 5;
    const pc = req.send();
    const counter = pc.pipeline(0);
    const [a, b, c] = await Promise.all([counterInc(counter, 2), counterInc(counter, 3), counterGet(counter)]);
    expect([a, b, c]).toEqual([7, 10, 10]);
    (await pc).close();
    counter.close();
    // makeCounter and the three calls on its result all went out before any Return came in.
    const w = transport.wireSince(m);
    expect(w.slice(0, 4)).toEqual(["out call", "out call", "out call", "out call"]);
  });

  it("register-fire (callee keeps our capability and calls it later)", async () => {
    const cbs = new CallbackServer(tracker);
    const cb = localCapability(cbs);
    (await sendWithCap(calc, M.register, cb)).close();
    cb.close(); // only the C++ side holds it now
    const fire = (v: number) => call(calc, CALC_ID, M.fire, s.Calc_fire$Params, (p) => { p.value = v; },
      s.Calc_fire$Results, (r) => r.ack);
    expect(await fire(5)).toBe(6);
    expect(await fire(6)).toBe(7);
    expect(cbs.calls).toEqual([{ value: 5, msg: "fire" }, { value: 6, msg: "fire" }]);
    expect((await stats(calc)).held).toBe(1);
    await call(calc, CALC_ID, M.unregister, s.Empty, () => {}, s.Empty, () => {});
    expect((await stats(calc)).held).toBe(0);
  });

  it("promise-resolve (Resolve, calls pipelined before and after)", async () => {
    const req = calc.newCall(CALC_ID, M.makeCounterLater, s.Calc_makeCounterLater$Params);
    req.params.start = 100;
    const pc = req.send();
    const m = mark();
    const early = pc.pipeline(0);
    const p1 = counterInc(early, 1);          // pipelined on the question, before its Return
    const counter = await capResult(pc);      // a senderPromise import
    const p2 = counterInc(counter, 2);        // on the promise, before Resolve
    const count = await call(calc, CALC_ID, M.resolvePending, s.Empty, () => {}, s.Calc_resolvePending$Results, (r) => r.count);
    expect(count).toBe(1);
    const p3 = counterInc(counter, 3);
    expect(await Promise.all([p1, p2, p3])).toEqual([101, 103, 106]);
    await counter.whenResolved();
    expect(await counterInc(counter, 4)).toBe(110); // after Resolve
    early.close();
    counter.close();
    expect(transport.wireSince(m)).toContain("in resolve");
  });

  it("identity-await (our capability comes back as our own object)", async () => {
    const cbs = new CallbackServer(tracker);
    const cb = localCapability(cbs);
    const back = await capResult(sendWithCap(calc, M.identity, cb));
    cb.close();
    expect(back.localServer()).toBe(cbs);
    expect(await notify(back, 9, "direct")).toBe(10);
    back.close();
    expect(cbs.calls).toEqual([{ value: 9, msg: "direct" }]);
  });

  it("identity-pipelined (a pipelined call reflected back to us)", async () => {
    const cbs = new CallbackServer(tracker);
    const cb = localCapability(cbs);
    const m = mark();
    const pc = sendWithCap(calc, M.identity, cb);
    cb.close();
    const target = pc.pipeline(0);
    expect(await notify(target, 11, "pipelined")).toBe(12);
    target.close();
    (await pc).close();
    expect(cbs.calls).toEqual([{ value: 11, msg: "pipelined" }]);
    // C++ reflects the call to us as a tail call; the promise that resolved back to our own
    // object is embargoed (the loopback Disembargo's echo may come later; the release check
    // sees the embargo table empty).
    const w = transport.wireSince(m);
    expect(w).toContain("in return/takeFromOtherQuestion");
    expect(w).toContain("out return/resultsSentElsewhere");
    expect(w).toContain("out disembargo");
  });

  it("tail-call (C++ tail-calls back into us)", async () => {
    const cbs = new CallbackServer(tracker);
    const cb = localCapability(cbs);
    const m = mark();
    const resp = await sendWithCap(calc, M.reflect, cb, s.Calc_reflect$Params, (p) => { p.value = 20; });
    cb.close();
    try {
      expect(resp.results(s.Ack).ack).toBe(21);
    } finally {
      resp.close();
    }
    expect(cbs.calls).toEqual([{ value: 20, msg: "reflect" }]);
    const w = transport.wireSince(m);
    expect(w).toContain("in return/takeFromOtherQuestion");
    expect(w).toContain("out return/resultsSentElsewhere");
  });

  for (const kind of s.KIND_NAMES) {
    it(`exception-${kind}`, async () => {
      const msg = `boom-exception-${kind}`;
      const p = call(calc, CALC_ID, M.fail, s.Calc_fail$Params, (q) => { q.kind = s.Kind[kind]; q.msg = msg; }, s.Empty, () => {});
      const err = await p.then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).kind).toBe(kind);
      expect((err as RpcError).remote).toBe(true);
      expect((err as RpcError).message).toContain(msg);
    });
  }

  it("exception-plain (an untyped C++ exception arrives as failed)", async () => {
    const msg = "boom-exception-plain";
    const err = await call(calc, CALC_ID, M.fail, s.Calc_fail$Params, (q) => { q.kind = 7; q.msg = msg; }, s.Empty, () => {})
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).kind).toBe("failed");
    expect((err as RpcError).message).toContain(msg);
  });

  it("unknown-method (answered unimplemented, connection stays up)", async () => {
    const err = await call(calc, CALC_ID, 99, s.Empty, () => {}, s.Empty, () => {}).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).kind).toBe("unimplemented");
    expect(await add(calc, 1, 1)).toBe(2);
  });

  it("cancel (PendingCall.cancel sends Finish; the C++ callee observes it)", async () => {
    const w = new WatcherServer(tracker);
    const cap = localCapability(w);
    const pc = sendWithCap(calc, M.hang, cap);
    cap.close();
    await w.started.promise;
    const m = mark();
    pc.cancel();
    const err = await Promise.resolve(pc).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(CanceledError);
    await w.canceled.promise;
    expect(await add(calc, 3, 4)).toBe(7);
    // Finish went out before any Return for hang(); C++ then answered it as canceled.
    const wl = transport.wireSince(m);
    expect(wl[0]).toBe("out finish");
    expect(wl).toContain("in return/canceled");
  });

  it("cancel-signal (an AbortSignal cancels the call)", async () => {
    const w = new WatcherServer(tracker);
    const cap = localCapability(w);
    const ac = new AbortController();
    const req = calc.newCall(CALC_ID, M.hang, s.OneCap);
    writeCap(req.params, 0, cap);
    cap.close();
    const pc = req.send({ signal: ac.signal });
    await w.started.promise;
    ac.abort();
    const err = await Promise.resolve(pc).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(CanceledError);
    await w.canceled.promise;
  });

  it("flat-calls (Calls written as bytes: to an import, and pipelined on a promised answer)", async () => {
    const m = mark();
    // The buffer each Call is handed to the transport in: the flat path's is one reused buffer.
    const from: ArrayBufferLike[] = [];
    const sendCopy = transport.sendCopy.bind(transport);
    transport.sendCopy = (segs) => {
      if (describeRpcMessage(segs).which === "call") from.push(segs[0]!.buffer);
      return sendCopy(segs);
    };
    expect(await flatCall(calc, CALC_ID, M.add, s.Calc_add$Params, 2, 40)).toBe(42);
    expect(await flatCall(calc, CALC_ID, M.add, s.Calc_add$Params, -5, 3)).toBe(-2);
    expect(await flatCall(calc, CALC_ID, M.add, s.Calc_add$Params, -0x80000000, 0x7fffffff)).toBe(-1);
    const mk = calc.newCall(CALC_ID, M.makeCounter, s.Calc_makeCounter$Params);
    mk.params.start = 5;
    const pc = mk.send();
    const counter = pc.pipeline(0);
    const [x, y] = await Promise.all([
      flatCall(counter, COUNTER_ID, CounterMethod.inc, s.Counter_inc$Params, 2),
      flatCall(counter, COUNTER_ID, CounterMethod.inc, s.Counter_inc$Params, 3),
    ]);
    expect([x, y]).toEqual([7, 10]);
    counter.close();
    (await pc).close();
    transport.sendCopy = sendCopy;
    expect(transport.wireSince(m).filter((w) => w === "out call").length).toBe(6);
    // The adds and the pipelined incs came from the flat path's buffer, makeCounter did not.
    expect(from.length).toBe(6);
    expect(from.filter((b) => b === from[0]).length).toBe(5);
  });

  it("order-1000 (1000 concurrent calls delivered in order)", async () => {
    const seq = (n: number) => call(calc, CALC_ID, M.seq, s.Calc_seq$Params, (p) => { p.n = n; }, s.Calc_seq$Results, (r) => r.prev);
    await seq(0);
    const prevs = await Promise.all(Array.from({ length: 1000 }, (_, i) => seq(i + 1)));
    expect(prevs).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it("release (C++ ends with no live objects; our tables back to the bootstrap import only)", async () => {
    expect(await stats(calc)).toEqual({ live: 0, held: 0 });
    await tracker.liveZero(); // every Callback we exported has been released by C++
    expect(tracker.live).toBe(0);
    expect(rpc.stats()).toMatchObject({ questions: 0, answers: 0, exports: 0, imports: 1, embargoes: 0 });
    const m = mark();
    calc.close();
    expect(rpc.stats()).toMatchObject({ questions: 0, answers: 0, exports: 0, imports: 0, embargoes: 0 });
    expect(transport.wireSince(m)).toEqual(["out release"]);
    expect(rpc.isClosed).toBe(false);
    // Nothing in the whole session was an Abort or an Unimplemented, and it used every Level-1
    // message kind in both directions.
    const all = transport.wireSince(0);
    expect(all.filter((e) => /abort|unimplemented/.test(e))).toEqual([]);
    const seen = new Set(all);
    const expected = [
      "out bootstrap", "out call", "out finish", "out release", "out resolve", "out disembargo",
      "out return/results", "out return/resultsSentElsewhere",
      "in call", "in finish", "in release", "in resolve", "in disembargo",
      "in return/results", "in return/exception", "in return/canceled", "in return/takeFromOtherQuestion",
    ];
    expect(expected.filter((e) => !seen.has(e))).toEqual([]);
  });
});

describe("TS client → C++ server (inherited socketpair fd, libmultiprocess style)", () => {
  it("serves on fd 3, calls back, pipelines, releases, and exits 0 when we close", async () => {
    const peer = await spawnFdServer();
    const tracker = new Tracker();
    const rpc = new RpcConnection(streamTransport(peer.socket), { name: "ts-client-fd" });
    const calc = rpc.bootstrap();
    try {
      expect(await add(calc, 40, 2)).toBe(42);
      const cbs = new CallbackServer(tracker);
      const cb = localCapability(cbs);
      const resp = await sendWithCap(calc, M.subscribe, cb, s.Calc_subscribe$Params, (p) => { p.value = 10; });
      cb.close();
      expect(resp.results(s.Calc_subscribe$Results).ack).toBe(11);
      resp.close();
      const req = calc.newCall(CALC_ID, M.makeCounter, s.Calc_makeCounter$Params);
      req.params.start = 5;
      const pc = req.send();
      const counter = pc.pipeline(0);
      expect(await counterInc(counter, 1)).toBe(6);
      counter.close();
      (await pc).close();
      expect(await stats(calc)).toEqual({ live: 0, held: 0 });
      await tracker.liveZero();
    } finally {
      calc.close();
      await rpc.close();
    }
    expect(await peer.exited, `C++ peer stderr: ${peer.stderr()}`).toBe(0);
    expect(rpc.stats()).toMatchObject({ questions: 0, answers: 0, exports: 0, imports: 0, embargoes: 0 });
  });
});

describe("TS client → C++ server: disconnects", () => {
  it("call-after-close: calls on a closed connection reject DisconnectedError at once", async () => {
    const dir = await socketDir();
    const server = await startCppServer(join(dir.dir, "cpp.sock"));
    try {
      const { rpc } = await connectUnix(server.path, "ts-client-close");
      const calc = rpc.bootstrap();
      expect(await add(calc, 1, 2)).toBe(3);
      await rpc.close();
      const err = await add(calc, 1, 2).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(DisconnectedError);
      calc.close();
      expect(rpc.stats()).toMatchObject({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
    } finally {
      expect(await server.stop()).toBe(0);
      await dir.remove();
    }
  });

  it("peer-exit: a pending call rejects DisconnectedError and our exports are released when the peer dies", async () => {
    const peer = await spawnFdServer();
    const tracker = new Tracker();
    const rpc = new RpcConnection(streamTransport(peer.socket), { name: "ts-client-peer-exit" });
    const calc = rpc.bootstrap();
    const w = new WatcherServer(tracker);
    const cap = localCapability(w);
    const pc = sendWithCap(calc, M.hang, cap);
    cap.close();
    // Also outstanding when the peer dies: an unresolved promise import (makeCounterLater),
    // and a pipelined cap whose question was never answered and nobody awaits (that last one
    // once killed Node with an unhandled rejection in capnp-ts).
    const later = calc.newCall(CALC_ID, M.makeCounterLater, s.Calc_makeCounterLater$Params);
    later.params.start = 1;
    const promiseCounter = await capResult(later.send());
    const cb2 = localCapability(new CallbackServer(tracker));
    const never = sendWithCap(calc, M.hang, cb2);
    cb2.close();
    const pipelined = never.pipeline(0);
    await w.started.promise;
    peer.proc.kill("SIGKILL");
    const err = await Promise.resolve(pc).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DisconnectedError);
    await rpc.closed;
    expect(rpc.isClosed).toBe(true);
    const errs = await Promise.all([
      promiseCounter.whenResolved().then(() => null, (e: unknown) => e),
      counterInc(promiseCounter, 1).then(() => null, (e: unknown) => e),
      counterInc(pipelined, 1).then(() => null, (e: unknown) => e),
      add(calc, 1, 1).then(() => null, (e: unknown) => e),
    ]);
    for (const e of errs) expect(e).toBeInstanceOf(DisconnectedError);
    promiseCounter.close();
    pipelined.close();
    await tracker.liveZero(); // the exported watcher and callback were dropped with the connection
    calc.close();
    expect(rpc.stats()).toMatchObject({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
    expect(await peer.exited).toBe(null); // killed by the signal
  });
});
