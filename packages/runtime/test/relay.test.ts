// Passing a proxy client of one Connection into a call on another (upstream example.cpp: the
// parent hands the printer child's Printer to the calculator child). The middle must relay: a
// server on the second Connection whose impl calls the first, so each hop fills its own Context.
// Forwarding the raw capability would deliver Context.thread handles the final server never made.
//
// Three loops in one process: A hosts a Printer-like object (FooCallback), the middle ("m") is a
// client of A and of B, B hosts Foo whose callback(cb, arg) calls cb.call(arg) (a Context method).
import { describe, it, expect } from "vitest";
import { deferred, memoryTransportPair } from "@multiprocess-ts/capnp";
import {
  EventLoop,
  IpcInterruptedError,
  type ThreadServer,
  connectTransport,
  currentFrame,
  serveTransport,
  type Connection,
  type ThreadContext,
} from "@multiprocess-ts/runtime";
import * as $mp from "@multiprocess-ts/runtime/gen";
import {
  Args,
  FooCallbackClient,
  FooCallbackServer,
  FooFnClient,
  FooFnServer,
  FooImpl,
  FooServer,
  type FooFn,
  InitClient,
  InitImpl,
  InitServer,
  assertNoLeaks,
  type FooCallback,
  type LogLine,
} from "./fixtures.js";

// -----------------------------------------------------------------------------------------------
// A's Init: construct @0 (threadMap) -> (threadMap), makePrinter @1 (context) -> (result :FooCallback)

const PINIT_ID = 0xe0a7c1b2d3f40501n;
const method = (name: string, methodId: number, context: number, special?: "construct"): $mp.ProxyMethod => ({
  name,
  interfaceId: PINIT_ID,
  methodId,
  Params: Args,
  Results: Args,
  context,
  destroy: false,
  ...(special ? { special } : {}),
});
const PrinterInit$construct = method("construct", 0, -1, "construct");
const PrinterInit$makePrinter = method("makePrinter", 1, 0);
const PrinterInit$makeFn = method("makeFn", 2, 0);

interface PrinterInit {
  makePrinter(): FooCallback | Promise<FooCallback>;
  makeFn?(): FooFn;
}

class PrinterInitClient extends $mp.ProxyClientBase {
  static readonly interfaceId = PINIT_ID;
  static readonly hasDestroy = false;
  static readonly $construct: $mp.ProxyMethod | undefined = PrinterInit$construct;
  static readonly $destroy: $mp.ProxyMethod | undefined = undefined;
  makePrinter(): Promise<FooCallbackClient> {
    return this.$invoke(PrinterInit$makePrinter, () => {}, (r, io) => io.importObject($mp.readCap(r, 0), FooCallbackClient)!);
  }
  makeFn(): Promise<FooFn> {
    return this.$invoke(PrinterInit$makeFn, () => {}, (r, io) => io.importFunction<FooFn>($mp.readCap(r, 0), FooFnClient)!);
  }
}

class PrinterInitServer extends $mp.ProxyServerBase<PrinterInit> {
  static readonly interfaceId = PINIT_ID;
  static readonly methods: readonly $mp.ServerMethod<PrinterInit>[] = [
    { method: PrinterInit$construct, special: "construct" },
    {
      // Shaped like mpgen output: synchronous unless the implementation returns a promise.
      method: PrinterInit$makePrinter,
      invoke(impl, _p, r, io): void | Promise<void> {
        const out = impl.makePrinter();
        if ($mp.isThenable(out)) return Promise.resolve(out).then((out) => $mp.writeCap(r, 0, io.exportObject(out, FooCallbackServer)));
        $mp.writeCap(r, 0, io.exportObject(out, FooCallbackServer));
      },
    },
    { method: PrinterInit$makeFn, invoke(impl, _p, r, io) { $mp.writeCap(r, 0, io.exportFunction(impl.makeFn!(), FooFnServer)); } },
  ];
}

/** The Printer-like object on A: records the Thread each call runs on; counts disposals. */
class PrinterImpl implements FooCallback {
  readonly threads: (ThreadContext | undefined)[] = [];
  disposeCount = 0;
  readonly disposed = deferred<void>();
  call(arg: number): number {
    this.threads.push(currentFrame()?.context);
    return arg * 10;
  }
  [Symbol.dispose](): void {
    this.disposeCount++;
    this.disposed.resolve();
  }
}

class PrinterInitImpl implements PrinterInit {
  readonly printers: PrinterImpl[] = [];
  fnCalls = 0;
  makeFn(): FooFn {
    return () => {
      this.fnCalls++;
      return 21;
    };
  }
  makePrinter(): PrinterImpl {
    const p = new PrinterImpl();
    this.printers.push(p);
    return p;
  }
}

/** B's Foo that keeps the callback it receives (released when its connection ends). */
class KeepingFooImpl extends FooImpl {
  kept: FooCallback | undefined;
  override async callback(cb: FooCallback, arg: number): Promise<number> {
    this.kept = cb;
    return await cb.call(arg);
  }
}

// -----------------------------------------------------------------------------------------------

interface Net {
  loops: EventLoop[];
  logs: LogLine[];
  aConn: Connection;
  bConn: Connection;
  printerInit: PrinterInitImpl;
  bInit: InitImpl;
  /** The middle's clients: of A's Init and of B's Init (each owns its Connection). */
  aInit: PrinterInitClient;
  bInitClient: InitClient;
}

async function makeNet(bInit: InitImpl = new InitImpl()): Promise<Net> {
  const logs: LogLine[] = [];
  const mk = (name: string): EventLoop =>
    new EventLoop(name, { log: { level: "debug", logFn: (level, msg) => logs.push({ loop: name, level, msg }) } });
  const aLoop = mk("a");
  const mLoop = mk("middle");
  const bLoop = mk("b");
  const printerInit = new PrinterInitImpl();
  const [mA, aT] = memoryTransportPair();
  const aConn = serveTransport(aLoop, aT, printerInit, PrinterInitServer, { name: "a" });
  const aInit = await connectTransport(mLoop, mA, PrinterInitClient, { name: "m-a" });
  const [mB, bT] = memoryTransportPair();
  const bConn = serveTransport(bLoop, bT, bInit, InitServer, { name: "b" });
  const bInitClient = await connectTransport(mLoop, mB, InitClient, { name: "m-b" });
  return { loops: [aLoop, mLoop, bLoop], logs, aConn, bConn, printerInit, bInit, aInit, bInitClient };
}

async function closeNet(net: Net): Promise<void> {
  const conns = [net.aConn, net.bConn, net.aInit.$connection, net.bInitClient.$connection];
  await net.bInitClient.close();
  await net.aInit.close();
  await Promise.all(conns.map((c) => c.disconnected));
  await Promise.all(net.loops.map((l) => l.done));
  assertNoLeaks(conns, net.loops, net.logs);
}

describe("a proxy client passed into a call on another Connection", () => {
  it("is relayed by the middle: B's Context call reaches A on a Thread A made, destroy propagates", async () => {
    const net = await makeNet();
    const foo = await net.bInitClient.makeFoo();
    const printer = await net.aInit.makePrinter();
    const impl = net.printerInit.printers[0]!;

    // FooImpl.callback: cb.call(4) (Context), then cb.close() (destroy) before replying.
    expect(await foo.callback(printer, 4)).toBe(40);
    // The call ran on A, on a Thread of A's own connection (made by the middle's makeThread).
    expect(impl.threads).toHaveLength(1);
    const ran = impl.threads[0];
    expect(ran).toBeDefined();
    expect([...net.aConn.threads].some((t: ThreadServer) => t.context === ran)).toBe(true);
    // B's destroy went through the relay to A before B's call returned (upstream's destroy chain).
    expect(impl.disposeCount).toBe(1);
    expect(net.logs.filter((l) => /invalid thread handle/.test(l.msg))).toEqual([]);

    // The caller's own client is untouched by the relay; closing it now finds the object gone
    // (its destroy is a no-op on A), exactly as after a same-Connection pass-through.
    expect(printer.$state).toBe("open");
    await printer.close();
    expect(impl.disposeCount).toBe(1);
    await foo.close();
    await closeNet(net);
  });

  it("the relay holds its own reference: the caller may let go first; B's release reaches A", async () => {
    const bImpl = new InitImpl();
    const keeper = new KeepingFooImpl();
    bImpl.makeFoo = () => keeper;
    const net = await makeNet(bImpl);
    const foo = await net.bInitClient.makeFoo();
    const printer = await net.aInit.makePrinter();
    const impl = net.printerInit.printers[0]!;

    expect(await foo.callback(printer, 1)).toBe(10);
    // The caller drops its reference without destroy: A's object stays alive for B.
    await printer.$release();
    expect(printer.$state).toBe("closed");
    const kept = keeper.kept as FooCallbackClient;
    expect(await kept.call(2)).toBe(20);
    expect(impl.threads).toHaveLength(2);
    expect(impl.disposeCount).toBe(0);

    // B's Connection ends: the relay is released (no destroy), its reference to A goes, and A
    // disposes the object on its async-cleanup queue.
    await net.bInitClient.close();
    await impl.disposed.promise;
    expect(impl.disposeCount).toBe(1);
    await closeNet(net);
  });

  it("a relayed call after A went away fails cleanly on B and leaks nothing", async () => {
    const bImpl = new InitImpl();
    const keeper = new KeepingFooImpl();
    bImpl.makeFoo = () => keeper;
    const net = await makeNet(bImpl);
    const foo = await net.bInitClient.makeFoo();
    const printer = await net.aInit.makePrinter();
    expect(await foo.callback(printer, 3)).toBe(30);
    await net.aInit.close(); // the middle's connection to A ends
    expect(printer.$state).toBe("disconnected");
    const kept = keeper.kept as FooCallbackClient;
    // The relay's own client fails with "called after disconnect" (kind "disconnected"); the
    // engine sends that kind to B, whose client reports it as an interruption by disconnect (as
    // capnp does for any capability whose far end went away), with the relay's error as cause.
    const err = await kept.call(1).then(
      () => undefined,
      (e: unknown) => e as Error & { kind?: string; cause?: Error & { remote?: boolean } },
    );
    expect(err).toBeInstanceOf(IpcInterruptedError);
    expect(err!.kind).toBe("disconnected");
    expect(err!.cause?.remote).toBe(true);
    expect(err!.cause?.message).toContain("IPC client method called after disconnect.");
    await closeNet(net);
  });

  it("exportFunction: a function imported from A, passed into a call on B, is relayed too", async () => {
    const net = await makeNet();
    const foo = await net.bInitClient.makeFoo();
    const fn = await net.aInit.makeFn();
    // FooImpl.passFn: fn() twice (each a Context call), then releases it (destroy).
    expect(await foo.passFn(fn)).toBe(42);
    expect(net.printerInit.fnCalls).toBe(2);
    // B's destroy went through to A (as it would have without the middle), so the object is gone
    // for our own client too; ours is still open and only releases its reference.
    await expect(fn()).rejects.toThrow("IPC server object already destroyed");
    await (fn as unknown as AsyncDisposable)[Symbol.asyncDispose]();
    await foo.close();
    await closeNet(net);
  });

  it("a server result that is a client of another Connection is relayed and handed over to the relay", async () => {
    const net = await makeNet();
    const mLoop = net.loops[1]!;
    const cLoop = new EventLoop("c", { log: { level: "debug", logFn: (level, msg) => net.logs.push({ loop: "c", level, msg }) } });
    // The middle serves C an Init whose makePrinter returns a fresh client of A's printer.
    const returned: FooCallbackClient[] = [];
    const forward: PrinterInit = {
      makePrinter: async () => {
        const c = await net.aInit.makePrinter();
        returned.push(c);
        return c;
      },
    };
    const [cT, mC] = memoryTransportPair();
    const mcConn = serveTransport(mLoop, mC, forward, PrinterInitServer, { name: "m-c" });
    const cInit = await connectTransport(cLoop, cT, PrinterInitClient, { name: "c" });

    // C → middle (relay) → A, each hop with its own Context; destroy goes all the way.
    const p1 = await cInit.makePrinter();
    expect(await p1.call(7)).toBe(70);
    const impl1 = net.printerInit.printers[0]!;
    expect([...net.aConn.threads].some((t: ThreadServer) => t.context === impl1.threads[0])).toBe(true);
    await p1.close();
    expect(impl1.disposeCount).toBe(1);
    expect(returned[0]!.$state).toBe("closed"); // the relay owned the returned client and closed it

    // Released without destroy (C's connection ends): the relay releases the returned client's
    // reference, which was the last one, so A disposes the object.
    const p2 = await cInit.makePrinter();
    expect(await p2.call(8)).toBe(80);
    const impl2 = net.printerInit.printers[1]!;
    await cInit.close();
    await Promise.all([mcConn.disconnected, impl2.disposed.promise]);
    expect(impl2.disposeCount).toBe(1);
    expect(returned[1]!.$state).toBe("closed");
    await cLoop.done;
    assertNoLeaks([mcConn, cInit.$connection], [cLoop], net.logs);
    await closeNet(net);
  });

  it("exportObject: a client of the same Connection passes through, another Connection's is relayed", async () => {
    const net = await makeNet();
    const foo = await net.bInitClient.makeFoo(); // a client of m-b
    const printer = await net.aInit.makePrinter(); // a client of m-a
    const same = exportVia(net.bInitClient, foo, FooServer);
    // Pass-through: the same import (capability identity), no server in this process.
    expect(same.localServer()).toBeUndefined();
    same.close();
    const other = exportVia(net.bInitClient, printer, FooCallbackServer);
    const relay = other.localServer();
    expect(relay).toBeInstanceOf(FooCallbackServer);
    const relayed = (relay as FooCallbackServer).impl as unknown as FooCallbackClient;
    expect(relayed).toBeInstanceOf(FooCallbackClient);
    expect(relayed).not.toBe(printer); // its own client: the caller's stays the caller's
    expect(relayed.$connection).toBe(printer.$connection);
    expect((relay as FooCallbackServer).connection).toBe(net.bInitClient.$connection);
    other.close(); // released without destroy: the relay's client lets go, the caller's is open
    await foo.close();
    await printer.close();
    expect(net.printerInit.printers[0]!.disposeCount).toBe(1);
    await closeNet(net);
  });
});

/**
 * Runs `io.exportObject(obj, ServerCtor)` inside the build step of a call on `via`'s Connection
 * and returns a new reference to the result. The build step then throws, so nothing is sent.
 */
function exportVia(via: $mp.ProxyClientBase, obj: object, ServerCtor: $mp.ProxyServerCtor): $mp.Capability {
  let out: $mp.Capability | undefined;
  void via
    .$call(method("probe", 99, -1), (_p, io) => {
      out = io.exportObject(obj, ServerCtor)!.dup();
      throw new Error("probe: not sent");
    }, () => undefined)
    .catch(() => {});
  return out!;
}
