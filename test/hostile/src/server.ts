/**
 * The server under attack and the well-behaved client: FooInterface served by
 * `listenConnections` on a real Unix socket or TCP 127.0.0.1 port, with counters (calls and
 * elements that reached the implementation, listener limit events), and a client that keeps
 * calling `add` through generated proxies while recording each call's latency.
 * Threading: the loop thread of the test or benchmark (server and clients share it, so a
 * stalled server shows in the good client's latency).
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventLoop, type Connection } from "@multiprocess-ts/runtime";
import { FooInterfaceClient, FooInterfaceServer, type FooStruct } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectSocket, listenConnections, type ListenConnectionsOptions, type Listener, type ListenOptions, type ListenTarget } from "@multiprocess-ts/node";
import { FooImplementation } from "@multiprocess-ts/testing";

/** FooImplementation that counts what reached it and answers attack-sized calls with small results. */
export class CountingFoo extends FooImplementation {
  /** Calls of mapSize / pass / passDataPointers that reached the implementation. */
  attackCalls = 0;
  /** Elements those calls carried (map entries, list elements). */
  elements = 0;

  override mapSize(map: Map<string, string>): number {
    this.attackCalls++;
    this.elements += map.size;
    return map.size;
  }
  override pass(arg: FooStruct): FooStruct {
    this.attackCalls++;
    this.elements += arg.vectorBool.length + arg.setInt.length + arg.unorderedSetInt.length + arg.mapStringInt.size;
    return { name: arg.name, setInt: [], vectorBool: [], unorderedSetInt: [], mapStringInt: new Map() };
  }
  override passDataPointers(arg: Uint8Array[]): Uint8Array[] {
    this.attackCalls++;
    this.elements += arg.length;
    return [];
  }
}

export type Transport = "unix" | "tcp";

/** Listener options the suite varies. */
export type ServerOptions = Pick<ListenOptions, "maxConnections" | "maxPending" | "parkTimeoutMs" | "frameTimeoutMs" | "firstMessageTimeoutMs" | "frameBudget"> & Pick<ListenConnectionsOptions, "flow">;

export class HostileServer {
  /** Listener `limit` events (timeouts, frame budget), in order. */
  readonly limits: { id: number; reason: string }[] = [];
  served = 0;
  released = 0;
  /** Listener `park` and `drop` events. */
  parked = 0;
  dropped = 0;

  private constructor(
    readonly loop: EventLoop,
    readonly impl: CountingFoo,
    readonly listener: Listener,
    readonly target: ListenTarget,
    private readonly dir: string | undefined,
    /** Error logs of the server loop. */
    readonly errors: string[],
    /** Warning logs of the server loop (refused calls are logged as warnings). */
    readonly warnings: string[],
    /** Every connection served, in order (their `error` says how each ended). */
    readonly connections: Connection[],
  ) {}

  static async start(transport: Transport, opts: ServerOptions = {}): Promise<HostileServer> {
    const errors: string[] = [];
    const warnings: string[] = [];
    const loop = new EventLoop("hostile-server", {
      log: {
        level: "warning",
        logFn: (level, msg) => (level === "error" ? errors : warnings).push(msg),
      },
    });
    const impl = new CountingFoo();
    const dir = transport === "unix" ? mkdtempSync(join(tmpdir(), "mp-hostile-")) : undefined;
    const where: ListenTarget = dir !== undefined ? join(dir, "socket") : 0;
    const connections: Connection[] = [];
    const listener = await listenConnections(where, loop, impl, FooInterfaceServer, { ...opts, onConnection: (c) => connections.push(c) });
    const target: ListenTarget = "path" in listener.address ? listener.address.path : listener.address.port;
    const s = new HostileServer(loop, impl, listener, target, dir, errors, warnings, connections);
    listener.on("limit", (id, reason) => s.limits.push({ id, reason }));
    listener.on("serve", () => s.served++);
    listener.on("release", () => s.released++);
    listener.on("park", () => s.parked++);
    listener.on("drop", () => s.dropped++);
    return s;
  }

  /** Stop listening, cut what is still connected, wait for the loop to finish. */
  async close(): Promise<void> {
    try {
      await this.listener.close({ destroy: true });
      await this.loop.done;
    } finally {
      if (this.dir !== undefined) rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** A well-behaved client calling add() in a loop on its own EventLoop. */
export class GoodClient {
  /** Latency of each completed call, in ms. */
  readonly latencies: number[] = [];
  failures = 0;
  private running: Promise<void> | undefined;
  private stop = false;

  private constructor(
    readonly loop: EventLoop,
    readonly client: FooInterfaceClient,
  ) {}

  static async connect(target: ListenTarget): Promise<GoodClient> {
    const loop = new EventLoop("hostile-good-client");
    const client = await connectSocket(loop, target, FooInterfaceClient);
    return new GoodClient(loop, client);
  }

  /** One call; returns its latency (ms). Throws if the answer is wrong. */
  async once(): Promise<number> {
    const t0 = performance.now();
    const r = await this.client.add(20, 22);
    if (r !== 42) throw new Error(`add(20, 22) answered ${r}`);
    const dt = performance.now() - t0;
    this.latencies.push(dt);
    return dt;
  }

  /** Keep calling until {@link stopLoop}. */
  startLoop(): void {
    this.stop = false;
    this.running = (async () => {
      while (!this.stop) {
        try {
          await this.once();
        } catch {
          this.failures++;
          return;
        }
      }
    })();
  }

  async stopLoop(): Promise<void> {
    this.stop = true;
    await this.running;
  }

  /** 99th percentile latency (ms) of the calls so far. */
  p99(): number {
    if (this.latencies.length === 0) return NaN;
    const s = [...this.latencies].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!;
  }

  async close(): Promise<void> {
    await this.stopLoop();
    await this.client.close();
    await this.client.$connection.disconnected;
    await this.loop.done;
  }
}
