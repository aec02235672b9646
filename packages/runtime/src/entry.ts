/**
 * Entry points used by `@multiprocess-ts/node` (contracts.md "Runtime entry points"), after
 * upstream's `ConnectStream` / `ServeStream` (proxy-io.h).
 *
 * Owns: nothing past the call; the Connection it makes is owned by the Init client (connect) or
 * the caller (serve). Threading: loop thread only.
 */
import { localCapability, readCap, writeCap, type Transport } from "@multiprocess-ts/capnp";
import { Connection, type ConnectionOptions } from "./connection.js";
import type { EventLoop } from "./event-loop.js";
import type { ProxyClientBase } from "./proxy/client.js";
import type { ProxyClientCtor, ProxyServerCtor } from "./proxy/seam.js";
import { disownImpl } from "./proxy/server.js";
import { makeThreadMap } from "./threads/servers.js";

export interface ConnectOptions extends Omit<ConnectionOptions, "bootstrap"> {}

export interface ServeOptions extends ConnectOptions {
  /**
   * Whether the Init server owns `impl` and disposes it (exactly once) when the connection ends or
   * the peer calls `destroy`. Default true. Pass false when one impl serves many connections
   * (a listener): the application then keeps ownership, as with upstream's no-op deleter in
   * `ServeStream`.
   */
  ownsImpl?: boolean;
}

/**
 * Client side: makes a Connection over `transport` (taking ownership of it), bootstraps the peer's
 * Init capability, wraps it in `InitClient` (which owns the Connection: disposing/closing the client
 * closes it) and, if the Init interface declares `construct`, exchanges ThreadMaps: sends ours,
 * keeps the peer's as `connection.peerThreadMap`. If construct fails, the connection is closed and
 * the error rethrown.
 */
export async function connectTransport<C>(
  loop: EventLoop,
  transport: Transport,
  InitClient: ProxyClientCtor<C>,
  opts: ConnectOptions = {},
): Promise<C> {
  const connection = new Connection(loop, transport, opts);
  const client = new InitClient(connection.rpc.bootstrap(), connection, { destroyConnection: true });
  const base = client as unknown as ProxyClientBase;
  const construct = InitClient.$construct;
  if (construct) {
    try {
      await constructExchange(base, construct);
    } catch (e) {
      await base.close();
      throw e;
    }
  }
  return client;
}

/** Runs the `construct` exchange for `client` (upstream ProxyClientBase ctor → `Sub::construct`). */
export function constructExchange(client: ProxyClientBase, construct: NonNullable<ProxyClientCtor["$construct"]>): Promise<void> {
  const connection = client.$connection;
  return client.$call(
    construct,
    (p) => {
      const ours = connection.threadMapCap(makeThreadMap);
      try {
        writeCap(p, 0, ours);
      } finally {
        ours.close();
      }
    },
    (r) => connection.setPeerThreadMap(readCap(r, 0)),
  );
}

/**
 * Server side: makes a Connection over `transport` (taking ownership of it) whose bootstrap is an
 * `InitServer` around `impl`, which it owns unless `opts.ownsImpl === false` (see
 * {@link ServeOptions.ownsImpl}). Fires the `connected` hook now and `disconnected` after
 * teardown, logging "IPC server: socket connected." / "... disconnected." as upstream.
 */
export function serveTransport<I>(
  loop: EventLoop,
  transport: Transport,
  impl: I,
  InitServer: ProxyServerCtor<I>,
  opts: ServeOptions = {},
): Connection {
  const { ownsImpl = true, ...connOpts } = opts;
  const connection = new Connection(loop, transport, {
    ...connOpts,
    bootstrap: (conn) => {
      const server = new InitServer(impl, conn);
      if (!ownsImpl) disownImpl(server);
      return localCapability(server);
    },
  });
  loop.log("info", "IPC server: socket connected.");
  loop.hooks.connected?.();
  connection.onDisconnect(() => {
    loop.log("info", "IPC server: socket disconnected.");
    loop.hooks.disconnected?.();
  });
  return connection;
}
