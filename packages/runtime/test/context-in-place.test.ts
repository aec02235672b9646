// A call's Context struct is written in place (issue 13, eleventh session: threads/proxy-context.ts
// `initContextIn`, used by `fillContextAt` for every outgoing Context call): the same bytes as
// capnp-ts's `Struct.initStructAt(index, Context, params)`, content zeroed even over a reused
// buffer, and nothing written (capnp-ts's path taken) for anything but a null pointer of a near
// struct with room in its segment. Then a Context call end to end, filled this way; and (twelfth
// session) a Context call sent as bytes by the engine's flat path, against the general path.
// Threading: loop thread (the test's thread).
import * as runtime from "@multiprocess-ts/runtime";
import * as $mp from "@multiprocess-ts/runtime/gen";
import { FooInterface_callbackSaved$Params } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { Message, Struct } from "capnp-ts";
import { describe, expect, it } from "vitest";
import { FooImpl, fooSetup } from "./fixtures.js";

const internals = runtime as unknown as { initContextIn(params: Struct, index: number): number };

function params(): { m: Message; p: FooInterface_callbackSaved$Params } {
  const m = new Message();
  const p = m.initRoot(FooInterface_callbackSaved$Params);
  p.arg = 7;
  return { m, p };
}

const bytes = (m: Message): number[] => [...new Uint8Array(m.toArrayBuffer())];

describe("a call's Context written in place", () => {
  it("writes the bytes capnp-ts writes, and zeroes the content over old bytes", () => {
    const a = params();
    const b = params();
    const seg = a.p.segment as unknown as { buffer: ArrayBuffer; byteLength: number };
    new Uint8Array(seg.buffer, seg.byteLength, 16).fill(0xff); // a reused buffer's old bytes
    expect(internals.initContextIn(a.p, 0)).toBeGreaterThan(0);
    Struct.initStructAt(0, $mp.Context, b.p);
    expect(bytes(a.m)).toEqual(bytes(b.m));
    expect(Struct.getStruct(0, $mp.Context, a.p).hasThread()).toBe(false);
    expect(Struct.getStruct(0, $mp.Context, a.p).hasCallbackThread()).toBe(false);
    expect(a.p.arg).toBe(7);
  });

  it("writes nothing over a set pointer or past the pointer section", () => {
    const a = params();
    Struct.initStructAt(0, $mp.Context, a.p);
    const before = bytes(a.m);
    expect(internals.initContextIn(a.p, 0)).toBe(-1);
    expect(internals.initContextIn(a.p, 1)).toBe(-1);
    expect(bytes(a.m)).toEqual(before);
  });

  it("fills a Context call's thread and callbackThread (a callback comes back to the calling thread)", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl, { logLevel: "warning" });
    await p.client.initThreadMap();
    await p.client.saveCallback({ call: (n: number) => n * 3 });
    expect(await p.client.callbackSaved(5)).toBe(15);
    expect(await p.client.callbackSaved(6)).toBe(18); // the second fill takes the entries made by the first
  });
});

describe("a Context call as bytes (twelfth session: threads/proxy-context.ts sendContextCall)", () => {
  it("leaves through the engine's flat path over a copying transport, with the general path's bytes", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl, { logLevel: "warning" });
    await p.client.initThreadMap();
    await p.client.saveCallback({ call: (n: number) => n * 3 });
    await p.client.callbackSaved(1); // the Context's entries are made by the first call
    // The client's Calls from now on, and whether each came through sendCopy (the flat path's
    // send) or send (the general path's).
    const t = p.clientTransport as typeof p.clientTransport & { sendCopy?: (segs: Uint8Array[]) => boolean };
    const calls: { bytes: Uint8Array; copied: boolean; from: ArrayBufferLike }[] = [];
    const send = t.send.bind(t);
    const isCall = (b: Uint8Array): boolean => new DataView(b.buffer, b.byteOffset).getUint16(8, true) === 2;
    t.send = (segs: Uint8Array[]) => {
      if (segs.length === 1 && isCall(segs[0]!)) calls.push({ bytes: segs[0]!.slice(), copied: false, from: segs[0]!.buffer });
      send(segs);
    };
    t.sendCopy = (segs: Uint8Array[]) => {
      const copies = segs.map((s) => s.slice());
      if (copies.length === 1 && isCall(copies[0]!)) calls.push({ bytes: copies[0]!, copied: true, from: segs[0]!.buffer });
      send(copies);
      return true;
    };
    expect(await p.client.callbackSaved(5)).toBe(15);
    expect(await p.client.callbackSaved(5)).toBe(15);
    delete t.sendCopy; // the engine's general path again
    expect(await p.client.callbackSaved(5)).toBe(15);
    expect(calls.map((c) => c.copied)).toEqual([true, true, false]);
    // Both copied Calls came from the flat path's one buffer (512 bytes, capnp rpc/questions.ts),
    // not from a message of the general path's pool (sized to the message).
    expect(calls[1]!.from).toBe(calls[0]!.from);
    expect(calls[0]!.from.byteLength).toBe(512);
    expect(calls[2]!.from.byteLength).not.toBe(512);
    const noId = (b: Uint8Array): Uint8Array => {
      const c = b.slice();
      new DataView(c.buffer).setUint32(24, 0, true); // the question ID
      return c;
    };
    expect(noId(calls[0]!.bytes)).toEqual(noId(calls[2]!.bytes));
    expect(noId(calls[1]!.bytes)).toEqual(noId(calls[2]!.bytes));
    // Two capabilities in the cap table (callbackThread, thread): the Context of a call from a
    // context that has both.
    const dv = new DataView(calls[0]!.bytes.buffer);
    expect(dv.getUint32(100, true) >>> 3).toBe(4); // the cap table list: 2 descriptors of 2 words
  });
});
