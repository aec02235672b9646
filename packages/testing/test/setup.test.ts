// Tests of the paired fixture itself: it connects, its levers do what upstream's do, and its
// disposer really catches leaks (held loop references, undisposed fixtures, unexpected error logs).
// Threading: loop thread (the test's thread).
import { describe, expect, it } from "vitest";
import { deferred } from "@multiprocess-ts/capnp";
import { FooStructError } from "@multiprocess-ts/proto/test/foo.capnp.js";
import {
  FooImplementation,
  assertNoLeaks,
  createFooSetup,
  expectReject,
  fixtureCounters,
  forceGc,
  liveSetups,
} from "@multiprocess-ts/testing";

const INTERRUPTED = "IPC client method call interrupted by disconnect.";

describe("createTestSetup", () => {
  it("connects a FooInterface client to a FooImplementation and disposes leak-free", async () => {
    const s = await createFooSetup();
    expect(await s.client.add(1, 2)).toBe(3);
    expect(fixtureCounters().setups).toBe(1);
    await s.dispose();
    expect(s.impl.disposeCount).toBe(1);
    expect(liveSetups.size).toBe(0);
    expect(fixtureCounters()).toMatchObject({ setups: 0, questions: 0, answers: 0, imports: 0, exports: 0 });
    assertNoLeaks(s);
    await s.dispose(); // idempotent
  });

  it("holds a call behind the client transport's fence until release", async () => {
    await using s = await createFooSetup();
    s.clientTransport.fence();
    const p = s.client.add(2, 2);
    await new Promise((r) => setImmediate(r));
    expect(s.clientTransport.held).toBeGreaterThan(0);
    expect(s.impl.calls).toEqual([]);
    s.clientTransport.release();
    expect(await p).toBe(4);
    expect(s.clientTransport.wireLog.some((e) => e.which === "call")).toBe(true);
  });

  it("serverDisconnectLater tears the server down on a later loop turn", async () => {
    await using s = await createFooSetup();
    expect(await s.client.add(1, 1)).toBe(2);
    s.serverDisconnectLater();
    expect(s.serverConnection).toBeDefined(); // not yet
    await s.connections.server.disconnected;
    expect(s.serverConnection).toBeUndefined();
    await expectReject(s.client.add(1, 1), /IPC client method call/);
  });

  it("a transport break interrupts a pending call", async () => {
    await using s = await createFooSetup();
    await s.client.initThreadMap();
    let release!: () => void;
    const entered = deferred<void>();
    s.impl.fn = () => {
      entered.resolve();
      return new Promise<void>((r) => (release = r));
    };
    const p = s.client.callFnAsync();
    await entered.promise;
    s.clientTransport.break();
    await expectReject(p, INTERRUPTED);
    release();
  });

  it("delivery jitter keeps calls working and stops with the fixture", async () => {
    let x = 7;
    const random = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    {
      await using s = await createFooSetup({ jitter: random });
      const results = await Promise.all([1, 2, 3, 4].map((i) => s.client.add(i, i)));
      expect(results).toEqual([2, 4, 6, 8]);
      await s.client.initThreadMap();
      expect(await s.client.callback({ call: (n: number) => n + 1 }, 4)).toBe(5);
    }
    expect(process.getActiveResourcesInfo().filter((r) => r === "Immediate")).toEqual([]);
  });

  it("clientDisconnect is only available without clientOwnsConnection", async () => {
    const owned = await createFooSetup();
    await expect(owned.clientDisconnect()).rejects.toThrow(/clientOwnsConnection: false/);
    await owned.dispose();
    const s = await createFooSetup({ clientOwnsConnection: false });
    await s.clientDisconnect();
    await expectReject(s.client.add(1, 2), "IPC client method called after disconnect.");
    await s.dispose();
  });

  it("dispose reports a loop reference that was never released", async () => {
    const s = await createFooSetup();
    const ref = s.serverLoop.ref();
    await expect(s.dispose()).rejects.toThrow(/server loop holds 1 refs/);
    ref[Symbol.dispose]();
  });

  it("dispose fails on unexpected error logs, and passes when they are expected", async () => {
    const s = await createFooSetup();
    s.serverLoop.log("error", "boom from a test");
    await expect(s.dispose()).rejects.toThrow(/unexpected server error log: .*boom from a test/);
    const t = await createFooSetup();
    t.expectLog(/boom/);
    t.serverLoop.log("error", "boom from a test");
    await t.dispose();
  });
});

describe("FooImplementation", () => {
  it("follows upstream foo.h", async () => {
    const f = new FooImplementation();
    expect(f.add(1, 2)).toBe(3);
    expect(f.addOut(3, 4)).toBe(7);
    expect(f.addInOut(3, 7)).toBe(10);
    expect(f.mapSize(new Map([["a", "b"]]))).toBe(1);
    expect(() => f.raise({ name: "n", setInt: [], vectorBool: [], unorderedSetInt: [], mapStringInt: new Map() })).toThrow(FooStructError);
    expect(f.passMessage({ message: "init" }).message).toBe("init call");
    await expect(f.callFn()).rejects.toThrow(/fn not set/);
    let ran = 0;
    f.fn = () => void ran++;
    await f.callFnAsync();
    expect(ran).toBe(1);
    let released = 0;
    await f.saveCallback({ call: (n: number) => n * 2, close: async () => void released++ } as never);
    expect(await f.callbackSaved(4)).toBe(8);
    await f[Symbol.asyncDispose]();
    expect([f.disposeCount, released, f.savedCallback]).toEqual([1, 1, null]);
  });
});

describe("forceGc", () => {
  it("collects an unreachable object", async () => {
    let obj: object | undefined = { big: new Array(1000).fill(1) };
    const weak = new WeakRef(obj);
    obj = undefined;
    await forceGc();
    expect(weak.deref()).toBeUndefined();
  });
});
