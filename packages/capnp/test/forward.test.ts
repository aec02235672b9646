// The relay seams of rpc/forward.ts, used by the worker bridge for one engine pass per thread:
// forwardingCapability (calls handed to a target synchronously at send, completed with results
// read in place, capabilities in results, pipelining, cancellation, failure, release) and
// sendCall (the outcome handed to a callback, cancellation through the engine's Finish).
// Threading: loop thread (the test's thread). Leak checks: released counters, and the pair's
// own check (`await using`).
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import { setInterfacePointer } from "capnp-ts/src/serialization/pointers/pointer.js";
import {
  CanceledError,
  RpcError,
  forwardingCapability,
  localCapability,
  readCap,
  sendCall,
  writeCap,
  type ForwardTarget,
  type ForwardedCall,
  type SentCallResult,
} from "@multiprocess-ts/capnp";
import { Box, CALC, COUNTER, CounterServer, M, callA, drain, makePair } from "./rpc-helpers.js";

/** Keeps the calls it gets; the test completes them. Reads each call's params at once. */
class Target implements ForwardTarget {
  readonly calls: { call: ForwardedCall; a: number; canceled: number }[] = [];
  released = 0;
  forward(call: ForwardedCall): void {
    const entry = { call, a: call.params(Box).a, canceled: 0 };
    call.whenCanceled(() => entry.canceled++);
    this.calls.push(entry);
  }
  dispatch(): void {
    throw new Error("a forwarding capability never dispatches");
  }
  onRelease(): void {
    this.released++;
  }
}

/**
 * Results as another thread would send them: a standalone message whose root holds the results
 * struct in pointer 0; returns that pointer. Pointer field `capPtrs[k]` of the results becomes
 * capability index k (of the caps passed to `complete`).
 */
function resultsOf(fill: (b: Box) => void, capPtrs: number[] = []): capnp.Pointer {
  const m = new capnp.Message();
  const holder = m.initRoot(Box);
  const r = holder.initInner(0);
  fill(r);
  capPtrs.forEach((ptr, k) => setInterfacePointer(k, capnp.Struct.getPointer(ptr, r)));
  return capnp.Struct.getPointer(0, holder);
}

describe("forwardingCapability", () => {
  it("hands each call to the target at send, in order, and the caller reads the results in place", async () => {
    const target = new Target();
    const cap = forwardingCapability(target);
    expect(cap.localServer()).toBe(target);
    const p1 = cap.newCall(CALC, M.add, Box);
    p1.params.a = 1;
    const pc1 = p1.send();
    const p2 = cap.newCall(CALC, M.add, Box);
    p2.params.a = 2;
    const pc2 = p2.send();
    expect(target.calls.map((c) => c.a)).toEqual([1, 2]); // no microtask in between
    target.calls[1]!.call.complete(resultsOf((b) => (b.a = 20)), []);
    target.calls[0]!.call.complete(resultsOf((b) => (b.a = 10)), []);
    const r1 = await pc1;
    const r2 = await pc2;
    expect([r1.results(Box).a, r2.results(Box).a]).toEqual([10, 20]);
    r1.close();
    r2.close();
    cap.close();
    expect(target.released).toBe(1);
  });

  it("gives the caller the capabilities of the results; they are released with the last reference", async () => {
    const target = new Target();
    const counter = new CounterServer(5);
    const cap = forwardingCapability(target);
    const pc = cap.newCall(CALC, M.makeCounter, Box).send();
    target.calls[0]!.call.complete(resultsOf(() => {}, [0]), [localCapability(counter)]);
    const resp = await pc;
    const got = readCap(resp.results(Box), 0)!;
    resp.close();
    expect(await callA(got, 0, undefined, COUNTER)).toBe(6);
    got.close();
    expect(counter.released).toBe(1);
    cap.close();
    expect(target.released).toBe(1);
  });

  it("resolves a call pipelined on a capability of the results once the call completes", async () => {
    const target = new Target();
    const counter = new CounterServer(0);
    const cap = forwardingCapability(target);
    const pc = cap.newCall(CALC, M.makeCounter, Box).send();
    const piped = pc.pipeline(0);
    const early = callA(piped, 0, undefined, COUNTER);
    target.calls[0]!.call.complete(resultsOf(() => {}, [0]), [localCapability(counter)]);
    expect(await early).toBe(1);
    (await pc).close();
    piped.close();
    expect(counter.released).toBe(1);
    cap.close();
  });

  it("tells the target when the caller cancels; a later completion only releases its capabilities", async () => {
    const target = new Target();
    const counter = new CounterServer(0);
    const cap = forwardingCapability(target);
    const pc = cap.newCall(CALC, M.sleep, Box).send();
    pc.cancel();
    await expect(Promise.resolve(pc)).rejects.toBeInstanceOf(CanceledError);
    expect(target.calls[0]!.canceled).toBe(1);
    let late = 0;
    target.calls[0]!.call.whenCanceled(() => late++); // registered after the cancel: runs at once
    expect(late).toBe(1);
    target.calls[0]!.call.complete(resultsOf(() => {}, [0]), [localCapability(counter)]);
    expect(counter.released).toBe(1);
    cap.close();
    expect(target.released).toBe(1);
  });

  it("fails the call with the target's error, thrown or reported", async () => {
    const throwing: ForwardTarget = {
      forward() {
        throw new RpcError("overloaded", "busy");
      },
      dispatch() {},
    };
    const a = forwardingCapability(throwing);
    await expect(Promise.resolve(a.newCall(CALC, M.add, Box).send())).rejects.toMatchObject({ kind: "overloaded", message: "busy" });
    a.close();
    const target = new Target();
    const b = forwardingCapability(target);
    const pc = b.newCall(CALC, M.add, Box).send();
    target.calls[0]!.call.fail(new RpcError("disconnected", "gone"));
    await expect(Promise.resolve(pc)).rejects.toMatchObject({ kind: "disconnected", message: "gone" });
    b.close();
    expect(target.released).toBe(1);
  });

  it("releases the caller's capabilities in the params once the target has read them", async () => {
    const target = new Target();
    const cb = new CounterServer(0);
    const cap = forwardingCapability(target);
    const req = cap.newCall(CALC, M.register, Box);
    const c = localCapability(cb);
    writeCap(req.params, 0, c);
    c.close();
    const pc = req.send();
    await drain();
    expect(cb.released).toBe(1); // the Call's cap table let go when forward() returned
    target.calls[0]!.call.complete(null, []);
    const resp = await pc;
    expect(resp.results(Box).a).toBe(0); // empty results read as the default struct
    resp.close();
    cap.close();
  });
});

describe("sendCall", () => {
  it("hands the results to the callback, and errors as `error`", async () => {
    await using p = makePair();
    const got = await new Promise<number>((resolve) => {
      const req = p.boot.newCall(CALC, M.add, Box);
      req.params.a = 2;
      req.params.b = 3;
      sendCall(req, (r) => {
        resolve(r.error === null ? r.results(Box).a : -1);
        r.close();
      });
    });
    expect(got).toBe(5);
    const err = await new Promise<RpcError | null>((resolve) => {
      const req = p.boot.newCall(CALC, M.fail, Box);
      req.params.setText(0, "overloaded");
      sendCall(req, (r) => {
        resolve(r.error);
        r.close();
      });
    });
    expect(err).toMatchObject({ kind: "overloaded", message: "boom-overloaded" });
  });

  it("cancels: the callback gets CanceledError at once and the server's call is aborted (Finish)", async () => {
    await using p = makePair();
    let result: SentCallResult | undefined;
    const sent = sendCall(p.boot.newCall(CALC, M.sleep, Box), (r) => (result = r));
    await p.calc.sleepStarted.promise;
    sent.cancel();
    expect(result?.error).toBeInstanceOf(CanceledError);
    result!.close();
    await p.calc.sleepAborted.promise;
    sent.cancel(); // no-op once settled
  });
});

