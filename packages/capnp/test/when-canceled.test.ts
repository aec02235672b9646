// IncomingCall.whenCanceled (local.ts): the cancel event without an AbortSignal, used by the
// worker bridge's forwarding servers. It runs once when the caller cancels (local cancel, or the
// peer's Finish), at once when registered after the cancel, and never for a call that returned.
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import { CanceledError, deferred, localCapability, type IncomingCall, type Server } from "@multiprocess-ts/capnp";
import { Box, CALC, M, drain, makePair } from "./rpc-helpers.js";

/** Parks every call until `release()`; counts whenCanceled callbacks per call. */
class Parking implements Server {
  readonly started = deferred<IncomingCall>();
  readonly canceled = deferred<void>();
  fired = 0;
  lateFired = 0;
  released = 0;
  private readonly gate = deferred<void>();
  release(): void {
    this.gate.resolve();
  }
  async dispatch(call: IncomingCall): Promise<void> {
    call.whenCanceled!(() => {
      this.fired++;
      this.canceled.resolve();
    });
    this.started.resolve(call);
    await this.gate.promise;
    // Registered after the cancel: runs at once.
    call.whenCanceled!(() => this.lateFired++);
    call.results(Box).a = 1;
  }
  onRelease(): void {
    this.released++;
  }
}

describe("IncomingCall.whenCanceled", () => {
  it("runs once when a local caller cancels, and at once when registered after that", async () => {
    const server = new Parking();
    const cap = localCapability(server);
    const pc = cap.newCall(CALC, M.sleep, Box).send();
    await server.started.promise;
    pc.cancel();
    await server.canceled.promise;
    await expect(Promise.resolve(pc)).rejects.toBeInstanceOf(CanceledError);
    server.release();
    await drain();
    expect(server.fired).toBe(1);
    expect(server.lateFired).toBe(1);
    cap.close();
    expect(server.released).toBe(1);
  });

  it("runs when the peer sends Finish before the Return", async () => {
    const server = new Parking();
    await using p = makePair(server);
    const pc = p.boot.newCall(CALC, M.sleep, Box).send();
    await server.started.promise;
    pc.cancel();
    await server.canceled.promise;
    await expect(Promise.resolve(pc)).rejects.toBeInstanceOf(CanceledError);
    server.release();
    await drain();
    expect(server.fired).toBe(1);
    await p.dispose();
    expect(server.released).toBe(1);
  });

  it("never runs for a call that returned, even if the caller cancels afterwards", async () => {
    const server = new Parking();
    const cap = localCapability(server);
    const pc = cap.newCall(CALC, M.sleep, Box).send();
    await server.started.promise;
    server.release();
    const resp = await pc;
    expect(resp.results(Box).a).toBe(1);
    pc.cancel();
    resp.close();
    await drain();
    expect(server.fired).toBe(0);
    expect(server.lateFired).toBe(0);
    cap.close();
    expect(server.released).toBe(1);
  });
});
