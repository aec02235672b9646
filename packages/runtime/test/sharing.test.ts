// "The server disposes an impl when its last client goes" (docs/usage.md, "Sharing clients"):
// a `destroy` while other references to the same object exist only ends the caller's hold; the
// impl is disposed exactly once, by the last holder's destroy or release — for two clients of one
// capability, one impl served twice on one connection, and one impl served on two connections.
// Threading: loop thread (the test's thread).
import { deferred, type Capability } from "@multiprocess-ts/capnp";
import { PrinterInitClient, PrinterInitServer, type PrinterInit } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import { FooCallbackClient, type FooCallback, type FooFn } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { createTestSetup } from "@multiprocess-ts/testing";
import { describe, expect, it } from "vitest";

/** `$dupCap` is @internal on ProxyClientBase (stripped from the shipped .d.ts): reached through a view. */
const dupCap = (c: FooCallbackClient): Capability => (c as unknown as { $dupCap(): Capability }).$dupCap();

class Store implements FooCallback {
  disposeCount = 0;
  readonly disposed = deferred<void>();
  call(arg: number): number {
    return arg + 1;
  }
  [Symbol.dispose](): void {
    this.disposeCount++;
    this.disposed.resolve();
  }
}

/** An Init whose makePrinter hands out the same cached Store every time. */
class CachingInit implements PrinterInit {
  constructor(readonly store: Store) {}
  makePrinter(): FooCallback {
    return this.store;
  }
  makeFn(): FooFn {
    return () => 0;
  }
}

const setup = (init: PrinterInit) => createTestSetup({ impl: init, Server: PrinterInitServer, Client: PrinterInitClient }, { logLevel: "debug" });

describe("the last holder disposes", () => {
  it("two clients of one capability: the first close() only releases, the second disposes once", async () => {
    const store = new Store();
    await using p = await setup(new CachingInit(store));
    const a = (await p.client.makePrinter()) as FooCallbackClient;
    const b = new FooCallbackClient(dupCap(a), a.$connection);
    await a.close(); // another client holds the object: no remote destroy
    expect(a.$state).toBe("closed");
    expect(store.disposeCount).toBe(0);
    expect(await b.call(1)).toBe(2);
    expect(await b.call(2)).toBe(3);
    await b.close(); // the only holder: destroy disposes before it returns
    expect(store.disposeCount).toBe(1);
    await p.dispose();
    expect(store.disposeCount).toBe(1);
  });

  it("one impl served twice on one connection: a destroy ends one server, the impl waits for the other", async () => {
    const store = new Store();
    await using p = await setup(new CachingInit(store));
    const a = (await p.client.makePrinter()) as FooCallbackClient;
    const b = (await p.client.makePrinter()) as FooCallbackClient;
    await a.close();
    expect(store.disposeCount).toBe(0);
    expect(await b.call(5)).toBe(6);
    await b.close();
    expect(store.disposeCount).toBe(1);
    await p.dispose();
    expect(store.disposeCount).toBe(1);
  });

  it("two clients of one capability: a close() then the other's release() disposes once, on the release", async () => {
    const store = new Store();
    await using p = await setup(new CachingInit(store));
    const a = (await p.client.makePrinter()) as FooCallbackClient;
    const b = new FooCallbackClient(dupCap(a), a.$connection);
    await a.close();
    expect(await b.call(3)).toBe(4);
    expect(store.disposeCount).toBe(0);
    await b.release(); // the last reference: the server is released and disposes asynchronously
    await store.disposed.promise;
    expect(store.disposeCount).toBe(1);
    await p.dispose();
    expect(store.disposeCount).toBe(1);
  });

  it("one impl served on two connections: each close() ends its own server, the last one disposes", async () => {
    const store = new Store();
    await using p1 = await setup(new CachingInit(store));
    await using p2 = await setup(new CachingInit(store));
    const a = (await p1.client.makePrinter()) as FooCallbackClient;
    const b = (await p2.client.makePrinter()) as FooCallbackClient;
    await a.close();
    expect(store.disposeCount).toBe(0);
    expect(await b.call(7)).toBe(8);
    await p1.dispose();
    expect(store.disposeCount).toBe(0);
    expect(await b.call(8)).toBe(9);
    await b.release(); // no destroy: the last reference goes with the Release
    await store.disposed.promise;
    expect(store.disposeCount).toBe(1);
    await p2.dispose();
    expect(store.disposeCount).toBe(1);
  });
});
