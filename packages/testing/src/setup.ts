/**
 * createTestSetup: upstream's TestSetup (test/mp/test/test.cpp), generic over the interface under
 * test. A generated `Server` class around the caller's implementation, served on a server
 * EventLoop with `serveTransport`, and the matching generated `Client` on a client EventLoop,
 * connected over {@link memoryTransportPair}; the same disconnect levers as upstream, and a
 * disposer (`await using`, or `dispose()`) that runs the leak check.
 *
 * Choice of threads: upstream runs one EventLoop on its own thread serving both ends. Here the
 * server and the client each get their own EventLoop object, both on the calling Node thread.
 * The memory transport is single-threaded by design (its fence, release and wireLog are
 * synchronous and observable from the test), which is what makes interleavings deterministic;
 * a worker-thread server would need a MessagePort transport and lose that. Tests that need real
 * threads put worker glue on top of this fixture (test/races does).
 *
 * Threading: loop thread (everything runs on the calling thread).
 */

import { memoryTransportPair, type MemoryTransport } from "@multiprocess-ts/capnp";
import {
  Connection,
  EventLoop,
  constructExchange,
  serveTransport,
  type LogFn,
  type LogLevel,
  type ProxyClientBase,
  type ProxyClientCtor,
  type ProxyServerCtor,
  type TestingHooks,
} from "@multiprocess-ts/runtime";
import { idleProblems } from "./assert.js";
import { countDisposals } from "./disposals.js";
import { createJitter } from "./jitter.js";
import { liveSetups, type TrackedSetup } from "./tracker.js";

/** Options shared by {@link createTestSetup} and the FooInterface convenience. */
export interface TestSetupOptions {
  /**
   * Upstream `client_owns_connection` (default true): disposing the client closes the client
   * Connection. With false, {@link TestSetup.clientDisconnect} is available and the
   * "called after disconnect" path can be exercised.
   */
  clientOwnsConnection?: boolean;
  /** Name prefix for the loops (log lines). */
  name?: string;
  /** Extra log sink (every line at `logLevel` and above; {@link TestSetup.logs} keeps them too). */
  log?: (line: string) => void;
  /**
   * Seeded delivery jitter (see jitter.ts): both transports are fenced and a pump lets messages
   * through in random small batches on later turns. Pass a seeded `() => number` in [0, 1).
   */
  jitter?: () => number;
  /** Level passed to both loops (default "warning"). */
  logLevel?: LogLevel;
  /** Testing hooks installed on the server loop (more can be set later on `serverLoop.hooks`). */
  hooks?: TestingHooks;
  /**
   * Whether the leak check requires the implementation to have been disposed exactly once
   * (default true: the server owns it, as upstream's ProxyServer owns `m_impl`).
   */
  checkImplDisposed?: boolean;
  /** The server loop's `errorStacks` (send server errors' stacks to the client). */
  errorStacks?: boolean;
}

/**
 * The interface under test: implementation, generated server class, generated client class. `S`
 * is the generated TS interface the server class serves; `I` may be any implementation of it.
 */
export interface TestSetupTarget<I extends S, S, C> {
  /** The implementation to serve (upstream `server->m_impl`). */
  impl: I;
  /** The generated `XServer` class of the bootstrap interface. */
  Server: ProxyServerCtor<S>;
  /** The generated `XClient` class of the same interface. */
  Client: ProxyClientCtor<C>;
}

export interface LogLine {
  side: "server" | "client";
  level: LogLevel;
  msg: string;
}

export interface TestSetup<I = unknown, C extends ProxyClientBase = ProxyClientBase> extends AsyncDisposable {
  readonly serverLoop: EventLoop;
  readonly clientLoop: EventLoop;
  /** The generated client of the interface under test. */
  readonly client: C;
  /** The server implementation (upstream `server->m_impl`). */
  readonly impl: I;
  /** The server Connection, undefined once torn down (upstream `server_connection`). */
  readonly serverConnection: Connection | undefined;
  readonly clientConnection: Connection | undefined;
  /** The Connection objects whatever their state (for stats after teardown). */
  readonly connections: { readonly server: Connection; readonly client: Connection };
  /** The client end of the fenced memory transport (fence, release, break, wireLog). */
  readonly clientTransport: MemoryTransport;
  readonly serverTransport: MemoryTransport;
  /** Log lines at `logLevel` (default warning) and above, both sides, in order. */
  readonly logs: LogLine[];
  /** How many times the runtime disposed `impl` so far. */
  readonly implDisposals: number;
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

/**
 * Two EventLoops named `<name>-server` / `<name>-client` whose log lines (at `logLevel`, default
 * warning, and above) go to `logs` and to `opts.log`; `opts.hooks` are installed on the server
 * loop. The loops createTestSetup uses, for tests that build their own Connections.
 */
export function createTestLoops(opts: TestSetupOptions = {}): { serverLoop: EventLoop; clientLoop: EventLoop; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const name = opts.name ?? "test";
  const level = opts.logLevel ?? "warning";
  const mkLog =
    (side: LogLine["side"]): LogFn =>
    (lvl, msg) => {
      opts.log?.(`[${side}] ${lvl}: ${msg}`);
      logs.push({ side, level: lvl, msg });
    };
  const serverLoop = new EventLoop(`${name}-server`, { log: { logFn: mkLog("server"), level }, hooks: opts.hooks, errorStacks: opts.errorStacks === true });
  const clientLoop = new EventLoop(`${name}-client`, { log: { logFn: mkLog("client"), level } });
  return { serverLoop, clientLoop, logs };
}

/**
 * Creates the paired fixture for the interface `target` describes. Write
 * `await using s = await createTestSetup(...)` so the leak check runs even when an assertion
 * fails; the construct exchange (if the interface declares `construct`) has run when this resolves.
 */
export async function createTestSetup<I extends S, S, C extends ProxyClientBase>(
  target: TestSetupTarget<I, S, C>,
  opts: TestSetupOptions = {},
): Promise<TestSetup<I, C>> {
  const ownsConnection = opts.clientOwnsConnection ?? true;
  const expected: RegExp[] = [];
  const { serverLoop, clientLoop, logs } = createTestLoops(opts);
  const [clientTransport, serverTransport] = memoryTransportPair();
  const jitter = opts.jitter === undefined ? undefined : createJitter(opts.jitter, [clientTransport, serverTransport]);
  const { impl, Server, Client } = target;
  const disposals = countDisposals(impl);

  let serverConnection: Connection | undefined = serveTransport(serverLoop, jitter?.wrap(serverTransport) ?? serverTransport, impl, Server);
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
  // Upstream: ProxyClient<Interface>(bootstrap, connection, destroy_connection = client_owns_connection).
  const client = new Client(clientConnRef.rpc.bootstrap(), clientConnRef, { destroyConnection: ownsConnection });

  let disposing: Promise<void> | undefined;
  const setup: TestSetup<I, C> = {
    serverLoop,
    clientLoop,
    client,
    impl,
    get serverConnection() {
      return serverConnection;
    },
    get clientConnection() {
      return clientConnection;
    },
    get implDisposals() {
      return disposals.count;
    },
    connections: { server: serverConnRef, client: clientConnRef },
    clientTransport,
    serverTransport,
    logs,
    expectLog: (re) => void expected.push(re),
    serverDisconnect,
    serverDisconnectLater: () => serverLoop.post(() => void serverDisconnect()),
    clientDisconnect: async () => {
      if (ownsConnection) throw new Error("clientDisconnect needs createTestSetup(..., { clientOwnsConnection: false })");
      const c = clientConnection;
      clientConnection = undefined;
      await c?.close();
    },
    assertNoLeaks: () => {
      const problems = idleProblems({
        connections: { server: serverConnRef, client: clientConnRef },
        loops: { server: serverLoop, client: clientLoop },
        logs,
        expectedLogs: expected,
      });
      if ((opts.checkImplDisposed ?? true) && disposals.count !== 1) problems.push(`server impl disposed ${disposals.count} times (want 1)`);
      if (problems.length > 0) throw new Error(`TestSetup leak check failed:\n  ${problems.join("\n  ")}`);
    },
    dispose: () =>
      (disposing ??= teardown(setup, async () => {
        try {
          // Upstream ~TestSetup: client.reset() runs the client's cleanup (destroy, release, and
          // with client_owns_connection the Connection too).
          await client.close();
          const c = clientConnection;
          clientConnection = undefined;
          await c?.close();
          // The server Connection goes down through its onDisconnect handler; wait for it.
          await serverConnRef.disconnected;
          await serverDisconnect();
        } finally {
          jitter?.stop();
        }
      })),
    [Symbol.asyncDispose]: () => setup.dispose(),
  };
  liveSetups.add(setup as TrackedSetup);
  await construct(setup, Client.$construct);
  return setup;
}

/** Upstream: ProxyClient<Init>'s constructor runs `construct` (the ThreadMap exchange). */
async function construct(setup: TestSetup<unknown, ProxyClientBase>, method: ProxyClientCtor["$construct"]): Promise<void> {
  if (method === undefined) return;
  try {
    await constructExchange(setup.client, method);
  } catch (e) {
    await setup.dispose().catch(() => {});
    throw e;
  }
}

/** Runs `close` (closes the client and both Connections), waits for the loops, then the leak check. */
async function teardown(setup: TestSetup<unknown, ProxyClientBase>, close: () => Promise<void>): Promise<void> {
  await close();
  // A leaked loop reference would keep `done` pending forever: wait a bounded time, then let
  // assertNoLeaks name what is still held (a leak report, not a hang).
  await settled(Promise.all([setup.serverLoop.done, setup.clientLoop.done]), IDLE_WAIT_MS);
  liveSetups.delete(setup);
  // Upstream ~TestSetup checks that the client's cleanup functions ran.
  const state = setup.client.$state;
  if (state !== "closed") throw new Error(`TestSetup: client state ${state} after dispose (want closed)`);
  setup.assertNoLeaks();
}
