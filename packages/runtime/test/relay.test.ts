// Passing a proxy client of one Connection into a call on another (upstream example.cpp: the
// parent hands the printer child's Printer to the calculator child). The middle must relay: a
// server on the second Connection whose impl calls the first, so each hop fills its own Context.
// Forwarding the raw capability would deliver Context.thread handles the final server never made.
//
// Three loops in one process: A hosts a Printer-like object (FooCallback), the middle ("m") is a
// client of A and of B, B hosts Foo whose callback(cb, arg) calls cb.call(arg) (a Context method).
// Threading: loop thread (the test's thread).
import { describe, it, expect } from "vitest";
import { deferred, memoryTransportPair } from "@multiprocess-ts/capnp";
import { FooCallbackClient, FooCallbackServer, type FooCallback, type FooFn } from "@multiprocess-ts/proto/test/foo.capnp.js";
import {
  FooInitClient,
  FooInitServer,
  PrinterInitClient,
  PrinterInitServer,
  ThreadFooServer,
  ThreadFoo_threadName$Params,
  ThreadFoo_threadName$Results,
  type PrinterInit,
} from "@multiprocess-ts/proto/test/fixtures.capnp.js";
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
import { assertIdle } from "@multiprocess-ts/testing";
import { FooImpl, InitImpl } from "./fixtures.js";

/**
 * `$release` and `$call` are @internal on ProxyClientBase (stripped from the shipped .d.ts; the
 * runtime's relay servers and construct/destroy use them). This test reaches them through this view.
 */
interface InternalClient {
  $release(): Promise<void>;
  $call<R>(m: $mp.ProxyMethod, build: (p: any, io: $mp.ClientIO) => void, read: (r: any, io: $mp.ClientIO) => R): Promise<R>;
}
const internal = (c: $mp.ProxyClientBase): InternalClient => c as unknown as InternalClient;

interface LogLine {
  loop: string;
  level: string;
  msg: string;
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
  override async callback(cb: FooCallback | null, arg: number): Promise<number> {
    this.kept = cb!;
    return await cb!.call(arg);
  }
}

// -----------------------------------------------------------------------------------------------

interface Net extends AsyncDisposable {
  loops: EventLoop[];
  logs: LogLine[];
  aConn: Connection;
  bConn: Connection;
  printerInit: PrinterInitImpl;
  bInit: InitImpl;
  /** The middle's clients: of A's Init and of B's Init (each owns its Connection). */
  aInit: PrinterInitClient;
  bInitClient: FooInitClient;
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
  const bConn = serveTransport(bLoop, bT, bInit, FooInitServer, { name: "b" });
  const bInitClient = await connectTransport(mLoop, mB, FooInitClient, { name: "m-b" });
  let closing: Promise<void> | undefined;
  const net: Net = {
    loops: [aLoop, mLoop, bLoop],
    logs,
    aConn,
    bConn,
    printerInit,
    bInit,
    aInit,
    bInitClient,
    [Symbol.asyncDispose]: () => (closing ??= closeNet(net)),
  };
  return net;
}

/** Closes the middle's clients, waits for all three loops, then runs the leak check. */
async function closeNet(net: Net): Promise<void> {
  const conns = [net.aConn, net.bConn, net.aInit.$connection, net.bInitClient.$connection];
  await net.bInitClient.close();
  await net.aInit.close();
  await Promise.all(conns.map((c) => c.disconnected));
  await Promise.all(net.loops.map((l) => l.done));
  assertIdle({ connections: Object.fromEntries(conns.map((c, i) => [`conn${i}`, c])), loops: Object.fromEntries(net.loops.map((l) => [l.name, l])), logs: net.logs });
}

describe("a proxy client passed into a call on another Connection", () => {
  it("is relayed by the middle: B's Context call reaches A on a Thread A made; B's destroy ends only B's hold", async () => {
    await using net = await makeNet();
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
    expect(net.logs.filter((l) => /invalid thread handle/.test(l.msg))).toEqual([]);
    // B's destroy reached the relay, whose own client shares the middle's reference to A with the
    // caller's `printer`: the relay only released (docs/usage.md, "Sharing clients"), A's object
    // lives on for the caller.
    expect(impl.disposeCount).toBe(0);
    expect(printer.$state).toBe("open");
    await printer.call(1);
    // The caller, now the only holder, closes: its destroy disposes the object before it returns.
    await printer.close();
    expect(impl.disposeCount).toBe(1);
    await foo.close();
  });

  it("the relay holds its own reference: the caller may let go first; B's release reaches A", async () => {
    const bImpl = new InitImpl();
    const keeper = new KeepingFooImpl();
    bImpl.makeFoo = () => keeper;
    await using net = await makeNet(bImpl);
    const foo = await net.bInitClient.makeFoo();
    const printer = await net.aInit.makePrinter();
    const impl = net.printerInit.printers[0]!;

    expect(await foo.callback(printer, 1)).toBe(10);
    // The caller drops its reference without destroy: A's object stays alive for B.
    await internal(printer).$release();
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
  });

  it("a relayed call after A went away fails cleanly on B and leaks nothing", async () => {
    const bImpl = new InitImpl();
    const keeper = new KeepingFooImpl();
    bImpl.makeFoo = () => keeper;
    await using net = await makeNet(bImpl);
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
  });

  it("exportFunction: a function imported from A, passed into a call on B, is relayed too", async () => {
    await using net = await makeNet();
    const foo = await net.bInitClient.makeFoo();
    const fn = await net.aInit.makeFn();
    // FooImpl.passFn: fn() twice (each a Context call), then releases it (destroy).
    expect(await foo.passFn(fn)).toBe(42);
    expect(net.printerInit.fnCalls).toBe(2);
    // B's destroy ended the relay's hold only: our own client still holds A's object.
    expect(await fn()).toBe(21);
    expect(net.printerInit.fnCalls).toBe(3);
    await (fn as unknown as AsyncDisposable)[Symbol.asyncDispose]();
    await foo.close();
  });

  it("a server result that is a client of another Connection is relayed and handed over to the relay", async () => {
    await using net = await makeNet();
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
      makeFn: () => {
        throw new Error("makeFn: not used by this test");
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
    assertIdle({ connections: { mcConn, c: cInit.$connection }, loops: { cLoop }, logs: net.logs });
  });

  it("exportObject: a client of the same Connection passes through, another Connection's is relayed", async () => {
    await using net = await makeNet();
    const foo = await net.bInitClient.makeFoo(); // a client of m-b
    const printer = await net.aInit.makePrinter(); // a client of m-a
    const same = exportVia(net.bInitClient, foo, ThreadFooServer);
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
    // Disposed once, when the last of the two holders (the relay releases on the middle's
    // async-cleanup queue, maybe after the caller's close) let go.
    await net.printerInit.printers[0]!.disposed.promise;
    expect(net.printerInit.printers[0]!.disposeCount).toBe(1);
  });
});

/** A method descriptor that is never sent (its build step throws). */
const PROBE: $mp.ProxyMethod = {
  name: "probe",
  interfaceId: FooInitClient.interfaceId,
  methodId: 99,
  Params: ThreadFoo_threadName$Params,
  Results: ThreadFoo_threadName$Results,
  context: -1,
  destroy: false,
};

/**
 * Runs `io.exportObject(obj, ServerCtor)` inside the build step of a call on `via`'s Connection
 * and returns a new reference to the result. The build step then throws, so nothing is sent.
 */
function exportVia(via: $mp.ProxyClientBase, obj: object, ServerCtor: $mp.ProxyServerCtor): $mp.Capability {
  let out: $mp.Capability | undefined;
  void internal(via)
    .$call(PROBE, (_p, io) => {
      out = io.exportObject(obj, ServerCtor)!.dup();
      throw new Error("probe: not sent");
    }, () => undefined)
    .catch(() => {});
  return out!;
}
