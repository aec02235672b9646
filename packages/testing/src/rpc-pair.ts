/**
 * createRpcPair: the engine-level fixture (no EventLoop, no generated proxies): two
 * `RpcConnection`s of `@multiprocess-ts/capnp` over the fenced memory transport, the server
 * bootstrapping a hand-written `Server`, the client holding its bootstrap capability. Its
 * disposer (`await using`) releases the bootstrap, lets deliveries settle, and checks that both
 * connections' RPC tables are empty before and after closing them.
 *
 * Threading: loop thread (both connections live on the calling thread).
 */

import {
  RpcConnection,
  localCapability,
  memoryTransportPair,
  type Capability,
  type MemoryTransport,
  type RpcStats,
  type Server,
} from "@multiprocess-ts/capnp";

export interface RpcPairOptions {
  /** A capability the client connection offers as its own bootstrap (ownership passes in). */
  clientBootstrap?: Capability;
}

export interface RpcPair extends AsyncDisposable {
  readonly clientTransport: MemoryTransport;
  readonly serverTransport: MemoryTransport;
  readonly client: RpcConnection;
  readonly server: RpcConnection;
  /** The client's bootstrap capability (the server's `bootstrap` object); released by dispose. */
  readonly boot: Capability;
  /**
   * Releases `boot`, drains deliveries, throws unless both RPC tables are empty, closes both
   * connections and checks the tables again. Idempotent.
   */
  dispose(): Promise<void>;
}

/** Lets queued microtasks and in-memory deliveries run (the memory transport is turn-driven). */
export async function drain(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Throws unless every counter of `stats` is 0 (`what` names the connection in the message). */
export function assertStatsIdle(stats: RpcStats, what: string): void {
  const bad = Object.entries(stats).filter(([, v]) => v !== 0);
  if (bad.length > 0) throw new Error(`${what}: RPC tables not empty: ${bad.map(([k, v]) => `${k}=${v}`).join(", ")}`);
}

/** Connects a client RpcConnection to a server RpcConnection bootstrapping `bootstrap`. */
export function createRpcPair(bootstrap: Server, opts: RpcPairOptions = {}): RpcPair {
  const [clientTransport, serverTransport] = memoryTransportPair();
  const bootCap = localCapability(bootstrap);
  const server = new RpcConnection(serverTransport, { bootstrap: bootCap, name: "server" });
  bootCap.close();
  const client = new RpcConnection(clientTransport, { name: "client", bootstrap: opts.clientBootstrap });
  opts.clientBootstrap?.close();
  const boot = client.bootstrap();
  let disposing: Promise<void> | undefined;
  const check = (when: string): void => {
    assertStatsIdle(client.stats(), `client (${when})`);
    assertStatsIdle(server.stats(), `server (${when})`);
  };
  const pair: RpcPair = {
    clientTransport,
    serverTransport,
    client,
    server,
    boot,
    dispose: () =>
      (disposing ??= (async () => {
        boot.close();
        await drain();
        try {
          check("before close");
        } finally {
          await client.close();
          await server.close();
        }
        check("after close");
      })()),
    [Symbol.asyncDispose]: () => pair.dispose(),
  };
  return pair;
}
