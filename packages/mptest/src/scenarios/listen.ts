/**
 * The four ListenConnections scenarios of upstream test/mp/test/listen_tests.cpp, same names, on
 * real Unix sockets: the server is @multiprocess-ts/node's `listenConnections` serving one shared
 * FooImplementation on its own EventLoop (whose `connected`/`disconnected` testing hooks count
 * connections, as upstream's do); each client has its own EventLoop and `connectSocket`.
 * Waiting is on events (the listener's "park" event, hook counters), never on sleeps. Where
 * upstream does `loop.sync([]{})` to be sure the over-limit client reached the server, we wait for
 * the listener to report it parked.
 *
 * Threading: runs on the mptest process's main thread (or a `--jobs` shard child's main thread).
 */

import * as net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventLoop, type Connection } from "@multiprocess-ts/runtime";
import { FooInterfaceClient, FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectSocket, listenConnections, type Listener } from "@multiprocess-ts/node";
import { FooImplementation, assertRpcIdle } from "@multiprocess-ts/testing";
import type { Scenario, ScenarioContext } from "../scenario.js";
import { Counter, check, checkEq } from "./util.js";

/** The node entry points these scenarios use (passed around so a test could substitute them). */
const nodeApi = { listenConnections, connectSocket };
type NodeApi = typeof nodeApi;

class ListenSetup {
  readonly connected = new Counter();
  readonly disconnected = new Counter();
  readonly parked = new Counter();
  /** One impl shared by every connection, owned by the test (upstream: `FooImplementation foo;`). */
  readonly impl = new FooImplementation();
  listener: Listener | undefined;
  private constructor(
    readonly node: NodeApi,
    readonly loop: EventLoop,
    readonly dir: string,
    readonly path: string,
    readonly errors: string[],
  ) {}

  static async create(ctx: ScenarioContext, node: NodeApi, maxConnections?: number): Promise<ListenSetup> {
    const dir = mkdtempSync(join(tmpdir(), "mptest-listener-"));
    const errors: string[] = [];
    const loop = new EventLoop("mptest-server", {
      log: {
        level: "warning",
        logFn: (level, msg) => {
          ctx.log(`[server] ${level}: ${msg}`);
          if (level === "error") errors.push(msg);
        },
      },
    });
    const s = new ListenSetup(node, loop, dir, join(dir, "socket"), errors);
    // Upstream counts through testing_hook_connected / _disconnected; serveTransport fires the same hooks.
    loop.hooks.connected = () => s.connected.inc();
    loop.hooks.disconnected = () => s.disconnected.inc();
    s.listener = await node.listenConnections(s.path, loop, s.impl, FooInterfaceServer, maxConnections === undefined ? {} : { maxConnections });
    s.listener.on("park", () => s.parked.inc());
    return s;
  }

  async close(): Promise<void> {
    try {
      await this.listener?.close();
      await this.loop.done;
      checkEq(this.connected.value, this.disconnected.value, "every served connection ended");
      checkEq(this.loop.numRefs, 0, "server loop refs");
      check(this.errors.length === 0, `server error logs: ${this.errors.join("; ")}`);
      checkEq(this.impl.disposeCount, 0, "shared impl is owned by the test, not disposed by connections");
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

class ClientSetup {
  private constructor(
    readonly loop: EventLoop,
    readonly client: FooInterfaceClient,
    readonly connection: Connection,
  ) {}

  static async connect(node: NodeApi, path: string): Promise<ClientSetup> {
    const loop = new EventLoop("mptest-client");
    const client = await node.connectSocket(loop, path, FooInterfaceClient);
    return new ClientSetup(loop, client, client.$connection);
  }

  async close(): Promise<void> {
    await this.client.close();
    await this.connection.disconnected;
    await this.loop.done;
    checkEq(this.loop.numRefs, 0, "client loop refs");
    assertRpcIdle(this.connection, "client connection");
  }
}

/** Runs `fn`, then closes every client still open and the server (leak checks included). */
async function withListen(
  ctx: ScenarioContext,
  maxConnections: number | undefined,
  fn: (server: ListenSetup, clients: Set<ClientSetup>, node: NodeApi) => Promise<void>,
): Promise<void> {
  const node = nodeApi;
  const server = await ListenSetup.create(ctx, node, maxConnections);
  const clients = new Set<ClientSetup>();
  let failure: unknown;
  try {
    await fn(server, clients, node);
  } catch (e) {
    failure = e ?? new Error("scenario failed");
  }
  try {
    for (const c of clients) await c.close();
    await server.close();
  } catch (e) {
    if (failure === undefined) throw e;
    ctx.log(`secondary failure in teardown: ${String(e)}`);
  }
  if (failure !== undefined) throw failure;
}

async function connect(server: ListenSetup, clients: Set<ClientSetup>, node: NodeApi): Promise<ClientSetup> {
  const c = await ClientSetup.connect(node, server.path);
  clients.add(c);
  return c;
}

async function disconnect(c: ClientSetup, clients: Set<ClientSetup>): Promise<void> {
  clients.delete(c);
  await c.close();
}

/**
 * Connects a client whose server side will be parked (at the limit): resolves once the listener
 * has accepted and parked the socket. Bootstrapping cannot finish until it is served, so the
 * connect is started and its promise returned separately (wrapped: an async function returning a
 * promise would wait for it).
 */
async function connectParked(server: ListenSetup, clients: Set<ClientSetup>, node: NodeApi): Promise<{ connected: Promise<ClientSetup> }> {
  const before = server.parked.value;
  const p = connect(server, clients, node);
  // If the scenario fails before awaiting it, teardown drops the parked socket and `p` rejects;
  // that must not surface as an unhandled rejection on top of the real failure.
  p.catch(() => {});
  await server.parked.atLeast(before + 1);
  return { connected: p };
}

export const listenScenarios: Scenario[] = [
  {
    name: "ListenConnections accepts incoming connections",
    origin: "upstream listen_tests.cpp:220",
    run: (ctx) =>
      withListen(ctx, undefined, async (server, clients, node) => {
        checkEq(server.connected.value, 0, "connected before");
        const client = await connect(server, clients, node);
        await server.connected.atLeast(1);
        checkEq(await client.client.add(1, 2), 3, "add");
      }),
  },
  {
    name: "ListenConnections enforces a local connection limit",
    origin: "upstream listen_tests.cpp:230 (#269)",
    run: (ctx) =>
      withListen(ctx, 1, async (server, clients, node) => {
        checkEq(server.connected.value, 0, "connected before");
        const client1 = await connect(server, clients, node);
        await server.connected.atLeast(1);
        checkEq(await client1.client.add(1, 2), 3, "client1 add");

        const client2p = (await connectParked(server, clients, node)).connected;
        checkEq(server.connected.value, 1, "second client must wait for a slot");
        checkEq(server.disconnected.value, 0, "no disconnect yet");
        await disconnect(client1, clients);
        await server.disconnected.atLeast(1);
        await server.connected.atLeast(2);
        const client2 = await client2p;
        checkEq(await client2.client.add(2, 3), 5, "client2 add");
        checkEq(server.disconnected.value, 1, "disconnected after client2 call");
        await disconnect(client2, clients);
        await server.disconnected.atLeast(2);
        checkEq(server.disconnected.value, 2, "both disconnected");
        const client3 = await connect(server, clients, node);
        await server.connected.atLeast(3);
        checkEq(await client3.client.add(3, 4), 7, "client3 add");
      }),
  },
  {
    name: "ListenConnections accepts multiple connections",
    origin: "upstream listen_tests.cpp:268 (#269)",
    run: (ctx) =>
      withListen(ctx, 2, async (server, clients, node) => {
        checkEq(server.connected.value, 0, "connected before");
        const [client1, client2] = await Promise.all([connect(server, clients, node), connect(server, clients, node)]);
        await server.connected.atLeast(2);
        checkEq(await client1.client.add(1, 2), 3, "client1 add");
        checkEq(await client2.client.add(2, 3), 5, "client2 add");
        const client3p = (await connectParked(server, clients, node)).connected;
        checkEq(server.connected.value, 2, "third client must wait");
        checkEq(server.disconnected.value, 0, "no disconnect yet");
        await disconnect(client1, clients);
        await server.disconnected.atLeast(1);
        await server.connected.atLeast(3);
        checkEq(await (await client3p).client.add(3, 4), 7, "client3 add");
      }),
  },
  {
    name: "ListenConnections handles a client that disconnects before being accepted",
    origin: "upstream listen_tests.cpp:298 (#310)",
    run: (ctx) =>
      withListen(ctx, undefined, async (server) => {
        // Connect and close at once. Node always accepts, so the connection is served and ends
        // straight away; no error may be logged (upstream tolerates an accept error on macOS only).
        const socket = net.connect(server.path);
        await new Promise<void>((resolve, reject) => {
          socket.once("connect", resolve);
          socket.once("error", reject);
        });
        socket.destroy();
        await server.disconnected.atLeast(1);
        checkEq(server.connected.value, 1, "accepted exactly once");
      }),
  },
];
