// RPC engine basics (calls, results, errors, capabilities in both directions, release), over
// createRpcPair (rpc-helpers.ts makePair).
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import {
  CanceledError,
  DisconnectedError,
  RpcError,
  localCapability,
  readCap,
  writeCap,
} from "@multiprocess-ts/capnp";
import { Box, CalcServer, CallbackServer, CB, COUNTER, M, call, callA, drain, makePair, wire } from "./rpc-helpers.js";

describe("rpc basics", () => {
  it("bootstrap and a call with scalars", async () => {
    await using p = makePair();
    expect(await callA(p.boot, M.add, (b) => { b.a = 2; b.b = 40; })).toBe(42);
    // The first call was pipelined on the bootstrap question before its Return.
    expect(wire(p.clientTransport).slice(0, 2)).toEqual(["bootstrap", "call"]);
    await p.dispose();
    expect(p.calc.released).toBe(1);
  });

  it("Text, Data and Int64 round trip (including a large multi-KiB payload)", async () => {
    await using p = makePair();
    const big = new Uint8Array(300_000).map((_, i) => i & 0xff);
    const resp = await call(p.boot, M.echo, (b) => {
      b.setText(0, "héllo wörld ✓");
      b.setData(1, big);
      b.big = -9007199254740993n;
    });
    const r = resp.results(Box);
    expect(r.text(0)).toBe("héllo wörld ✓");
    expect(r.data(1)).toEqual(big);
    expect(r.big).toBe(-9007199254740993n);
    resp.close();
  });

  it("a capability as a result, called later, released exactly once", async () => {
    await using p = makePair();
    const resp = await call(p.boot, M.makeCounter, (b) => { b.a = 10; });
    const counter = readCap(resp.results(Box), 0)!;
    resp.close();
    expect(await callA(counter, 0, undefined, COUNTER)).toBe(11);
    expect(await callA(counter, 0, (b) => { b.a = 5; }, COUNTER)).toBe(16);
    const c2 = counter.dup();
    counter.close();
    counter.close(); // idempotent
    await drain();
    expect(p.client.stats().imports).toBe(2); // bootstrap + counter
    c2.close();
    await drain();
    expect(p.calc.counters[0]!.released).toBe(1);
    // One Release for the counter, with the number of times it was sent (once).
    expect(wire(p.clientTransport).filter((w) => w === "release")).toHaveLength(1);
  });

  it("a callback capability passed as a param is called during the call", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    expect(await callA(p.boot, M.callback, (b) => { writeCap(b, 0, cb); b.a = 21; })).toBe(42);
    expect(cbs.values).toEqual([21]);
    cb.close();
    await drain();
    expect(cbs.released).toBe(1);
  });

  it("the callee keeps a callback and calls it later (releaseParamCaps = false)", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    await callA(p.boot, M.register, (b) => writeCap(b, 0, cb));
    cb.close();
    await drain();
    expect(cbs.released).toBe(0);
    expect(p.client.stats().exports).toBe(1);
    expect(await callA(p.boot, M.fire, (b) => { b.a = 7; })).toBe(14);
    expect(await callA(p.boot, M.fire, (b) => { b.a = 8; })).toBe(16);
    expect(cbs.values).toEqual([7, 8]);
    // Every Return we and the peer sent had releaseParamCaps = false: the export stays.
    expect(p.client.stats().exports).toBe(1);
    await callA(p.boot, M.register); // the server drops the kept callback -> Release
    await drain();
    expect(cbs.released).toBe(1);
    expect(wire(p.serverTransport).filter((w) => w === "release")).toHaveLength(1);
  });

  it("a capability passed back to its owner becomes local again (receiverHosted)", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    const resp = await call(p.boot, M.identity, (b) => writeCap(b, 0, cb));
    const back = readCap(resp.results(Box), 0)!;
    resp.close();
    expect(back.localServer()).toBe(cbs);
    back.close();
    cb.close();
    await drain();
    expect(cbs.released).toBe(1);
  });

  it("exceptions keep their type both ways", async () => {
    await using p = makePair();
    for (const kind of ["failed", "overloaded", "disconnected", "unimplemented"] as const) {
      const err = await call(p.boot, M.fail, (b) => b.setText(0, kind)).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).kind).toBe(kind);
      expect((err as RpcError).remote).toBe(true);
      expect((err as RpcError).message).toBe(`boom-${kind}`);
      if (kind === "disconnected") expect(err).toBeInstanceOf(DisconnectedError);
    }
    const plain = (await call(p.boot, M.fail, (b) => b.setText(0, "plain")).then(() => null, (e: unknown) => e)) as RpcError;
    expect(plain.kind).toBe("failed");
    expect(plain.message).toBe("plain error");
    // Unknown interface -> unimplemented.
    const un = (await call(p.boot, 0, undefined, 0x1234n).then(() => null, (e: unknown) => e)) as RpcError;
    expect(un.kind).toBe("unimplemented");
  });

  it("pipelined calls: bootstrap().makeCounter().inc() before any Return", async () => {
    await using p = makePair();
    p.serverTransport.fence(); // hold the server's Returns
    const pc = call(p.boot, M.makeCounter, (b) => { b.a = 100; });
    const counter = pc.pipeline(0);
    const r1 = call(counter, 0, undefined, COUNTER);
    const r2 = call(counter, 0, undefined, COUNTER);
    await drain();
    expect(wire(p.clientTransport)).toEqual(["bootstrap", "call", "call", "call"]);
    p.serverTransport.release();
    expect((await r1).results(Box).a).toBe(101);
    expect((await r2).results(Box).a).toBe(102);
    (await r1).close();
    (await r2).close();
    (await pc).close();
    counter.close();
    await p.dispose();
    expect(p.calc.counters[0]!.released).toBe(1);
  });

  it("pipelining through a nested struct path", async () => {
    await using p = makePair();
    const pc = call(p.boot, M.nested, (b) => { b.a = 5; });
    const counter = pc.pipeline(2, 0);
    expect(await callA(counter, 0, undefined, COUNTER)).toBe(6);
    (await pc).close();
    counter.close();
  });

  it("calls to a null capability and a pipelined null fail cleanly", async () => {
    await using p = makePair();
    const pc = call(p.boot, M.add);
    const none = pc.pipeline(3);
    const err = await call(none, 0).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    none.close();
    (await pc).close();
  });

  it("Finish before Return cancels the callee (its signal aborts) and the caller gets CanceledError", async () => {
    await using p = makePair();
    const pc = call(p.boot, M.sleep);
    await p.calc.sleepStarted.promise;
    pc.cancel();
    await expect(Promise.resolve(pc)).rejects.toBeInstanceOf(CanceledError);
    const reason = await p.calc.sleepAborted.promise;
    expect(reason).toBeInstanceOf(CanceledError);
    await drain();
    expect(wire(p.clientTransport)).toContain("finish");
    expect(wire(p.serverTransport)).toContain("return:canceled");
  });

  it("send({signal}) cancels when the signal aborts", async () => {
    await using p = makePair();
    const ac = new AbortController();
    const req = p.boot.newCall(0xa1a1a1a1a1a1a1a1n, M.sleep, Box);
    const pc = req.send({ signal: ac.signal });
    await p.calc.sleepStarted.promise;
    ac.abort();
    await expect(Promise.resolve(pc)).rejects.toBeInstanceOf(CanceledError);
    await p.calc.sleepAborted.promise;
  });

  it("many concurrent calls return in order", async () => {
    await using p = makePair();
    const all = [];
    for (let i = 0; i < 500; i++) all.push(callA(p.boot, M.add, (b) => { b.a = i; b.b = 1; }));
    const res = await Promise.all(all);
    expect(res).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
  });

  it("a local call (no connection) works, including pipelining", async () => {
    const calc = new CalcServer();
    const cap = localCapability(calc);
    expect(await callA(cap, M.add, (b) => { b.a = 1; b.b = 2; })).toBe(3);
    const pc = call(cap, M.makeCounter, (b) => { b.a = 1; });
    const counter = pc.pipeline(0);
    expect(await callA(counter, 0, undefined, COUNTER)).toBe(2);
    counter.close();
    (await pc).close();
    cap.close();
    expect(calc.released).toBe(1);
    expect(calc.counters[0]!.released).toBe(1);
  });

  it("a callback called through a capability kept by the peer runs in E-order", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    const cb = localCapability(cbs);
    await callA(p.boot, M.register, (b) => writeCap(b, 0, cb));
    cb.close();
    const rs = [];
    for (let i = 0; i < 20; i++) rs.push(callA(p.boot, M.fire, (b) => { b.a = i; }));
    await Promise.all(rs);
    expect(cbs.values).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await callA(p.boot, M.register);
  });

  it("CB constant is distinct", () => {
    expect(CB).not.toBe(COUNTER);
  });
});
