/**
 * createTestSetup: upstream's TestSetup (test/mp/test/test.cpp) for multiprocess-ts. A
 * ProxyServer<FooInterface> around a {@link FooImplementation} and a FooInterfaceClient, connected
 * over {@link memoryTransportPair}, with the same disconnect levers and a disposer that asserts
 * leak-freedom.
 *
 * Choice of threads: upstream runs one EventLoop on its own thread serving both ends. Here the
 * server and the client each get their own EventLoop object, both on the calling Node thread.
 * The memory transport is single-threaded by design (its fence, release and wireLog are
 * synchronous and observable from the test), which is what makes interleavings deterministic;
 * a worker-thread server would need a MessagePort transport and lose that. Scenarios that need
 * real threads use worker glue on top of this fixture.
 *
 * Threading: everything runs on the calling thread.
 */

import { memoryTransportPair, type MemoryTransport } from "@multiprocess-ts/capnp";
import { Connection, EventLoop, serveTransport, type LogFn } from "@multiprocess-ts/runtime";
import { FooInterfaceClient, FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { FooImplementation } from "./foo-impl.js";
import { createJitter } from "./jitter.js";
import { liveSetups } from "./tracker.js";

export interface TestSetupOptions {
  /**
   * Upstream `client_owns_connection` (default true): disposing the client closes the client
   * Connection. With false, {@link TestSetup.clientDisconnect} is available and the
   * "called after disconnect" path can be exercised.
   */
  clientOwnsConnection?: boolean;
  /** Name prefix for the loops (log lines). */
  name?: string;
  /** Extra log sink (every line at `logLevel` and above). */
  log?: (line: string) => void;
  /**
   * Seeded delivery jitter (see jitter.ts): both transports are fenced and a pump lets messages
   * through in random small batches on later turns. Pass the scenario's rng.
   */
  jitter?: () => number;
  /** Level passed to both loops (default "warning"). */
  logLevel?: "trace" | "debug" | "info" | "warning" | "error";
}

export interface LogLine {
  side: "server" | "client";
  level: string;
  msg: string;
}

export interface TestSetup extends AsyncDisposable {
  readonly serverLoop: EventLoop;
  readonly clientLoop: EventLoop;
  /** The generated FooInterfaceClient. */
  readonly client: FooInterfaceClient;
  /** The server implementation (upstream `server->m_impl`). */
  readonly server: FooImplementation;
  /** The server Connection, undefined once torn down (upstream `server_connection`). */
  readonly serverConnection: Connection | undefined;
  readonly clientConnection: Connection | undefined;
  /** The Connection objects whatever their state (for stats after teardown). */
  readonly connections: { readonly server: Connection; readonly client: Connection };
  readonly clientTransport: MemoryTransport;
  readonly serverTransport: MemoryTransport;
  /** Log lines at warning and above, both sides. */
  readonly logs: LogLine[];
  /** Error-level log lines matching one of these are expected (upstream EXPECT_LOG). */
  expectLog(re: RegExp): void;
  /** Tear down the server Connection now (upstream `server_disconnect`). */
  serverDisconnect(): Promise<void>;
  /** Queue the server teardown on the server loop (upstream `server_disconnect_later`). */
  serverDisconnectLater(): void;
  /** Tear down the client Connection (only with clientOwnsConnection: false). */
  clientDisconnect(): Promise<void>;
  /** Throws unless RPC tables are empty and loops hold no references (call after teardown). */
  assertNoLeaks(): void;
  /** Dispose the client, wait for both loops to finish, then {@link assertNoLeaks}. Idempotent. */
  dispose(): Promise<void>;
}

/** How long dispose waits for both loops to become idle before reporting what they still hold. */
const IDLE_WAIT_MS = 2_000;

/** Resolves when `p` settles or after `ms`, whichever is first (the timer never outlives it). */
async function settled(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Creates the paired fixture. Dispose it (`await setup.dispose()`) at the end of every test. */
export async function createTestSetup(opts: TestSetupOptions = {}): Promise<TestSetup> {
  const ownsConnection = opts.clientOwnsConnection ?? true;
  const name = opts.name ?? "mptest";
  const logs: LogLine[] = [];
  const expected: RegExp[] = [];
  const mkLog =
    (side: LogLine["side"]): LogFn =>
    (level, msg) => {
      opts.log?.(`[${side}] ${level}: ${msg}`);
      if (level === "warning" || level === "error") logs.push({ side, level, msg });
    };
  const level = opts.logLevel ?? "warning";
  const serverLoop = new EventLoop(`${name}-server`, { log: { logFn: mkLog("server"), level } });
  const clientLoop = new EventLoop(`${name}-client`, { log: { logFn: mkLog("client"), level } });
  const [clientTransport, serverTransport] = memoryTransportPair();
  const jitter = opts.jitter === undefined ? undefined : createJitter(opts.jitter, [clientTransport, serverTransport]);
  const server = new FooImplementation();

  let serverConnection: Connection | undefined = serveTransport(serverLoop, jitter?.wrap(serverTransport) ?? serverTransport, server, FooInterfaceServer);
  const serverConnRef = serverConnection;
  let serverClosing: Promise<void> | undefined;
  const serverDisconnect = (): Promise<void> => {
    if (serverClosing === undefined) {
      const c = serverConnection;
      serverConnection = undefined;
      serverClosing = c === undefined ? Promise.resolve() : c.close();
    }
    return serverClosing;
  };
  // Upstream: "Set handler to destroy the server when the client disconnects."
  serverConnRef.onDisconnect(() => void serverDisconnect());

  let clientConnection: Connection | undefined = new Connection(clientLoop, jitter?.wrap(clientTransport) ?? clientTransport);
  const clientConnRef = clientConnection;
  // Upstream: ProxyClient<FooInterface>(bootstrap, connection, destroy_connection = client_owns_connection).
  const client = new FooInterfaceClient(clientConnRef.rpc.bootstrap(), clientConnRef, { destroyConnection: ownsConnection });

  let disposing: Promise<void> | undefined;
  const setup: TestSetup = {
    serverLoop,
    clientLoop,
    client,
    server,
    get serverConnection() {
      return serverConnection;
    },
    get clientConnection() {
      return clientConnection;
    },
    connections: { server: serverConnRef, client: clientConnRef },
    clientTransport,
    serverTransport,
    logs,
    expectLog: (re) => void expected.push(re),
    serverDisconnect,
    serverDisconnectLater: () => serverLoop.post(() => void serverDisconnect()),
    clientDisconnect: async () => {
      if (ownsConnection) throw new Error("clientDisconnect needs createTestSetup({ clientOwnsConnection: false })");
      const c = clientConnection;
      clientConnection = undefined;
      await c?.close();
    },
    assertNoLeaks: () => {
      const problems: string[] = [];
      for (const [side, c] of [["server", serverConnRef], ["client", clientConnRef]] as const) {
        const s = c.rpc.stats();
        for (const [k, v] of Object.entries(s)) if (v !== 0) problems.push(`${side} rpc ${k} = ${v}`);
      }
      for (const [side, l] of [["server", serverLoop], ["client", clientLoop]] as const) {
        if (l.numRefs !== 0) problems.push(`${side} loop holds ${l.numRefs} refs`);
        if (l.pendingWork !== 0) problems.push(`${side} loop has ${l.pendingWork} pending work items`);
      }
      if (server.disposeCount !== 1) problems.push(`server impl disposed ${server.disposeCount} times (want 1)`);
      const unexpected = logs.filter((l) => l.level === "error" && !expected.some((re) => re.test(l.msg)));
      for (const l of unexpected) problems.push(`unexpected ${l.side} error log: ${l.msg}`);
      if (problems.length > 0) throw new Error(`TestSetup leak check failed:\n  ${problems.join("\n  ")}`);
    },
    dispose: () => {
      if (disposing === undefined) {
        disposing = (async () => {
          try {
            // Upstream ~TestSetup: client.reset() runs the client's cleanup (destroy, release, and
            // with client_owns_connection the Connection too).
            await client.close();
            if (clientConnection !== undefined) {
              const c = clientConnection;
              clientConnection = undefined;
              await c.close();
            }
            // The server Connection goes down through its onDisconnect handler; wait for it.
            await serverConnRef.disconnected;
            await serverDisconnect();
          } finally {
            jitter?.stop();
          }
          // A leaked loop reference would keep `done` pending forever: wait a bounded time, then
          // let assertNoLeaks name what is still held (a leak report, not a hang).
          await settled(Promise.all([serverLoop.done, clientLoop.done]), IDLE_WAIT_MS);
          liveSetups.delete(setup);
          // Upstream ~TestSetup checks that the client's cleanup functions ran.
          if (client.$state !== "closed") throw new Error(`TestSetup: client state ${client.$state} after dispose (want closed)`);
          setup.assertNoLeaks();
        })();
      }
      return disposing;
    },
    [Symbol.asyncDispose]: () => setup.dispose(),
  };
  liveSetups.add(setup);
  return setup;
}
