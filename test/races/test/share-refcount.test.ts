// Sharing (docs/usage.md, "Sharing clients"): a client shared with workers (`share()`) is
// reference-counted, so one holder's close() does not destroy the object for the others; the
// remote `destroy` is sent by the last holder that closes. release() never destroys.
// Threading: loop thread (the test's thread); workers run dist/workers/foo-worker.js.
import { describe, expect, it } from "vitest";
import { memoryTransportPair } from "@multiprocess-ts/capnp";
import { EventLoop, connectTransport, serveTransport } from "@multiprocess-ts/runtime";
import { PrinterInitClient, PrinterInitServer, type PrinterInit } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import { FooCallbackClient, type FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { assertIdle } from "@multiprocess-ts/testing";
import { createWorkerSetup, type WorkerSetup } from "../dist/index.js";
import type { Capability } from "@multiprocess-ts/capnp";

/** `$dupCap` is @internal on ProxyClientBase (stripped from the shipped .d.ts): reached through a view. */
const dupCap = (c: FooCallbackClient): Capability => (c as unknown as { $dupCap(): Capability }).$dupCap();

/**
 * A far process serving a PrinterInit whose makePrinter hands out a FooCallback (it declares
 * `destroy`, so does the workers' ThreadedCallbackClient view of it), and a loop-side client of
 * it, the shared "store", its only holder on the loop.
 */
async function storePeer(t: WorkerSetup) {
  const loop = new EventLoop("store-server");
  class Store implements FooCallback {
    disposed = 0;
    call(arg: number): number {
      return arg + 1;
    }
    [Symbol.dispose](): void {
      this.disposed++;
    }
  }
  const impl = new Store();
  const init: PrinterInit = {
    makePrinter: () => impl,
    makeFn: () => () => 0,
  };
  const [ct, st] = memoryTransportPair();
  const serverConn = serveTransport(loop, st, init, PrinterInitServer);
  const initClient = await connectTransport(t.clientLoop, ct, PrinterInitClient);
  const store = (await initClient.makePrinter()) as FooCallbackClient;
  const done = async (): Promise<void> => {
    const clientConn = initClient.$connection;
    await initClient.release(); // no destroy; closes the connection it owns
    await clientConn.disconnected;
    await serverConn.disconnected;
    await loop.done;
    assertIdle({ connections: { clientConn, serverConn }, loops: { loop } });
  };
  return { impl, store, done };
}

describe("a client shared with workers", () => {
  it("survives each worker's close(); the owner's close() as the last holder destroys it", async () => {
    await using t = await createWorkerSetup();
    const { impl, store, done } = await storePeer(t);
    const unshare = t.support.share("store", store);
    for (let i = 0; i < 2; i++) {
      const w = t.start("closeShared");
      expect(await w.done).toMatchObject({ ok: true, value: 21 });
      await w.exited;
      await w.session.closed;
      expect(impl.disposed).toBe(0); // the worker's close only released its hold
      expect(await store.call(2)).toBe(3); // the owner's client still works
    }
    unshare();
    await store.close(); // last holder: destroy is sent, the server disposes the impl
    expect(impl.disposed).toBe(1);
    await done();
  });

  it("the owner closing first leaves the destroy to the worker, the last holder", async () => {
    await using t = await createWorkerSetup();
    const { impl, store, done } = await storePeer(t);
    const unshare = t.support.share("store", store);
    const w = t.start("closeShared", { waitClose: true });
    await w.ready;
    await store.close(); // not the last holder: release only
    expect(impl.disposed).toBe(0);
    w.send("close");
    expect(await w.done).toMatchObject({ ok: true, value: 21 });
    expect(impl.disposed).toBe(1); // the worker's destroy went through before its close returned
    await w.exited;
    await w.session.closed;
    unshare();
    await done();
  });

  it("release() drops a reference without destroy; close() destroys", async () => {
    await using t = await createWorkerSetup();
    const { impl, store, done } = await storePeer(t);
    const other = new FooCallbackClient(dupCap(store), store.$connection);
    await other.release();
    expect(other.$state).toBe("closed");
    await other.close(); // nothing more to do after release()
    expect(impl.disposed).toBe(0);
    expect(await store.call(1)).toBe(2);
    await store.close();
    expect(impl.disposed).toBe(1);
    await done();
  });
});
