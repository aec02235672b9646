// A refused call's cap table is imported and released (issue 11): a Call whose params pass the
// decode budget is answered with an exception Return without running, and the capabilities it
// carried go back to the caller at once (Release), so the caller's export table drops them
// instead of keeping them until the connection ends. Counters: the caller's `exports`, the
// callback's release count, the server's imports. Engine level (createRpcPair), loop thread.
import { describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import { localCapability, RpcError, writeCap, type Capability, type IncomingCall, type Server } from "@multiprocess-ts/capnp";
import { createRpcPair, drain } from "@multiprocess-ts/testing";
import { addCall, HostileServer, RawPeer, refusedCallWithCaps, type Transport } from "../dist/index.js";

/** Params: pointer 0 a capability, pointer 1 a list (the over-budget part). */
class Params extends capnp.Struct {
  static readonly _capnp = { displayName: "Params", id: "f0000000000000c1", size: new capnp.ObjectSize(8, 2) };
}

const IFACE = 0xf00000000000c0den;

/** A server that counts the calls that reached it. */
class Target implements Server {
  calls = 0;
  dispatch(call: IncomingCall): void {
    this.calls++;
    call.results(Params);
  }
}

/** A callback the caller exports; counts how often the engine released it. */
class Callback implements Server {
  released = 0;
  dispatch(): void {
    throw new Error("never called");
  }
  onRelease(): void {
    this.released++;
  }
}

/** A call carrying `cb` in its cap table and a List(Void) of `voids` elements (0 bytes on the wire). */
function send(boot: Capability, cb: Capability, voids: number) {
  const req = boot.newCall(IFACE, 0, Params);
  const params = req.params;
  writeCap(params, 0, cb);
  capnp.Struct.initList(1, capnp.VoidList, 1, params);
  // Pointer 1 (after 1 data word): a List(Void) pointer (element size 0) claiming `voids` elements.
  const seg = params.segment;
  const dv = new DataView(seg.buffer, 0, seg.byteLength);
  // `params` is capnp-ts's pointer to the struct: its content starts after the pointer's offset.
  const content = params.byteOffset + 8 + (dv.getInt32(params.byteOffset, true) >> 2) * 8;
  const at = content + 8 + 8;
  expect(dv.getUint32(at, true) & 3).toBe(1); // a list pointer
  dv.setUint32(at + 4, voids * 8, true); // count << 3 | size 0
  return req.send();
}

describe("refused calls release their cap table", () => {
  it("over the decode budget: exception Return, the implementation never runs, the caller's export is released", async () => {
    const target = new Target();
    await using p = createRpcPair(target);
    const cbs = new Callback();
    const cb = localCapability(cbs);
    const sends = 5;
    for (let i = 0; i < sends; i++) {
      const pending = send(p.boot, cb, 8_000_000);
      expect(p.client.stats().exports).toBe(1); // exported for the call
      const err = await pending.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).message).toMatch(/call params: .*decode budget/);
      await drain();
      // Counters: the caller exports nothing once the Release came back; the server imports nothing.
      expect(p.client.stats().exports).toBe(0);
      expect(p.server.stats().imports).toBe(0);
      expect(p.server.stats().answers).toBe(0);
    }
    expect(target.calls).toBe(0);
    // The local capability still holds its own reference: the engine's export was released, not the callback.
    expect(cbs.released).toBe(0);
    cb.close();
    await drain();
    expect(cbs.released).toBe(1);
    // A call within budget with the same callback is served.
    const cb2 = localCapability(cbs);
    const resp = await send(p.boot, cb2, 1000);
    cb2.close();
    resp.close();
    expect(target.calls).toBe(1);
    await drain();
    expect(p.client.stats().exports).toBe(0);
    expect(cbs.released).toBe(2);
  });
});

describe.each<Transport>(["unix", "tcp"])("refused calls over %s", (transport) => {
  it("a raw peer's exports named in a refused call come back as Release messages, the connection carries on", async () => {
    const server = await HostileServer.start(transport);
    const p = await RawPeer.connect(server.target);
    try {
      for (let i = 0; i < 10; i++) {
        const ans = await p.call((q) => refusedCallWithCaps(q, 0, [100 + i, 200 + i]));
        expect(ans.kind).toBe("exception");
        expect(ans.reason).toMatch(/^call params: .*decode budget/);
      }
      // Messages are ordered: the Releases arrived before this answer.
      expect((await p.call((q) => addCall(q, 0, 2, 3))).int0).toBe(5);
      expect([...p.releases.entries()].sort((a, b) => a[0] - b[0])).toEqual(
        [...Array.from({ length: 10 }, (_, i) => [100 + i, 1]), ...Array.from({ length: 10 }, (_, i) => [200 + i, 1])],
      );
      expect(server.impl.attackCalls).toBe(0);
      expect(p.abortReason).toBeUndefined();
    } finally {
      p.destroy();
      await p.closed;
      await server.close();
    }
    expect(server.released).toBe(server.served);
    expect(server.loop.numRefs).toBe(0);
  });
});
