// A call's Context struct is written in place (issue 13, eleventh session: threads/proxy-context.ts
// `initContextIn`, used by `fillContextAt` for every outgoing Context call): the same bytes as
// capnp-ts's `Struct.initStructAt(index, Context, params)`, content zeroed even over a reused
// buffer, and nothing written (capnp-ts's path taken) for anything but a null pointer of a near
// struct with room in its segment. Then a Context call end to end, filled this way.
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
