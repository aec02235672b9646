// Per-call options through the runtime's proxy path (ProxyClientBase.$invoke, as generated clients
// use it) against the C++ reference server: aborting the call's signal, or its timeout, rejects
// the caller with CanceledError / TimeoutError and sends a normal Finish; the C++ callee observes
// the cancellation (Calc.hang's watcher gets notify(2, "canceled") when its promise is dropped).
// Ends with a leak check on both sides.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CanceledError, localCapability, writeCap, type Capability } from "@multiprocess-ts/capnp";
import { Connection, EventLoop, ProxyClientBase, TimeoutError, type CallOptions } from "@multiprocess-ts/runtime";
import type { ProxyMethod } from "@multiprocess-ts/runtime/gen";
import {
  CountingTransport,
  Tracker,
  WatcherServer,
  schema as s,
  socketDir,
  startCppServer,
  stats,
  streamTransport,
  type CppServer,
} from "@multiprocess-ts/test-interop";
import { createConnection } from "node:net";

const Calc$hang: ProxyMethod = {
  name: "hang", interfaceId: s.CALC_ID, methodId: s.CalcMethod.hang, Params: s.OneCap, Results: s.Empty, context: -1, destroy: false,
};

/** A hand-written proxy shaped like mpgen output for `Calc.hang(watcher)`. */
class CalcClient extends ProxyClientBase {
  static readonly interfaceId = s.CALC_ID;
  hang(watcher: Capability, options?: CallOptions): Promise<void> {
    return this.$invoke(Calc$hang, (p: s.OneCap) => writeCap(p, 0, watcher), () => undefined, options);
  }
}

describe("TS proxy client → C++ server: cancellation", () => {
  let dir: Awaited<ReturnType<typeof socketDir>>;
  let server: CppServer;
  let loop: EventLoop;
  let conn: Connection;
  let transport: CountingTransport;
  let client: CalcClient;
  const tracker = new Tracker();

  beforeAll(async () => {
    dir = await socketDir();
    server = await startCppServer(join(dir.dir, "cpp.sock"));
    const socket = createConnection(server.path);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => { socket.off("error", reject); resolve(); });
      socket.once("error", reject);
    });
    loop = new EventLoop("cancel-client", { log: { level: "error", logFn: () => {} } });
    transport = new CountingTransport(streamTransport(socket), { wire: true });
    conn = new Connection(loop, transport);
    client = new CalcClient(conn.rpc.bootstrap(), conn, { destroyConnection: true });
  });

  afterAll(async () => {
    await client?.close();
    await loop?.done;
    const code = await server?.stop();
    await dir?.remove();
    expect(code, `C++ peer stderr: ${server?.stderr()}`).toBe(0);
  });

  /** Starts hang(watcher) with `options`; resolves once the C++ callee runs it. */
  async function hang(options: CallOptions): Promise<{ call: Promise<void>; w: WatcherServer }> {
    const w = new WatcherServer(tracker);
    const cap = localCapability(w);
    const call = client.hang(cap, options);
    cap.close();
    await w.started.promise;
    return { call, w };
  }

  it("an aborted signal: CanceledError at once, Finish on the wire, the C++ callee sees the cancel", async () => {
    const ac = new AbortController();
    const { call, w } = await hang({ signal: ac.signal });
    const from = transport.wire!.length;
    ac.abort();
    const err = await call.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(CanceledError);
    expect(err).not.toBeInstanceOf(TimeoutError);
    expect(transport.wireSince(from)[0]).toBe("out finish");
    await w.canceled.promise;
  });

  it("a timeout: TimeoutError, and the C++ callee sees the cancel", async () => {
    const { call, w } = await hang({ timeout: 100 });
    const err = await call.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).code).toBe("MP_ERR_TIMEOUT");
    await w.canceled.promise;
  });

  it("leaks: the C++ peer holds nothing of ours, our tables hold only the bootstrap import", async () => {
    expect(await stats(client.$cap)).toEqual({ live: 0, held: 0 });
    await tracker.liveZero();
    expect(conn.rpc.stats()).toMatchObject({ questions: 0, answers: 0, exports: 0, imports: 1, embargoes: 0 });
    expect(loop.pendingWork).toBe(0);
  });
});
