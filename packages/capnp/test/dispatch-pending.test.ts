// dispatchPending (local.ts): true from a LocalHook's `call` until its dispatch microtask has run,
// for local calls and for calls a connection delivers; what the runtime checks before a waiting
// server Thread task leaves its wait in a Return's dispatch (runtime proxy/client.ts).
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import { dispatchPending, localCapability, type IncomingCall, type Server } from "@multiprocess-ts/capnp";
import { Box, CALC, M, makePair } from "./rpc-helpers.js";

/** Records dispatchPending() as each dispatch sees it, and answers a = 1. */
class Probe implements Server {
  readonly seen: boolean[] = [];
  released = 0;
  dispatch(call: IncomingCall): void {
    this.seen.push(dispatchPending());
    call.results(Box).a = 1;
  }
  onRelease(): void {
    this.released++;
  }
}

describe("dispatchPending", () => {
  it("is true from a local call until its dispatch microtask runs; one microtask for calls made together", async () => {
    const server = new Probe();
    const cap = localCapability(server);
    expect(dispatchPending()).toBe(false);
    const a = cap.newCall(CALC, M.add, Box).send();
    expect(dispatchPending()).toBe(true);
    const b = cap.newCall(CALC, M.add, Box).send();
    expect(dispatchPending()).toBe(true);
    const [ra, rb] = await Promise.all([a, b]);
    // Both ran in one dispatch microtask, which counted itself done before it ran them.
    expect(server.seen).toEqual([false, false]);
    expect(dispatchPending()).toBe(false);
    expect([ra.results(Box).a, rb.results(Box).a]).toEqual([1, 1]);
    ra.close();
    rb.close();
    cap.close();
    expect(server.released).toBe(1);
  });

  it("counts calls queued on two servers until each one's dispatch has run", async () => {
    const s1 = new Probe();
    const s2 = new Probe();
    const c1 = localCapability(s1);
    const c2 = localCapability(s2);
    const p1 = c1.newCall(CALC, M.add, Box).send();
    const p2 = c2.newCall(CALC, M.add, Box).send();
    const [r1, r2] = await Promise.all([p1, p2]);
    // The first dispatch still sees the second server's call queued; the second sees none.
    expect(s1.seen).toEqual([true]);
    expect(s2.seen).toEqual([false]);
    expect(dispatchPending()).toBe(false);
    r1.close();
    r2.close();
    c1.close();
    c2.close();
    expect(s1.released + s2.released).toBe(2);
  });

  it("is back to false once the calls a connection delivered have been dispatched", async () => {
    const server = new Probe();
    await using p = makePair(server);
    const r = await p.boot.newCall(CALC, M.add, Box).send();
    expect(r.results(Box).a).toBe(1);
    r.close();
    expect(server.seen).toEqual([false]);
    expect(dispatchPending()).toBe(false);
  });
});
