/**
 * Per-call options of generated clients (issue 15): `signal` and `timeout` cancel a call in flight
 * (Finish on the wire, the caller rejected at once with CanceledError / TimeoutError), the server
 * implementation's trailing `ctx.signal` fires on the peer's Finish; client-wide defaults
 * (`setCallDefaults`); `makePool` and `thread: "pool"`. TS client ↔ TS server over a memory
 * transport pair; every test ends with a leak check.
 */
import { CanceledError, deferred, memoryTransportPair, type MemoryTransport } from "@multiprocess-ts/capnp";
import {
  Connection,
  EventLoop,
  TimeoutError,
  currentFrame,
  makePool,
  serveTransport,
  setCallDefaults,
  type CallContext,
} from "@multiprocess-ts/runtime";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type FooInterface, FooInterfaceClient, FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";

/** What the server saw of one call: its signal, and a promise settled when that signal aborts. */
interface Seen {
  signal: AbortSignal;
  aborted: Promise<unknown>;
}

/**
 * `add(a, b)` with `a === 0` returns at once; otherwise it parks until its `ctx.signal` aborts
 * (then rejects with the reason) or `release` resolves it. `callIntFnAsync` (a Context method)
 * records the server Thread's name and parks likewise.
 */
class ParkingFoo implements Partial<FooInterface> {
  readonly started: { resolve(s: Seen): void; promise: Promise<Seen> }[] = [];
  readonly threads: string[] = [];
  release = deferred<void>();
  nextStart(): Promise<Seen> {
    const d = deferred<Seen>();
    this.started.push(d);
    return d.promise;
  }
  #park(ctx: CallContext | undefined): Promise<void> {
    const signal = ctx!.signal;
    const aborted = new Promise<unknown>((resolve) => signal.addEventListener("abort", () => resolve(signal.reason)));
    this.started.shift()?.resolve({ signal, aborted });
    return new Promise<void>((resolve, reject) => {
      signal.addEventListener("abort", () => reject(signal.reason));
      void this.release.promise.then(resolve);
    });
  }
  async add(a: number, b: number, ctx?: CallContext): Promise<number> {
    if (a !== 0) await this.#park(ctx);
    return a + b;
  }
  initThreadMap(): void {}
  async callIntFnAsync(arg: number, ctx?: CallContext): Promise<number> {
    this.threads.push(currentFrame()!.context.name);
    if (arg !== 0) await this.#park(ctx);
    return arg;
  }
}

let serverLoop: EventLoop;
let clientLoop: EventLoop;
let impl: ParkingFoo;
let serverConn: Connection;
let clientConn: Connection;
let ct: MemoryTransport;
let client: FooInterfaceClient;
const errors: string[] = [];

beforeEach(async () => {
  errors.length = 0;
  const log = (level: string, msg: string): void => {
    if (level === "error") errors.push(msg);
  };
  serverLoop = new EventLoop("opts-server", { log: { logFn: log, level: "warning" } });
  clientLoop = new EventLoop("opts-client", { log: { logFn: log, level: "warning" } });
  const [c, s] = memoryTransportPair();
  ct = c;
  impl = new ParkingFoo();
  serverConn = serveTransport(serverLoop, s, impl as unknown as FooInterface, FooInterfaceServer);
  serverConn.onDisconnect(() => void serverConn.close());
  clientConn = new Connection(clientLoop, ct);
  client = new FooInterfaceClient(clientConn.rpc.bootstrap(), clientConn, { destroyConnection: true });
  await client.initThreadMap();
});

afterEach(async () => {
  impl.release.resolve();
  await client.close();
  await serverConn.close();
  await Promise.all([serverLoop.done, clientLoop.done]);
  // Leak check: no RPC table entries, no loop references, no error logs.
  for (const c of [serverConn, clientConn]) {
    expect(c.rpc.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
  }
  for (const l of [serverLoop, clientLoop]) {
    expect(l.numRefs).toBe(0);
    expect(l.pendingWork).toBe(0);
  }
  expect(errors).toEqual([]);
});

const finishes = (t: MemoryTransport): number => t.wireLog.filter((e) => e.which === "finish").length;

describe("per-call options", () => {
  it("an aborted signal rejects the caller at once with CanceledError, sends Finish, and aborts the server's ctx.signal", async () => {
    const ac = new AbortController();
    const started = impl.nextStart();
    const call = client.add(1, 2, { signal: ac.signal });
    const seen = await started;
    expect(seen.signal.aborted).toBe(false);
    const before = finishes(ct);
    // Hold what the client sends: the caller must be rejected before the server hears anything.
    ct.fence();
    ac.abort(new Error("user gave up"));
    const err = await call.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CanceledError);
    expect(err).not.toBeInstanceOf(TimeoutError);
    expect((err as CanceledError).code).toBe("MP_ERR_CANCELED");
    expect(((err as CanceledError).cause as Error).message).toBe("user gave up");
    expect(seen.signal.aborted).toBe(false);
    expect(finishes(ct)).toBe(before + 1); // Finish sent (held by the fence)
    ct.release();
    expect(await seen.aborted).toBeInstanceOf(CanceledError);
    expect(seen.signal.aborted).toBe(true);
    // The connection still works.
    expect(await client.add(0, 5)).toBe(5);
  });

  it("timeout rejects with TimeoutError (MP_ERR_TIMEOUT) and cancels the server side", async () => {
    const started = impl.nextStart();
    const call = client.add(1, 2, { timeout: 30 });
    const seen = await started;
    const err = await call.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err).toBeInstanceOf(CanceledError);
    expect((err as TimeoutError).code).toBe("MP_ERR_TIMEOUT");
    expect((err as TimeoutError).timeout).toBe(30);
    expect((err as TimeoutError).message).toBe("IPC client method call timed out after 30 ms.");
    await seen.aborted;
    expect(finishes(ct)).toBeGreaterThan(0);
  });

  it("an AbortSignal.timeout signal rejects with TimeoutError whose cause is the DOMException", async () => {
    const started = impl.nextStart();
    const call = client.add(1, 2, { signal: AbortSignal.timeout(30) });
    const seen = await started;
    const err = await call.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(((err as TimeoutError).cause as Error).name).toBe("TimeoutError");
    await seen.aborted;
  });

  it("an already aborted signal rejects without sending; a call that returns in time is unaffected", async () => {
    const calls = ct.wireLog.filter((e) => e.which === "call").length;
    await expect(client.add(0, 1, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(CanceledError);
    expect(ct.wireLog.filter((e) => e.which === "call").length).toBe(calls);
    const ac = new AbortController();
    expect(await client.add(0, 7, { signal: ac.signal, timeout: 60_000 })).toBe(7);
    ac.abort(); // after the return: nothing happens
    await expect(client.add(0, 1, { timeout: -1 })).rejects.toBeInstanceOf(RangeError);
  });

  it("setCallDefaults applies to every call of the client; a call's own options override them", async () => {
    const ac = new AbortController();
    setCallDefaults(client, { signal: ac.signal });
    const started = impl.nextStart();
    const call = client.add(1, 2, { timeout: 60_000 }); // default signal still applies
    const seen = await started;
    ac.abort();
    await expect(call).rejects.toBeInstanceOf(CanceledError);
    await seen.aborted;
    setCallDefaults(client, { timeout: 60_000 });
    expect(await client.add(0, 3)).toBe(3);
    setCallDefaults(client, undefined);
  });
});

describe("makePool and thread: \"pool\"", () => {
  it("pool calls run on the peer's pool Threads, two at once; the default stays one FIFO Thread per caller", async () => {
    await makePool(client, 2);
    await expect(makePool(client, 1)).rejects.toThrow("makePool called on connection with existing pool");
    const a = impl.nextStart();
    const first = client.callIntFnAsync(1, { thread: "pool" });
    await a;
    // The first pool Thread is busy: the second call goes to the other one and returns now.
    expect(await client.callIntFnAsync(0, { thread: "pool" })).toBe(0);
    expect(impl.threads).toEqual([expect.stringContaining("(pool/0)"), expect.stringContaining("(pool/1)")]);
    impl.release.resolve();
    expect(await first).toBe(1);
    // Without the option: the Thread made for this JS thread.
    expect(await client.callIntFnAsync(0)).toBe(0);
    expect(impl.threads[2]).not.toContain("(pool/");
    await expect(makePool(client, 0)).rejects.toBeInstanceOf(RangeError);
  });

  it("makePool without the peer's ThreadMap rejects with a clear error", async () => {
    const [c, s] = memoryTransportPair();
    const conn2 = serveTransport(serverLoop, s, impl as unknown as FooInterface, FooInterfaceServer);
    conn2.onDisconnect(() => void conn2.close());
    const cc = new Connection(clientLoop, c);
    const c2 = new FooInterfaceClient(cc.rpc.bootstrap(), cc, { destroyConnection: true });
    await expect(makePool(c2, 1)).rejects.toThrow("makePool: the peer gave us no ThreadMap");
    await c2.close();
    await conn2.close();
  });
});
