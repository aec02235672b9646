// Holder counts the runtime's "disposed when the last reference goes" rule reads
// (docs/usage.md, "Sharing clients"): serverHolders (local handles + every receipt a peer has not
// released; messages in flight are not holders) and capabilityShared (other handles or exports of
// the same capability in this vat, along a promise's resolution).
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import { capabilityShared, localCapability, readCap, serverHolders, writeCap } from "@multiprocess-ts/capnp";
import { Box, CallbackServer, M, call, callA, drain, makePair } from "./rpc-helpers.js";

describe("serverHolders", () => {
  it("counts local handles and each receipt the peer holds, not the message that carried it", async () => {
    await using p = makePair();
    const cbs = new CallbackServer();
    expect(serverHolders(cbs)).toBe(0);
    const cb = localCapability(cbs);
    expect(serverHolders(cbs)).toBe(1);
    const again = localCapability(cbs); // a second handle of the same Server
    expect(serverHolders(cbs)).toBe(2);
    again.close();
    // The peer keeps it (register): our handle + its one receipt.
    (await call(p.boot, M.register, (b) => writeCap(b, 0, cb))).close();
    expect(serverHolders(cbs)).toBe(2);
    // Received once more (the peer reads it for the call, then drops that handle): the peer's
    // import counts two receipts until it releases the import as a whole.
    expect(await callA(p.boot, M.callback, (b) => writeCap(b, 0, cb))).toBe(0);
    expect(serverHolders(cbs)).toBe(3);
    cb.close();
    expect(serverHolders(cbs)).toBe(2);
    // The peer drops its kept reference (registering null): one Release for both receipts.
    (await call(p.boot, M.register)).close();
    await drain();
    expect(serverHolders(cbs)).toBe(0);
    expect(cbs.released).toBe(1);
  });
});

describe("capabilityShared", () => {
  it("is true while another handle to the same import exists, false for the last one", async () => {
    await using p = makePair();
    const resp = await call(p.boot, M.makeCounter, (b) => (b.a = 1));
    const c1 = readCap(resp.results(Box), 0)!;
    resp.close(); // the Return's cap table is not a holder either way
    expect(capabilityShared(c1)).toBe(false);
    const c2 = c1.dup();
    expect(capabilityShared(c1)).toBe(true);
    expect(capabilityShared(c2)).toBe(true);
    c2.close();
    expect(capabilityShared(c1)).toBe(false);
    c1.close();
    expect(capabilityShared(c1)).toBe(false); // closed: nothing to share
  });

  it("follows a pipelined promise to its resolution", async () => {
    await using p = makePair();
    const pending = call(p.boot, M.makeCounter, (b) => (b.a = 1));
    const piped = pending.pipeline(0);
    const resp = await pending;
    await piped.whenResolved();
    const direct = readCap(resp.results(Box), 0)!;
    resp.close();
    expect(capabilityShared(piped)).toBe(true); // `direct` holds the import it resolved to
    direct.close();
    expect(capabilityShared(piped)).toBe(false);
    piped.close();
  });
});
