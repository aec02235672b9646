// IncomingCall.whenSettled (local.ts): a server's callback that runs once when its dispatch has
// settled (the returned promise settled, or dispatch returned or threw), before the Return is
// built, so the runtime's server Thread tasks end without a promise reaction of their own. A
// throw from the callback fails a call that had not failed; one callback per call. The callback is
// told whether the dispatch failed and the value its promise resolved with (what the runtime's
// generated servers write their results from).
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import { deferred, localCapability, RpcError, type IncomingCall, type Server } from "@multiprocess-ts/capnp";
import { Box, CALC, M, makePair } from "./rpc-helpers.js";

/** Each call: registers a callback that logs, then settles as `how` says once `gate` resolves. */
class Settling implements Server {
  readonly log: string[] = [];
  readonly gate = deferred<void>();
  how: "value" | "reject" | "sync" | "throw-in-callback" | "twice" | "write-from-value" = "value";
  released = 0;
  /** What each callback was told: [failed, value]. */
  readonly told: [boolean, unknown][] = [];
  dispatch(call: IncomingCall): void | Promise<void> {
    call.whenSettled!((failed, value) => {
      this.log.push("settled");
      this.told.push([failed, value]);
      // The dispatch returned the method's own promise: its value is written here.
      if (this.how === "write-from-value" && !failed) call.results(Box).a = value as number;
      if (this.how === "throw-in-callback") throw new RpcError("failed", "callback threw");
    });
    if (this.how === "twice") call.whenSettled!(() => {});
    if (this.how === "sync") {
      call.results(Box).a = 7;
      this.log.push("returned");
      return;
    }
    if (this.how === "write-from-value") {
      return this.gate.promise.then(() => {
        this.log.push("method done");
        return 9;
      }) as unknown as Promise<void>;
    }
    return this.gate.promise.then(() => {
      this.log.push("method done");
      if (this.how === "reject") throw new RpcError("failed", "method failed");
      call.results(Box).a = 5;
    });
  }
  onRelease(): void {
    this.released++;
  }
}

describe("IncomingCall.whenSettled", () => {
  it("runs once after the method's promise settles and before the caller sees the Return", async () => {
    const server = new Settling();
    await using p = makePair(server);
    const pc = Promise.resolve(p.boot.newCall(CALC, M.add, Box).send()).then((r) => {
      server.log.push("caller got the Return");
      const a = r.results(Box).a;
      r.close();
      return a;
    });
    server.gate.resolve();
    expect(await pc).toBe(5);
    expect(server.log).toEqual(["method done", "settled", "caller got the Return"]);
    expect(server.told).toEqual([[false, undefined]]);
  });

  it("is told the value the dispatch's promise resolved with, and writes the results from it", async () => {
    const server = new Settling();
    server.how = "write-from-value";
    server.gate.resolve();
    const cap = localCapability(server);
    const r = await cap.newCall(CALC, M.add, Box).send();
    expect(r.results(Box).a).toBe(9);
    r.close();
    expect(server.log).toEqual(["method done", "settled"]);
    expect(server.told).toEqual([[false, 9]]);
    cap.close();
    expect(server.released).toBe(1);
  });

  it("runs for a rejected method, a synchronous one, and fails the call when it throws", async () => {
    const server = new Settling();
    server.gate.resolve();
    const cap = localCapability(server);
    server.how = "reject";
    await expect(Promise.resolve(cap.newCall(CALC, M.add, Box).send())).rejects.toMatchObject({ message: "method failed" });
    expect(server.log).toEqual(["method done", "settled"]);
    expect(server.told).toEqual([[true, undefined]]);
    server.log.length = 0;
    server.how = "sync";
    const r = await cap.newCall(CALC, M.add, Box).send();
    expect(r.results(Box).a).toBe(7);
    r.close();
    expect(server.log).toEqual(["returned", "settled"]);
    server.log.length = 0;
    server.how = "throw-in-callback";
    await expect(Promise.resolve(cap.newCall(CALC, M.add, Box).send())).rejects.toMatchObject({ message: "callback threw" });
    expect(server.log).toEqual(["method done", "settled"]);
    server.log.length = 0;
    server.how = "twice";
    await expect(Promise.resolve(cap.newCall(CALC, M.add, Box).send())).rejects.toThrow(/one callback per call/);
    expect(server.log).toEqual(["settled"]); // dispatch threw: the registered callback still ran
    cap.close();
    expect(server.released).toBe(1);
  });
});
